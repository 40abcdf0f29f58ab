//! What `olaclick-cache invalidate` tells Prometheus, and `/healthz`.
//!
//! The invalidator updates [`Metrics`] as it goes; [`serve`] answers
//! `/metrics` and `/healthz` from a task of its own. A scrape never makes
//! invalidation wait: counters and gauges are atomics, the histogram and the
//! labelled families take their (prometheus-client) locks only while the
//! exposition is written into a `String`, never while it is sent, so a slow
//! or stalled client holds nothing; the reasons shown by `/healthz` are
//! behind a mutex held only to copy or replace a string.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// What the invalidator is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The LISTEN connection.
    Postgres,
    Redis,
}

impl Target {
    const ALL: [Target; 2] = [Target::Postgres, Target::Redis];

    fn label(self) -> &'static str {
        match self {
            Target::Postgres => "postgres",
            Target::Redis => "redis",
        }
    }
}

/// Why the invalidator failed, for `olaclick_cache_errors_total{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connecting to PostgreSQL failed (refused, TLS, password...).
    PostgresConnect,
    /// The LISTEN connection broke or stopped answering.
    PostgresConnection,
    /// Connecting to Redis failed.
    RedisConnect,
    /// A Redis command (invalidation, flush, health check) failed.
    RedisCommand,
    /// A notification on the channel that is not olaclick's JSON.
    Payload,
}

impl ErrorKind {
    const ALL: [ErrorKind; 5] = [
        ErrorKind::PostgresConnect,
        ErrorKind::PostgresConnection,
        ErrorKind::RedisConnect,
        ErrorKind::RedisCommand,
        ErrorKind::Payload,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::PostgresConnect => "postgres_connect",
            ErrorKind::PostgresConnection => "postgres_connection",
            ErrorKind::RedisConnect => "redis_connect",
            ErrorKind::RedisCommand => "redis_command",
            ErrorKind::Payload => "payload",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// One connection as `/healthz` reports it.
struct Link {
    /// Whether it was ever up: the next connection is a reconnection.
    was_up: AtomicBool,
    /// `None` when up; else why not (passwords already scrubbed).
    down: Mutex<Option<String>>,
}

impl Link {
    fn new() -> Link {
        Link {
            was_up: AtomicBool::new(false),
            down: Mutex::new(Some("not connected yet".into())),
        }
    }

    fn set(&self, down: Option<String>) {
        // A poisoned lock only means a panic elsewhere while replacing a
        // string: the value is still a whole string.
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = down;
    }

    fn get(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Upper bounds (seconds) of the invalidation histogram: a notification's
/// keys are normally gone in 0.5 to 50 ms (bench/RESULTS.md); the wider ones
/// catch a Redis or network that is struggling.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The invalidator's counters and state. Cheap to clone (shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    notifications: Counter,
    keys_deleted: Counter,
    flushes: Counter,
    reconnections: Family<TargetLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    connected: Family<TargetLabels, Gauge>,
    last_notification: Gauge<f64, AtomicU64>,
    invalidation: Histogram,
    links: Arc<[Link; 2]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let reconnections = Family::<TargetLabels, Counter>::default();
        let connected = Family::<TargetLabels, Gauge>::default();
        let errors = Family::<KindLabels, Counter>::default();
        // Every label value exists from the start: a series that appears only
        // after the first error makes `rate()` and `increase()` miss it, and
        // the families then never need their write lock again.
        for target in Target::ALL {
            let labels = TargetLabels {
                target: target.label(),
            };
            let _ = reconnections.get_or_create(&labels);
            let _ = connected.get_or_create(&labels);
        }
        for kind in ErrorKind::ALL {
            let _ = errors.get_or_create(&KindLabels { kind: kind.label() });
        }
        let notifications = Counter::default();
        let keys_deleted = Counter::default();
        let flushes = Counter::default();
        let last_notification = Gauge::<f64, AtomicU64>::default();
        let invalidation = Histogram::new(BUCKETS);
        // Names get the prefix, and counters `_total`, from the registry.
        let mut registry = Registry::with_prefix("olaclick_cache");
        registry.register(
            "notifications",
            "Notifications received on the channel",
            notifications.clone(),
        );
        registry.register(
            "keys_deleted",
            "Cached lists deleted, by notifications and by flushes",
            keys_deleted.clone(),
        );
        registry.register(
            "flushes",
            "Whole-cache flushes (one after every connection to PostgreSQL or Redis)",
            flushes.clone(),
        );
        registry.register(
            "reconnections",
            "Connections made after the first one, by target",
            reconnections.clone(),
        );
        registry.register("errors", "Failures, by kind", errors.clone());
        registry.register(
            "connected",
            "1 while the connection to the target is up (postgres: the LISTEN connection)",
            connected.clone(),
        );
        registry.register(
            "last_notification_timestamp_seconds",
            "Unix time of the last notification received",
            last_notification.clone(),
        );
        registry.register(
            "invalidation_seconds",
            "Time from a notification's arrival to its keys being deleted",
            invalidation.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            notifications,
            keys_deleted,
            flushes,
            reconnections,
            errors,
            connected,
            last_notification,
            invalidation,
            links: Arc::new([Link::new(), Link::new()]),
        }
    }

    fn link(&self, target: Target) -> &Link {
        match target {
            Target::Postgres => &self.links[0],
            Target::Redis => &self.links[1],
        }
    }

    pub fn connected(&self, target: Target) {
        let link = self.link(target);
        if link.was_up.swap(true, Ordering::Relaxed) {
            self.reconnections
                .get_or_create(&TargetLabels {
                    target: target.label(),
                })
                .inc();
        }
        link.set(None);
        self.connected
            .get_or_create(&TargetLabels {
                target: target.label(),
            })
            .set(1);
    }

    /// The connection is down (or was given up), for `reason` (scrubbed of
    /// passwords by the caller).
    pub fn disconnected(&self, target: Target, reason: impl Into<String>) {
        self.connected
            .get_or_create(&TargetLabels {
                target: target.label(),
            })
            .set(0);
        self.link(target).set(Some(reason.into()));
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&KindLabels { kind: kind.label() })
            .inc();
    }

    pub fn notification(&self) {
        self.notifications.inc();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_notification.set(now);
    }

    /// A notification that arrived at `arrived` had its `keys` deleted.
    pub fn invalidated(&self, keys: usize, arrived: Instant) {
        self.keys_deleted.inc_by(keys as u64);
        self.invalidation.observe(arrived.elapsed().as_secs_f64());
    }

    pub fn flushed(&self, keys: usize) {
        self.flushes.inc();
        self.keys_deleted.inc_by(keys as u64);
    }

    /// The exposition (OpenMetrics text, which Prometheus reads).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// `Ok` when both connections are up, else which are down and why.
    pub fn health(&self) -> Result<(), String> {
        let mut report = String::new();
        let mut healthy = true;
        for target in Target::ALL {
            let name = target.label();
            match self.link(target).get() {
                None => {
                    let _ = writeln!(report, "{name}: up");
                }
                Some(reason) => {
                    healthy = false;
                    let _ = writeln!(report, "{name}: down: {reason}");
                }
            }
        }
        if healthy {
            Ok(())
        } else {
            Err(report)
        }
    }
}

/// Binds the metrics address, so that a taken or forbidden one stops the
/// program before it starts invalidating.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on the metrics address {addr}"))
}

async fn metrics_page(State(metrics): State<Metrics>) -> Response {
    match metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}

async fn healthz(State(metrics): State<Metrics>) -> Response {
    match metrics.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(report) => (StatusCode::SERVICE_UNAVAILABLE, report).into_response(),
    }
}

pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(metrics)
}

/// Answers `/metrics` and `/healthz` on `listener` until the program ends.
pub async fn serve(listener: TcpListener, metrics: Metrics) -> Result<()> {
    axum::serve(listener, router(metrics))
        .await
        .context("metrics server")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_there_from_the_start() {
        let text = Metrics::new().encode().unwrap();
        for line in [
            "olaclick_cache_notifications_total 0",
            "olaclick_cache_keys_deleted_total 0",
            "olaclick_cache_flushes_total 0",
            "olaclick_cache_reconnections_total{target=\"postgres\"} 0",
            "olaclick_cache_reconnections_total{target=\"redis\"} 0",
            "olaclick_cache_errors_total{kind=\"postgres_connect\"} 0",
            "olaclick_cache_errors_total{kind=\"postgres_connection\"} 0",
            "olaclick_cache_errors_total{kind=\"redis_connect\"} 0",
            "olaclick_cache_errors_total{kind=\"redis_command\"} 0",
            "olaclick_cache_errors_total{kind=\"payload\"} 0",
            "olaclick_cache_connected{target=\"postgres\"} 0",
            "olaclick_cache_connected{target=\"redis\"} 0",
            "olaclick_cache_last_notification_timestamp_seconds 0.0",
            "olaclick_cache_invalidation_seconds_count 0",
            "olaclick_cache_invalidation_seconds_bucket{le=\"0.0005\"} 0",
            "olaclick_cache_invalidation_seconds_bucket{le=\"+Inf\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn reconnections_count_from_the_second_connection() {
        let metrics = Metrics::new();
        metrics.connected(Target::Redis);
        metrics.disconnected(Target::Redis, "gone");
        metrics.connected(Target::Redis);
        metrics.connected(Target::Postgres);
        let text = metrics.encode().unwrap();
        assert!(text.contains("olaclick_cache_reconnections_total{target=\"redis\"} 1\n"));
        assert!(text.contains("olaclick_cache_reconnections_total{target=\"postgres\"} 0\n"));
        assert!(text.contains("olaclick_cache_connected{target=\"redis\"} 1\n"));
    }

    #[test]
    fn health_names_what_is_down() {
        let metrics = Metrics::new();
        assert_eq!(
            metrics.health(),
            Err("postgres: down: not connected yet\nredis: down: not connected yet\n".into())
        );
        metrics.connected(Target::Postgres);
        metrics.connected(Target::Redis);
        assert_eq!(metrics.health(), Ok(()));
        metrics.disconnected(Target::Redis, "Redis at rediss://u:***@h:1: refused");
        assert_eq!(
            metrics.health(),
            Err("postgres: up\nredis: down: Redis at rediss://u:***@h:1: refused\n".into())
        );
    }

    #[test]
    fn an_invalidation_is_timed_and_counted() {
        let metrics = Metrics::new();
        metrics.notification();
        metrics.invalidated(2, Instant::now());
        metrics.flushed(3);
        let text = metrics.encode().unwrap();
        assert!(text.contains("olaclick_cache_notifications_total 1\n"));
        assert!(text.contains("olaclick_cache_keys_deleted_total 5\n"));
        assert!(text.contains("olaclick_cache_flushes_total 1\n"));
        assert!(text.contains("olaclick_cache_invalidation_seconds_count 1\n"));
        assert!(!text.contains("olaclick_cache_last_notification_timestamp_seconds 0.0\n"));
    }
}
