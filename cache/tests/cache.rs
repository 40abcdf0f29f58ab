//! olaclick-cache against a real PostgreSQL with the extension and real
//! redis-server processes. `scripts/test` provides the server (a
//! `scripts/cluster` cluster: TCP only with TLS and SCRAM passwords):
//!   OLACLICK_TEST_PG=postgresql://postgres@%2Fvar%2Ftmp%2Folaclick:5498
//!     the superuser through the socket, for setting up;
//!   OLACLICK_TEST_PG_CA=/var/tmp/olaclick/isolation/tls/ca.crt
//!     the CA of the cluster's certificate.
//! The client under test connects over TCP with TLS (verify-full) as a login
//! role with a password, to Redis over TLS as an ACL user. Each test makes
//! its own database and its own Redis on free ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use olaclick_cache::{
    data_key, install, query_orders, read_tokens, version_key, Config, RedisTls, Secret, Source,
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use redis::aio::MultiplexedConnection;
use tokio_postgres::NoTls;

const BIN: &str = env!("CARGO_BIN_EXE_olaclick-cache");
/// The login role the client under test connects as (a member of
/// olaclick_app), with a password that needs percent-encoding in a URL.
const ROLE: &str = "olaclick_cache_test";
const ROLE_PASSWORD: &str = "pg-S3cret/with@odd%chars";
/// Redis's ACL user for the client under test.
const REDIS_USER: &str = "olaclick";
const REDIS_PASSWORD: &str = "redis-S3cret";

fn admin_base() -> String {
    std::env::var("OLACLICK_TEST_PG").expect(
        "OLACLICK_TEST_PG must name a PostgreSQL with olaclick installed, as the superuser (scripts/test sets it)",
    )
}

fn cluster_ca() -> PathBuf {
    std::env::var("OLACLICK_TEST_PG_CA")
        .expect("OLACLICK_TEST_PG_CA must name the CA of the server's certificate (scripts/test sets it)")
        .into()
}

/// The TCP port of the server: the socket's port number.
fn pg_port() -> u16 {
    let config: tokio_postgres::Config = admin_base().parse().unwrap();
    config.get_ports().first().copied().unwrap_or(5432)
}

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A libpq URL for the server over TCP, `params` appended.
fn pg_url(user: &str, password: &str, host: &str, db: &str, params: &str) -> String {
    format!(
        "postgresql://{user}:{}@{host}:{}/{db}?{params}",
        enc(password),
        pg_port()
    )
}

fn verify_full() -> String {
    format!("sslmode=verify-full&sslrootcert={}", cluster_ca().display())
}

async fn admin(db: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&format!("{}/{db}", admin_base()), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// The tests' statements on a client of their own (set-up and checks, not
/// the client under test): a failure panics with the statement and the error.
trait Sql {
    /// Runs `sql` (one or more statements, no parameters).
    async fn run(&self, sql: &str);
    /// The first column of the one row `sql` returns.
    async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T;
}

impl Sql for tokio_postgres::Client {
    async fn run(&self, sql: &str) {
        if let Err(e) = self.batch_execute(sql).await {
            panic!("{e:?}\n  for: {sql}");
        }
    }

    async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        match self.query_one(sql, &[]).await {
            Ok(row) => row.get(0),
            Err(e) => panic!("{e:?}\n  for: {sql}"),
        }
    }
}

/// Creates (if missing) a login role in `group` and sets its password.
async fn login_role(admin: &tokio_postgres::Client, name: &str, group: &str, password: &str) {
    admin
        .run(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}') THEN
                 CREATE ROLE {name} LOGIN IN ROLE {group};
               END IF;
             END $$"
        ))
        .await;
    // Test constants: no quote to escape.
    assert!(!password.contains('\''));
    // Statement logging off first, in a statement of its own (a query string
    // is logged whole, before any of it runs): scripts/cluster logs DDL
    // (log_statement = 'mod'), and the password must not reach the log.
    admin.run("SET log_statement = 'none'").await;
    admin
        .run(&format!("ALTER ROLE {name} PASSWORD '{password}'"))
        .await;
}

/// The shared test role, made once per test run (roles are cluster-wide and
/// the tests run in parallel).
async fn ensure_test_role(admin: &tokio_postgres::Client) {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| login_role(admin, ROLE, "olaclick_app", ROLE_PASSWORD))
        .await;
}

/// Throwaway certificates made with openssl: a CA, a server certificate for
/// localhost and 127.0.0.1 signed by it, a client certificate signed by it,
/// and an unrelated CA.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn get() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| {
            // Cargo's scratch directory for integration tests, under
            // target/: remade on every run, never left in /tmp.
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pki");
            std::fs::remove_dir_all(&dir).ok();
            std::fs::create_dir_all(&dir).unwrap();
            let openssl = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .expect("openssl must be installed");
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            for ca in ["ca", "other-ca"] {
                openssl(&[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    &format!("/CN=olaclick test {ca}"),
                    "-keyout",
                    &format!("{ca}.key"),
                    "-out",
                    &format!("{ca}.crt"),
                ]);
            }
            for (leaf, ext) in [
                (
                    "server",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
                ),
                ("client", "extendedKeyUsage=clientAuth\n"),
            ] {
                std::fs::write(
                    dir.join(format!("{leaf}.ext")),
                    format!("basicConstraints=CA:FALSE\n{ext}"),
                )
                .unwrap();
                openssl(&[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={leaf}"),
                    "-keyout",
                    &format!("{leaf}.key"),
                    "-out",
                    &format!("{leaf}.csr"),
                ]);
                openssl(&[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{leaf}.csr"),
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    &format!("{leaf}.ext"),
                    "-out",
                    &format!("{leaf}.crt"),
                ]);
            }
            Pki { dir }
        })
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A redis-server with a plain port for the test's own look at the keys
/// (default user, no password) and a TLS port with an ACL user for the
/// client under test.
struct Redis {
    port: u16,
    tls_port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            tls_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let pki = Pki::get();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--tls-port",
                &self.tls_port.to_string(),
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(pki.path("server.crt"))
            .arg("--tls-key-file")
            .arg(pki.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(pki.path("ca.crt"))
            .args(["--tls-auth-clients", "no"])
            .args(["--user", REDIS_USER, "on", &format!(">{REDIS_PASSWORD}")])
            .args(olaclick_cache::REDIS_ACL.split(' '))
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.tls_port)).is_err()
            || std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        {
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

    /// The client under test's URL: TLS, ACL user and password.
    fn url(&self) -> String {
        format!(
            "rediss://{REDIS_USER}:{REDIS_PASSWORD}@127.0.0.1:{}",
            self.tls_port
        )
    }

    async fn con(&self) -> MultiplexedConnection {
        redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
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
        Env::with_redis(name, Redis::start()).await
    }

    async fn with_redis(name: &str, redis: Redis) -> Env {
        let db = format!("olaclick_cache_{name}");
        let admin = admin("postgres").await;
        admin
            .run(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .await;
        admin.run(&format!("CREATE DATABASE {db}")).await;
        let pg = self::admin(&db).await;
        pg.run(
            "CREATE EXTENSION olaclick;
             INSERT INTO olaclick.restaurants (id, name) VALUES (1, 'R1'), (2, 'R2');
             INSERT INTO olaclick.branches (id, restaurant_id, name, address) VALUES (1, 1, 'b', 'a'), (2, 2, 'b', 'a');
             INSERT INTO olaclick.clients (id, restaurant_id, name, email) VALUES (1, 1, 'Ana', 'a@x'), (2, 2, 'Ben', 'b@x');
             INSERT INTO olaclick.products (id, restaurant_id, name, price) VALUES (1, 1, 'p', 10), (2, 2, 'p', 10);
             INSERT INTO olaclick.orders (id, restaurant_id, client_id, branch_id) VALUES (1, 1, 1, 1), (2, 1, 1, 1), (3, 2, 2, 2);
             SELECT setval(pg_get_serial_sequence('olaclick.orders', 'id'), 100);",
        ).await;
        // After CREATE EXTENSION: it creates the group role on a new cluster.
        ensure_test_role(&pg).await;
        Env {
            db,
            redis,
            pg,
            invalidator: None,
        }
    }

    fn database_url(&self) -> String {
        pg_url(ROLE, ROLE_PASSWORD, "localhost", &self.db, &verify_full())
    }

    fn config(&self) -> Config {
        let mut config = Config::new(self.database_url(), self.redis.url());
        config.redis_tls = RedisTls {
            ca: Some(Pki::get().path("ca.crt")),
            ..RedisTls::default()
        };
        config
    }

    fn with_database_url(&self, url: String) -> Config {
        Config {
            database: Secret::Value(url),
            ..self.config()
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("DATABASE_URL", self.database_url())
            .env("REDIS_URL", self.redis.url())
            .env("OLACLICK_REDIS_CACERT", Pki::get().path("ca.crt"))
            .env("OLACLICK_CACHE_TTL", "60");
        command
    }

    /// Starts `olaclick-cache invalidate` and waits until it listens (its
    /// first flush bumps the generation).
    async fn start_invalidator(&mut self) {
        let command = self.command();
        self.spawn_invalidator(command).await;
    }

    /// The invalidator's log (debug level): printed when the test fails, so
    /// a failure in CI says what the invalidator was doing.
    fn log(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.log", self.db))
    }

    /// Starts `command` as the invalidator, logging to `log()`.
    fn launch(&mut self, mut command: Command) {
        let log = std::fs::File::create(self.log()).unwrap();
        command
            .arg("invalidate")
            .env("OLACLICK_CACHE_LOG", "olaclick_cache=debug,info")
            .stderr(log);
        self.invalidator = Some(command.spawn().unwrap());
    }

    async fn spawn_invalidator(&mut self, command: Command) {
        let mut con = self.redis.con().await;
        let before = generation(&mut con).await;
        self.launch(command);
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

    /// Terminates the invalidator's PostgreSQL backend (its LISTEN
    /// connection): there must be exactly one.
    async fn terminate_invalidator_backend(&self) {
        let terminated: i64 = self
            .pg
            .one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'olaclick-cache-invalidate' AND datname = current_database()",
            )
            .await;
        assert_eq!(terminated, 1, "the invalidator's backends");
    }

    /// Commits `sql` and waits until it invalidates `restaurant`'s list of
    /// `status` orders.
    async fn commit_invalidates(&self, sql: &str, restaurant: i64, status: &str) {
        self.pg.run(sql).await;
        self.wait_gone(restaurant, status).await;
    }

    /// Whether a session of the test role to `host` with the URL parameters
    /// `params` is encrypted (per the server), or why it failed.
    async fn ssl_with(&self, host: &str, params: &str) -> Result<bool, String> {
        let url = pg_url(ROLE, ROLE_PASSWORD, host, &self.db, params);
        ssl_in_use(&self.with_database_url(url)).await
    }

    /// Sends `order` (initiated, of `restaurant`) and waits until it
    /// invalidates the restaurant's list of initiated orders.
    async fn send_invalidates(&self, order: i64, restaurant: i64) {
        let send = format!("UPDATE olaclick.orders SET status = 'sent' WHERE id = {order}");
        self.commit_invalidates(&send, restaurant, "initiated")
            .await;
    }

    /// Caches restaurant 1's sent orders, then delivers order 1: the
    /// invalidator deletes the key.
    async fn a_commit_invalidates(&mut self) {
        self.get(1, "sent").await;
        assert!(self.cached(1, "sent").await.is_some());
        self.commit_invalidates(
            "UPDATE olaclick.orders SET status = 'delivered' WHERE id = 1",
            1,
            "sent",
        )
        .await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut child) = self.invalidator.take() {
            child.kill().ok();
            child.wait().ok();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(self.log()).unwrap_or_default();
                eprintln!("--- the invalidator's log ({}):\n{log}", self.db);
            }
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
        .run("BEGIN; UPDATE olaclick.orders SET status = 'sent' WHERE id = 1; ROLLBACK;")
        .await;
    env.get(2, "initiated").await;
    env.send_invalidates(3, 2).await;
    assert!(
        env.cached(1, "initiated").await.is_some(),
        "a rolled-back change invalidated the cache"
    );

    env.get(1, "sent").await;
    env.send_invalidates(1, 1).await;
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
        .run("UPDATE olaclick.orders SET status = 'sent' WHERE id = 2")
        .await;
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
    env.terminate_invalidator_backend().await;
    // Reconnected: it flushed what it may have missed. The generation is
    // bumped before the keys are deleted, so the key's absence is waited for
    // too (asserting it right after the bump raced the deletion).
    eventually("the invalidator reconnects", || async {
        generation(&mut env.redis.con().await).await > before
    })
    .await;
    env.wait_gone(1, "initiated").await;
    env.get(1, "initiated").await;
    env.send_invalidates(1, 1).await;
}

#[tokio::test]
async fn the_invalidator_survives_a_redis_restart() {
    let mut env = Env::new("redisrestart").await;
    env.start_invalidator().await;
    env.redis.stop();
    // A commit while Redis is away: it has nothing to invalidate, and the
    // flush on reconnection covers whatever a persistent Redis kept.
    env.pg
        .run("UPDATE olaclick.orders SET status = 'sent' WHERE id = 1")
        .await;
    env.redis.spawn();
    eventually("the invalidator reconnects to Redis", || async {
        generation(&mut env.redis.con().await).await > 0
    })
    .await;
    env.a_commit_invalidates().await;
}

#[tokio::test]
async fn get_answers_from_postgres_when_redis_is_down_and_hides_passwords() {
    let mut env = Env::new("redisdown").await;
    env.redis.stop();
    let out = env
        .command()
        .env(
            "REDIS_URL",
            format!(
                "rediss://{REDIS_USER}:s3cret-pw@127.0.0.1:{}",
                env.redis.tls_port
            ),
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
            pg_url(ROLE, "db-s3cret", "localhost", &env.db, &verify_full()),
        )
        .args(["get", "--restaurant", "1", "--status", "initiated"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("PostgreSQL at")
            && stderr.contains("password authentication failed")
            && !stderr.contains("db-s3cret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn get_works_for_the_least_privileged_reader() {
    let env = Env::new("readonly").await;
    login_role(&env.pg, "reports_test", "olaclick_readonly", "reports-pw").await;
    let config = env.with_database_url(pg_url(
        "reports_test",
        "reports-pw",
        "localhost",
        &env.db,
        &verify_full(),
    ));
    let json = query_orders(&config, 1, "initiated").await.unwrap();
    assert!(
        json.contains(r#""id":1"#) && json.contains(r#""id":2"#) && !json.contains(r#""id":3"#),
        "{json}"
    );
}

/// Whether the session `config` opens is encrypted, per the server.
async fn ssl_in_use(config: &Config) -> Result<bool, String> {
    let (client, connection) = olaclick_cache::postgres(config, "test")
        .await
        .map_err(|e| format!("{e:#}"))?;
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn plain_tcp_is_refused_and_tls_modes_behave_as_in_libpq() {
    let env = Env::new("sslmodes").await;

    let refused = env
        .ssl_with("localhost", "sslmode=disable")
        .await
        .unwrap_err();
    assert!(
        refused.contains("pg_hba.conf rejects connection") && refused.contains("no encryption"),
        "{refused}"
    );
    assert!(
        !refused.contains(ROLE_PASSWORD) && !refused.contains(&enc(ROLE_PASSWORD)),
        "{refused}"
    );

    // Encrypted without checking the certificate: require, and the default
    // (prefer), which the server answers with TLS.
    assert_eq!(env.ssl_with("localhost", "sslmode=require").await, Ok(true));
    assert_eq!(env.ssl_with("localhost", "").await, Ok(true));
    // Checked against the cluster's CA, by name; SCRAM with channel binding
    // (only SCRAM over TLS can do it) is accepted too.
    assert_eq!(env.ssl_with("localhost", &verify_full()).await, Ok(true));
    assert_eq!(env.ssl_with("127.0.0.1", &verify_full()).await, Ok(true));
    assert_eq!(
        env.ssl_with(
            "localhost",
            &format!("{}&channel_binding=require", verify_full())
        )
        .await,
        Ok(true)
    );
}

#[tokio::test]
async fn a_wrong_ca_or_host_name_is_refused_with_the_reason() {
    let env = Env::new("verify").await;
    let other_ca = Pki::get().path("other-ca.crt");

    // A CA that did not sign the server's certificate: refused with the
    // reason, and the password not in it. As in libpq, a root certificate
    // makes require check the chain too.
    for mode in ["verify-full", "require"] {
        let wrong_ca = env
            .ssl_with(
                "localhost",
                &format!("sslmode={mode}&sslrootcert={}", other_ca.display()),
            )
            .await
            .unwrap_err();
        assert!(
            wrong_ca.contains("not signed by a trusted CA"),
            "{mode}: {wrong_ca}"
        );
        assert!(
            !wrong_ca.contains(ROLE_PASSWORD) && !wrong_ca.contains(&enc(ROLE_PASSWORD)),
            "{mode}: {wrong_ca}"
        );
    }

    // The right server under a name its certificate doesn't carry
    // (hostaddr: connect to 127.0.0.1, check the name given as host).
    let misnamed = format!("{}&hostaddr=127.0.0.1", verify_full());
    let wrong_name = env
        .ssl_with("db.example.invalid", &misnamed)
        .await
        .unwrap_err();
    assert!(
        wrong_name.contains("not issued for the host name"),
        "{wrong_name}"
    );
    // verify-ca checks the chain only.
    let chain_only = misnamed.replace("verify-full", "verify-ca");
    assert_eq!(
        env.ssl_with("db.example.invalid", &chain_only).await,
        Ok(true)
    );

    let no_ca = env
        .ssl_with("localhost", "sslmode=verify-full")
        .await
        .unwrap_err();
    assert!(no_ca.contains("needs sslrootcert"), "{no_ca}");
}

#[tokio::test]
async fn redis_over_tls_refuses_a_wrong_ca_and_a_wrong_password() {
    let env = Env::new("redistls").await;
    let get = |redis_url: String, ca: PathBuf| {
        env.command()
            .env("REDIS_URL", redis_url)
            .env("OLACLICK_REDIS_CACERT", ca)
            .args(["get", "--restaurant", "1", "--status", "initiated"])
            .output()
            .unwrap()
    };
    let pki = Pki::get();

    // Untrusted: treated like an unreachable Redis.
    let out = get(env.redis.url(), pki.path("other-ca.crt"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#""id":1"#));
    assert!(
        stderr.contains("answered from PostgreSQL without the cache")
            && stderr.contains("not signed by a trusted CA"),
        "{stderr}"
    );
    assert!(!stderr.contains(REDIS_PASSWORD), "{stderr}");
    assert_eq!(env.cached(1, "initiated").await, None);

    // A wrong ACL password: the reason, not the password.
    let wrong = format!(
        "rediss://{REDIS_USER}:not-the-pw@127.0.0.1:{}",
        env.redis.tls_port
    );
    let out = get(wrong, pki.path("ca.crt"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("answered from PostgreSQL without the cache")
            && stderr.contains("Password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-pw"), "{stderr}");
    assert_eq!(env.cached(1, "initiated").await, None);

    // The right CA and password: cached.
    let out = get(env.redis.url(), pki.path("ca.crt"));
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(env.cached(1, "initiated").await.is_some());
}

#[tokio::test]
async fn redis_client_certificates_are_sent_when_required() {
    let env = Env::with_redis(
        "redismtls",
        Redis::start_with(&["--tls-auth-clients", "yes"]),
    )
    .await;
    let pki = Pki::get();
    // Without a client certificate Redis refuses the handshake.
    let (_, source) = env.get(1, "initiated").await;
    assert!(
        matches!(source, Source::DatabaseWithoutCache(_)),
        "{source:?}"
    );
    let mut config = env.config();
    config.redis_tls.cert = Some(pki.path("client.crt"));
    config.redis_tls.key = Some(pki.path("client.key"));
    let (_, source) = olaclick_cache::get(&config, 1, "initiated").await.unwrap();
    assert_eq!(source, Source::Database { stored: true });
    let (_, source) = olaclick_cache::get(&config, 1, "initiated").await.unwrap();
    assert_eq!(source, Source::Cache);
}

/// The rotation drill of docs/cache.md ("TLS, passwords and secrets"): the invalidator reads its URL from a
/// file; the password changes, the file follows, the old connection is
/// terminated; it reconnects with the new password, flushes, and keeps
/// invalidating.
#[tokio::test]
async fn a_rotated_password_is_picked_up_on_reconnection() {
    let mut env = Env::new("rotation").await;
    let role = "olaclick_cache_rotation";
    login_role(&env.pg, role, "olaclick_app", "first-Secret").await;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rotation");
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("database_url");
    let db = env.db.clone();
    let url = |password: &str| pg_url(role, password, "localhost", &db, &verify_full());
    std::fs::write(&secret, url("first-Secret") + "\n").unwrap();
    let mut command = env.command();
    command
        .env_remove("DATABASE_URL")
        .env("DATABASE_URL_FILE", &secret);
    env.spawn_invalidator(command).await;

    env.pg.run("SET log_statement = 'none'").await;
    env.pg
        .run(&format!("ALTER ROLE {role} PASSWORD 'second-Secret'"))
        .await;
    // Written whole, then renamed: a reader never sees half a file.
    std::fs::write(dir.join("new"), url("second-Secret")).unwrap();
    std::fs::rename(dir.join("new"), &secret).unwrap();
    let before = generation(&mut env.redis.con().await).await;
    let terminated: i64 = env
        .pg
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'olaclick-cache-invalidate' AND usename = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1);
    eventually(
        "the invalidator reconnects with the new password",
        || async { generation(&mut env.redis.con().await).await > before },
    )
    .await;
    let listening: i64 = env
        .pg
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.application_name = 'olaclick-cache-invalidate' AND a.usename = $1 AND s.ssl",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listening, 1);

    env.get(1, "initiated").await;
    assert!(env.cached(1, "initiated").await.is_some());
    env.send_invalidates(1, 1).await;

    // The old password is dead, and neither appeared in the log.
    let old = env.with_database_url(url("first-Secret"));
    let refused = query_orders(&old, 1, "initiated").await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("password authentication failed"),
        "{refused:#}"
    );
    if let Some(mut child) = env.invalidator.take() {
        child.kill().ok();
        child.wait().ok();
    }
    let log = std::fs::read_to_string(env.log()).unwrap();
    assert!(log.contains("listening on olaclick_cache"), "{log}");
    assert!(
        !log.contains("first-Secret") && !log.contains("second-Secret"),
        "{log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

impl Env {
    /// The invalidator's command, serving metrics on a free loopback port,
    /// and that address.
    fn command_with_metrics(&self) -> (Command, std::net::SocketAddr) {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = self.command();
        command.env("OLACLICK_METRICS_ADDR", addr.to_string());
        (command, addr)
    }

    /// Starts the invalidator serving metrics on a free loopback port, and
    /// returns the address.
    async fn start_invalidator_with_metrics(&mut self) -> std::net::SocketAddr {
        let (command, addr) = self.command_with_metrics();
        self.spawn_invalidator(command).await;
        addr
    }

    fn invalidator_pid(&self) -> u32 {
        self.invalidator.as_ref().expect("no invalidator").id()
    }
}

/// GET `path` with a real HTTP client: status, content type, body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, _, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of the sample `series` (name and labels as exposed).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until a scrape satisfies `condition`; returns that scrape.
async fn scrape_until(
    addr: std::net::SocketAddr,
    what: &str,
    condition: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = scrape(addr).await;
        if condition(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Scrapes until `series` is `value`; returns that scrape.
async fn scrape_when(addr: std::net::SocketAddr, series: &str, value: f64) -> String {
    scrape_until(addr, &format!("{series} is {value}"), |t| {
        sample(t, series) == value
    })
    .await
}

/// Scrapes until `series` is at least `value`; returns that scrape.
async fn scrape_when_at_least(addr: std::net::SocketAddr, series: &str, value: f64) -> String {
    scrape_until(addr, &format!("{series} is at least {value}"), |t| {
        sample(t, series) >= value
    })
    .await
}

/// Asserts that each series has its value in the scrape `text`; a failure
/// names the series and prints the scrape.
#[track_caller]
fn assert_samples(text: &str, expected: &[(&str, f64)]) {
    for &(series, value) in expected {
        assert_eq!(sample(text, series), value, "{series} in:\n{text}");
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn metrics_count_notifications_deletions_and_their_time() {
    let mut env = Env::new("metrics").await;
    let addr = env.start_invalidator_with_metrics().await;
    let (status, content_type, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let (_, content_type, _) = http_get(addr, "/metrics").await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    // The first flush is counted once it is done (the generation bump that
    // start_invalidator waited for comes first).
    let before = scrape_when(addr, "olaclick_cache_flushes_total", 1.0).await;
    assert_samples(
        &before,
        &[
            ("olaclick_cache_notifications_total", 0.0),
            ("olaclick_cache_invalidation_seconds_count", 0.0),
            ("olaclick_cache_connected{target=\"postgres\"}", 1.0),
            ("olaclick_cache_connected{target=\"redis\"}", 1.0),
        ],
    );
    let deleted_before = sample(&before, "olaclick_cache_keys_deleted_total");

    // Two cached lists, one commit that names both.
    env.get(1, "initiated").await;
    env.get(1, "sent").await;
    let committed = unix_now();
    env.send_invalidates(1, 1).await;
    env.wait_gone(1, "sent").await;
    let after = scrape_when(addr, "olaclick_cache_invalidation_seconds_count", 1.0).await;
    assert_samples(&after, &[("olaclick_cache_notifications_total", 1.0)]);
    assert_eq!(
        sample(&after, "olaclick_cache_keys_deleted_total") - deleted_before,
        2.0
    );
    let sum = sample(&after, "olaclick_cache_invalidation_seconds_sum");
    assert!(sum > 0.0 && sum < 5.0, "{after}");
    let last = sample(&after, "olaclick_cache_last_notification_timestamp_seconds");
    assert!(
        last >= committed - 1.0 && last <= unix_now() + 1.0,
        "{last} vs {committed}"
    );
    assert_samples(&after, &[("olaclick_cache_flushes_total", 1.0)]);

    // A notification on the channel that is not olaclick's: counted and
    // reported as an error of its kind, nothing deleted.
    env.pg.run("NOTIFY olaclick_cache, 'hello'").await;
    let after = scrape_when(addr, "olaclick_cache_errors_total{kind=\"payload\"}", 1.0).await;
    assert_samples(
        &after,
        &[
            ("olaclick_cache_notifications_total", 2.0),
            ("olaclick_cache_invalidation_seconds_count", 1.0),
        ],
    );
}

#[tokio::test]
async fn healthz_names_redis_while_it_is_down() {
    let mut env = Env::new("healthz").await;
    let addr = env.start_invalidator_with_metrics().await;
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    // The first flush done before Redis goes: stopped in the middle of it,
    // it is never counted, and the one after reconnecting would be the
    // only one (start_invalidator waits for its generation bump, which
    // comes first).
    scrape_when(addr, "olaclick_cache_flushes_total", 1.0).await;

    env.redis.stop();
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, _, body) = http_get(addr, "/healthz").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200);
        assert!(Instant::now() < deadline, "/healthz still answers {status}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        body.contains("postgres: up") && body.contains("redis: down: "),
        "{body}"
    );
    assert!(
        body.contains(&format!("127.0.0.1:{}", env.redis.tls_port))
            && !body.contains(REDIS_PASSWORD),
        "{body}"
    );
    let text = scrape(addr).await;
    assert_samples(
        &text,
        &[
            ("olaclick_cache_connected{target=\"redis\"}", 0.0),
            ("olaclick_cache_connected{target=\"postgres\"}", 1.0),
        ],
    );
    assert!(sample(&text, "olaclick_cache_errors_total{kind=\"redis_command\"}") >= 1.0);

    // A commit while Redis is away is left to the flush on reconnection.
    env.pg
        .run("UPDATE olaclick.orders SET status = 'sent' WHERE id = 1")
        .await;
    env.redis.spawn();
    eventually("/healthz answers 200 again", || async {
        http_get(addr, "/healthz").await.0 == 200
    })
    .await;
    // One reconnection and its flush; more only if a command went
    // unanswered on the way (a lost connection again, logged).
    let text = scrape_when_at_least(addr, "olaclick_cache_flushes_total", 2.0).await;
    assert_samples(
        &text,
        &[("olaclick_cache_connected{target=\"redis\"}", 1.0)],
    );
    assert!(
        sample(
            &text,
            "olaclick_cache_reconnections_total{target=\"redis\"}"
        ) >= 1.0,
        "{text}"
    );
    // The LISTEN connection was kept all along.
    assert_samples(
        &text,
        &[(
            "olaclick_cache_reconnections_total{target=\"postgres\"}",
            0.0,
        )],
    );
    assert_samples(&text, &[("olaclick_cache_notifications_total", 1.0)]);

    env.a_commit_invalidates().await;
}

#[tokio::test]
async fn a_lost_listen_connection_is_counted_and_redis_is_kept() {
    let mut env = Env::new("pgmetrics").await;
    let addr = env.start_invalidator_with_metrics().await;
    scrape_when(addr, "olaclick_cache_flushes_total", 1.0).await;
    env.terminate_invalidator_backend().await;
    let text = scrape_when(addr, "olaclick_cache_flushes_total", 2.0).await;
    assert_samples(
        &text,
        &[
            (
                "olaclick_cache_reconnections_total{target=\"postgres\"}",
                1.0,
            ),
            (
                "olaclick_cache_errors_total{kind=\"postgres_connection\"}",
                1.0,
            ),
            ("olaclick_cache_reconnections_total{target=\"redis\"}", 0.0),
        ],
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn scrapes_never_hold_up_invalidation() {
    use tokio::io::AsyncWriteExt;

    let mut env = Env::new("scrapes").await;
    let addr = env.start_invalidator_with_metrics().await;
    // Clients that never read: each pipelines more scrapes than the socket
    // buffers hold, so the server is left blocked writing to them; and
    // clients that send half a request and wait.
    let request = "GET /metrics HTTP/1.1\r\nHost: olaclick\r\n\r\n".repeat(500);
    let mut stalled = Vec::new();
    for i in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            // Written from a task: it blocks once the server stops reading.
            let request = request.clone();
            stalled.push(tokio::spawn(async move {
                let _ = stream.write_all(request.as_bytes()).await;
                // Kept open, unread, until the test ends.
                std::future::pending::<()>().await;
            }));
        } else {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHo")
                .await
                .unwrap();
            stalled.push(tokio::spawn(async move {
                let _stream = stream;
                std::future::pending::<()>().await;
            }));
        }
    }
    // And scrapes as fast as they come, meanwhile.
    let hammer: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async move {
                loop {
                    let _ = reqwest::get(format!("http://{addr}/metrics")).await;
                }
            })
        })
        .collect();

    for (id, from, to) in [
        (1, "initiated", "sent"),
        (2, "initiated", "sent"),
        (1, "sent", "delivered"),
    ] {
        env.get(1, from).await;
        assert!(env.cached(1, from).await.is_some());
        env.pg
            .run(&format!(
                "UPDATE olaclick.orders SET status = '{to}' WHERE id = {id}"
            ))
            .await;
        env.wait_gone(1, from).await;
    }
    let text = scrape_when(addr, "olaclick_cache_invalidation_seconds_count", 3.0).await;
    // Each took well under a second from arrival to deletion.
    assert_eq!(
        sample(
            &text,
            "olaclick_cache_invalidation_seconds_bucket{le=\"1.0\"}"
        ),
        3.0,
        "{text}"
    );
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    for task in hammer.into_iter().chain(stalled) {
        task.abort();
    }
}

/// Whether process `pid` holds a listening TCP socket (its socket inodes
/// against the kernel's table of listening sockets).
fn listens(pid: u32) -> bool {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            // st 0A: LISTEN; the inode is the tenth field.
            .any(|f| {
                f.get(3) == Some(&"0A") && f.get(9).is_some_and(|i| inodes.iter().any(|s| s == i))
            })
    })
}

#[tokio::test]
async fn without_a_metrics_address_nothing_listens() {
    let mut env = Env::new("nometrics").await;
    env.start_invalidator().await;
    assert!(!listens(env.invalidator_pid()));
    if let Some(mut child) = env.invalidator.take() {
        child.kill().ok();
        child.wait().ok();
    }
    // The check sees a listener when there is one.
    env.start_invalidator_with_metrics().await;
    assert!(listens(env.invalidator_pid()));
}

#[test]
fn a_taken_metrics_address_is_an_error_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(BIN)
        .env("DATABASE_URL", "postgresql://u:db-pw@127.0.0.1:1/db")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .args(["invalidate", "--metrics-addr", &addr.to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on the metrics address {addr}"))
            && stderr.contains("in use"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .env("DATABASE_URL", "postgresql://u@127.0.0.1:1/db")
        .args(["invalidate", "--metrics-addr", "localhost"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--metrics-addr"), "{stderr}");
}

#[test]
fn help_documents_the_environment() {
    let main: &[&str] = &[
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "REDIS_URL",
        "REDIS_URL_FILE",
        "OLACLICK_REDIS_CACERT",
        "OLACLICK_REDIS_CERT",
        "OLACLICK_REDIS_KEY",
        "OLACLICK_CACHE_TTL",
        "OLACLICK_NOTIFY_CHANNEL",
        "sslmode",
        "prefer-standby",
    ];
    let invalidate: &[&str] = &[
        "--metrics-addr",
        "OLACLICK_METRICS_ADDR",
        "/metrics",
        "/healthz",
    ];
    for (args, terms) in [
        (&["--help"][..], main),
        (&["invalidate", "--help"][..], invalidate),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        for term in terms {
            assert!(
                help.contains(term),
                "{} does not mention {term}:\n{help}",
                args.join(" ")
            );
        }
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

/// The program keeps its own copy of the status labels (to validate
/// `--status` and to flush every list); it must be the catalog's enum.
#[tokio::test]
async fn the_statuses_are_the_catalog_enum() {
    let env = Env::new("statuses").await;
    let statuses: String = env
        .pg
        .one("SELECT array_to_string(enum_range(NULL::olaclick.order_status), ',')")
        .await;
    assert_eq!(statuses, olaclick_cache::STATUSES.join(","));
}

/// A PostgreSQL that accepts connections and then says nothing (a node half
/// up during a failover) is given up after connect_timeout, as libpq would,
/// and tried again; Redis is connected and checked meanwhile.
#[tokio::test]
async fn a_server_that_never_answers_is_given_up_and_tried_again() {
    let mut env = Env::new("silent").await;
    // Connections wait in its backlog: accepted by the kernel, never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "postgresql://{ROLE}:{}@127.0.0.1:{}/{}?sslmode=disable&connect_timeout=1",
        enc(ROLE_PASSWORD),
        silent.local_addr().unwrap().port(),
        env.db
    );
    let (mut command, addr) = env.command_with_metrics();
    command.env("DATABASE_URL", url);
    env.launch(command);
    eventually("metrics are served", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    // Until a second attempt has timed out (each one counts an error).
    let text = scrape_when_at_least(
        addr,
        "olaclick_cache_errors_total{kind=\"postgres_connect\"}",
        2.0,
    )
    .await;
    assert_samples(
        &text,
        &[
            ("olaclick_cache_connected{target=\"postgres\"}", 0.0),
            ("olaclick_cache_connected{target=\"redis\"}", 1.0),
        ],
    );
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("postgres: down: ")
            && body.contains("no answer within 1s (connect_timeout)")
            && body.contains("redis: up")
            && !body.contains(ROLE_PASSWORD),
        "{body}"
    );
}

/// The (table, column) pairs `query` reads, as PostgreSQL records them for a
/// view of it: its rule depends on every column it names.
async fn columns_read(pg: &tokio_postgres::Client, query: &str) -> Vec<(String, String)> {
    let query = query
        .replace("$1::integer", "1::integer")
        .replace("$2::text", "'sent'::text");
    // Around the query, since a view's columns need distinct names.
    pg.run(&format!(
        "DROP VIEW IF EXISTS pg_temp.cached_query;
         CREATE TEMP VIEW cached_query AS SELECT count(*) FROM ({query}) q"
    ))
    .await;
    pg.query(
        "SELECT DISTINCT c.relname::text, a.attname::text
         FROM pg_rewrite r
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                         AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
         JOIN pg_class c ON c.oid = d.refobjid
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE r.ev_class = 'pg_temp.cached_query'::regclass
         ORDER BY 1, 2",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

/// The columns of `query` whose change no olaclick trigger notes for the
/// cache: an UPDATE of them would leave a cached list stale. A column is
/// covered by an enabled row trigger on its table that fires on UPDATE of it
/// (no column list, or one that names it) and is one of olaclick's notifying
/// functions.
async fn columns_without_notification(
    pg: &tokio_postgres::Client,
    query: &str,
) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (table, column) in columns_read(pg, query).await {
        let covered: bool = pg
            .query_one(
                "SELECT EXISTS (
                   SELECT 1 FROM pg_trigger t
                   JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attname = $2
                   WHERE t.tgrelid = pg_catalog.format('olaclick.%I', $1::text)::regclass
                     AND t.tgenabled <> 'D'
                     AND t.tgtype & 1 = 1       -- FOR EACH ROW
                     AND t.tgtype & 16 = 16     -- UPDATE
                     AND t.tgfoid IN ('olaclick.orders_guard()'::regprocedure,
                                      'olaclick.cache_columns_notify()'::regprocedure)
                     AND (cardinality(t.tgattr::int2[]) = 0 OR a.attnum = ANY (t.tgattr::int2[])))",
                &[&table, &column],
            )
            .await
            .unwrap()
            .get(0);
        if !covered {
            missing.push((table, column));
        }
    }
    missing
}

/// Every column the cached query reads notifies when it changes; a column
/// added to the query without a trigger that notes it fails here.
#[tokio::test]
async fn every_column_the_cached_query_reads_notifies() {
    let env = Env::new("columns").await;
    let read = columns_read(&env.pg, olaclick_cache::ORDERS_QUERY).await;
    for expected in [
        ("clients", "name"),
        ("restaurants", "name"),
        ("orders", "total"),
        ("orders", "status"),
        ("orders", "created_at"),
    ] {
        assert!(
            read.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} not among the columns derived from the query: {read:?}"
        );
    }
    assert_eq!(
        columns_without_notification(&env.pg, olaclick_cache::ORDERS_QUERY).await,
        Vec::<(String, String)>::new()
    );
    // The check itself: the branch's name added to the query (and the
    // branch's id, which its join reads) has no trigger.
    let with_branch = olaclick_cache::ORDERS_QUERY
        .replacen("r.name::text", "r.name::text, b.name::text", 1)
        .replacen(
            "FROM olaclick.orders p",
            "FROM olaclick.orders p JOIN olaclick.branches b ON b.id = p.branch_id",
            1,
        );
    assert_eq!(
        columns_without_notification(&env.pg, &with_branch).await,
        vec![
            ("branches".to_string(), "id".to_string()),
            ("branches".to_string(), "name".to_string())
        ],
        "{with_branch}"
    );
}

/// A connection LISTENing on olaclick's channel, and the payloads it hears.
async fn listener(
    db: &str,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (client, mut connection) =
        tokio_postgres::connect(&format!("{}/{db}", admin_base()), NoTls)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(message)) =
            futures_util::future::poll_fn(|cx| connection.poll_message(cx)).await
        {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                if tx.send(n.payload().to_string()).is_err() {
                    break;
                }
            }
        }
    });
    client.run("LISTEN olaclick_cache").await;
    (client, rx)
}

/// The payloads heard until a fence commit on restaurant 2 (order 3) arrives.
async fn heard_until_fence(
    pg: &tokio_postgres::Client,
    heard: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Vec<String> {
    pg.run("UPDATE olaclick.orders SET created_at = created_at WHERE id = 3")
        .await;
    let mut payloads = Vec::new();
    loop {
        let payload = tokio::time::timeout(Duration::from_secs(15), heard.recv())
            .await
            .expect("the fence's notification within 15 s")
            .unwrap();
        if payload.starts_with(r#"{"restaurant_id": 2,"#) {
            return payloads;
        }
        payloads.push(payload);
    }
}

#[tokio::test]
async fn renaming_a_client_or_the_restaurant_invalidates_its_lists() {
    let mut env = Env::new("rename").await;
    env.start_invalidator().await;
    let (_listening, mut heard) = listener(&env.db).await;

    // Each rename, and how the list shows it once read again.
    for (rename, shown) in [
        (
            "UPDATE olaclick.clients SET name = 'Ana María' WHERE id = 1",
            r#""client":"Ana María""#,
        ),
        (
            "UPDATE olaclick.restaurants SET name = 'R1 bis' WHERE id = 1",
            r#""restaurant":"R1 bis""#,
        ),
    ] {
        env.get(1, "initiated").await;
        env.commit_invalidates(rename, 1, "initiated").await;
        let (json, _) = env.get(1, "initiated").await;
        assert!(json.contains(shown), "{rename}: {json}");
    }
    assert_eq!(
        heard_until_fence(&env.pg, &mut heard).await,
        vec![
            r#"{"restaurant_id": 1, "statuses": ["initiated", "sent", "delivered"], "all": true}"#;
            2
        ]
    );

    // Assigned its own value, or a column the list doesn't show: nothing.
    env.pg
        .run(
            "UPDATE olaclick.clients SET name = name, phone = '555' WHERE id = 1;
             UPDATE olaclick.restaurants SET name = name WHERE id = 1",
        )
        .await;
    assert_eq!(
        heard_until_fence(&env.pg, &mut heard).await,
        Vec::<String>::new()
    );
    assert!(env.cached(1, "initiated").await.is_some());

    // A rename and order changes in one transaction: one notification.
    env.pg
        .run(
            "BEGIN;
             UPDATE olaclick.clients SET name = 'Ana' WHERE id = 1;
             UPDATE olaclick.orders SET status = 'sent' WHERE id = 1;
             UPDATE olaclick.restaurants SET name = 'R1' WHERE id = 1;
             COMMIT;",
        )
        .await;
    assert_eq!(
        heard_until_fence(&env.pg, &mut heard).await,
        vec![
            r#"{"restaurant_id": 1, "statuses": ["initiated", "sent", "delivered"], "all": true}"#
        ]
    );
    env.wait_gone(1, "initiated").await;
}

/// A host that accepts connections and never answers (a frozen primary)
/// costs one connect_timeout, then the next host is tried, as libpq does,
/// whatever target_session_attrs asks for.
#[tokio::test]
async fn a_silent_host_costs_one_connect_timeout_then_the_next_is_tried() {
    let env = Env::new("silenthost").await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    for (attrs, connects) in [
        ("", true),
        ("&target_session_attrs=any", true),
        ("&target_session_attrs=read-write", true),
        ("&target_session_attrs=primary", true),
        ("&target_session_attrs=prefer-standby", true),
        ("&target_session_attrs=read-only", false),
        ("&target_session_attrs=standby", false),
    ] {
        let url = format!(
            "postgresql://{ROLE}:{}@127.0.0.1:{silent_port},localhost:{}/{}?{}&connect_timeout=1{attrs}",
            enc(ROLE_PASSWORD),
            pg_port(),
            env.db,
            verify_full()
        );
        let started = Instant::now();
        let result = olaclick_cache::postgres(&env.with_database_url(url), "test").await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_millis(1900),
            "{attrs}: {took:?}"
        );
        match result {
            Ok((client, connection)) => {
                assert!(connects, "{attrs}: connected to the primary");
                tokio::spawn(connection);
                let port: i32 = client.one("SELECT inet_server_port()").await;
                assert_eq!(port, pg_port() as i32, "{attrs}");
            }
            Err(e) => {
                let e = format!("{e:#}");
                assert!(!connects, "{attrs}: {e}");
                assert!(
                    e.contains(&format!("127.0.0.1:{silent_port}")) && !e.contains(ROLE_PASSWORD),
                    "{attrs}: {e}"
                );
            }
        }
    }
}

/// olaclick.notify_skipped(), and its line in olaclick.health() as "status
/// value" (the value is the same counter).
async fn skipped(pg: &tokio_postgres::Client) -> (i64, String) {
    (
        pg.one("SELECT olaclick.notify_skipped()").await,
        pg.one(
            "SELECT status || ' ' || value FROM olaclick.health() WHERE name = 'notify_skipped'",
        )
        .await,
    )
}

/// With the NOTIFY queue held by a listener stuck in a transaction and past
/// the skip threshold, an order's commit goes through without notifying; the
/// skip is counted and the invalidator flushes the cache; below the
/// threshold notifications resume.
#[tokio::test]
async fn a_nearly_full_queue_skips_notifications_and_the_invalidator_flushes() {
    let mut env = Env::new("queuefull").await;
    env.start_invalidator().await;
    let (_listening, mut heard) = listener(&env.db).await;
    // A listener inside a transaction reads nothing: the queue's tail stays
    // behind it while 40 notifications of about a page each go in.
    let stuck = admin(&env.db).await;
    // Separate statements: a LISTEN in the same query string as the BEGIN
    // would be part of the transaction, and not yet listening.
    stuck.run("LISTEN olaclick_test_stuck").await;
    stuck.run("BEGIN; SELECT 1").await;
    env.pg.run(
            "SELECT count(pg_notify('olaclick_test_stuck', g || repeat('x', 7000))) FROM generate_series(1, 40) g",
        ).await;
    let usage: f64 = env.pg.one("SELECT pg_notification_queue_usage()").await;
    assert!(usage > 0.000001, "{usage}");
    let (before, _) = skipped(&env.pg).await;

    env.get(1, "initiated").await;
    env.get(2, "initiated").await;
    let generation_before = generation(&mut env.redis.con().await).await;
    // Two restaurants in one commit: two notifications skipped.
    env.pg
        .run(
            "SET olaclick.notify_queue_skip_threshold = 0.000001;
             BEGIN;
             UPDATE olaclick.orders SET status = 'sent' WHERE id IN (1, 3);
             COMMIT;",
        )
        .await;
    assert_eq!(
        skipped(&env.pg).await,
        (before + 2, format!("critical {}", before + 2))
    );
    // No notification went out, and the invalidator flushed.
    assert_eq!(heard.try_recv().ok(), None);
    eventually("the invalidator flushes", || async {
        generation(&mut env.redis.con().await).await > generation_before
    })
    .await;
    env.wait_gone(1, "initiated").await;
    env.wait_gone(2, "initiated").await;
    let (json, _) = env.get(1, "initiated").await;
    assert!(!json.contains(r#""id":1,"#), "{json}");

    // Below the threshold again: notified as usual, nothing more skipped.
    env.commit_invalidates(
        "RESET olaclick.notify_queue_skip_threshold;
             UPDATE olaclick.orders SET status = 'sent' WHERE id = 2",
        1,
        "initiated",
    )
    .await;
    let payload = tokio::time::timeout(Duration::from_secs(15), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(payload.starts_with(r#"{"restaurant_id": 1,"#), "{payload}");
    assert_eq!(
        skipped(&env.pg).await,
        (before + 2, format!("ok {}", before + 2))
    );
    stuck.run("ROLLBACK").await;
}

/// A list longer than max_orders is answered from PostgreSQL and not cached.
#[tokio::test]
async fn a_list_longer_than_max_orders_is_not_cached() {
    let env = Env::new("maxorders").await;
    let config = Config {
        max_orders: 1,
        ..env.config()
    };
    let (json, source) = olaclick_cache::get(&config, 1, "initiated").await.unwrap();
    assert_eq!(
        source,
        Source::DatabaseTooLong {
            orders: 2,
            max_orders: 1
        }
    );
    assert!(
        json.contains(r#""id":1"#) && json.contains(r#""id":2"#),
        "{json}"
    );
    assert_eq!(env.cached(1, "initiated").await, None);
    // Restaurant 2 has one order: cached.
    let (_, source) = olaclick_cache::get(&config, 2, "initiated").await.unwrap();
    assert_eq!(source, Source::Database { stored: true });
    let out = env
        .command()
        .env("OLACLICK_CACHE_MAX_ORDERS", "1")
        .args(["get", "--restaurant", "1", "--status", "initiated"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("answered from PostgreSQL, not cached: 2 orders, more than OLACLICK_CACHE_MAX_ORDERS (1)"),
        "{stderr}"
    );
}

/// The ACL user has only the commands olaclick-cache sends: the cache works
/// (every test here runs with it) and FLUSHALL, CONFIG and other keys are
/// refused. The docs and the demo give the same rules.
#[tokio::test]
async fn the_redis_acl_is_least_privilege() {
    let mut env = Env::new("acl").await;
    env.start_invalidator().await;
    env.get(1, "initiated").await;
    assert!(env.cached(1, "initiated").await.is_some());
    env.send_invalidates(1, 1).await;
    let mut user = olaclick_cache::redis(&env.config()).await.unwrap();
    for command in [
        redis::cmd("FLUSHALL"),
        redis::cmd("CONFIG").arg("GET").arg("*").to_owned(),
        redis::cmd("KEYS").arg("*").to_owned(),
        redis::cmd("SHUTDOWN"),
        redis::cmd("GET").arg("other:key").to_owned(),
    ] {
        let refused: redis::RedisResult<redis::Value> = command.query_async(&mut user).await;
        let e = refused.expect_err("refused by the ACL");
        assert!(format!("{e}").contains("no permissions"), "{e}");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["docs/cache.md", "docs/security.md", "scripts/demo"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.contains(olaclick_cache::REDIS_ACL),
            "{file} does not give the ACL rules {:?}",
            olaclick_cache::REDIS_ACL
        );
    }
}
