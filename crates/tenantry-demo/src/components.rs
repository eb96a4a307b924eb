//! The demo's components: a `tenant-db` per tenant and a `mysql-db`, reading their
//! database URL from the tenant's own config, with the standard providers.
//!
//! A `tenant-db` factory instantiated once per tenant (`tenant-db-acme` with
//! `{"target": "acme"}`, ...), reading its database URL from the tenant's own config
//! subtree, a `mysql-db` factory serving `globex` under the same routing scheme, and the
//! standard providers.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use tenantry::component::{Component, NoParams, Runnables};
use tenantry::params::{Bounded, BoundedText};
use tenantry::providers::{
    ConfigProvider, CredentialsProvider, LoggingProvider, StorageProvider, contracts,
};
use tenantry::reactive::Computed;
use tenantry::{Context, Error, HandlerError, Runtime};

/// The contract of the demo's databases.
pub const DATABASE: &str = "IDatabase";

/// Params of `query`. Every size is bounded: a request cannot make the component build
/// more than [`MAX_ROWS`] rows of [`MAX_SQL_CHARS`] characters of SQL.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// The SQL to run.
    pub sql: BoundedText<MAX_SQL_CHARS>,
    /// Rows to return at most (1 to 100, default 3).
    #[serde(default = "default_limit")]
    pub limit: Bounded<1, MAX_ROWS>,
}

/// The longest SQL text `query` takes, in characters.
pub const MAX_SQL_CHARS: usize = 4096;
/// The most rows `query` returns.
pub const MAX_ROWS: u64 = 100;

fn default_limit() -> Bounded<1, MAX_ROWS> {
    Bounded::clamped(3)
}

/// Reply of `query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct QueryResult {
    /// The instance that served it (shared with the instance, not copied per query).
    pub instance: Arc<str>,
    /// The tenant, its partition (shared likewise).
    pub tenant: Arc<str>,
    /// The database URL it used, from the tenant's config (shared with the instance's
    /// computed value, not copied per query).
    pub db_url: Arc<str>,
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

/// What both database components share: a reactive `db_url` over the tenant's own
/// config, and a query counter.
struct Db {
    engine: &'static str,
    /// The instance's and its tenant's names, made once: every reply carries them.
    instance: Arc<str>,
    tenant: Arc<str>,
    queries: u64,
    db_url: Computed<Arc<str>>,
}

impl Db {
    fn new(engine: &'static str, ctx: &Context) -> Result<Self, HandlerError> {
        let config = ctx.config().map_err(|e| HandlerError::new(e.to_string()))?;
        let key = config.tenant_key("db_url");
        Ok(Self {
            engine,
            instance: Arc::from(ctx.key().encoded()),
            tenant: Arc::from(ctx.partition().name().unwrap_or("shared")),
            queries: 0,
            db_url: ctx.computed(move || {
                config
                    .get_shared_str(&key)
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            }),
        })
    }

    fn query(&mut self, q: Query) -> Result<QueryResult, HandlerError> {
        let tenant = &self.tenant;
        let db_url = self.db_url.get();
        if db_url.is_empty() {
            return Err(HandlerError::conflict(
                "no_db_url",
                format!("no db_url configured for {tenant}"),
            ));
        }
        self.queries += 1;
        // `engine:tenant-row-N`, built without the formatting machinery (this is the
        // demo's hot path).
        let rows = (1..=q.limit.get())
            .map(|i| {
                let mut digits = [0; 20];
                let parts = [self.engine, ":", tenant, "-row-", itoa(i, &mut digits)];
                let mut row = String::with_capacity(parts.iter().map(|p| p.len()).sum());
                parts.iter().for_each(|p| row.push_str(p));
                row
            })
            .collect();
        Ok(QueryResult {
            instance: self.instance.clone(),
            tenant: tenant.clone(),
            db_url,
            sql: q.sql.into_string(),
            rows,
        })
    }

    fn status(&self, reconnects: u64, connected_to: &str) -> Status {
        Status {
            queries: self.queries,
            db_url_computations: self.db_url.runs(),
            reconnects,
            connected_to: connected_to.to_owned(),
        }
    }
}

/// `n` in decimal, written into `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// A per-tenant database component (`tenant-db`): its `db_url` is a computed value over
/// the tenant's config, and an effect reconnects when it changes.
pub struct TenantDb {
    db: Db,
    /// Shared with `db_url`'s value: a reconnect copies nothing.
    connected_to: Arc<str>,
    reconnects: u64,
}

impl Component for TenantDb {
    const FACTORY: &'static str = "tenant-db";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[DATABASE]
    }

    fn requires() -> &'static [&'static str] {
        &[contracts::CONFIG]
    }

    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            db: Db::new("pg", ctx)?,
            connected_to: Arc::default(),
            reconnects: 0,
        })
    }

    async fn activate(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        let url = self.db.db_url.clone();
        ctx.effect(move |this: &mut TenantDb, _| {
            let next = url.get();
            if !this.connected_to.is_empty() && *this.connected_to != *next {
                this.reconnects += 1;
            }
            this.connected_to = next;
            Ok(())
        });
        Ok(())
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's database.",
            |this, _, q: Query| this.db.query(q),
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |this, _, _: NoParams| Ok(this.db.status(this.reconnects, &this.connected_to)),
        );
    }
}

/// A second database factory (`mysql-db`) under the same routing scheme.
pub struct MysqlDb {
    db: Db,
}

impl Component for MysqlDb {
    const FACTORY: &'static str = "mysql-db";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[DATABASE]
    }

    fn requires() -> &'static [&'static str] {
        &[contracts::CONFIG]
    }

    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        Ok(Self {
            db: Db::new("mysql", ctx)?,
        })
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "query",
            "Runs a query on this tenant's MySQL database.",
            |this, _, q: Query| this.db.query(q),
        );
        r.runnable(
            "status",
            "Counts the queries this instance served.",
            |this, _, _: NoParams| Ok(this.db.status(0, "")),
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
pub async fn install(runtime: &Runtime) -> Result<tenantry::kernel::BootReport, Error> {
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
