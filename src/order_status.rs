//! The order statuses: `olaclick.order_status` (sql/schema.sql) as Rust sees
//! it. Its order is the order an order moves through, and the order
//! notification payloads list statuses in. A test checks it against the
//! catalog's enum.

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum OrderStatus {
    Initiated,
    Sent,
    Delivered,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 3] = [
        OrderStatus::Initiated,
        OrderStatus::Sent,
        OrderStatus::Delivered,
    ];

    pub fn label(self) -> &'static str {
        match self {
            OrderStatus::Initiated => "initiated",
            OrderStatus::Sent => "sent",
            OrderStatus::Delivered => "delivered",
        }
    }

    pub fn from_label(label: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.label() == label)
    }

    /// The one status an order may move to from this one.
    pub fn next(self) -> Option<OrderStatus> {
        match self {
            OrderStatus::Initiated => Some(OrderStatus::Sent),
            OrderStatus::Sent => Some(OrderStatus::Delivered),
            OrderStatus::Delivered => None,
        }
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::OrderStatus;
    use pgrx::prelude::*;

    #[pg_test]
    fn the_rust_statuses_are_the_catalog_enum_in_order() {
        let catalog: String =
            Spi::get_one("SELECT array_to_string(enum_range(NULL::olaclick.order_status), ',')")
                .unwrap()
                .unwrap();
        let rust: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(rust.join(","), catalog);
        for pair in OrderStatus::ALL.windows(2) {
            assert_eq!(pair[0].next(), Some(pair[1]));
        }
    }
}
