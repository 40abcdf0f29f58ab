//! olaclick-cache: orders by status in Redis, cache-aside, kept fresh by
//! olaclick's commit-time notifications.
//!
//! Keys (contract): `olaclick:orders:{restaurant_id}:{status}` hold the JSON a
//! reader built from PostgreSQL, with a TTL.
//!
//! The cache-aside race, and how it is closed: a reader that queried
//! PostgreSQL before a commit must not install its older result after the
//! invalidator deleted the key for that commit. Every key has a version
//! (`olaclick:version:{restaurant_id}:{status}`) and the whole cache has a
//! generation (`olaclick:generation`). The invalidator bumps the version (or,
//! on every (re)connection, the generation) in the same atomic script that
//! deletes the keys; a reader reads both before its query and installs its
//! result with a script that checks they are unchanged. A reader that raced
//! an invalidation finds a newer token and installs nothing.

pub mod config;
pub mod connect;
pub mod metrics;
pub mod tls;

use std::time::{Duration, Instant};

use anyhow::Result;
use redis::aio::MultiplexedConnection;
use tokio_postgres::AsyncMessage;
use tracing::{debug, info, warn};

pub use config::{redact, Secret};
pub use connect::{postgres, redis};
pub use metrics::{ErrorKind, Metrics, Target};
pub use tls::RedisTls;

pub const STATUSES: [&str; 3] = ["initiated", "sent", "delivered"];
pub const GENERATION_KEY: &str = "olaclick:generation";
pub const APPLICATION_NAME: &str = "olaclick-cache";

/// The Redis ACL rules olaclick-cache needs, and no more: its keys, and the
/// commands it sends (GET, MGET; its scripts by EVALSHA, loaded with SCRIPT
/// LOAD when Redis doesn't have them, which call GET, SET, INCR and DEL; the
/// flush's SCAN and DEL; PING; SELECT for a `/db` in REDIS_URL). AUTH needs
/// no rule. Everything else (FLUSHALL, CONFIG, SHUTDOWN, KEYS, other keys,
/// Pub/Sub channels) is refused with NOPERM. docs/cache.md,
/// docs/security.md and scripts/demo give the same rules; the tests run
/// with them.
pub const REDIS_ACL: &str =
    "resetkeys ~olaclick:* resetchannels -@all +get +mget +set +incr +del +scan +ping +select +evalsha +script|load";

pub fn data_key(restaurant: i64, status: &str) -> String {
    format!("olaclick:orders:{restaurant}:{status}")
}

pub fn version_key(restaurant: i64, status: &str) -> String {
    format!("olaclick:version:{restaurant}:{status}")
}

/// Where each part of the program connects, read from the environment by the
/// command line (see `--help`).
#[derive(Clone, Debug)]
pub struct Config {
    /// `DATABASE_URL`: libpq's URL, TLS parameters included (`config.rs`).
    pub database: Secret,
    /// `REDIS_URL`: `redis://` or `rediss://`, user and password included.
    pub redis: Secret,
    pub redis_tls: RedisTls,
    pub ttl: Duration,
    pub channel: String,
    /// The most orders one cached list holds (`OLACLICK_CACHE_MAX_ORDERS`):
    /// a longer list is answered from PostgreSQL and not cached, so one
    /// tenant's key stays bounded in Redis.
    pub max_orders: usize,
}

/// `max_orders` unless told: at the 58 bytes an order takes in a list with
/// short names, 58 KB per key; with 100-character names, about 260 KB.
pub const MAX_ORDERS: usize = 1000;

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>) -> Config {
        Config {
            database: Secret::Value(database_url.into()),
            redis: Secret::Value(redis_url.into()),
            redis_tls: RedisTls::default(),
            ttl: Duration::from_secs(60),
            channel: "olaclick_cache".into(),
            max_orders: MAX_ORDERS,
        }
    }

    /// Every password of the configuration as it is now, to scrub from
    /// messages.
    fn secrets(&self) -> Vec<String> {
        [&self.database, &self.redis]
            .iter()
            .filter_map(|s| s.read().ok())
            .flat_map(|url| config::passwords(&url))
            .collect()
    }

    /// `message` with every password of the configuration replaced by `***`:
    /// errors and logs must never show one.
    pub fn scrub(&self, message: impl std::fmt::Display) -> String {
        let mut text = message.to_string();
        let mut secrets = self.secrets();
        // Longest first, so a password that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            text = text.replace(&secret, "***");
        }
        text
    }

    /// An error with its causes (tokio-postgres shows only "db error" or
    /// "error performing TLS handshake" without them), passwords scrubbed.
    pub fn scrub_error<E>(&self, error: E) -> String
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.scrub(format!("{:#}", anyhow::Error::new(error)))
    }

    /// The URLs for a log line (files read now), passwords hidden.
    pub fn shown(&self) -> (String, String) {
        let show = |s: &Secret| match s.read() {
            Ok(url) => redact(&url),
            Err(e) => format!("<{e:#}>"),
        };
        (show(&self.database), show(&self.redis))
    }
}

/// What a reader saw of the cache before querying PostgreSQL.
#[derive(Clone, Debug, PartialEq)]
pub struct Tokens {
    generation: String,
    version: String,
}

pub async fn read_tokens(
    con: &mut MultiplexedConnection,
    restaurant: i64,
    status: &str,
) -> Result<Tokens> {
    let (generation, version): (Option<String>, Option<String>) = redis::cmd("MGET")
        .arg(GENERATION_KEY)
        .arg(version_key(restaurant, status))
        .query_async(con)
        .await?;
    Ok(Tokens {
        generation: generation.unwrap_or_else(|| "0".into()),
        version: version.unwrap_or_else(|| "0".into()),
    })
}

/// The seed's Part 2 query for one tenant and status ($1, $2): orders of the
/// last 7 days with client and restaurant names, newest first. Every column it
/// reads must invalidate when it changes: olaclick notifies for any change of
/// an order, and for the other tables' columns through the triggers of
/// sql/finalize.sql; the tests derive the columns from this text and check
/// that each has its trigger.
pub const ORDERS_QUERY: &str = "SELECT p.id, p.total::text, c.name::text, r.name::text
             FROM olaclick.orders p
             JOIN olaclick.clients c ON c.id = p.client_id
             JOIN olaclick.restaurants r ON r.id = p.restaurant_id
             WHERE p.restaurant_id = $1::integer AND p.status = $2::text::olaclick.order_status
               AND p.created_at >= now() - interval '7 days'
             ORDER BY p.created_at DESC, p.id DESC";

/// The seed's Part 2 query for one tenant and status: orders of the last 7
/// days with client and restaurant names, newest first, as a JSON document.
pub async fn query_orders(config: &Config, restaurant: i64, status: &str) -> Result<String> {
    Ok(query_orders_counted(config, restaurant, status).await?.0)
}

/// `query_orders`, and how many orders the list holds.
async fn query_orders_counted(
    config: &Config,
    restaurant: i64,
    status: &str,
) -> Result<(String, usize)> {
    let (mut client, connection) = postgres(config, "get").await?;
    let task = tokio::spawn(connection);
    // As olaclick_readonly (or app), row-level security shows only the tenant
    // the session acts for: set it for this transaction.
    let tx = client
        .transaction()
        .await
        .map_err(|e| anyhow::anyhow!("{}", config.scrub_error(e)))?;
    tx.execute(
        "SELECT set_config('olaclick.restaurant_id', $1, true)",
        &[&restaurant.to_string()],
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", config.scrub_error(e)))?;
    let rows = tx
        .query(ORDERS_QUERY, &[&(restaurant as i32), &status])
        .await
        .map_err(|e| anyhow::anyhow!("query failed: {}", config.scrub_error(e)))?;
    tx.commit()
        .await
        .map_err(|e| anyhow::anyhow!("{}", config.scrub_error(e)))?;
    drop(client);
    let _ = task.await;
    let orders: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "id": row.get::<_, i64>(0),
                "total": row.get::<_, String>(1),
                "client": row.get::<_, String>(2),
                "restaurant": row.get::<_, String>(3),
            })
        })
        .collect();
    let count = orders.len();
    Ok((
        serde_json::json!({"restaurant_id": restaurant, "status": status, "orders": orders})
            .to_string(),
        count,
    ))
}

/// Installs `json` under the key only if neither the key's version nor the
/// generation moved since `tokens` were read. Returns whether it did.
pub async fn install(
    con: &mut MultiplexedConnection,
    restaurant: i64,
    status: &str,
    tokens: &Tokens,
    json: &str,
    ttl: Duration,
) -> Result<bool> {
    let script = redis::Script::new(
        r"
        if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
        if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[2] then return 0 end
        redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
        return 1",
    );
    let installed: i64 = script
        .key(GENERATION_KEY)
        .key(version_key(restaurant, status))
        .key(data_key(restaurant, status))
        .arg(&tokens.generation)
        .arg(&tokens.version)
        .arg(json)
        .arg(ttl.as_millis() as u64)
        .invoke_async(con)
        .await?;
    Ok(installed == 1)
}

/// Where an answer of `get` came from.
#[derive(Debug, PartialEq)]
pub enum Source {
    Cache,
    /// Read from PostgreSQL and stored (or not, if an invalidation raced it).
    Database {
        stored: bool,
    },
    /// Read from PostgreSQL because Redis is unavailable (the reason).
    DatabaseWithoutCache(String),
    /// Read from PostgreSQL and not cached: the list has more orders than
    /// `max_orders`.
    DatabaseTooLong {
        orders: usize,
        max_orders: usize,
    },
}

/// Cache-aside read. Never fails because of Redis: without it, the answer
/// comes from PostgreSQL.
pub async fn get(config: &Config, restaurant: i64, status: &str) -> Result<(String, Source)> {
    let mut con = match redis(config).await {
        Ok(con) => con,
        Err(e) => {
            let json = query_orders(config, restaurant, status).await?;
            return Ok((json, Source::DatabaseWithoutCache(e.to_string())));
        }
    };
    let cached: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg(data_key(restaurant, status))
        .query_async(&mut con)
        .await;
    let tokens = match cached {
        Ok(Some(json)) => return Ok((json, Source::Cache)),
        Ok(None) => read_tokens(&mut con, restaurant, status).await,
        Err(e) => Err(e.into()),
    };
    let (json, count) = query_orders_counted(config, restaurant, status).await?;
    if count > config.max_orders {
        return Ok((
            json,
            Source::DatabaseTooLong {
                orders: count,
                max_orders: config.max_orders,
            },
        ));
    }
    let stored = match tokens {
        Ok(tokens) => install(&mut con, restaurant, status, &tokens, &json, config.ttl).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(stored) => Ok((json, Source::Database { stored })),
        Err(e) => Ok((json, Source::DatabaseWithoutCache(config.scrub(e)))),
    }
}

/// Deletes a restaurant's keys for `statuses` (all statuses when `all`) and
/// bumps their versions, atomically. Returns how many keys existed (were
/// deleted).
pub async fn invalidate(
    con: &mut MultiplexedConnection,
    restaurant: i64,
    statuses: &[String],
    all: bool,
) -> Result<usize> {
    let statuses: Vec<&str> = if all {
        STATUSES.to_vec()
    } else {
        statuses
            .iter()
            .map(String::as_str)
            .filter(|s| STATUSES.contains(s))
            .collect()
    };
    let script = redis::Script::new(
        r"
        local deleted = 0
        for i = 1, #KEYS, 2 do
            redis.call('INCR', KEYS[i])
            deleted = deleted + redis.call('DEL', KEYS[i + 1])
        end
        return deleted",
    );
    let mut invocation = script.prepare_invoke();
    for status in statuses {
        invocation
            .key(version_key(restaurant, status))
            .key(data_key(restaurant, status));
    }
    answered(invocation.invoke_async(con)).await
}

/// A Redis command's answer, or an error when it takes longer than
/// ANSWER_TIMEOUT. redis-rs has a response timeout of its own; this one is
/// the invalidator's: no command, whatever the client library does with it,
/// can hold up invalidation, which then goes to the reconnect-and-flush path.
async fn answered<T>(
    command: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(ANSWER_TIMEOUT, command).await {
        Ok(answer) => Ok(answer?),
        Err(_) => anyhow::bail!("no answer within {ANSWER_TIMEOUT:?}"),
    }
}

/// Treats the whole cache as stale: bumps the generation (so no reader that
/// started before can install), then deletes every olaclick data key.
pub async fn flush(con: &mut MultiplexedConnection) -> Result<usize> {
    let _: i64 = answered(redis::cmd("INCR").arg(GENERATION_KEY).query_async(con)).await?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let scan = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("olaclick:orders:*")
            .arg("COUNT")
            .arg(1000)
            .to_owned();
        let (next, keys): (u64, Vec<String>) = answered(scan.query_async(con)).await?;
        if !keys.is_empty() {
            let n: usize = answered(redis::cmd("DEL").arg(&keys).query_async(con)).await?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// A notification's payload: `{"restaurant_id": R, "statuses": [...],
/// "orders": [...]}` or with `"all": true`.
pub fn parse_payload(payload: &str) -> Option<(i64, Vec<String>, bool)> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let restaurant = value.get("restaurant_id")?.as_i64()?;
    let statuses = value
        .get("statuses")?
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect();
    let all = value.get("all").and_then(|a| a.as_bool()).unwrap_or(false);
    Some((restaurant, statuses, all))
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How often an idle invalidator checks that both connections still answer:
/// without it a Redis that went away is noticed only at the next
/// notification, and `/healthz` would say it is up meanwhile.
const HEALTH_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long such a check, or any command of the invalidator, may take before
/// the connection counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A message of the LISTEN connection and when it arrived (the start of the
/// time an invalidation takes).
type Message = (Instant, Result<AsyncMessage, tokio_postgres::Error>);

/// The LISTEN connection: the client, and its messages as they arrive.
struct Listener {
    client: std::sync::Arc<tokio_postgres::Client>,
    messages: tokio::sync::mpsc::UnboundedReceiver<Message>,
    /// `olaclick.notify_skipped()` as last seen: read when the connection was
    /// made (the flush that follows every connection covers what was skipped
    /// before), then by `watch_skips`. `None` in a database whose olaclick
    /// SQL is older than 0.4.0.
    skipped: Option<(i64, tokio::sync::watch::Receiver<i64>)>,
}

/// What the LISTEN connection has for the invalidator next. Lives for one
/// turn of the loop, on the stack: boxing the message would cost every
/// notification an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Event {
    Message(Option<Message>),
    /// The count of skipped notifications, changed.
    Skipped(i64),
}

impl Listener {
    async fn next(&mut self) -> Event {
        loop {
            let Some((_, counts)) = self.skipped.as_mut() else {
                return Event::Message(self.messages.recv().await);
            };
            let poller_gone = tokio::select! {
                message = self.messages.recv() => return Event::Message(message),
                changed = counts.changed() => changed.is_err(),
            };
            match self.skipped.as_mut() {
                // The poller stops only when the connection fails: the
                // health check reports that.
                Some(_) if poller_gone => self.skipped = None,
                Some((_, counts)) => return Event::Skipped(*counts.borrow_and_update()),
                None => {}
            }
        }
    }
}

/// Reads `olaclick.notify_skipped()` every HEALTH_CHECK_EVERY on the LISTEN
/// connection, from a task of its own: however long a read takes, the
/// invalidator's loop never waits for it. Stops when the connection is
/// dropped or a read fails or goes unanswered.
fn watch_skips(
    client: &std::sync::Arc<tokio_postgres::Client>,
    initial: i64,
) -> tokio::sync::watch::Receiver<i64> {
    let (tx, rx) = tokio::sync::watch::channel(initial);
    let client = std::sync::Arc::downgrade(client);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEALTH_CHECK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(client) = client.upgrade() else {
                return;
            };
            let read = tokio::time::timeout(
                ANSWER_TIMEOUT,
                client.simple_query("SELECT olaclick.notify_skipped()"),
            )
            .await;
            drop(client);
            let count = match read {
                Ok(Ok(rows)) => rows.iter().find_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        row.get(0).and_then(|count| count.parse::<i64>().ok())
                    }
                    _ => None,
                }),
                _ => None,
            };
            let Some(count) = count else { return };
            tx.send_if_modified(|seen| std::mem::replace(seen, count) != count);
        }
    });
    rx
}

/// How many notifications olaclick skipped because the NOTIFY queue was
/// nearly full: `None` where the database has no `olaclick.notify_skipped()`
/// (olaclick SQL older than 0.4.0).
async fn notify_skipped(client: &tokio_postgres::Client) -> Result<Option<i64>> {
    let exists: bool = client
        .query_one(
            "SELECT pg_catalog.to_regprocedure('olaclick.notify_skipped()') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    Ok(Some(
        client
            .query_one("SELECT olaclick.notify_skipped()", &[])
            .await?
            .get(0),
    ))
}

/// When to try a connection again, backing off from 100 ms to 5 s.
struct Retry {
    delay: Duration,
    at: Instant,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            delay: Duration::from_millis(100),
            at: Instant::now(),
        }
    }

    fn failed(&mut self) -> Duration {
        let delay = self.delay;
        self.at = Instant::now() + delay;
        self.delay = (delay * 2).min(Duration::from_secs(5));
        delay
    }

    fn succeeded(&mut self) {
        self.delay = Duration::from_millis(100);
    }

    fn due(&self) -> bool {
        Instant::now() >= self.at
    }
}

async fn listen(config: &Config) -> Result<Listener> {
    let (client, mut connection) = postgres(config, "invalidate").await?;
    let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let message = futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await;
            let Some(message) = message else { break };
            let stop = message.is_err();
            if tx.send((Instant::now(), message)).is_err() || stop {
                break;
            }
        }
    });
    let listen = format!("LISTEN {}", quote_ident(&config.channel));
    tokio::time::timeout(ANSWER_TIMEOUT, client.batch_execute(&listen))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "PostgreSQL at {}: LISTEN got no answer within {ANSWER_TIMEOUT:?}",
                config.shown().0
            )
        })?
        .map_err(|e| {
            anyhow::anyhow!(
                "PostgreSQL at {}: LISTEN failed: {}",
                config.shown().0,
                config.scrub_error(e)
            )
        })?;
    let skipped = tokio::time::timeout(ANSWER_TIMEOUT, notify_skipped(&client))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "PostgreSQL at {}: olaclick.notify_skipped() got no answer within {ANSWER_TIMEOUT:?}",
                config.shown().0
            )
        })?
        .map_err(|e| {
            anyhow::anyhow!(
                "PostgreSQL at {}: reading olaclick.notify_skipped() failed: {}",
                config.shown().0,
                config.scrub(format!("{e:#}"))
            )
        })?;
    if skipped.is_none() {
        warn!(
            "invalidator: the database has no olaclick.notify_skipped() (its olaclick SQL is older than 0.4.0): \
             notifications skipped because the NOTIFY queue is nearly full go unnoticed until ALTER EXTENSION olaclick UPDATE"
        );
    }
    let client = std::sync::Arc::new(client);
    let skipped = skipped.map(|count| (count, watch_skips(&client, count)));
    Ok(Listener {
        client,
        messages,
        skipped,
    })
}

/// Listens and invalidates until stopped, reconnecting with backoff whenever
/// PostgreSQL or Redis goes away; each connection is kept while the other is
/// retried, so `metrics` tell which one is down. Notifications sent while
/// nobody listened are lost, and deletions can't be made while Redis is
/// away, so every (re)connection of either is followed by a flush of the
/// cache before the next invalidation. So are notifications olaclick skipped
/// because the NOTIFY queue was nearly full: a task reads their count every
/// second, and a move of it flushes the cache, then once more a check later
/// (a commit counted just before the first flush may have become visible
/// only after it).
pub async fn run_invalidator(config: Config, metrics: Metrics) -> Result<()> {
    let mut invalidator = Invalidator {
        config,
        metrics,
        pg: None,
        con: None,
        pg_retry: Retry::new(),
        redis_retry: Retry::new(),
        must_flush: true,
        settle_flush: None,
    };
    let mut health = tokio::time::interval(HEALTH_CHECK_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        invalidator.connect().await;
        let retry_at = invalidator.retry_at();
        let next = async {
            match invalidator.pg.as_mut() {
                Some(listener) => listener.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = next => match event {
                Event::Message(message) => invalidator.handle(message).await,
                Event::Skipped(count) => invalidator.skipped(count),
            },
            _ = health.tick() => invalidator.check().await,
            _ = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

struct Invalidator {
    config: Config,
    metrics: Metrics,
    pg: Option<Listener>,
    con: Option<MultiplexedConnection>,
    pg_retry: Retry,
    redis_retry: Retry,
    /// Set on every (re)connection: the cache may be stale until flushed.
    must_flush: bool,
    /// Set when skipped notifications made the cache flush: flush once more
    /// at the first check after this time.
    settle_flush: Option<Instant>,
}

impl Invalidator {
    /// A connection that failed: dropped, counted, shown by /healthz, logged,
    /// and retried later. Connecting names the server already; a connection
    /// lost is named here.
    fn lost(&mut self, target: Target, kind: ErrorKind, error: anyhow::Error) {
        let config = &self.config;
        let (reason, retry) = match target {
            Target::Postgres => {
                self.pg = None;
                let reason = match kind {
                    ErrorKind::PostgresConnect => format!("{error:#}"),
                    _ => format!("PostgreSQL at {}: {error:#}", config.shown().0),
                };
                (reason, &mut self.pg_retry)
            }
            Target::Redis => {
                self.con = None;
                let reason = match kind {
                    ErrorKind::RedisConnect => format!("{error:#}"),
                    _ => format!("Redis at {}: {error:#}", config.shown().1),
                };
                (reason, &mut self.redis_retry)
            }
        };
        let reason = config.scrub(reason);
        self.metrics.error(kind);
        self.metrics.disconnected(target, reason.clone());
        warn!(
            "invalidator: {reason}; reconnecting in {:?}",
            retry.failed()
        );
    }

    /// Connects what is missing and due, then flushes if needed.
    async fn connect(&mut self) {
        if self.pg.is_none() && self.pg_retry.due() {
            match listen(&self.config).await {
                Ok(listener) => {
                    debug!("invalidator: PostgreSQL connected, listening");
                    self.pg = Some(listener);
                    self.pg_retry.succeeded();
                    self.metrics.connected(Target::Postgres);
                    self.must_flush = true;
                }
                Err(e) => self.lost(Target::Postgres, ErrorKind::PostgresConnect, e),
            }
        }
        if self.con.is_none() && self.redis_retry.due() {
            match redis(&self.config).await {
                Ok(con) => {
                    debug!("invalidator: Redis connected");
                    self.con = Some(con);
                    self.redis_retry.succeeded();
                    self.metrics.connected(Target::Redis);
                    self.must_flush = true;
                }
                Err(e) => self.lost(Target::Redis, ErrorKind::RedisConnect, e),
            }
        }
        // Only while listening: a commit after the flush is then always heard.
        let (true, Some(_), Some(con)) = (self.must_flush, &self.pg, &mut self.con) else {
            return;
        };
        debug!("invalidator: flushing the cache");
        match flush(con).await {
            Ok(flushed) => {
                self.must_flush = false;
                self.metrics.flushed(flushed);
                let (database, redis) = self.config.shown();
                info!(
                    "invalidator: listening on {} at {database}, Redis at {redis}; flushed {flushed} keys",
                    self.config.channel,
                );
            }
            Err(e) => self.lost(Target::Redis, ErrorKind::RedisCommand, e),
        }
    }

    /// When the next connection attempt is due, if one is missing.
    fn retry_at(&self) -> Option<Instant> {
        [
            self.pg.is_none().then_some(self.pg_retry.at),
            self.con.is_none().then_some(self.redis_retry.at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn handle(&mut self, message: Option<Message>) {
        let (arrived, notification) = match message {
            Some((arrived, Ok(AsyncMessage::Notification(n)))) => (arrived, n),
            Some((_, Ok(AsyncMessage::Notice(notice)))) => {
                return info!("PostgreSQL: {}", notice.message())
            }
            Some((_, Ok(_))) => return,
            Some((_, Err(e))) => {
                let e = anyhow::anyhow!("connection lost: {}", self.config.scrub_error(e));
                return self.lost(Target::Postgres, ErrorKind::PostgresConnection, e);
            }
            None => {
                let e = anyhow::anyhow!("connection closed");
                return self.lost(Target::Postgres, ErrorKind::PostgresConnection, e);
            }
        };
        self.metrics.notification();
        let Some((restaurant, statuses, all)) = parse_payload(notification.payload()) else {
            self.metrics.error(ErrorKind::Payload);
            return warn!(
                "ignored a notification that is not olaclick's: {}",
                notification.payload()
            );
        };
        let must_flush = self.must_flush;
        let Some(con) = self.con.as_mut().filter(|_| !must_flush) else {
            return debug!(
                "Redis is down: restaurant {restaurant} is left to the flush on reconnection"
            );
        };
        match invalidate(con, restaurant, &statuses, all).await {
            Ok(deleted) => {
                self.metrics.invalidated(deleted, arrived);
                info!(
                    "invalidated restaurant {restaurant} {statuses:?}{}",
                    if all { " (all)" } else { "" }
                );
            }
            Err(e) => self.lost(Target::Redis, ErrorKind::RedisCommand, e),
        }
    }

    /// olaclick skipped notifications (the count moved): flush now, and once
    /// more a check later, for a commit counted just before this flush and
    /// visible only after it.
    fn skipped(&mut self, count: i64) {
        let Some((seen, _)) = self.pg.as_mut().and_then(|l| l.skipped.as_mut()) else {
            return;
        };
        let before = std::mem::replace(seen, count);
        if count != before {
            warn!(
                "invalidator: olaclick skipped {} notifications (the NOTIFY queue is nearly full): flushing the cache",
                count - before
            );
            self.must_flush = true;
            self.settle_flush = Some(Instant::now() + HEALTH_CHECK_EVERY);
        }
    }

    /// Asks both servers for a sign of life.
    async fn check(&mut self) {
        if self.settle_flush.is_some_and(|at| Instant::now() >= at) {
            self.settle_flush = None;
            self.must_flush = true;
        }
        if let Some(listener) = &self.pg {
            let ping = listener.client.batch_execute("");
            let failure = match tokio::time::timeout(ANSWER_TIMEOUT, ping).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(anyhow::anyhow!(
                    "connection lost: {}",
                    self.config.scrub_error(e)
                )),
                Err(_) => Some(anyhow::anyhow!("no answer within {ANSWER_TIMEOUT:?}")),
            };
            if let Some(e) = failure {
                self.lost(Target::Postgres, ErrorKind::PostgresConnection, e);
            }
        }
        self.check_redis().await
    }

    async fn check_redis(&mut self) {
        if let Some(con) = &mut self.con {
            let ping = redis::cmd("PING");
            let answer = ping.query_async::<String>(con);
            let failure = match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(anyhow::anyhow!(
                    "connection lost: {}",
                    self.config.scrub_error(e)
                )),
                Err(_) => Some(anyhow::anyhow!("no answer within {ANSWER_TIMEOUT:?}")),
            };
            if let Some(e) = failure {
                self.lost(Target::Redis, ErrorKind::RedisCommand, e);
            }
        }
    }
}
