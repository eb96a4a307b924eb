//! Server settings: the TOML config file, environment overrides, and defaults.
//!
//! Precedence, highest first: command-line flags, environment variables, the config file,
//! built-in defaults. With no config file the server runs the built-in demo application
//! (see [`AppSpec::builtin_demo`]). API keys appear in settings only as SHA-256 hashes,
//! except the admin key, which may come in plain from `TENANTRY_ADMIN_KEY`.

use crate::keys;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./tenantry-data";
/// The default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Calls in flight per core above which the process counts as saturated, by default.
pub const DEFAULT_CAPACITY_PER_CORE: u64 = 128;

/// The cores this process may use.
fn cores() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}
/// The plain API keys of the built-in demo tenants (`demo-<tenant>-key`), printed at start.
pub fn demo_key(tenant: &str) -> String {
    format!("demo-{tenant}-key")
}

/// A settings error: a file that does not read or parse, or a value out of range.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// The config file, as written (every section optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`.
    pub server: ServerSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[metrics]`.
    pub metrics: MetricsSection,
    /// `[limits]`.
    pub limits: LimitsSection,
    /// `[cluster]`: run as a node of a cluster.
    pub cluster: ClusterSection,
    /// `[managers.<name>]`: per-manager settings.
    pub managers: BTreeMap<String, ManagerSection>,
    /// `[config]`: the shared application config (tenants' subtrees come from `[[tenants]]`).
    pub config: Map<String, Value>,
    /// `[[tenants]]`.
    pub tenants: Vec<TenantSpec>,
    /// Also run the built-in demo tenants (default false when a file is given).
    pub demo: bool,
}

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Listen address.
    pub listen: Option<String>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// SHA-256 (hex) of the admin key.
    pub admin_key_sha256: Option<String>,
    /// Log format: `plain` or `json`.
    pub log_format: Option<LogFormat>,
    /// How long in-flight requests may take to finish at shutdown, in seconds.
    pub shutdown_grace_secs: Option<u64>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// A PostgreSQL URL; when set, checkpoints live there instead of in redb.
    pub postgres_url: Option<String>,
    /// The PostgreSQL schema (default `tenantry`).
    pub postgres_schema: Option<String>,
    /// The redb file (default `<data dir>/checkpoints.redb`).
    pub redb_path: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Whether metrics carry a `partition` label (default true).
    pub partition_labels: Option<bool>,
    /// SHA-256 (hex) of a token that may read `/metrics` (for a Prometheus scraper; the
    /// admin key may always). `TENANTRY_METRICS_TOKEN` gives it in plain.
    pub token_sha256: Option<String>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest request body, in bytes (default 1 MiB).
    pub body_limit_bytes: Option<usize>,
    /// Every tenant's default `max_instances` (live agents and pods, across managers;
    /// the least recently used idle ones hibernate at the cap), unless the config's
    /// `limits` sets it (default: no limit).
    pub max_live_instances_per_partition: Option<usize>,
    /// Calls in flight above which the process counts as saturated and holds each
    /// tenant to its weighted share (default: 128 per core; 0: never).
    pub capacity: Option<u64>,
}

/// `[cluster]`: cluster mode (needs the PostgreSQL store).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The NATS server (`nats://host:4222`); setting it turns cluster mode on.
    pub nats_url: Option<String>,
    /// This node's name, unique in the cluster (a-z, 0-9, '-', '_').
    pub node: Option<String>,
    /// The cluster's name (default `tenantry`): its buckets and subjects.
    pub name: Option<String>,
    /// The shard count, fixed when the cluster is first created (default 1,024).
    pub shards: Option<u32>,
    /// The membership lease, in milliseconds (default 3,000).
    pub lease_ms: Option<u64>,
}

/// `[managers.<name>]`: settings of one keyed manager.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagerSection {
    /// Hibernate instances idle this long, in seconds (default: never).
    pub idle_timeout_secs: Option<f64>,
    /// Mailbox capacity per instance.
    pub mailbox_capacity: Option<usize>,
    /// Default call timeout, in milliseconds.
    pub call_timeout_ms: Option<u64>,
    /// When state reaches the store: `every_turn` (the server's default: a reply means
    /// the turn is durable) or `on_hibernate` (faster; a crash loses what was not yet
    /// hibernated).
    pub durability: Option<tenantry::Durability>,
    /// Cluster mode: how its instances map to shards, `pod` (the default: by key, and a
    /// pod's nodes with their pod), `key`, or `tenant` (the whole partition on one
    /// shard).
    pub routing: Option<tenantry::cluster::Routing>,
}

/// A tenant: its partition name, key hashes, config subtree and component instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    /// The partition name.
    pub name: String,
    /// SHA-256 (hex) of each API key of this tenant.
    #[serde(default)]
    pub api_keys_sha256: Vec<String>,
    /// The tenant's config (becomes `tenants.<name>` in the runtime config).
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Component instances to create in this partition.
    #[serde(default)]
    pub instances: Vec<InstanceSpec>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// A component instance to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// The factory (`tenant-db`, `mysql-db`).
    pub factory: String,
    /// The instance name (unique in the server).
    pub name: String,
    /// Its properties; `target` is set to the tenant's partition.
    #[serde(default = "empty_object")]
    pub properties: Value,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Where checkpoints live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded redb file.
    Redb(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The URL.
        url: String,
        /// The schema.
        schema: String,
    },
}

/// Where the admin key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKey {
    /// Given in plain (`TENANTRY_ADMIN_KEY`).
    Plain(String),
    /// Given as a SHA-256 hash (the config file).
    Hashed([u8; 32]),
    /// Generated at start; printed once.
    Generated(String),
}

impl AdminKey {
    /// The key's hash.
    pub fn hash(&self) -> [u8; 32] {
        match self {
            AdminKey::Plain(k) | AdminKey::Generated(k) => keys::hash(k),
            AdminKey::Hashed(h) => *h,
        }
    }
}

/// Cluster mode, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// The NATS server.
    pub nats_url: String,
    /// This node's name.
    pub node: String,
    /// The cluster's name.
    pub name: String,
    /// The shard count.
    pub shards: tenantry::cluster::ShardCount,
    /// The membership lease.
    pub lease: Duration,
}

/// The default shard count of a new cluster.
pub const DEFAULT_SHARDS: u32 = 1024;

/// Limits enforced by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Every tenant's default `max_instances`, unless the config sets one (`None`: none).
    pub max_live_instances_per_partition: Option<usize>,
    /// Calls in flight above which the process is saturated (`None`: never).
    pub capacity: Option<u64>,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

/// The application the server hosts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppSpec {
    /// The shared config tree.
    pub shared_config: Map<String, Value>,
    /// The tenants declared in settings.
    pub tenants: Vec<TenantSpec>,
    /// Whether this is the built-in demo (its keys are printed at start).
    pub builtin_demo: bool,
}

impl AppSpec {
    /// The built-in demo: `acme`, `globex` and `initech`, each with a `tenant-db`
    /// instance (and `mysql-db-globex`), the demo's database URLs, the keys
    /// `demo-<tenant>-key`, and a request rate limit on `initech` (1,000 calls/s, bursts
    /// of 200).
    pub fn builtin_demo() -> Self {
        let urls = tenantry_demo::default_config();
        let tenants = tenantry_demo::TENANTS
            .iter()
            .map(|t| {
                let mut instances = vec![InstanceSpec {
                    factory: "tenant-db".into(),
                    name: format!("tenant-db-{t}"),
                    properties: json!({"target": t}),
                }];
                if *t == "globex" {
                    instances.push(InstanceSpec {
                        factory: "mysql-db".into(),
                        name: "mysql-db-globex".into(),
                        properties: json!({"target": "globex"}),
                    });
                }
                let mut config = urls
                    .pointer(&format!("/tenants/{t}"))
                    .cloned()
                    .unwrap_or_else(empty_object);
                if *t == "initech" {
                    // The quickstart shows throttling on initech; acme and globex keep
                    // the defaults (no limit), so benchmarks on them measure the runtime.
                    config["limits"] = json!({"rate_per_sec": 1000, "burst": 200});
                }
                TenantSpec {
                    name: (*t).to_owned(),
                    api_keys_sha256: vec![keys::hash_hex(&demo_key(t))],
                    config,
                    instances,
                }
            })
            .collect();
        Self {
            shared_config: Map::new(),
            tenants,
            builtin_demo: true,
        }
    }
}

/// Everything the server runs with, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Checkpoint store.
    pub store: StoreChoice,
    /// Cluster mode (`None`: a single process).
    pub cluster: Option<ClusterSettings>,
    /// The admin key.
    pub admin_key: AdminKey,
    /// Whether metrics carry partition labels.
    pub metric_partition_labels: bool,
    /// The hash of the token that may read `/metrics` besides the admin key.
    pub metrics_token: Option<[u8; 32]>,
    /// Gateway limits.
    pub limits: Limits,
    /// Per-manager settings.
    pub managers: BTreeMap<String, ManagerSection>,
    /// The hosted application.
    pub app: AppSpec,
    /// Log format.
    pub log_format: LogFormat,
}

/// What the command line gives (each `None` falls back to env, file, default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--cluster`: the NATS URL.
    pub cluster: Option<String>,
    /// `--node`.
    pub node: Option<String>,
}

/// Cluster mode from the flags, the environment (`TENANTRY_CLUSTER`, `TENANTRY_NODE`,
/// `TENANTRY_CLUSTER_NAME`) and `[cluster]`; it needs a node name and PostgreSQL.
fn cluster_settings(
    flag_url: &Option<String>,
    flag_node: &Option<String>,
    env: &impl Fn(&str) -> Option<String>,
    file: &ClusterSection,
    store: &StoreChoice,
) -> Result<Option<ClusterSettings>, SettingsError> {
    let nats_url = flag_url
        .clone()
        .or_else(|| env("TENANTRY_CLUSTER"))
        .or(file.nats_url.clone())
        .filter(|u| !u.is_empty());
    let node = flag_node
        .clone()
        .or_else(|| env("TENANTRY_NODE"))
        .or(file.node.clone());
    let Some(nats_url) = nats_url else {
        if node.is_some() {
            return Err(SettingsError(
                "--node names a cluster node: give the cluster's NATS URL with --cluster".into(),
            ));
        }
        return Ok(None);
    };
    let Some(node) = node else {
        return Err(SettingsError(
            "cluster mode needs this node's name: --node NAME (or TENANTRY_NODE)".into(),
        ));
    };
    if !matches!(store, StoreChoice::Postgres { .. }) {
        return Err(SettingsError(
            "cluster mode needs the PostgreSQL store: set [store] postgres_url (or \
             TENANTRY_POSTGRES_URL); its shard fences keep a former owner from writing"
                .into(),
        ));
    }
    let shards = file.shards.unwrap_or(DEFAULT_SHARDS);
    let shards = tenantry::cluster::ShardCount::new(shards)
        .ok_or_else(|| SettingsError(format!("cluster.shards: {shards} is not a shard count")))?;
    let lease_ms = file.lease_ms.unwrap_or(3_000);
    if !(500..=60_000).contains(&lease_ms) {
        return Err(SettingsError(format!(
            "cluster.lease_ms: {lease_ms} is outside 500 to 60,000"
        )));
    }
    Ok(Some(ClusterSettings {
        nats_url,
        node,
        name: env("TENANTRY_CLUSTER_NAME")
            .or(file.name.clone())
            .unwrap_or_else(|| "tenantry".to_owned()),
        shards,
        lease: Duration::from_millis(lease_ms),
    }))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, SettingsError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingsError(format!(
            "{name}: expected true or false, got {v:?}"
        ))),
    }
}

impl Settings {
    /// Resolves settings from command-line overrides, an environment lookup
    /// (`TENANTRY_*` variables) and the config file (if any).
    pub fn resolve(
        cli: Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let config_path = cli
            .config
            .clone()
            .or_else(|| env("TENANTRY_CONFIG").map(PathBuf::from));
        let file = match &config_path {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        Self::from_parts(cli, env, file)
    }

    /// Resolves settings from an already parsed config file (`None`: the built-in demo).
    pub fn from_parts(
        cli: Overrides,
        env: impl Fn(&str) -> Option<String>,
        file: Option<FileConfig>,
    ) -> Result<Self, SettingsError> {
        let has_file = file.is_some();
        let file = file.unwrap_or_default();
        let listen = cli
            .listen
            .or_else(|| env("TENANTRY_LISTEN"))
            .or(file.server.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let data_dir = cli
            .data_dir
            .or_else(|| env("TENANTRY_DATA_DIR").map(PathBuf::from))
            .or(file.server.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let log_format = match (cli.log_format, env("TENANTRY_LOG_FORMAT")) {
            (Some(f), _) => f,
            (None, Some(v)) => match v.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "plain" | "text" => LogFormat::Plain,
                other => {
                    return Err(SettingsError(format!(
                        "TENANTRY_LOG_FORMAT: expected plain or json, got {other:?}"
                    )));
                }
            },
            (None, None) => file.server.log_format.unwrap_or_default(),
        };
        let store = match env("TENANTRY_POSTGRES_URL").or(file.store.postgres_url.clone()) {
            Some(url) => StoreChoice::Postgres {
                url,
                schema: env("TENANTRY_POSTGRES_SCHEMA")
                    .or(file.store.postgres_schema.clone())
                    .unwrap_or_else(|| "tenantry".to_owned()),
            },
            None => StoreChoice::Redb(
                file.store
                    .redb_path
                    .clone()
                    .unwrap_or_else(|| data_dir.join("checkpoints.redb")),
            ),
        };
        let cluster = cluster_settings(&cli.cluster, &cli.node, &env, &file.cluster, &store)?;
        let admin_key = match (env("TENANTRY_ADMIN_KEY"), &file.server.admin_key_sha256) {
            (Some(k), _) if !k.is_empty() => AdminKey::Plain(k),
            (_, Some(h)) => AdminKey::Hashed(
                keys::parse_hash_hex(h)
                    .map_err(|e| SettingsError(format!("server.admin_key_sha256: {e}")))?,
            ),
            _ => AdminKey::Generated(
                keys::generate("tka").map_err(|e| SettingsError(e.to_string()))?,
            ),
        };
        let metric_partition_labels = match env("TENANTRY_METRICS_PARTITION_LABELS") {
            Some(v) => parse_bool("TENANTRY_METRICS_PARTITION_LABELS", &v)?,
            None => file.metrics.partition_labels.unwrap_or(true),
        };
        let metrics_token = match (env("TENANTRY_METRICS_TOKEN"), &file.metrics.token_sha256) {
            (Some(t), _) if !t.is_empty() => Some(keys::hash(&t)),
            (_, Some(h)) => Some(
                keys::parse_hash_hex(h)
                    .map_err(|e| SettingsError(format!("metrics.token_sha256: {e}")))?,
            ),
            _ => None,
        };
        let body_limit = match env("TENANTRY_BODY_LIMIT_BYTES") {
            Some(v) => v.trim().parse().map_err(|_| {
                SettingsError(format!("TENANTRY_BODY_LIMIT_BYTES: not a number: {v:?}"))
            })?,
            None => file.limits.body_limit_bytes.unwrap_or(DEFAULT_BODY_LIMIT),
        };
        let limits = Limits {
            body_limit,
            max_live_instances_per_partition: file.limits.max_live_instances_per_partition,
            capacity: match file.limits.capacity {
                Some(0) => None,
                Some(n) => Some(n),
                None => Some(DEFAULT_CAPACITY_PER_CORE * cores()),
            },
            shutdown_grace: Duration::from_secs(file.server.shutdown_grace_secs.unwrap_or(10)),
        };
        let limits_of = |what: &str, config: Option<&Value>| {
            tenantry::quota::Limits::from_config(config.and_then(|c| c.get("limits")))
                .map_err(|e| SettingsError(format!("{what}.limits: {e}")))
        };
        limits_of("config", Some(&Value::Object(file.config.clone())))?;
        if let Some(max) = file.limits.max_live_instances_per_partition {
            let bound = tenantry::quota::MAX_COUNT as usize;
            if !(1..=bound).contains(&max) {
                return Err(SettingsError(format!(
                    "limits.max_live_instances_per_partition must be 1 to {bound}, not {max}"
                )));
            }
        }
        for tenant in &file.tenants {
            limits_of(
                &format!("tenants.{}.config", tenant.name),
                Some(&tenant.config),
            )?;
            for h in &tenant.api_keys_sha256 {
                keys::parse_hash_hex(h).map_err(|e| {
                    SettingsError(format!("tenants.{}.api_keys_sha256: {e}", tenant.name))
                })?;
            }
        }
        let mut app = if has_file {
            AppSpec {
                shared_config: file.config.clone(),
                tenants: file.tenants.clone(),
                builtin_demo: false,
            }
        } else {
            AppSpec::builtin_demo()
        };
        if has_file && file.demo {
            let demo = AppSpec::builtin_demo();
            for t in demo.tenants {
                if !app.tenants.iter().any(|x| x.name == t.name) {
                    app.tenants.push(t);
                }
            }
            app.builtin_demo = true;
        }
        Ok(Self {
            listen,
            data_dir,
            store,
            cluster,
            admin_key,
            metric_partition_labels,
            metrics_token,
            limits,
            managers: file.managers,
            app,
            log_format,
        })
    }
}

/// Reads and parses a TOML config file.
pub fn read_file(path: &Path) -> Result<FileConfig, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SettingsError(format!("config file {}: {e}", path.display())))?;
    parse_toml(&text).map_err(|e| SettingsError(format!("config file {}: {e}", path.display())))
}

/// Parses a TOML config.
pub fn parse_toml(text: &str) -> Result<FileConfig, SettingsError> {
    toml::from_str(text).map_err(|e| SettingsError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let file = parse_toml(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            [metrics]
            partition_labels = true
            [[tenants]]
            name = "acme"
            config = { db_url = "postgres://x" }
            instances = [{ factory = "tenant-db", name = "tenant-db-acme" }]
            "#,
        )
        .map_err(|e| e.0)
        .unwrap();
        let env = |k: &str| match k {
            "TENANTRY_LISTEN" => Some("127.0.0.1:9001".to_owned()),
            "TENANTRY_METRICS_PARTITION_LABELS" => Some("false".to_owned()),
            _ => None,
        };
        let s = Settings::from_parts(Overrides::default(), env, Some(file.clone())).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9001");
        assert!(!s.metric_partition_labels);
        assert_eq!(s.app.tenants.len(), 1);
        assert!(!s.app.builtin_demo);
        let cli = Overrides {
            listen: Some("127.0.0.1:9002".into()),
            ..Overrides::default()
        };
        let s = Settings::from_parts(cli, env, Some(file)).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9002");
    }

    #[test]
    fn no_file_means_the_builtin_demo_and_defaults() {
        let s = Settings::from_parts(Overrides::default(), |_| None, None).unwrap();
        assert_eq!(s.listen, DEFAULT_LISTEN);
        assert_eq!(s.limits.body_limit, DEFAULT_BODY_LIMIT);
        assert!(s.app.builtin_demo);
        assert_eq!(s.app.tenants.len(), 3);
        assert!(matches!(s.admin_key, AdminKey::Generated(_)));
        assert_eq!(
            s.store,
            StoreChoice::Redb(PathBuf::from(DEFAULT_DATA_DIR).join("checkpoints.redb"))
        );
    }

    #[test]
    fn unknown_fields_and_bad_hashes_are_refused() {
        assert!(parse_toml("[server]\nlisten_on = 1").is_err());
        let file = parse_toml("[[tenants]]\nname = \"a\"\napi_keys_sha256 = [\"xyz\"]").unwrap();
        assert!(Settings::from_parts(Overrides::default(), |_| None, Some(file)).is_err());
    }

    #[test]
    fn invalid_limits_in_the_file_are_refused_and_valid_ones_kept() {
        for (text, ok) in [
            ("[config]\nlimits = { rate_per_sec = 10, burst = 5 }", true),
            ("[config]\nlimits = { rate_per_sec = 0 }", false),
            (
                "[[tenants]]\nname = \"a\"\nconfig = { limits = { weight = 0 } }",
                false,
            ),
            (
                "[[tenants]]\nname = \"a\"\nconfig = { limits = { concurrency = 4 } }",
                true,
            ),
            ("[limits]\ncapacity = 0", true),
        ] {
            let file = parse_toml(text).unwrap();
            let settings = Settings::from_parts(Overrides::default(), |_| None, Some(file));
            assert_eq!(settings.is_ok(), ok, "{text}");
        }
        let file = parse_toml("[limits]\ncapacity = 0").unwrap();
        let s = Settings::from_parts(Overrides::default(), |_| None, Some(file)).unwrap();
        assert_eq!(s.limits.capacity, None, "0: never saturated");
        let s = Settings::from_parts(Overrides::default(), |_| None, None).unwrap();
        assert!(
            s.limits
                .capacity
                .is_some_and(|c| c >= DEFAULT_CAPACITY_PER_CORE)
        );
    }
}
