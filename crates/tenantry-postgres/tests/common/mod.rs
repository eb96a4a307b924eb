//! Shared by the PostgreSQL tests: the server URL from the environment, a fresh schema
//! per test (dropped when the test ends, also when it fails), and a counter factory.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use tenantry::schemars::JsonSchema;
use tenantry::store::CheckpointStore;
use tenantry::{Context, Factory, Handler, HandlerError, Handlers, Identity, Message};
use tenantry_postgres::{PgOptions, PgStore};

/// The variable naming the test server.
pub const URL_VAR: &str = "TENANTRY_TEST_POSTGRES_URL";

/// The test server's URL, or `None` after saying plainly that the test is skipped.
pub fn test_url() -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {URL_VAR} is not set");
            None
        }
    }
}

/// A random 64-bit number (no extra dependency: std's hasher keys are random).
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A schema name no other run uses.
pub fn fresh_schema(tag: &str) -> String {
    format!("tenantry_test_{tag}_{:016x}", random_u64())
}

/// Drops `schema` and everything in it.
pub async fn drop_schema(url: &str, schema: &str) {
    if let Err(e) = PgStore::drop_schema(url, schema).await {
        eprintln!("could not drop test schema {schema}: {e}");
    }
}

/// A fresh schema on the test server, dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pub schema: String,
}

impl TestDb {
    /// `None` (after printing why) when no test server is configured.
    pub fn new(tag: &str) -> Option<Self> {
        let url = test_url()?;
        Some(Self {
            url,
            schema: fresh_schema(tag),
        })
    }

    /// Options for this test's schema, with short timeouts.
    pub fn options(&self) -> PgOptions {
        PgOptions {
            schema: self.schema.clone(),
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(20),
            ..PgOptions::default()
        }
    }

    /// A store on this test's schema.
    pub async fn store(&self) -> PgStore {
        PgStore::connect(&self.url, self.options())
            .await
            .unwrap_or_else(|e| panic!("connect to the test server: {e}"))
    }

    /// The same, as a shared trait object.
    pub async fn store_arc(&self) -> Arc<dyn CheckpointStore> {
        Arc::new(self.store().await)
    }

    /// A plain connection for looking behind the store's back.
    pub async fn raw(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("raw connection: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop the schema from a runtime of its own: this runs inside the test's runtime,
        // maybe while it unwinds.
        let dropper = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_schema(&url, &schema));
            }
        });
        let _ = dropper.join();
    }
}

/// A counter whose state carries a payload, for runtime round trips.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counter {
    pub count: u64,
    pub payload: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "tenantry::schemars")]
pub struct Increment;
impl Message for Increment {
    const NAME: &'static str = "increment";
    type Reply = u64;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "tenantry::schemars")]
pub struct Get;
impl Message for Get {
    const NAME: &'static str = "get";
    type Reply = u64;
}

impl Factory for Counter {
    const NAME: &'static str = "counter";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Increment>().add::<Get>();
    }
}

impl Handler<Increment> for Counter {
    async fn handle(&mut self, _: Increment, _: &mut Context) -> Result<u64, HandlerError> {
        self.count += 1;
        Ok(self.count)
    }
}

impl Handler<Get> for Counter {
    async fn handle(&mut self, _: Get, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.count)
    }
}
