//! pg_dump carries all business data: a database with data is dumped, restored
//! into a fresh one (custom format with pg_restore, plain format with psql),
//! and every row and sequence position is found again.
//!
//! The test's own transaction is invisible to pg_dump, so the databases are
//! built by client programs of the running server, over its socket.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::one;
    use pgrx::prelude::*;
    use std::path::PathBuf;
    use std::process::Command;

    const TABLES: &[&str] = &[
        "restaurants",
        "users",
        "branches",
        "clients",
        "products",
        "orders",
        "order_details",
        "order_status_history",
        "audit_log",
        "audit_settings",
    ];

    struct Server {
        bindir: PathBuf,
        host: String,
        port: String,
        user: String,
    }

    impl Server {
        fn here() -> Server {
            // SAFETY: my_exec_path is the running server's binary, set at start.
            let exe = unsafe { std::ffi::CStr::from_ptr(pgrx::pg_sys::my_exec_path.as_ptr()) };
            let bindir = PathBuf::from(exe.to_str().unwrap())
                .parent()
                .unwrap()
                .to_path_buf();
            let sockets: String = one("SELECT current_setting('unix_socket_directories')");
            Server {
                bindir,
                host: sockets.split(',').next().unwrap().trim().to_string(),
                port: one("SELECT current_setting('port')"),
                user: one("SELECT current_user::text"),
            }
        }

        /// Runs a client program and waits for it while serving interrupts:
        /// DROP DATABASE waits until every backend, this one included, has
        /// absorbed a barrier, so blocking in waitpid would deadlock.
        fn run(&self, program: &str, args: &[&str]) -> String {
            let log = std::env::temp_dir()
                .join(format!("olaclick-test-{}.{program}", std::process::id()));
            let (out_path, err_path) = (log.with_extension("out"), log.with_extension("err"));
            let mut child = Command::new(self.bindir.join(program))
                .args(["-h", &self.host, "-p", &self.port, "-U", &self.user])
                .args(args)
                .stdout(std::fs::File::create(&out_path).unwrap())
                .stderr(std::fs::File::create(&err_path).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{program}: {e}"));
            let status = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                pgrx::check_for_interrupts!();
                std::thread::sleep(std::time::Duration::from_millis(5));
            };
            let stdout = std::fs::read_to_string(&out_path).unwrap();
            let stderr = std::fs::read_to_string(&err_path).unwrap();
            std::fs::remove_file(&out_path).ok();
            std::fs::remove_file(&err_path).ok();
            assert!(status.success(), "{program} {args:?} failed: {stderr}");
            assert!(
                !stderr.contains("ERROR"),
                "{program} {args:?} reported: {stderr}"
            );
            stdout
        }

        fn sql(&self, db: &str, sql: &str) -> String {
            self.run(
                "psql",
                &[
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    db,
                    "-c",
                    sql,
                ],
            )
            .trim()
            .to_string()
        }

        fn fresh_db(&self, db: &str) {
            self.sql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
            self.sql("postgres", &format!("CREATE DATABASE {db}"));
        }

        /// One fingerprint per table (row count and hash of the sorted rows),
        /// plus where each identity sequence stands.
        fn fingerprint(&self, db: &str) -> String {
            let mut parts = Vec::new();
            for table in TABLES {
                parts.push(self.sql(
                    db,
                    &format!("SELECT '{table}:' || count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM olaclick.{table} t"),
                ));
            }
            parts.push(self.sql(
                db,
                "SELECT string_agg(sequencename || '=' || coalesce(last_value, 0), ',' ORDER BY sequencename)
                 FROM pg_sequences WHERE schemaname = 'olaclick'",
            ));
            parts.join("\n")
        }
    }

    #[pg_test]
    fn dump_and_restore_carry_every_row() {
        let server = Server::here();
        let dump = std::env::temp_dir().join(format!("olaclick-test-{}.dump", std::process::id()));
        let dump = dump.to_str().unwrap();
        let (src, custom, plain) = (
            "olaclick_dump_src",
            "olaclick_dump_custom",
            "olaclick_dump_plain",
        );

        server.fresh_db(src);
        server.sql(src, "CREATE EXTENSION olaclick");
        server.sql(
            src,
            "SELECT count(*) FROM olaclick.load_demo(restaurants => 3, users_per_restaurant => 3,
               branches_per_restaurant => 2, clients_per_restaurant => 4, products_per_restaurant => 5, orders => 300)",
        );
        // Rows written the ordinary way too, including creators on every level.
        server.sql(
            src,
            "WITH r AS (SELECT min(id) AS id FROM olaclick.restaurants),
                  u AS (SELECT min(u.id) AS id FROM olaclick.users u, r WHERE u.restaurant_id = r.id)
             UPDATE olaclick.restaurants SET created_by_user_id = u.id FROM r, u WHERE restaurants.id = r.id",
        );
        server.sql(src, "SELECT olaclick.audit_exclude('clients', '{phone}')");
        let before = server.fingerprint(src);
        assert!(before.contains("orders:300:"), "{before}");
        assert!(
            !before.contains("audit_log:0:"),
            "the writes above were audited: {before}"
        );

        server.run("pg_dump", &["-Fc", "-f", dump, "-d", src]);
        server.fresh_db(custom);
        server.run("pg_restore", &["--exit-on-error", "-d", custom, dump]);
        assert_eq!(
            server.fingerprint(custom),
            before,
            "custom-format dump restored with pg_restore"
        );

        server.run("pg_dump", &["-Fp", "-f", dump, "-d", src]);
        server.fresh_db(plain);
        server.run(
            "psql",
            &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", plain, "-f", dump],
        );
        assert_eq!(
            server.fingerprint(plain),
            before,
            "plain-format dump replayed with psql"
        );

        // Sequences continue after the restored rows.
        let next = server.sql(
            custom,
            "WITH i AS (INSERT INTO olaclick.restaurants (name) VALUES ('new') RETURNING id)
             SELECT (SELECT id FROM i) > (SELECT max(id) FROM olaclick.restaurants)",
        );
        assert_eq!(next, "t");

        for db in [src, custom, plain] {
            server.sql("postgres", &format!("DROP DATABASE {db}"));
        }
        std::fs::remove_file(dump).ok();
    }
}
