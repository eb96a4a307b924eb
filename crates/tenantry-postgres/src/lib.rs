//! A PostgreSQL checkpoint store for the Tenantry runtime.
//!
//! [`PgStore`] implements [`tenantry::store::CheckpointStore`] over one table keyed by
//! `(partition, manager, key)` with a `version` column, so that teams running several
//! servers, or keeping their data in a database they already operate, get the same
//! promises as the embedded redb store: puts are compare-and-set on the version (a stale
//! writer gets [`StoreError::Conflict`](tenantry::store::StoreError::Conflict), which
//! fences it), and a put is acknowledged only once PostgreSQL has committed it.
//!
//! - **Schema.** [`PgStore::connect`] creates the schema named in [`PgOptions::schema`] and
//!   applies the store's versioned migrations (recorded in `<schema>.tenantry_migrations`,
//!   serialised across processes by an advisory lock). A database migrated by a newer
//!   build is refused with [`PgError::SchemaTooNew`].
//! - **Throughput.** Puts go through one writer task that folds every put queued at that
//!   moment into one multi-row statement (one commit), and gets through a reader task that
//!   folds concurrent reads into one query; each caller still gets its own result.
//! - **Failures.** Connections come from a pool with connect/acquire and statement
//!   timeouts. A database that is down, unreachable or hung yields
//!   [`StoreError::Unavailable`](tenantry::store::StoreError::Unavailable) within those
//!   timeouts, never a panic or a hang, and the store recovers by itself when the database
//!   is back (broken connections are discarded and new ones opened on demand).
//!
//! # Choosing a store
//!
//! The embedded redb store is the default: one file, no server to run.
//!
//! ```no_run
//! # fn demo() -> Result<(), tenantry::store::StoreError> {
//! let runtime = tenantry::Runtime::builder().redb("data/checkpoints.redb")?.build();
//! # Ok(()) }
//! ```
//!
//! To keep checkpoints in PostgreSQL instead, connect a [`PgStore`] and hand it to the
//! builder with [`RuntimeBuilder::store`](tenantry::RuntimeBuilder::store) (or
//! [`store_arc`](tenantry::RuntimeBuilder::store_arc) to share one store between runtimes):
//!
//! ```no_run
//! # async fn demo() -> Result<(), tenantry_postgres::PgError> {
//! use tenantry_postgres::{PgOptions, PgStore};
//! let store = PgStore::connect(
//!     "postgres://tenantry@db.internal:5432/app",
//!     PgOptions { schema: "tenantry".into(), ..PgOptions::default() },
//! )
//! .await?;
//! let runtime = tenantry::Runtime::builder().store(store).build();
//! # Ok(()) }
//! ```
//!
//! A server that reads its store from configuration picks one or the other; both fail
//! with [`StoreError`](tenantry::store::StoreError) (a [`PgError`] converts into one):
//!
//! ```no_run
//! # use tenantry::store::StoreError;
//! # use tenantry::RuntimeBuilder;
//! enum StoreConfig {
//!     /// The embedded default: a redb file.
//!     Redb(std::path::PathBuf),
//!     /// A PostgreSQL URL and the schema to keep the checkpoints in.
//!     Postgres { url: String, schema: String },
//! }
//!
//! async fn with_store(builder: RuntimeBuilder, config: &StoreConfig) -> Result<RuntimeBuilder, StoreError> {
//!     Ok(match config {
//!         StoreConfig::Redb(path) => builder.redb(path)?,
//!         StoreConfig::Postgres { url, schema } => {
//!             let options = tenantry_postgres::PgOptions::with_schema(schema.clone());
//!             builder.store(tenantry_postgres::PgStore::connect(url, options).await?)
//!         }
//!     })
//! }
//! ```
//!
//! The store spawns its writer and reader tasks on the tokio runtime that calls
//! [`PgStore::connect`]; use it from that runtime.
//!
//! # Layout
//!
//! One table, `<schema>.checkpoints (partition, manager, key, version, bytes)`, primary
//! key `(partition, manager, key)`; the unpartitioned partition is stored as `''` (see
//! [`Partition::as_storage_str`](tenantry::Partition::as_storage_str)) and keys in their
//! stable encoding ([`Key::encoded`](tenantry::Key::encoded)). Durability on
//! acknowledgement relies on the server's `synchronous_commit` (on by default).
//!
//! # Tests
//!
//! The crate's tests run the shared store conformance suite, crash-safety and outage tests
//! against the server named by `TENANTRY_TEST_POSTGRES_URL` (each in a fresh schema that
//! is dropped afterwards), and are skipped, saying so, when it is not set.

mod batch;
mod conn;
mod error;
mod fence;
mod options;
mod schema;
mod store;

pub use error::PgError;
pub use fence::ShardOf;
pub use options::PgOptions;
pub use schema::SCHEMA_VERSION;
/// Connection settings (host, port, user, password, database, ...), for
/// [`PgStore::connect_with`] when a URL is not convenient.
pub use sqlx::postgres::PgConnectOptions;
pub use store::PgStore;
