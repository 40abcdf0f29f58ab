use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use olaclick_cache::{metrics, Config, Metrics, RedisTls, Secret, Source, STATUSES};

/// Orders by status from Redis, cache-aside, kept fresh by olaclick's
/// commit-time notifications.
///
/// Keys: olaclick:orders:{restaurant_id}:{status}. Run one `invalidate` per
/// Redis (`invalidate --help`: its metrics and health check address,
/// OLACLICK_METRICS_ADDR); call `get` wherever orders are read.
#[derive(Parser)]
#[command(name = "olaclick-cache", version)]
struct Cli {
    /// PostgreSQL with the olaclick extension, as a libpq URL: sslmode
    /// (disable, prefer [default], require, verify-ca, verify-full),
    /// sslrootcert, sslcert, sslkey, several hosts, target_session_attrs
    /// (prefer-standby or standby for `get` on a hot standby).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// A file holding DATABASE_URL (a container secret); read again on every
    /// reconnection, so a rotated password needs no restart.
    #[arg(long, env = "DATABASE_URL_FILE")]
    database_url_file: Option<PathBuf>,

    /// Redis to cache in: redis://[user:password@]host:port, or rediss:// for
    /// TLS [default: redis://127.0.0.1:6379].
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,

    /// A file holding REDIS_URL; read again on every reconnection.
    #[arg(long, env = "REDIS_URL_FILE")]
    redis_url_file: Option<PathBuf>,

    /// PEM file of the CA that signed Redis's certificate (rediss://);
    /// Mozilla's root CAs (webpki-roots) when unset.
    #[arg(long, env = "OLACLICK_REDIS_CACERT")]
    redis_cacert: Option<PathBuf>,

    /// PEM client certificate for Redis (with OLACLICK_REDIS_KEY).
    #[arg(long, env = "OLACLICK_REDIS_CERT")]
    redis_cert: Option<PathBuf>,

    /// PEM private key of the client certificate for Redis.
    #[arg(long, env = "OLACLICK_REDIS_KEY")]
    redis_key: Option<PathBuf>,

    /// Seconds a cached list lives, even if no invalidation comes.
    #[arg(long, env = "OLACLICK_CACHE_TTL", default_value_t = 60)]
    ttl: u64,

    /// Notification channel: the olaclick.notify_channel of the writers.
    #[arg(
        long,
        env = "OLACLICK_NOTIFY_CHANNEL",
        default_value = "olaclick_cache"
    )]
    channel: String,

    /// The most orders one cached list holds: a list with more is answered
    /// from PostgreSQL every time, not cached, and `get` says so on stderr.
    #[arg(long, env = "OLACLICK_CACHE_MAX_ORDERS", default_value_t = olaclick_cache::MAX_ORDERS)]
    max_orders: usize,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen for olaclick's notifications and delete the keys they name.
    /// Flushes the cache on every (re)connection; reconnects with backoff.
    Invalidate {
        /// Address to serve Prometheus metrics (/metrics) and a health check
        /// (/healthz: 200 when PostgreSQL and Redis are connected, else 503
        /// naming which is down) on, e.g. 127.0.0.1:9464 or [::]:9464.
        /// Nothing is served when unset.
        #[arg(long, env = "OLACLICK_METRICS_ADDR")]
        metrics_addr: Option<SocketAddr>,
    },
    /// Print a restaurant's orders in a status (last 7 days) as JSON: from
    /// Redis if cached, else from PostgreSQL (and cache them).
    Get {
        #[arg(long)]
        restaurant: i64,
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(STATUSES))]
        status: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only for a person: logs kept in files or grepped stay plain.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OLACLICK_CACHE_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let database = match Secret::from_pair("DATABASE_URL", cli.database_url, cli.database_url_file)
    {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("olaclick-cache: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let redis = match (cli.redis_url, cli.redis_url_file) {
        (None, None) => Secret::Value("redis://127.0.0.1:6379".into()),
        (value, file) => match Secret::from_pair("REDIS_URL", value, file) {
            Ok(secret) => secret,
            Err(e) => {
                eprintln!("olaclick-cache: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    let config = Config {
        database,
        redis,
        redis_tls: RedisTls {
            ca: cli.redis_cacert,
            cert: cli.redis_cert,
            key: cli.redis_key,
        },
        ttl: Duration::from_secs(cli.ttl.max(1)),
        channel: cli.channel,
        max_orders: cli.max_orders,
    };
    let result = match cli.command {
        Command::Invalidate { metrics_addr } => invalidate(&config, metrics_addr).await,
        Command::Get { restaurant, status } => {
            match olaclick_cache::get(&config, restaurant, &status).await {
                Ok((json, source)) => {
                    println!("{json}");
                    match source {
                        Source::Cache | Source::Database { .. } => {}
                        Source::DatabaseWithoutCache(why) => {
                            eprintln!(
                                "olaclick-cache: answered from PostgreSQL without the cache: {why}"
                            )
                        }
                        Source::DatabaseTooLong { orders, max_orders } => {
                            eprintln!(
                                "olaclick-cache: answered from PostgreSQL, not cached: {orders} orders, more than OLACLICK_CACHE_MAX_ORDERS ({max_orders})"
                            )
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("olaclick-cache: {}", config.scrub(format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// The invalidator, and the metrics server beside it when asked for. The
/// address is bound first: a taken or forbidden one is an error at start,
/// not a warning lost in the log.
async fn invalidate(config: &Config, metrics_addr: Option<SocketAddr>) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    if let Some(addr) = metrics_addr {
        let listener = metrics::bind(addr).await?;
        // The port the system chose, if 0 was given.
        let addr = listener.local_addr().unwrap_or(addr);
        tracing::info!("metrics: serving /metrics and /healthz on http://{addr}");
        let served = metrics.clone();
        // A task of its own: a scrape never waits for, or makes wait, an
        // invalidation.
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, served).await {
                tracing::error!("{e:#}");
            }
        });
    }
    olaclick_cache::run_invalidator(config.clone(), metrics).await
}
