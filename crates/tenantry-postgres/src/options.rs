//! Tuning and placement of a [`PgStore`](crate::PgStore): schema, pool, timeouts, batches.

use crate::PgError;
use std::time::Duration;

/// Options of a [`PgStore`](crate::PgStore). Build with struct update syntax:
/// `PgOptions { schema: "tenant_data".into(), ..PgOptions::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// The PostgreSQL schema holding the store's tables, created if missing (default
    /// `tenantry`). Lower-case ASCII letters, digits and `_`, starting with a letter or `_`,
    /// at most 63 bytes, not starting with `pg_`.
    pub schema: String,
    /// Most connections the pool opens (default 8).
    pub max_connections: u32,
    /// Longest wait to open a connection or to get one from the pool (default 5 s). A
    /// database that cannot be reached within it yields `StoreError::Unavailable`.
    pub connect_timeout: Duration,
    /// Longest a single statement may run (default 10 s); also set as the server's
    /// `statement_timeout` for the store's connections.
    pub statement_timeout: Duration,
    /// Most puts folded into one statement and commit (default 4096).
    pub max_batch: usize,
    /// Most state bytes folded into one statement (default 16 MiB); a larger single put
    /// still goes alone.
    pub max_batch_bytes: usize,
    /// How many put batches may run at once (default 2); batches running together never
    /// share a key.
    pub write_concurrency: usize,
    /// Most gets folded into one query (default 512).
    pub max_read_batch: usize,
    /// How many read queries may run at once (default 2).
    pub read_concurrency: usize,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: "tenantry".into(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            max_batch: 4096,
            max_batch_bytes: 16 << 20,
            write_concurrency: 2,
            max_read_batch: 512,
            read_concurrency: 2,
        }
    }
}

impl PgOptions {
    /// The default options with another schema.
    pub fn with_schema(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            ..Self::default()
        }
    }

    /// Longest a caller waits for a batched operation: a batch ahead of it and its own,
    /// each getting a connection and running its statement, with a margin each.
    pub(crate) fn operation_deadline(&self) -> Duration {
        (self.connect_timeout + self.statement_timeout + Duration::from_secs(1)) * 2
    }

    /// Checks every option, naming the first one that is refused.
    pub(crate) fn validate(&self) -> Result<(), PgError> {
        check_schema_name(&self.schema)?;
        let positive = [
            ("max_connections", self.max_connections as usize),
            ("max_batch", self.max_batch),
            ("max_batch_bytes", self.max_batch_bytes),
            ("write_concurrency", self.write_concurrency),
            ("max_read_batch", self.max_read_batch),
            ("read_concurrency", self.read_concurrency),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(PgError::InvalidOption(format!("{name} must be at least 1")));
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if d.is_zero() {
                return Err(PgError::InvalidOption(format!("{name} must not be zero")));
            }
        }
        Ok(())
    }
}

/// The schema-name rule: a plain lower-case identifier, so it needs no case folding and
/// can never break out of its quotes.
pub(crate) fn check_schema_name(name: &str) -> Result<(), PgError> {
    let refuse = |why: &str| Err(PgError::InvalidOption(format!("schema {name:?}: {why}")));
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > 63 {
        return refuse("it is longer than 63 bytes");
    }
    if let Some(ch) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return refuse(&format!(
            "character {ch:?} is not allowed (only a-z, 0-9 and '_')"
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return refuse("it must start with a letter or '_'");
    }
    if name.starts_with("pg_") {
        return refuse("names starting with 'pg_' are reserved by PostgreSQL");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_lower_case_identifiers() {
        for ok in ["tenantry", "_t", "tenantry_test_1234", "a"] {
            assert!(check_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Tenantry",
            "1abc",
            "a-b",
            "a\"b",
            "a;drop",
            "pg_x",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(check_schema_name(bad), Err(PgError::InvalidOption(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn zero_sizes_and_timeouts_are_refused() {
        let zero_batch = PgOptions {
            max_batch: 0,
            ..PgOptions::default()
        };
        assert!(matches!(
            zero_batch.validate(),
            Err(PgError::InvalidOption(m)) if m.contains("max_batch")
        ));
        let zero_timeout = PgOptions {
            connect_timeout: Duration::ZERO,
            ..PgOptions::default()
        };
        assert!(zero_timeout.validate().is_err());
        assert!(PgOptions::default().validate().is_ok());
    }
}
