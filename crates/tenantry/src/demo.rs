//! The reference multi-tenant application, used by the examples, the tests and the
//! server's built-in demo.
//!
//! A `tenant-db` factory instantiated once per tenant (`tenant-db-acme` with
//! `{"target": "acme"}`, ...), reading its database URL from the tenant's own config
//! subtree, a `mysql-db` factory serving `globex` under the same routing scheme, and the
//! standard providers.

use crate::component::{Component, NoParams, Runnables};
use crate::providers::{ConfigProvider, CredentialsProvider, LoggingProvider, StorageProvider};
use crate::{Context, Error, HandlerError, Runtime};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Params of `query`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The SQL to run.
    pub sql: String,
    /// Rows to return at most.
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    3
}

/// Reply of `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryResult {
    /// The instance that served it.
    pub instance: String,
    /// The tenant (its partition).
    pub tenant: String,
    /// The database URL it used, from the tenant's config.
    pub db_url: String,
    /// The SQL.
    pub sql: String,
    /// The rows (the tenant's own).
    pub rows: Vec<String>,
}

/// Reply of `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// Queries served by this instance.
    pub queries: u64,
}

fn run_query(
    engine: &str,
    queries: &mut u64,
    ctx: &mut Context,
    q: Query,
) -> Result<QueryResult, HandlerError> {
    let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
    let tenant = ctx.partition().name().unwrap_or("shared").to_owned();
    let db_url = config
        .get_str(&config.tenant_key("db_url"))
        .map_err(|e| HandlerError::new(e.to_string()))?
        .ok_or_else(|| {
            HandlerError::with_code("no_db_url", format!("no db_url configured for {tenant}"))
        })?;
    *queries += 1;
    Ok(QueryResult {
        instance: ctx.key().to_string(),
        tenant: tenant.clone(),
        db_url,
        sql: q.sql,
        rows: (1..=q.limit)
            .map(|i| format!("{engine}:{tenant}-row-{i}"))
            .collect(),
    })
}

/// A per-tenant database component (`tenant-db`).
pub struct TenantDb {
    queries: u64,
}

impl Component for TenantDb {
    const FACTORY: &'static str = "tenant-db";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &["IDatabase"]
    }

    fn requires() -> &'static [&'static str] {
        &["IConfig"]
    }

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self { queries: 0 })
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's database.",
            |db, ctx, q: Query| run_query("pg", &mut db.queries, ctx, q),
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |db, _, _: NoParams| {
                Ok(Status {
                    queries: db.queries,
                })
            },
        );
    }
}

/// A second database factory (`mysql-db`) under the same routing scheme.
pub struct MysqlDb {
    queries: u64,
}

impl Component for MysqlDb {
    const FACTORY: &'static str = "mysql-db";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &["IDatabase"]
    }

    fn requires() -> &'static [&'static str] {
        &["IConfig"]
    }

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self { queries: 0 })
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's MySQL database.",
            |db, ctx, q: Query| run_query("mysql", &mut db.queries, ctx, q),
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |db, _, _: NoParams| {
                Ok(Status {
                    queries: db.queries,
                })
            },
        );
    }
}

/// The tenants of the demo.
pub const TENANTS: [&str; 3] = ["acme", "globex", "initech"];

/// The config defaults of the demo: one database URL per tenant.
pub fn default_config() -> serde_json::Value {
    json!({
        "tenants": {
            "acme": {"db_url": "postgres://db1.prod/acme"},
            "globex": {"db_url": "postgres://db2.prod/globex"},
            "initech": {"db_url": "postgres://db3.prod/initech"}
        }
    })
}

/// Registers the demo factories and the standard providers on `runtime`, instantiates
/// the providers and one `tenant-db-<tenant>` per tenant plus `mysql-db-globex`, and
/// boots them.
pub async fn install(runtime: &Runtime) -> Result<crate::kernel::BootReport, Error> {
    let kernel = runtime.kernel();
    kernel.register::<ConfigProvider>()?;
    kernel.register::<CredentialsProvider>()?;
    kernel.register::<StorageProvider>()?;
    kernel.register::<LoggingProvider>()?;
    kernel.register::<TenantDb>()?;
    kernel.register::<MysqlDb>()?;
    kernel.instantiate("config", "config", json!({"defaults": default_config()}))?;
    kernel.instantiate("credentials", "credentials", json!({}))?;
    kernel.instantiate("storage", "storage", json!({}))?;
    kernel.instantiate("logging", "logging", json!({}))?;
    for tenant in TENANTS {
        kernel.instantiate(
            "tenant-db",
            &format!("tenant-db-{tenant}"),
            json!({"target": tenant}),
        )?;
    }
    kernel.instantiate("mysql-db", "mysql-db-globex", json!({"target": "globex"}))?;
    kernel.boot().await
}
