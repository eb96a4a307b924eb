//! The reference multi-tenant application, used by the examples, the tests and the
//! server's built-in demo.
//!
//! A `tenant-db` factory instantiated once per tenant (`tenant-db-acme` with
//! `{"target": "acme"}`, ...), reading its database URL from the tenant's own config
//! subtree, a `mysql-db` factory serving `globex` under the same routing scheme, and the
//! standard providers.

use crate::component::{Component, NoParams, Runnables};
use crate::providers::{ConfigProvider, CredentialsProvider, LoggingProvider, StorageProvider};
use crate::reactive::Computed;
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
    /// How many times its `db_url` computed value ran.
    #[serde(default)]
    pub db_url_computations: u64,
    /// How many times its connection effect reconnected after the first connect.
    #[serde(default)]
    pub reconnects: u64,
    /// The URL it is connected to.
    #[serde(default)]
    pub connected_to: String,
}

/// This tenant's `db_url` from its own config subtree, as a reactive computed value.
fn db_url(ctx: &Context) -> Result<Computed<String>, HandlerError> {
    let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
    let key = config.tenant_key("db_url");
    Ok(ctx.computed(move || config.get_str(&key).ok().flatten().unwrap_or_default()))
}

fn run_query(
    engine: &str,
    db_url: String,
    queries: &mut u64,
    ctx: &mut Context,
    q: Query,
) -> Result<QueryResult, HandlerError> {
    let tenant = ctx.partition().name().unwrap_or("shared").to_owned();
    if db_url.is_empty() {
        return Err(HandlerError::with_code(
            "no_db_url",
            format!("no db_url configured for {tenant}"),
        ));
    }
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

/// A per-tenant database component (`tenant-db`): its `db_url` is a computed value over
/// the tenant's config, and an effect reconnects when it changes.
pub struct TenantDb {
    queries: u64,
    db_url: Computed<String>,
    connected_to: String,
    reconnects: u64,
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

    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            queries: 0,
            db_url: db_url(ctx)?,
            connected_to: String::new(),
            reconnects: 0,
        })
    }

    async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        let url = self.db_url.clone();
        ctx.effect(move |db: &mut TenantDb, _| {
            let next = url.get();
            if !db.connected_to.is_empty() && db.connected_to != next {
                db.reconnects += 1;
            }
            db.connected_to = next;
            Ok(())
        });
        Ok(())
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's database.",
            |db, ctx, q: Query| {
                let url = db.db_url.get();
                run_query("pg", url, &mut db.queries, ctx, q)
            },
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |db, _, _: NoParams| {
                Ok(Status {
                    queries: db.queries,
                    db_url_computations: db.db_url.runs(),
                    reconnects: db.reconnects,
                    connected_to: db.connected_to.clone(),
                })
            },
        );
    }
}

/// A second database factory (`mysql-db`) under the same routing scheme.
pub struct MysqlDb {
    queries: u64,
    db_url: Computed<String>,
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

    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            queries: 0,
            db_url: db_url(ctx)?,
        })
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's MySQL database.",
            |db, ctx, q: Query| {
                let url = db.db_url.get();
                run_query("mysql", url, &mut db.queries, ctx, q)
            },
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |db, _, _: NoParams| {
                Ok(Status {
                    queries: db.queries,
                    db_url_computations: db.db_url.runs(),
                    reconnects: 0,
                    connected_to: String::new(),
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
