//! The refusal catalogue (src/refusal.rs) and the table of refusals in
//! docs/guarantees.md agree: every kind with its SQLSTATE, nothing else.
#[pgrx::pg_schema]
mod tests {
    use crate::refusal::Kind;
    use pgrx::prelude::*;

    const DOC: &str = include_str!("../../docs/guarantees.md");

    #[pg_test]
    fn the_docs_table_of_refusals_is_the_catalogue() {
        let table = DOC
            .split("### Every refusal")
            .nth(1)
            .expect("docs/guarantees.md has a section \"Every refusal\"");
        let documented: Vec<(String, String)> = table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].trim_matches('`').to_string(), cells[2].to_string())
            })
            .collect();
        let catalogue: Vec<(String, String)> = Kind::ALL
            .iter()
            .map(|k| (format!("{k:?}"), k.sqlstate()))
            .collect();
        assert_eq!(documented, catalogue);
    }

    /// `sqlstate` unpacks PostgreSQL's code as clients see it.
    #[pg_test]
    fn sqlstates_read_as_clients_see_them() {
        assert_eq!(Kind::LinesFrozen.sqlstate(), "23514");
        assert_eq!(Kind::DropWithOrders.sqlstate(), "2BP01");
        let raised = crate::tests::assert_fails(
            "SELECT olaclick.audit_purge(NULL)",
            &Kind::PurgeWithoutTime.sqlstate(),
        );
        assert!(raised.contains("older_than must not be NULL"), "{raised}");
    }
}
