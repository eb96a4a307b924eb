//! Errors of the PostgreSQL store, and how driver errors map onto the store's.

use tenantry::store::StoreError;

/// Why [`PgStore::connect`](crate::PgStore::connect) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    /// An option or the URL was refused; nothing was contacted.
    #[error("invalid PostgreSQL store option: {0}")]
    InvalidOption(String),
    /// The database could not be reached or did not answer in time.
    #[error("PostgreSQL unavailable: {0}")]
    Unavailable(String),
    /// The schema was migrated by a newer build of this store.
    #[error("the store schema is at version {found}, newer than this build's {supported}")]
    SchemaTooNew {
        /// The version recorded in the database.
        found: i32,
        /// The newest version this build knows.
        supported: i32,
    },
    /// A migration failed (it was rolled back).
    #[error("migration to schema version {version} failed: {reason}")]
    Migration {
        /// The migration that failed.
        version: i32,
        /// The database's message.
        reason: String,
    },
}

impl From<PgError> for StoreError {
    /// For callers that handle every store failure alike (e.g. a function returning
    /// `StoreError` that opens either store): an unreachable database stays
    /// `Unavailable`; a schema or option problem is reported as `Unavailable` too, with
    /// its message, since the store cannot be used.
    fn from(e: PgError) -> Self {
        match e {
            PgError::Unavailable(m) => StoreError::Unavailable(m),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// A driver error, sorted by what the store does about it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// What the caller gets.
    pub(crate) error: StoreError,
    /// The connection is unusable and must not go back to the pool.
    pub(crate) broken: bool,
    /// A transient conflict between transactions (deadlock, serialization failure):
    /// the statement changed nothing and may simply run again.
    pub(crate) retry: bool,
}

impl Failure {
    pub(crate) fn unavailable(message: impl Into<String>, broken: bool) -> Self {
        Self {
            error: StoreError::Unavailable(message.into()),
            broken,
            retry: false,
        }
    }
}

/// Sorts a driver error: decoding problems are `Corrupt` (the row holds what it should
/// not); everything else means the database could not do the work: `Unavailable`.
pub(crate) fn classify(e: sqlx::Error) -> Failure {
    use sqlx::Error as E;
    let message = e.to_string();
    match &e {
        E::ColumnDecode { .. }
        | E::Decode(_)
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. } => Failure {
            error: StoreError::Corrupt(message),
            broken: false,
            retry: false,
        },
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            Failure {
                error: StoreError::Unavailable(message),
                // Class 08: connection exception; 57P0x: the server is shutting down or
                // terminated this session.
                broken: code.starts_with("08") || code.starts_with("57P"),
                // 40001 serialization failure, 40P01 deadlock detected.
                retry: code == "40001" || code == "40P01",
            }
        }
        E::PoolTimedOut | E::PoolClosed => Failure::unavailable(message, false),
        _ => Failure::unavailable(message, true),
    }
}

/// The version of a row, which the schema keeps positive.
pub(crate) fn version_from_db(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| StoreError::Corrupt(format!("stored version {v} is not positive")))
}
