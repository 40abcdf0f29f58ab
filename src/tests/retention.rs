//! Years of audit log (src/retention.rs, sql/partitions.sql): months made
//! ahead and idempotently, rows that arrive for a month without a partition
//! kept and moved, whole months removed or archived, and the log's guards
//! on every partition.
#[pgrx::pg_schema]
mod tests {
    use crate::tests::*;

    /// The partition (regclass text) that holds audit row `id`.
    fn partition_of(id: i64) -> String {
        one(&format!(
            "SELECT tableoid::regclass::text FROM olaclick.audit_log WHERE id = {id}"
        ))
    }

    fn last_audit_id() -> i64 {
        one("SELECT max(id) FROM olaclick.audit_log")
    }

    fn steps(since: &str) -> Vec<String> {
        Spi::connect(|client| {
            client
                .select(
                    &format!("SELECT m FROM olaclick.maintain({since}) m"),
                    None,
                    &[],
                )?
                .map(|row| row.get::<String>(1).map(Option::unwrap_or_default))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap()
    }

    /// This month's partition (UTC), by name.
    fn this_month() -> String {
        one("SELECT 'olaclick.audit_log_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')")
    }

    #[pg_test]
    fn maintain_makes_this_month_and_the_next_three_once() {
        let made = steps("");
        assert_eq!(made.len(), 4, "{made:?}");
        assert!(
            made[0].starts_with(&format!("created {}", this_month())),
            "{made:?}"
        );
        assert_eq!(
            steps(""),
            Vec::<String>::new(),
            "a second run has nothing to do"
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM olaclick.audit_partitions WHERE NOT is_default"),
            4
        );
        // Months are UTC months whatever the session's time zone.
        Spi::run("SET LOCAL TimeZone = 'America/Lima'").unwrap();
        assert_eq!(steps(""), Vec::<String>::new());
        assert_eq!(
            one::<String>(&format!(
                "SELECT to_char(lower, 'DD HH24:MI') FROM (SELECT from_at AT TIME ZONE 'UTC' AS lower
                 FROM olaclick.audit_partitions WHERE partition = '{}'::regclass) p",
                this_month()
            )),
            "01 00:00"
        );
    }

    #[pg_test]
    fn rows_for_a_month_without_a_partition_wait_in_the_default_and_move() {
        let a = tenant("a");
        a.order();
        let row = last_audit_id();
        assert_eq!(partition_of(row), "olaclick.audit_log_default");
        // A row of a month long gone (a restore of an old log, a clock far
        // off): kept too, and given its month.
        Spi::run(
            "SET LOCAL session_replication_role = replica;
             INSERT INTO olaclick.audit_log (table_name, op, at) VALUES ('orders', 'DELETE', '2020-01-15 12:00+00');
             SET LOCAL session_replication_role = origin",
        )
        .unwrap();
        let old = last_audit_id();
        let health =
            "SELECT status || ':' || value FROM olaclick.health() WHERE name = 'audit_partitions'";
        assert!(one::<String>(health).starts_with("warning:"));
        let made = steps("");
        assert!(
            made.iter()
                .any(|m| m.starts_with("created olaclick.audit_log_2020_01 ")
                    && m.ends_with("moving 1 rows into it from olaclick.audit_log_default")),
            "{made:?}"
        );
        assert_eq!(partition_of(row), this_month());
        assert_eq!(partition_of(old), "olaclick.audit_log_2020_01");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM ONLY olaclick.audit_log_default"),
            0
        );
        assert_eq!(one::<String>(health), "ok:0");
        // The native path routes the next rows to their month.
        native_writes(true);
        a.order();
        assert_eq!(partition_of(last_audit_id()), this_month());
    }

    #[pg_test]
    fn a_purge_removes_whole_months_only() {
        let a = tenant("a");
        a.order();
        steps("'2026-01-01'");
        Spi::run(
            "SET LOCAL session_replication_role = replica;
             INSERT INTO olaclick.audit_log (table_name, op, at)
             VALUES ('orders', 'DELETE', '2026-01-10+00'), ('orders', 'DELETE', '2026-01-20+00'),
                    ('orders', 'DELETE', '2026-02-10+00');
             SET LOCAL session_replication_role = origin",
        )
        .unwrap();
        // Mid-February: January goes, February (partly older) stays whole.
        assert_eq!(
            one::<i64>("SELECT olaclick.audit_purge('2026-02-15+00')"),
            2
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM olaclick.audit_log WHERE at < '2026-03-01+00'"),
            1
        );
        assert!(!one::<bool>(
            "SELECT to_regclass('olaclick.audit_log_2026_01') IS NOT NULL"
        ));
        assert_eq!(
            one::<i64>("SELECT olaclick.audit_purge('2026-02-15+00')"),
            0
        );
        // Into an archive schema: detached and moved, the caller's, readable,
        // no longer guarded.
        Spi::run(
            "CREATE SCHEMA audit_archive;
             CREATE ROLE olaclick_test_keeper NOLOGIN;
             GRANT USAGE ON SCHEMA olaclick TO olaclick_test_keeper;
             GRANT EXECUTE ON FUNCTION olaclick.audit_purge(timestamptz, text) TO olaclick_test_keeper",
        )
        .unwrap();
        // Not into olaclick's own schema, where the months would stay
        // unguarded beside the log's.
        assert_fails(
            "SELECT olaclick.audit_purge('2026-03-01+00', 'olaclick')",
            "22023",
        );
        Spi::run("SET LOCAL ROLE olaclick_test_keeper").unwrap();
        assert_fails(
            "SELECT olaclick.audit_purge('2026-03-01+00', 'audit_archive')",
            "42501",
        );
        Spi::run("RESET ROLE; GRANT CREATE, USAGE ON SCHEMA audit_archive TO olaclick_test_keeper")
            .unwrap();
        Spi::run("SET LOCAL ROLE olaclick_test_keeper").unwrap();
        assert_eq!(
            one::<i64>("SELECT olaclick.audit_purge('2026-03-01+00', 'audit_archive')"),
            1
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM audit_archive.audit_log_2026_02"),
            1
        );
        assert_ok("DELETE FROM audit_archive.audit_log_2026_02");
        assert_ok("DROP TABLE audit_archive.audit_log_2026_02");
        back_to_superuser();
        // This month's rows are untouched.
        assert!(one::<i64>(&format!("SELECT count(*) FROM {}", this_month())) > 0);
    }

    #[pg_test]
    fn maintain_refuses_since_past_ten_years_or_infinite_and_guards_a_dbas_partition() {
        for since in ["'-infinity'", "now() - interval '11 years'"] {
            let message = assert_fails(
                &format!("SELECT count(*) FROM olaclick.maintain({since})"),
                "22023",
            );
            assert!(message.contains("ten years"), "{message}");
        }
        steps("");
        // A table a DBA attaches (here, for a year far ahead) is guarded by
        // the next run, its grants taken back.
        Spi::run(
            "CREATE TABLE olaclick.audit_log_2099 (LIKE olaclick.audit_log_default INCLUDING CONSTRAINTS);
             GRANT SELECT, DELETE ON olaclick.audit_log_2099 TO olaclick_app;
             ALTER TABLE olaclick.audit_log ATTACH PARTITION olaclick.audit_log_2099
               FOR VALUES FROM ('2099-01-01+00') TO ('2100-01-01+00')",
        )
        .unwrap();
        assert_ok("DELETE FROM olaclick.audit_log_2099");
        assert_eq!(
            steps(""),
            vec!["guarded olaclick.audit_log_2099 as a partition of the audit log".to_string()]
        );
        assert_fails("DELETE FROM olaclick.audit_log_2099", "42501");
        assert_eq!(
            one::<i64>(
                "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.oid = 'olaclick.audit_log_2099'::regclass AND a.grantee <> c.relowner"
            ),
            0,
            "no grant but its owner's"
        );
        assert_eq!(steps(""), Vec::<String>::new());
    }

    #[pg_test]
    fn every_partition_is_append_only_and_closed_to_direct_reads() {
        let a = tenant("a");
        a.order();
        steps("");
        let month = this_month();
        for sql in [
            format!("DELETE FROM {month}"),
            format!("UPDATE {month} SET op = 'DELETE'"),
            format!("TRUNCATE {month}"),
            format!("INSERT INTO {month} (id, table_name, op) VALUES (-1, 'orders', 'INSERT')"),
            format!("DROP TABLE {month}"),
            format!("ALTER TABLE olaclick.audit_log DETACH PARTITION {month}"),
            "TRUNCATE olaclick.audit_log_default".into(),
        ] {
            let message = assert_fails(&sql, "42501");
            assert!(message.contains("append-only"), "{message}");
        }
        // Reading a partition directly: refused to the application and the
        // auditor (who reads the log through olaclick.audit_log).
        for role in ["olaclick_app", "olaclick_auditor"] {
            act_as(role, Some(a.restaurant));
            assert_fails(&format!("SELECT count(*) FROM {month}"), "42501");
            back_to_superuser();
        }
        assert!(one::<bool>(&format!(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = '{month}'::regclass"
        )));
        act_as("olaclick_auditor", None);
        assert!(rows("audit_log") > 0);
        back_to_superuser();
        // Only a granted role maintains.
        act_as("olaclick_app", Some(a.restaurant));
        assert_fails("SELECT olaclick.maintain()", "42501");
        back_to_superuser();
    }

    #[pg_test]
    fn a_partition_outside_olaclick_stays_and_no_foreign_table_joins() {
        steps("");
        // A DBA's month in a schema of theirs, owned by a role of theirs.
        Spi::run(
            "CREATE ROLE audit_keeper;
             CREATE SCHEMA keep AUTHORIZATION audit_keeper;
             CREATE TABLE keep.audit_2099 (LIKE olaclick.audit_log_default INCLUDING CONSTRAINTS);
             ALTER TABLE keep.audit_2099 OWNER TO audit_keeper;
             ALTER TABLE olaclick.audit_log ATTACH PARTITION keep.audit_2099
               FOR VALUES FROM ('2099-01-01+00') TO ('2100-01-01+00')",
        )
        .unwrap();
        for sql in ["DROP SCHEMA keep CASCADE", "DROP OWNED BY audit_keeper"] {
            let message = assert_fails(sql, "42501");
            assert!(message.contains("keep.audit_2099"), "{message}");
        }
        assert!(one::<bool>(
            "SELECT to_regclass('keep.audit_2099') IS NOT NULL"
        ));
        // Drops that take no partition pass the guard.
        Spi::run(
            "CREATE SCHEMA scratch; CREATE TABLE scratch.t (); DROP SCHEMA scratch CASCADE;
             CREATE ROLE nobody_much; DROP OWNED BY nobody_much; DROP ROLE nobody_much",
        )
        .unwrap();
        // A foreign table can't be one: olaclick couldn't keep its rows.
        Spi::run(
            "CREATE FOREIGN DATA WRAPPER audit_fdw; CREATE SERVER audit_far FOREIGN DATA WRAPPER audit_fdw;
             CREATE FOREIGN TABLE public.audit_loose (id bigint NOT NULL, restaurant_id integer,
               table_name text NOT NULL, op text NOT NULL, old_row jsonb, new_row jsonb, changed_cols text[],
               actor_user_id integer, db_role text NOT NULL, txid bigint NOT NULL, at timestamptz NOT NULL)
               SERVER audit_far",
        )
        .unwrap();
        for sql in [
            "CREATE FOREIGN TABLE public.audit_2098 PARTITION OF olaclick.audit_log
               FOR VALUES FROM ('2098-01-01+00') TO ('2099-01-01+00') SERVER audit_far",
            "ALTER TABLE olaclick.audit_log ATTACH PARTITION public.audit_loose
               FOR VALUES FROM ('2098-01-01+00') TO ('2099-01-01+00')",
        ] {
            let message = assert_fails(sql, "42809");
            assert!(message.contains("partitions must be tables"), "{message}");
        }
        assert_ok("DROP FOREIGN TABLE public.audit_loose");
        assert_eq!(
            steps(""),
            vec!["guarded keep.audit_2099 as a partition of the audit log".to_string()]
        );
    }
}
