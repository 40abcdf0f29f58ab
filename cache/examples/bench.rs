//! Cache figures for bench/cache: connection set-up, `get` on a hit and on a
//! miss against the plain query, and invalidation latency from commit to key
//! deleted. Needs DATABASE_URL (olaclick with demo data; TLS or not as its
//! sslmode says), REDIS_URL (and OLACLICK_REDIS_CACERT for rediss://),
//! BENCH_WRITER_URL (a role that may update any tenant's orders, e.g. the
//! superuser through the socket) and an invalidator running.
//! Prints one line per figure: name p50 p99 (ms).

use std::time::{Duration, Instant};

use olaclick_cache::{data_key, get, query_orders, Config, RedisTls};
use tokio_postgres::NoTls;

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p / 100.0) as usize).min(v.len() - 1)]
}

fn report(name: &str, v: Vec<f64>) {
    println!("{name} {:.3} {:.3}", pct(v.clone(), 50.0), pct(v, 99.0));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::new(std::env::var("DATABASE_URL")?, std::env::var("REDIS_URL")?);
    config.redis_tls = RedisTls {
        ca: std::env::var_os("OLACLICK_REDIS_CACERT").map(Into::into),
        ..RedisTls::default()
    };
    let n = 200;
    let mut redis = olaclick_cache::redis(&config).await?;
    let (pg, conn) = tokio_postgres::connect(&std::env::var("BENCH_WRITER_URL")?, NoTls).await?;
    tokio::spawn(conn);

    // What each `get` pays before its first byte of data: TCP, TLS (if any)
    // and authentication (SCRAM for PostgreSQL).
    let (mut pg_connect, mut redis_connect) = (vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        let (client, connection) = olaclick_cache::postgres(&config, "bench").await?;
        pg_connect.push(t.elapsed().as_secs_f64() * 1e3);
        drop(client);
        connection.await?;
        let t = Instant::now();
        drop(olaclick_cache::redis(&config).await?);
        redis_connect.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // The same, once connected: what TLS adds to each request of a process
    // that keeps its connections (a server using the library).
    let (reader, connection) = olaclick_cache::postgres(&config, "bench").await?;
    tokio::spawn(connection);
    let (mut pg_open, mut redis_open) = (vec![], vec![]);
    for _ in 0..n {
        let t = Instant::now();
        reader.query_one("SELECT 1", &[]).await?;
        pg_open.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let _: Option<String> = redis::cmd("GET")
            .arg(data_key(1, "sent"))
            .query_async(&mut redis)
            .await?;
        redis_open.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(reader);

    let (mut plain, mut miss, mut hit, mut invalidation) = (vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let restaurant = 1 + (i % 50) as i64;
        let t = Instant::now();
        query_orders(&config, restaurant, "sent").await?;
        plain.push(t.elapsed().as_secs_f64() * 1e3);

        let _: () = redis::cmd("DEL")
            .arg(data_key(restaurant, "sent"))
            .query_async(&mut redis)
            .await?;
        let t = Instant::now();
        get(&config, restaurant, "sent").await?;
        miss.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        get(&config, restaurant, "sent").await?;
        hit.push(t.elapsed().as_secs_f64() * 1e3);

        // A committed change to one of the restaurant's sent orders; the
        // clock runs from the commit's return to the key's deletion.
        pg.execute(
            "UPDATE olaclick.orders SET client_id = client_id
             WHERE id = (SELECT min(id) FROM olaclick.orders WHERE restaurant_id = $1 AND status = 'sent')",
            &[&(restaurant as i32)],
        )
        .await?;
        let t = Instant::now();
        loop {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(data_key(restaurant, "sent"))
                .query_async(&mut redis)
                .await?;
            if exists == 0 {
                break;
            }
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(5),
                "no invalidation within 5 s"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        invalidation.push(t.elapsed().as_secs_f64() * 1e3);
    }
    report("pg_connect", pg_connect);
    report("redis_connect", redis_connect);
    report("pg_select1_open", pg_open);
    report("redis_get_open", redis_open);
    report("plain_query", plain);
    report("get_miss", miss);
    report("get_hit", hit);
    report("invalidation", invalidation);
    Ok(())
}
