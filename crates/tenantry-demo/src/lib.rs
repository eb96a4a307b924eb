//! The demo application: the reference multi-tenant application that the examples, the
//! tests and the `tenantry` binary's built-in demo use.
//!
//! - [`components`]: `tenant-db` (one per tenant, `{"target": "acme"}`, its database URL a
//!   computed value over the tenant's config, reconnecting when it changes) and
//!   `mysql-db`, with the standard providers ([`install`] sets them all up);
//! - [`workspace`]: the `worker` agent and the `workspace` pod of two workers.
//!
//! It is kept out of the library and the server so that neither carries an application:
//! the server serves this one when it is given no other.

pub mod components;
pub mod workspace;

pub use components::{
    MAX_ROWS, MAX_SQL_CHARS, MysqlDb, Query, QueryResult, Status, TENANTS, TenantDb,
    default_config, install,
};
