//! olaclick-cache against a real PostgreSQL with the extension and real
//! redis-server processes. `scripts/test` provides the server:
//! OLACLICK_TEST_PG=postgresql://postgres@127.0.0.1:5498. Each test makes its
//! own database and its own Redis on a free port.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use olaclick_cache::{data_key, install, query_orders, read_tokens, version_key, Config, Source};
use redis::aio::MultiplexedConnection;
use tokio_postgres::NoTls;

const BIN: &str = env!("CARGO_BIN_EXE_olaclick-cache");

fn pg_base() -> String {
    std::env::var("OLACLICK_TEST_PG").expect(
        "OLACLICK_TEST_PG must name a PostgreSQL with olaclick installed (scripts/test sets it)",
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn con(&self) -> MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Env {
    db: String,
    redis: Redis,
    pg: tokio_postgres::Client,
    invalidator: Option<Child>,
}

impl Env {
    /// A fresh database with two restaurants and three initiated orders
    /// (ids 1 and 2 of restaurant 1, 3 of restaurant 2), and a fresh Redis.
    async fn new(name: &str) -> Env {
        let db = format!("olaclick_cache_{name}");
        let (admin, conn) = tokio_postgres::connect(&format!("{}/postgres", pg_base()), NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
        let (pg, conn) = tokio_postgres::connect(&format!("{}/{db}", pg_base()), NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        pg.batch_execute(
            "CREATE EXTENSION olaclick;
             INSERT INTO olaclick.restaurants (id, name) VALUES (1, 'R1'), (2, 'R2');
             INSERT INTO olaclick.branches (id, restaurant_id, name, address) VALUES (1, 1, 'b', 'a'), (2, 2, 'b', 'a');
             INSERT INTO olaclick.clients (id, restaurant_id, name, email) VALUES (1, 1, 'Ana', 'a@x'), (2, 2, 'Ben', 'b@x');
             INSERT INTO olaclick.products (id, restaurant_id, name, price) VALUES (1, 1, 'p', 10), (2, 2, 'p', 10);
             INSERT INTO olaclick.orders (id, restaurant_id, client_id, branch_id) VALUES (1, 1, 1, 1), (2, 1, 1, 1), (3, 2, 2, 2);
             SELECT setval(pg_get_serial_sequence('olaclick.orders', 'id'), 100);",
        )
        .await
        .unwrap();
        Env {
            db,
            redis: Redis::start(),
            pg,
            invalidator: None,
        }
    }

    fn config(&self) -> Config {
        Config {
            database_url: format!("{}/{}", pg_base(), self.db),
            redis_url: self.redis.url(),
            ttl: Duration::from_secs(60),
            channel: "olaclick_cache".into(),
        }
    }

    fn command(&self) -> Command {
        let config = self.config();
        let mut command = Command::new(BIN);
        command
            .env("DATABASE_URL", config.database_url)
            .env("REDIS_URL", config.redis_url)
            .env("OLACLICK_CACHE_TTL", "60");
        command
    }

    /// Starts `olaclick-cache invalidate` and waits until it listens (its
    /// first flush bumps the generation).
    async fn start_invalidator(&mut self) {
        let mut con = self.redis.con().await;
        let before = generation(&mut con).await;
        self.invalidator = Some(
            self.command()
                .arg("invalidate")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        eventually("the invalidator listens", || async {
            generation(&mut self.redis.con().await).await > before
        })
        .await;
    }

    async fn cached(&self, restaurant: i64, status: &str) -> Option<String> {
        redis::cmd("GET")
            .arg(data_key(restaurant, status))
            .query_async(&mut self.redis.con().await)
            .await
            .unwrap()
    }

    async fn get(&self, restaurant: i64, status: &str) -> (String, Source) {
        olaclick_cache::get(&self.config(), restaurant, status)
            .await
            .unwrap()
    }

    async fn wait_gone(&self, restaurant: i64, status: &str) {
        eventually(&format!("{restaurant}:{status} is invalidated"), || async {
            self.cached(restaurant, status).await.is_none()
        })
        .await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.invalidator.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

async fn generation(con: &mut MultiplexedConnection) -> i64 {
    let g: Option<i64> = redis::cmd("GET")
        .arg(olaclick_cache::GENERATION_KEY)
        .query_async(con)
        .await
        .unwrap_or(None);
    g.unwrap_or(0)
}

/// Waits (up to 15 s) for `condition`. A bound on waiting for another
/// process, not a speed check.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_commit_invalidates_and_a_rollback_does_not() {
    let mut env = Env::new("commit").await;
    env.start_invalidator().await;
    assert_eq!(
        env.get(1, "initiated").await.1,
        Source::Database { stored: true }
    );
    let (json, source) = env.get(1, "initiated").await;
    assert_eq!(source, Source::Cache);
    assert!(
        json.contains(r#""id":1"#) && json.contains(r#""client":"Ana""#),
        "{json}"
    );

    // Rolled back: no notification. Committing on restaurant 2 afterwards is
    // a fence: once its key is gone, anything restaurant 1 got would have
    // arrived too.
    env.pg
        .batch_execute("BEGIN; UPDATE olaclick.orders SET status = 'sent' WHERE id = 1; ROLLBACK;")
        .await
        .unwrap();
    env.get(2, "initiated").await;
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'sent' WHERE id = 3")
        .await
        .unwrap();
    env.wait_gone(2, "initiated").await;
    assert!(
        env.cached(1, "initiated").await.is_some(),
        "a rolled-back change invalidated the cache"
    );

    env.get(1, "sent").await;
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'sent' WHERE id = 1")
        .await
        .unwrap();
    env.wait_gone(1, "initiated").await;
    env.wait_gone(1, "sent").await;
    let (json, source) = env.get(1, "sent").await;
    assert_eq!(source, Source::Database { stored: true });
    assert!(json.contains(r#""id":1"#), "{json}");
}

#[tokio::test]
async fn a_reader_that_raced_an_invalidation_installs_nothing() {
    let mut env = Env::new("race").await;
    env.start_invalidator().await;
    let mut con = env.redis.con().await;
    // The reader reads its tokens and PostgreSQL...
    let tokens = read_tokens(&mut con, 1, "initiated").await.unwrap();
    let stale = query_orders(&env.config(), 1, "initiated").await.unwrap();
    // ...then an order leaves the list, and the invalidator handles it...
    let version_before: Option<i64> = redis::cmd("GET")
        .arg(version_key(1, "initiated"))
        .query_async(&mut con)
        .await
        .unwrap();
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'sent' WHERE id = 2")
        .await
        .unwrap();
    eventually("the invalidation is handled", || async {
        let v: Option<i64> = redis::cmd("GET")
            .arg(version_key(1, "initiated"))
            .query_async(&mut env.redis.con().await)
            .await
            .unwrap();
        v != version_before
    })
    .await;
    // ...so the reader's older result must not go in.
    assert!(stale.contains(r#""id":2"#));
    let installed = install(
        &mut con,
        1,
        "initiated",
        &tokens,
        &stale,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert!(!installed);
    assert_eq!(env.cached(1, "initiated").await, None);
    let (fresh, _) = env.get(1, "initiated").await;
    assert!(!fresh.contains(r#""id":2"#), "{fresh}");
}

#[tokio::test]
async fn the_invalidator_reconnects_after_its_backend_is_terminated() {
    let mut env = Env::new("pgrestart").await;
    env.start_invalidator().await;
    env.get(1, "initiated").await;
    let before = generation(&mut env.redis.con().await).await;
    let terminated: i64 = env
        .pg
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'olaclick-cache-invalidate' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1);
    // Reconnected: it flushed what it may have missed (bumping the generation).
    eventually("the invalidator reconnects", || async {
        generation(&mut env.redis.con().await).await > before
    })
    .await;
    assert_eq!(env.cached(1, "initiated").await, None);
    env.get(1, "initiated").await;
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'sent' WHERE id = 1")
        .await
        .unwrap();
    env.wait_gone(1, "initiated").await;
}

#[tokio::test]
async fn the_invalidator_survives_a_redis_restart() {
    let mut env = Env::new("redisrestart").await;
    env.start_invalidator().await;
    env.redis.stop();
    // A commit while Redis is away: it has nothing to invalidate, and the
    // flush on reconnection covers whatever a persistent Redis kept.
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'sent' WHERE id = 1")
        .await
        .unwrap();
    env.redis.spawn();
    eventually("the invalidator reconnects to Redis", || async {
        generation(&mut env.redis.con().await).await > 0
    })
    .await;
    env.get(1, "sent").await;
    assert!(env.cached(1, "sent").await.is_some());
    env.pg
        .batch_execute("UPDATE olaclick.orders SET status = 'delivered' WHERE id = 1")
        .await
        .unwrap();
    env.wait_gone(1, "sent").await;
}

#[tokio::test]
async fn get_answers_from_postgres_when_redis_is_down_and_hides_passwords() {
    let mut env = Env::new("redisdown").await;
    env.redis.stop();
    let out = env
        .command()
        .env(
            "REDIS_URL",
            format!("redis://:s3cret-pw@127.0.0.1:{}", env.redis.port),
        )
        .args(["get", "--restaurant", "1", "--status", "initiated"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(r#""id":1"#) && stdout.contains(r#""id":2"#),
        "{stdout}"
    );
    assert!(
        stderr.contains("answered from PostgreSQL without the cache"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret-pw") && !stdout.contains("s3cret-pw"),
        "{stderr}"
    );

    // A wrong database password is reported without echoing it.
    let out = env
        .command()
        .env(
            "DATABASE_URL",
            format!("postgresql://nobody:db-s3cret@127.0.0.1:1/{}", env.db),
        )
        .args(["get", "--restaurant", "1", "--status", "initiated"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("PostgreSQL at") && !stderr.contains("db-s3cret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn get_works_for_the_least_privileged_reader() {
    let env = Env::new("readonly").await;
    env.pg
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reports_test') THEN
                 CREATE ROLE reports_test LOGIN IN ROLE olaclick_readonly;
               END IF;
             END $$",
        )
        .await
        .unwrap();
    let mut config = env.config();
    config.database_url = config.database_url.replace("postgres@", "reports_test@");
    let json = query_orders(&config, 1, "initiated").await.unwrap();
    assert!(
        json.contains(r#""id":1"#) && json.contains(r#""id":2"#) && !json.contains(r#""id":3"#),
        "{json}"
    );
}

#[test]
fn help_documents_the_environment() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "DATABASE_URL",
        "REDIS_URL",
        "OLACLICK_CACHE_TTL",
        "OLACLICK_NOTIFY_CHANNEL",
    ] {
        assert!(help.contains(var), "--help does not mention {var}:\n{help}");
    }
}

#[test]
fn payloads_parse() {
    let p = olaclick_cache::parse_payload(
        r#"{"restaurant_id": 4, "statuses": ["initiated", "sent"], "orders": [1, 2]}"#,
    );
    assert_eq!(
        p,
        Some((4, vec!["initiated".to_string(), "sent".to_string()], false))
    );
    let p =
        olaclick_cache::parse_payload(r#"{"restaurant_id": 4, "statuses": ["sent"], "all": true}"#);
    assert_eq!(p, Some((4, vec!["sent".to_string()], true)));
    assert_eq!(olaclick_cache::parse_payload("hello"), None);
}
