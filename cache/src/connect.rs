//! Opening connections: the secrets are read anew each time (so a rotated
//! password or certificate is used on the next reconnection), and errors name
//! the server and the reason, never a password.

use std::time::Duration;

use anyhow::{anyhow, Result};
use redis::aio::MultiplexedConnection;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::debug;

use crate::config::{redact, HostChoice, PgUrl};
use crate::{tls, Config, APPLICATION_NAME};

/// A PostgreSQL connection as olaclick-cache makes them (TLS or not,
/// depending on `sslmode` and the server).
pub type PgConnection =
    tokio_postgres::Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// `message` with a certificate failure explained in words, if it is one.
fn with_reason(message: String) -> String {
    match tls::explain(&message) {
        Some(reason) => format!("certificate verification failed: {reason} ({message})"),
        None => message,
    }
}

pub async fn redis(config: &Config) -> Result<MultiplexedConnection> {
    let url = config
        .redis
        .read()
        .map_err(|e| anyhow!("REDIS_URL: {e:#}"))?;
    let shown = redact(&url);
    let client = if url.starts_with("rediss://") {
        let certificates = config
            .redis_tls
            .certificates()
            .map_err(|e| anyhow!("Redis at {shown}: {e:#}"))?;
        redis::Client::build_with_tls(url.as_str(), certificates)
    } else {
        redis::Client::open(url.as_str())
    }
    .map_err(|e| anyhow!("invalid REDIS_URL {shown}: {}", config.scrub_error(e)))?;
    let connect = client.get_multiplexed_async_connection();
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(anyhow!(
            "Redis at {shown}: {}",
            with_reason(config.scrub_error(e))
        )),
        Err(_) => Err(anyhow!("Redis at {shown}: connection timed out")),
    }
}

async fn connect_with(
    config: &Config,
    url: &str,
    tls: MakeRustlsConnect,
    role: &str,
) -> Result<(Client, PgConnection), String> {
    let mut pg: tokio_postgres::Config = url.parse().map_err(|e| config.scrub_error(e))?;
    pg.application_name(format!("{APPLICATION_NAME}-{role}"));
    // libpq's connect_timeout bounds the whole attempt, TLS and
    // authentication included; tokio-postgres applies it to the socket only,
    // so a server that accepts and then says nothing would hold the caller
    // (the invalidator: no retry, no health checks) for good.
    let limit = *pg.get_connect_timeout().unwrap_or(&CONNECT_TIMEOUT);
    pg.connect_timeout(limit);
    match tokio::time::timeout(limit, pg.connect(tls)).await {
        Ok(connected) => connected.map_err(|e| with_reason(config.scrub_error(e))),
        Err(_) => Err(format!("no answer within {limit:?} (connect_timeout)")),
    }
}

/// connect_timeout when DATABASE_URL gives none (libpq would wait forever).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server is a standby, driving the connection while asking
/// (the caller owns it and hasn't spawned it yet).
async fn in_recovery(client: &Client, connection: &mut PgConnection) -> Result<bool> {
    let query = client.query_one("SELECT pg_is_in_recovery()", &[]);
    futures_util::pin_mut!(query);
    loop {
        tokio::select! {
            row = &mut query => return Ok(row?.get(0)),
            message = futures_util::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("connection closed"),
            },
        }
    }
}

/// Connects as `DATABASE_URL` (or the file it names) says, with libpq's TLS
/// parameters and `target_session_attrs` values. Several hosts in the URL are
/// always tried here, one at a time, each within its own `connect_timeout`
/// as libpq does: tokio-postgres given the whole list spends one timeout on
/// all of it, so a host that accepts and never answers (a frozen primary)
/// would use it up and the next host would never be tried. `any`,
/// `read-write` and `read-only` are then checked by tokio-postgres on the one
/// host it is given; `prefer-standby`, `standby` and `primary` here.
pub async fn postgres(config: &Config, role: &str) -> Result<(Client, PgConnection)> {
    let url = config
        .database
        .read()
        .map_err(|e| anyhow!("DATABASE_URL: {e:#}"))?;
    let target = PgUrl::parse(&url).map_err(|e| anyhow!("invalid DATABASE_URL: {e:#}"))?;
    let shown = target.redacted();
    let tls = tls::postgres(&target.tls).map_err(|e| anyhow!("PostgreSQL at {shown}: {e:#}"))?;
    if target.choice == HostChoice::TokioPostgres && target.hosts.len() < 2 {
        return connect_with(config, &target.for_tokio_postgres(None), tls, role)
            .await
            .map_err(|e| anyhow!("PostgreSQL at {shown}: {e}"));
    }
    // libpq's order: the hosts as listed; for prefer-standby the first server
    // that answers is kept in case no standby does.
    let mut fallback = None;
    let mut failures = Vec::new();
    for host in &target.hosts {
        let url = target.for_tokio_postgres(Some(host));
        let (client, mut connection) = match connect_with(config, &url, tls.clone(), role).await {
            Ok(pair) => pair,
            Err(e) => {
                failures.push(format!("{host}: {e}"));
                continue;
            }
        };
        if target.choice == HostChoice::TokioPostgres {
            // tokio-postgres has checked target_session_attrs on this host.
            return Ok((client, connection));
        }
        let asked = in_recovery(&client, &mut connection);
        let standby = match tokio::time::timeout(CONNECT_TIMEOUT, asked).await {
            Ok(Ok(standby)) => standby,
            Ok(Err(e)) => {
                failures.push(format!("{host}: {}", config.scrub(format!("{e:#}"))));
                continue;
            }
            Err(_) => {
                failures.push(format!(
                    "{host}: pg_is_in_recovery() got no answer within {CONNECT_TIMEOUT:?}"
                ));
                continue;
            }
        };
        debug!(
            "PostgreSQL {host} is a {}",
            if standby { "standby" } else { "primary" }
        );
        match (target.choice, standby) {
            (HostChoice::PreferStandby | HostChoice::Standby, true)
            | (HostChoice::Primary, false) => return Ok((client, connection)),
            (HostChoice::PreferStandby, false) => {
                if fallback.is_none() {
                    fallback = Some((host.to_string(), client, connection));
                }
            }
            _ => failures.push(format!(
                "{host}: is a {}",
                if standby { "standby" } else { "primary" }
            )),
        }
    }
    match fallback {
        Some((host, client, connection)) => {
            debug!("no standby answered; using {host}");
            Ok((client, connection))
        }
        None => Err(anyhow!(
            "PostgreSQL at {shown}: no suitable server ({})",
            failures.join("; ")
        )),
    }
}
