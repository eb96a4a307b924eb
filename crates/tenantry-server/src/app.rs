//! The hosted application: the runtime, its factories, the tenants and their keys, and
//! the tenant lifecycle (boot, onboarding, offboarding, config writes).
//!
//! Tenants come from the settings (or the built-in demo) and from the durable
//! [`Registry`] of runtime onboardings; a restart on the same store brings back exactly
//! the tenants that were active, with their instances, config and key hashes.

use crate::application::Application;
use crate::cluster::ClusterPart;
use crate::error::ApiError;
use crate::keys::{self, KeyRing};
use crate::registry::{Registry, RegistryDoc};
use crate::settings::{InstanceSpec, Settings, StoreChoice, TenantSpec};
use crate::traffic::{Counted, Traffic};
use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tenantry::providers::{ConfigProvider, CredentialsProvider, LoggingProvider, StorageProvider};
use tenantry::store::{CheckpointStore, RedbStore};
use tenantry::{AnyManager, Partition, Runtime};
use tenantry_postgres::{PgOptions, PgStore};

/// The standard providers: instantiated once, unpartitioned, for every tenant.
const SHARED_PROVIDERS: [&str; 4] = ["config", "credentials", "storage", "logging"];

/// One active tenant.
#[derive(Debug, Clone)]
struct Tenant {
    spec: TenantSpec,
    onboarded: bool,
}

/// The tenants and the registry, changed under one lock.
struct Book {
    registry: Registry,
    tenants: BTreeMap<String, Tenant>,
}

/// A tenant as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TenantSummary {
    /// The partition.
    pub partition: String,
    /// `settings` or `onboarded`.
    pub source: &'static str,
    /// Its component instances.
    pub instances: Vec<String>,
    /// How many API keys it has.
    pub api_keys: usize,
}

/// An onboarding request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnboardRequest {
    /// The new partition.
    pub partition: String,
    /// Its config (becomes `tenants.<partition>`).
    #[serde(default)]
    pub config: Option<Value>,
    /// Component instances to create in it.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
    /// Take over the data a tenant of this name left when it was offboarded without
    /// purge (refused with 409 otherwise, so nobody inherits it by accident).
    #[serde(default)]
    pub restore: bool,
}

/// What an onboarding returns: the key, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct Onboarded {
    /// The partition.
    pub partition: String,
    /// The new API key.
    pub api_key: String,
    /// The instances created.
    pub instances: Vec<String>,
}

/// What an offboarding did.
#[derive(Debug, Clone, Serialize)]
pub struct Offboarded {
    /// The partition.
    pub partition: String,
    /// Component instances removed.
    pub removed_instances: Vec<String>,
    /// Keyed instances hibernated.
    pub hibernated: usize,
    /// Whether checkpoints, storage, credentials and config were deleted.
    pub purged: bool,
    /// Whether the partition's data stays in the store (offboarded without purge).
    pub retained: bool,
    /// Records deleted from the store (with `purge`).
    pub purged_records: u64,
}

/// The server's application state. Shared by every request.
pub struct App {
    /// The runtime.
    pub runtime: Runtime,
    /// API keys.
    pub keys: KeyRing,
    /// The settings it started with.
    pub settings: Settings,
    book: tokio::sync::Mutex<Book>,
    /// The active tenants' partitions (mirrors the book, for the synchronous checks of
    /// every request).
    active: std::sync::RwLock<HashSet<Partition>>,
    ready: AtomicBool,
    component_factories: Vec<String>,
    /// The node this server runs as (cluster mode).
    pub cluster: Option<ClusterPart>,
    /// The open event streams (`routes::events`).
    pub streams: Arc<crate::routes::events::Streams>,
    /// Each tenant's recent calls over HTTP.
    pub traffic: Traffic,
}

/// Opens the configured checkpoint store.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn CheckpointStore>> {
    Ok(match &settings.store {
        StoreChoice::Redb(path) => Arc::new(open_redb(path)?),
        StoreChoice::Postgres { url, schema } => Arc::new(open_pg(url, schema).await?),
    })
}

/// The PostgreSQL store at `url`, in `schema`.
async fn open_pg(url: &str, schema: &str) -> anyhow::Result<PgStore> {
    let options = PgOptions {
        schema: schema.to_owned(),
        ..PgOptions::default()
    };
    PgStore::connect(url, options)
        .await
        .context("connecting to PostgreSQL")
}

/// The redb store at `path`, creating its directory.
fn open_redb(path: &std::path::Path) -> anyhow::Result<RedbStore> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    RedbStore::open(path).with_context(|| format!("opening redb store {}", path.display()))
}

/// Properties with `target` set to `partition`; another target is refused.
fn with_target(properties: &Value, partition: &str) -> Result<Value, ApiError> {
    let mut map = match properties {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(ApiError::unprocessable(
                "invalid_properties",
                format!("properties must be a JSON object, not {other}"),
            ));
        }
    };
    match map.get("target") {
        None | Some(Value::Null) => {
            map.insert("target".into(), Value::String(partition.to_owned()));
        }
        Some(Value::String(t)) if t == partition => {}
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_properties",
                format!("property `target` must be the tenant's own partition {partition:?}"),
            ));
        }
    }
    Ok(Value::Object(map))
}

/// The tenants in effect: the settings' (less those offboarded), then the onboarded.
fn effective(settings: &[TenantSpec], doc: &RegistryDoc) -> BTreeMap<String, Tenant> {
    let mut out = BTreeMap::new();
    for spec in settings {
        if !doc.offboarded.contains(&spec.name) {
            out.insert(
                spec.name.clone(),
                Tenant {
                    spec: spec.clone(),
                    onboarded: false,
                },
            );
        }
    }
    for (name, spec) in &doc.onboarded {
        out.insert(
            name.clone(),
            Tenant {
                spec: spec.clone(),
                onboarded: true,
            },
        );
    }
    out
}

fn tenant_config_key(name: &str) -> String {
    format!("tenants.{name}")
}

impl App {
    /// [`App::open_application`] with the built-in demo application.
    pub async fn open(
        settings: Settings,
        store: Option<Arc<dyn CheckpointStore>>,
    ) -> anyhow::Result<Arc<App>> {
        Self::open_application(&Application::demo(), settings, store).await
    }

    /// Builds the runtime over `store` (or the configured one), registers the standard
    /// providers and `application`'s factories, creates every tenant's instances, boots
    /// them, and loads the keys.
    pub async fn open_application(
        application: &Application,
        settings: Settings,
        store: Option<Arc<dyn CheckpointStore>>,
    ) -> anyhow::Result<Arc<App>> {
        let (store, cluster) = match (store, &settings.cluster) {
            (Some(_), Some(_)) => {
                bail!("cluster mode opens its own PostgreSQL store (its writes are fenced)")
            }
            (Some(s), None) => (s, None),
            (None, None) => (open_store(&settings).await?, None),
            (None, Some(c)) => {
                let StoreChoice::Postgres { url, schema } = &settings.store else {
                    bail!("cluster mode needs the PostgreSQL store");
                };
                let pg = open_pg(url, schema).await?;
                let part = ClusterPart::new(c.clone(), &pg, application, &settings.managers);
                let store: Arc<dyn CheckpointStore> = Arc::new(part.store().clone());
                (store, Some(part))
            }
        };
        let runtime = Runtime::builder()
            .store_arc(store.clone())
            .metric_partition_labels(settings.metric_partition_labels)
            .build();
        runtime.quotas().set_capacity(settings.limits.capacity);
        let kernel = runtime.kernel();
        kernel.register::<ConfigProvider>()?;
        kernel.register::<CredentialsProvider>()?;
        kernel.register::<StorageProvider>()?;
        kernel.register::<LoggingProvider>()?;
        application.install(&runtime, &settings.managers)?;
        let component_factories = kernel.factories().into_iter().map(|f| f.name).collect();

        let registry = Registry::load(store)
            .await
            .context("reading the tenant registry")?;
        let tenants = effective(&settings.app.tenants, &registry.doc);

        let mut defaults = settings.app.shared_config.clone();
        if let Some(max) = settings.limits.max_live_instances_per_partition {
            // The file's `[limits]` spelling of every tenant's default `max_instances`.
            if let Some(limits) = defaults
                .entry("limits")
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
            {
                limits.entry("max_instances").or_insert(Value::from(max));
            }
        }
        let mut tenant_configs = match defaults.remove("tenants") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        for (name, t) in &tenants {
            tenant_configs.insert(name.clone(), t.spec.config.clone());
        }
        defaults.insert("tenants".into(), Value::Object(tenant_configs));
        kernel.instantiate("config", "config", json!({ "defaults": defaults }))?;
        kernel.instantiate("credentials", "credentials", json!({}))?;
        kernel.instantiate("storage", "storage", json!({}))?;
        kernel.instantiate("logging", "logging", json!({}))?;

        let keys = KeyRing::new(settings.admin_key.hash());
        for (name, t) in &tenants {
            let partition = Partition::new(name).with_context(|| format!("tenant {name:?}"))?;
            for inst in &t.spec.instances {
                let props = with_target(&inst.properties, name)
                    .map_err(|e| anyhow!("tenant {name}, instance {}: {}", inst.name, e.message))?;
                kernel
                    .instantiate(&inst.factory, &inst.name, props)
                    .with_context(|| format!("tenant {name}, instance {}", inst.name))?;
            }
            for h in &t.spec.api_keys_sha256 {
                let hash = keys::parse_hash_hex(h).with_context(|| format!("tenant {name}"))?;
                if !keys.add(hash, &partition) {
                    bail!("tenant {name}: an API key hash is already given to another holder");
                }
            }
        }
        // The saved writes before any instance runs: an instance's first effects and
        // computed values see them, never the file's values they replaced.
        for (key, value) in &registry.doc.config_writes {
            kernel.config().set(key, value.clone())?;
        }
        let report = kernel.boot().await?;
        if !report.failed.is_empty() || !report.blocked.is_empty() {
            bail!(
                "boot failed: failed {:?}, blocked {:?}",
                report.failed,
                report.blocked
            );
        }
        let active = tenants
            .keys()
            .filter_map(|name| Partition::new(name).ok())
            .collect();
        Ok(Arc::new(App {
            runtime,
            keys,
            settings,
            book: tokio::sync::Mutex::new(Book { registry, tenants }),
            active: std::sync::RwLock::new(active),
            ready: AtomicBool::new(false),
            component_factories,
            cluster,
            streams: Arc::default(),
            traffic: Traffic::default(),
        }))
    }

    /// Whether the server takes traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.cluster.as_ref().is_none_or(ClusterPart::serving)
    }

    /// Marks the server ready (after it listens) or not (at shutdown).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether `partition` is an active tenant.
    pub fn is_tenant(&self, partition: &Partition) -> bool {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(partition)
    }

    /// Starts counting a call of `partition` over HTTP (a partition its key may reach:
    /// a tenant's own, or an active one).
    pub fn count_call(&self, partition: &Partition) -> Counted {
        self.traffic.start(partition, |p| self.is_tenant(p))
    }

    fn set_active(&self, partition: &Partition, active: bool) {
        let mut set = self.active.write().unwrap_or_else(|e| e.into_inner());
        if active {
            set.insert(partition.clone());
        } else {
            set.remove(partition);
        }
    }

    /// The component factories a tenant's instances may be made of: every component
    /// factory but the shared providers, which belong to the whole runtime.
    pub fn tenant_factories(&self) -> Vec<&str> {
        self.component_factories
            .iter()
            .map(String::as_str)
            .filter(|f| !SHARED_PROVIDERS.contains(f))
            .collect()
    }

    /// The keyed (non-component) manager `name` (404 for any other name).
    pub fn keyed_manager(&self, name: &str) -> Result<Arc<dyn AnyManager>, ApiError> {
        self.runtime
            .manager_dyn(name)
            .filter(|_| !self.is_component_manager(name))
            .ok_or_else(|| ApiError::not_found(format!("no manager named {name:?}")))
    }

    /// Whether `name` is a component factory (its instances are the admin's to manage).
    pub fn is_component_manager(&self, name: &str) -> bool {
        self.component_factories.iter().any(|f| f == name)
    }

    /// The active tenants.
    pub async fn tenants(&self) -> Vec<TenantSummary> {
        let book = self.book.lock().await;
        book.tenants
            .iter()
            .map(|(name, t)| TenantSummary {
                partition: name.clone(),
                source: if t.onboarded { "onboarded" } else { "settings" },
                instances: t.spec.instances.iter().map(|i| i.name.clone()).collect(),
                api_keys: t.spec.api_keys_sha256.len(),
            })
            .collect()
    }

    /// Onboards a tenant: creates its config and instances, records it durably, and
    /// returns its new API key (shown this once). On any failure nothing of it remains.
    pub async fn onboard(&self, req: OnboardRequest) -> Result<Onboarded, ApiError> {
        let partition = Partition::new(&req.partition)
            .map_err(|e| ApiError::bad_request("invalid_partition", e.to_string()))?;
        let name = req.partition.clone();
        let config = match req.config {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => {
                return Err(ApiError::unprocessable(
                    "invalid_config",
                    "config must be a JSON object",
                ));
            }
        };
        crate::quota::check_tenant_config(Some(&config))?;
        let mut instances = Vec::with_capacity(req.instances.len());
        let factories = self.tenant_factories();
        for inst in &req.instances {
            if inst.properties.get("target").is_some() {
                return Err(ApiError::unprocessable(
                    "invalid_properties",
                    format!(
                        "instance {:?}: leave out `target`: an instance's target is its tenant's partition",
                        inst.name
                    ),
                ));
            }
            if !factories.contains(&inst.factory.as_str()) {
                return Err(ApiError::unprocessable(
                    "invalid_instance",
                    format!(
                        "factory {:?} cannot be instantiated for a tenant (one of: {})",
                        inst.factory,
                        factories.join(", ")
                    ),
                ));
            }
        }
        for inst in req.instances {
            let properties = with_target(&inst.properties, &name)?;
            instances.push(InstanceSpec { properties, ..inst });
        }
        self.catch_up().await;
        let mut book = self.book.lock().await;
        if book.tenants.contains_key(&name) {
            return Err(ApiError::conflict(format!(
                "partition {name:?} is already onboarded"
            )));
        }
        if book.registry.doc.retained.contains(&name) && !req.restore {
            return Err(ApiError::conflict(format!(
                "partition {name:?} holds data of a tenant offboarded without purge; \
                 onboard with \"restore\": true to take it over, or purge it first \
                 (DELETE /v1/admin/partitions/{name}?purge=true)"
            )));
        }
        let api_key = keys::generate("tk").map_err(|e| ApiError::internal(e.to_string()))?;
        let hash = keys::hash(&api_key);
        let spec = TenantSpec {
            name: name.clone(),
            api_keys_sha256: vec![keys::hash_hex(&api_key)],
            config,
            instances,
        };
        let added = self.start_tenant(&spec).await?;
        let mut doc = book.registry.doc.clone();
        doc.onboarded.insert(name.clone(), spec.clone());
        doc.offboarded.remove(&name);
        doc.retained.remove(&name);
        if let Err(e) = book.registry.save(doc).await {
            self.stop_tenant_instances(&name, &added).await;
            return Err(e.into());
        }
        if !self.keys.add(hash, &partition) {
            // A fresh random key colliding is not a thing that happens; refuse anyway.
            return Err(ApiError::internal("the new key collided; retry"));
        }
        book.tenants.insert(
            name.clone(),
            Tenant {
                spec,
                onboarded: true,
            },
        );
        self.set_active(&partition, true);
        drop(book);
        self.announce_registry();
        tracing::info!(partition = %name, instances = ?added, "tenant onboarded");
        Ok(Onboarded {
            partition: name,
            api_key,
            instances: added,
        })
    }

    /// Offboards a tenant: revokes its keys, removes its instances and hibernates its
    /// keyed instances; its data stays in the store (retained) unless `purge` deletes its
    /// checkpoints, storage, credentials and config. `purge` also clears the retained data
    /// of a partition offboarded earlier.
    pub async fn offboard(&self, name: &str, purge: bool) -> Result<Offboarded, ApiError> {
        let partition = Partition::new(name)
            .map_err(|e| ApiError::bad_request("invalid_partition", e.to_string()))?;
        self.catch_up().await;
        let mut book = self.book.lock().await;
        let active = book.tenants.contains_key(name);
        let retained = book.registry.doc.retained.contains(name);
        let purging_retained = purge && retained;
        if !active && !purging_retained {
            return Err(ApiError::not_found(if retained {
                format!("no active tenant {name:?}; purge=true deletes its retained data")
            } else {
                format!("no partition {name:?}")
            }));
        }
        // Recorded as retained first: until a purge has completed, the data is there.
        let mut doc = book.registry.doc.clone();
        doc.onboarded.remove(name);
        if self.settings.app.tenants.iter().any(|t| t.name == name) {
            doc.offboarded.insert(name.to_owned());
        }
        doc.retained.insert(name.to_owned());
        let config_key = tenant_config_key(name);
        if purge {
            let prefix = format!("{config_key}.");
            doc.config_writes
                .retain(|k, _| k != &config_key && !k.starts_with(&prefix));
        }
        book.registry.save(doc).await?;
        if let Some(node) = self.cluster.as_ref().and_then(|c| c.node()) {
            // A placement outlives no tenant: one onboarded later under the name starts
            // unpinned.
            match node.unpin(name).await {
                Ok(_) | Err(tenantry_cluster::ClusterError::NotPinned(_)) => {}
                Err(e) => {
                    tracing::warn!(partition = name, error = %e, "unpinning an offboarded tenant failed")
                }
            }
        }
        let (removed_instances, hibernated) = if active {
            book.tenants.remove(name);
            self.runtime.quotas().forget(&partition);
            // Its keys are gone: so are its open event streams.
            self.streams.close_partition(&partition);
            self.retire_tenant(&partition).await
        } else {
            (Vec::new(), 0)
        };
        let kernel = self.runtime.kernel();
        let mut purged_records = 0;
        if purge {
            if let Some(cluster) = &self.cluster {
                // Every other node retires the tenant first (the registry saved above
                // says it is gone), so none writes after the delete.
                let silent = cluster.sync_everywhere().await;
                if !silent.is_empty() {
                    tracing::warn!(partition = %name, ?silent, "members did not confirm the offboarding before the purge");
                }
            }
            purged_records = self.runtime.store().purge_partition(&partition).await?;
            kernel.credentials().purge_partition(&partition);
            let _ = kernel.config().set(&config_key, Value::Null);
            let mut doc = book.registry.doc.clone();
            doc.retained.remove(name);
            book.registry.save(doc).await?;
        }
        drop(book);
        self.announce_registry();
        tracing::info!(partition = %name, purge, "tenant offboarded");
        Ok(Offboarded {
            partition: name.to_owned(),
            removed_instances,
            hibernated,
            purged: purge,
            retained: !purge,
            purged_records,
        })
    }

    /// Writes a config value at runtime (reactive: instances see it on their next read)
    /// and records it so a restart replays it.
    pub async fn set_config(&self, key: &str, value: Value) -> Result<(), ApiError> {
        let config = self.runtime.kernel().config().clone();
        config
            .get(key)
            .map_err(|e| ApiError::bad_request("invalid_config_key", e.to_string()))?;
        crate::quota::check_limits_write(&config, key, &value)?;
        self.catch_up().await;
        let mut book = self.book.lock().await;
        let mut doc = book.registry.doc.clone();
        doc.config_writes.insert(key.to_owned(), value.clone());
        book.registry.save(doc).await?;
        config
            .set(key, value)
            .map_err(|e| ApiError::bad_request("invalid_config_key", e.to_string()))?;
        drop(book);
        self.announce_registry();
        Ok(())
    }

    /// Starts a tenant's part in this process: its config subtree and its component
    /// instances (all or none). Returns the instances added.
    async fn start_tenant(&self, spec: &TenantSpec) -> Result<Vec<String>, ApiError> {
        let kernel = self.runtime.kernel();
        kernel
            .config()
            .set(&tenant_config_key(&spec.name), spec.config.clone())
            .map_err(|e| ApiError::bad_request("invalid_partition", e.to_string()))?;
        let mut added: Vec<String> = Vec::new();
        for inst in &spec.instances {
            if let Err(e) = kernel
                .hot_add(&inst.factory, &inst.name, inst.properties.clone())
                .await
            {
                self.stop_tenant_instances(&spec.name, &added).await;
                return Err(e.into());
            }
            added.push(inst.name.clone());
        }
        Ok(added)
    }

    /// Undoes [`App::start_tenant`]: removes `instances` and the tenant's config subtree.
    async fn stop_tenant_instances(&self, name: &str, instances: &[String]) {
        let kernel = self.runtime.kernel();
        for n in instances {
            let _ = kernel.hot_remove(n).await;
        }
        let _ = kernel.config().set(&tenant_config_key(name), Value::Null);
    }

    /// Ends a tenant's part in this process: no request of it is taken any more, its keys
    /// are revoked, its component instances removed and its live agents hibernated.
    /// Returns the instances removed and the agents hibernated.
    async fn retire_tenant(&self, partition: &Partition) -> (Vec<String>, usize) {
        self.set_active(partition, false);
        self.traffic.forget(partition);
        self.keys.revoke_partition(partition);
        let kernel = self.runtime.kernel();
        let mut removed = Vec::new();
        for info in kernel.instances() {
            if &info.partition == partition {
                match kernel.hot_remove(&info.name).await {
                    Ok(()) => removed.push(info.name),
                    Err(e) => tracing::warn!(instance = %info.name, error = %e, "remove failed"),
                }
            }
        }
        let report = self.runtime.stop_partition(partition).await;
        for e in &report.errors {
            tracing::warn!(%partition, error = %e, "hibernation at offboarding failed");
        }
        (removed, report.stopped)
    }

    /// In cluster mode, catches up with the registry before changing it, so a change
    /// made on another node moments ago is neither missed nor refused as a conflict.
    async fn catch_up(&self) {
        if self.cluster.is_some() {
            if let Err(e) = self.sync_registry().await {
                tracing::warn!(error = %e, "reading the tenant registry failed");
            }
        }
    }

    /// Tells the other nodes of the cluster that the tenant registry changed.
    fn announce_registry(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.announce_registry();
        }
    }

    /// Brings this process up to the tenant registry in the store (cluster mode: another
    /// node onboarded or offboarded a tenant, or wrote config): starts the tenants added,
    /// retires those gone, applies the config writes that changed.
    pub async fn sync_registry(&self) -> anyhow::Result<()> {
        let mut book = self.book.lock().await;
        if !book.registry.reload().await? {
            return Ok(());
        }
        let old = std::mem::take(&mut book.tenants);
        let new = effective(&self.settings.app.tenants, &book.registry.doc);
        // A tenant gone, or offboarded and onboarded again since the last read (new keys,
        // instances, config): its part here ends first.
        let changed = |name: &String| new.get(name).is_none_or(|t| t.spec != old[name].spec);
        for name in old.keys().filter(|n| changed(n)) {
            let partition = Partition::new(name).with_context(|| format!("tenant {name:?}"))?;
            self.retire_tenant(&partition).await;
            tracing::info!(partition = %name, "tenant offboarded on another node");
        }
        // The config written since, before the tenants added start (see
        // `App::open_application`).
        // A write already in force is a no-op of `set`.
        for (key, value) in &book.registry.doc.config_writes {
            let _ = self.runtime.kernel().config().set(key, value.clone());
        }
        for (name, tenant) in &new {
            if old.get(name).is_some_and(|t| t.spec == tenant.spec) {
                continue;
            }
            let partition = Partition::new(name).with_context(|| format!("tenant {name:?}"))?;
            if let Err(e) = self.start_tenant(&tenant.spec).await {
                tracing::warn!(partition = %name, error = %e.message, "starting an onboarded tenant failed");
                continue;
            }
            for h in &tenant.spec.api_keys_sha256 {
                if let Ok(hash) = keys::parse_hash_hex(h) {
                    self.keys.add(hash, &partition);
                }
            }
            self.set_active(&partition, true);
            tracing::info!(partition = %name, "tenant onboarded on another node");
        }
        book.tenants = new;
        Ok(())
    }

    /// Reads a config value.
    pub fn get_config(&self, key: &str) -> Result<Option<Value>, ApiError> {
        self.runtime
            .kernel()
            .config()
            .get(key)
            .map_err(|e| ApiError::bad_request("invalid_config_key", e.to_string()))
    }
}
