//! Layered configuration read and written by dotted key.
//!
//! Layers, lowest first: defaults (from the config provider's properties), a file (JSON or
//! TOML-like JSON), the environment (`<PREFIX>A__B=value` sets `a.b`), then runtime
//! writes. Reads see the merge. [`ConfigView`] is what an instance gets: a partitioned
//! instance sees the shared keys plus `tenants.<its partition>.*`, and nothing of other
//! tenants' subtrees, whatever key it asks for.

use crate::Partition;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a config operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key is empty or has an empty segment.
    #[error("invalid config key {0:?}: segments must be non-empty and dot-separated")]
    InvalidKey(String),
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The caller may not write config (no admin grant).
    #[error("config writes need the admin grant")]
    Forbidden,
}

#[derive(Default)]
struct Layers {
    defaults: Value,
    file: Value,
    file_path: Option<PathBuf>,
    env: Value,
    writes: Value,
    merged: Arc<Value>,
}

/// The runtime's configuration.
#[derive(Default)]
pub struct ConfigStore {
    layers: RwLock<Layers>,
}

/// Splits a dotted key, refusing empty segments.
pub(crate) fn segments(key: &str) -> Result<Vec<&str>, ConfigError> {
    let parts: Vec<&str> = key.split('.').collect();
    if key.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::InvalidKey(key.to_owned()));
    }
    Ok(parts)
}

fn lookup<'v>(root: &'v Value, parts: &[&str]) -> Option<&'v Value> {
    parts.iter().try_fold(root, |v, p| v.get(p))
}

fn assign(root: &mut Value, parts: &[&str], value: Value) {
    let mut node = root;
    for part in &parts[..parts.len() - 1] {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        // Checked just above: `node` is an object here.
        let Value::Object(map) = node else { return };
        node = map
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let (Value::Object(map), Some(last)) = (node, parts.last()) {
        map.insert((*last).to_owned(), value);
    }
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (base, over) if !over.is_null() => *base = over.clone(),
        _ => {}
    }
}

impl Layers {
    fn remerge(&mut self) {
        let mut merged = Value::Object(Map::new());
        for layer in [&self.defaults, &self.file, &self.env, &self.writes] {
            merge(&mut merged, layer);
        }
        self.merged = Arc::new(merged);
    }
}

impl ConfigStore {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Layers) -> R) -> R {
        let mut layers = self.layers.write().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut layers);
        layers.remerge();
        r
    }

    /// The merged tree.
    pub fn snapshot(&self) -> Arc<Value> {
        self.layers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .merged
            .clone()
    }

    /// Replaces the defaults layer.
    pub fn set_defaults(&self, defaults: Value) {
        self.with(|l| l.defaults = defaults);
    }

    /// Loads (or reloads) the file layer from a JSON file.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        let path = path.as_ref();
        let err = |reason: String| ConfigError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if !value.is_object() {
            return Err(err("the top level must be an object".into()));
        }
        self.with(|l| {
            l.file = value;
            l.file_path = Some(path.to_owned());
        });
        Ok(())
    }

    /// Re-reads the file loaded last, if any.
    pub fn reload_file(&self) -> Result<(), ConfigError> {
        let path = self
            .layers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .file_path
            .clone();
        match path {
            Some(p) => self.load_file(p),
            None => Ok(()),
        }
    }

    /// Loads the environment layer from variables named `<prefix>A__B` (→ `a.b`).
    /// Values that parse as JSON are taken as JSON, others as strings.
    pub fn load_env(&self, prefix: &str, vars: impl IntoIterator<Item = (String, String)>) {
        let mut env = Value::Object(Map::new());
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let key = rest.to_lowercase().replace("__", ".");
            let Ok(parts) = segments(&key) else { continue };
            let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            assign(&mut env, &parts, value);
        }
        self.with(|l| l.env = env);
    }

    /// Reads `key` from the merged view.
    pub fn get(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        let parts = segments(key)?;
        Ok(lookup(&self.snapshot(), &parts).cloned())
    }

    /// Writes `key` in the top layer.
    pub fn set(&self, key: &str, value: Value) -> Result<(), ConfigError> {
        let parts = segments(key)?;
        self.with(|l| assign(&mut l.writes, &parts, value));
        Ok(())
    }
}

/// What an instance sees of the config.
#[derive(Clone)]
pub struct ConfigView {
    store: Arc<ConfigStore>,
    partition: Partition,
    may_write: bool,
}

impl ConfigView {
    pub(crate) fn new(store: Arc<ConfigStore>, partition: Partition, may_write: bool) -> Self {
        Self {
            store,
            partition,
            may_write,
        }
    }

    /// Whether this view may see `parts` (a partitioned view never sees another
    /// tenant's subtree).
    fn visible(&self, parts: &[&str]) -> bool {
        match (self.partition.name(), parts) {
            (None, _) => true,
            (Some(own), ["tenants", tenant, ..]) => *tenant == own,
            _ => true,
        }
    }

    /// Reads `key`; `None` for keys outside this view. Reading `tenants` itself returns
    /// only this tenant's entry.
    pub fn get(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        let parts = segments(key)?;
        if !self.visible(&parts) {
            return Ok(None);
        }
        let snapshot = self.store.snapshot();
        let found = lookup(&snapshot, &parts);
        match (self.partition.name(), parts.as_slice(), found) {
            (Some(own), ["tenants"], Some(Value::Object(all))) => {
                let mut only = Map::new();
                if let Some(mine) = all.get(own) {
                    only.insert(own.to_owned(), mine.clone());
                }
                Ok(Some(Value::Object(only)))
            }
            _ => Ok(found.cloned()),
        }
    }

    /// Reads `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(key)?.and_then(|v| v.as_str().map(str::to_owned)))
    }

    /// This tenant's own key: `tenants.<partition>.<key>` (or `key` when unpartitioned).
    pub fn tenant_key(&self, key: &str) -> String {
        match self.partition.name() {
            Some(p) => format!("tenants.{p}.{key}"),
            None => key.to_owned(),
        }
    }

    /// Writes `key`; needs the admin grant.
    pub fn set(&self, key: &str, value: Value) -> Result<(), ConfigError> {
        if !self.may_write {
            return Err(ConfigError::Forbidden);
        }
        self.store.set(key, value)
    }
}
