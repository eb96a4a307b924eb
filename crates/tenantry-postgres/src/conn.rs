//! The connection layer every operation runs on: the pool and statements the store's
//! tasks share ([`Shared`]), and the guarded way to run a statement on a pooled
//! connection ([`on_connection!`], [`read_with_retry!`]). The direct operations
//! (`store.rs`) and the batchers (`batch.rs`) both build on it, and neither on the other.

use crate::error::{Failure, classify};
use crate::options::PgOptions;
use crate::schema::Statements;
use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPool;
use std::time::Duration;

/// Runs `$body` (an expression using the pooled connection `$conn`, yielding
/// `Result<T, sqlx::Error>`) within the pool's acquire timeout and the statement timeout.
/// A connection that timed out or broke is closed instead of going back to the pool.
/// Evaluates to `Result<T, Failure>`.
macro_rules! on_connection {
    ($shared:expr, $conn:ident => $body:expr) => {{
        let shared: &$crate::conn::Shared = $shared;
        match $crate::conn::acquire(shared).await {
            Err(failure) => Err(failure),
            Ok(mut $conn) => {
                let guard = $crate::conn::statement_guard(shared);
                let outcome = tokio::time::timeout(guard, async { $body }).await;
                $crate::conn::settle(&mut $conn, outcome, guard)
            }
        }
    }};
}
pub(crate) use on_connection;

/// Runs an idempotent read, once more on a fresh connection if the first one turns out
/// broken (a connection the database dropped while it sat idle in the pool).
macro_rules! read_with_retry {
    ($shared:expr, $conn:ident => $body:expr) => {{
        let mut outcome = $crate::conn::on_connection!($shared, $conn => $body);
        if matches!(&outcome, Err(f) if f.broken) {
            outcome = $crate::conn::on_connection!($shared, $conn => $body);
        }
        outcome.map_err(|f: $crate::error::Failure| f.error)
    }};
}
pub(crate) use read_with_retry;

/// What the store's tasks share: the pool, the statements, the options.
pub(crate) struct Shared {
    pub(crate) pool: PgPool,
    pub(crate) sql: Statements,
    pub(crate) options: PgOptions,
}

/// Gets a pooled connection, bounded by the connect timeout (with a margin over the
/// pool's own bound).
pub(crate) async fn acquire(shared: &Shared) -> Result<PoolConnection<Postgres>, Failure> {
    let limit = shared.options.connect_timeout + Duration::from_secs(1);
    match tokio::time::timeout(limit, shared.pool.acquire()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(classify(e)),
        Err(_) => Err(Failure::unavailable(
            format!("no database connection within {limit:?}"),
            false,
        )),
    }
}

/// How long the client waits for one statement: the server's own statement timeout plus
/// a margin, so the server's cancellation normally arrives first.
pub(crate) fn statement_guard(shared: &Shared) -> Duration {
    shared.options.statement_timeout + Duration::from_secs(1)
}

/// Turns a guarded statement's outcome into the store's terms, closing the connection
/// when it cannot be trusted any more.
pub(crate) fn settle<T>(
    conn: &mut PoolConnection<Postgres>,
    outcome: Result<Result<T, sqlx::Error>, tokio::time::error::Elapsed>,
    guard: Duration,
) -> Result<T, Failure> {
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            let failure = classify(e);
            if failure.broken {
                conn.close_on_drop();
            }
            Err(failure)
        }
        Err(_) => {
            // The statement may still be running; the connection is in an unknown state.
            conn.close_on_drop();
            Err(Failure::unavailable(
                format!("no answer from the database within {guard:?}"),
                true,
            ))
        }
    }
}
