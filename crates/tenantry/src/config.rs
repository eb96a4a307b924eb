//! Layered configuration read and written by dotted key.
//!
//! Layers, lowest first: defaults (from the config provider's properties), a file (JSON or
//! TOML-like JSON), the environment (`<PREFIX>A__B=value` sets `a.b`), then runtime
//! writes. Reads see the merge. [`ConfigView`] is what an instance gets: a partitioned
//! instance sees the shared keys plus `tenants.<its partition>.*`, and nothing of other
//! tenants' subtrees, whatever key it asks for.

use crate::Partition;
use crate::reactive::Trigger;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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
    /// Runtime writes by path; a write to a parent drops the writes below it.
    writes: BTreeMap<String, Value>,
    merged: Value,
}

/// A node of the key trie: the trigger of readers of this exact key, and its children.
#[derive(Default)]
struct KeyNode {
    trigger: Option<Arc<Trigger>>,
    children: HashMap<String, KeyNode, foldhash::fast::RandomState>,
}

impl KeyNode {
    /// The triggers at and below this node whose value differs between `old` and `new`.
    fn changed_below(&self, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Arc<Trigger>>) {
        if old == new {
            return;
        }
        if let Some(t) = &self.trigger {
            out.push(t.clone());
        }
        for (name, child) in &self.children {
            child.changed_below(
                old.and_then(|v| v.get(name)),
                new.and_then(|v| v.get(name)),
                out,
            );
        }
    }
}

/// The runtime's configuration. Reads inside a computed value or an effect are tracked
/// per dotted key: a reader of `a.b` is woken by a write to `a.b`, to an ancestor that
/// replaces it, or to a descendant — and by nothing else, so the cost of a write does not
/// grow with the number of readers of other keys.
#[derive(Default)]
pub struct ConfigStore {
    layers: RwLock<Layers>,
    keys: Mutex<KeyNode>,
}

/// The dotted key of an environment variable's name (after its prefix): `__` separates
/// segments; every segment is lowercased except the tenant name after `TENANTS`.
fn env_key(name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for segment in name.split("__") {
        let is_tenant_name = parts.len() == 1 && parts[0] == "tenants";
        parts.push(if is_tenant_name {
            segment.to_owned()
        } else {
            segment.to_lowercase()
        });
    }
    parts.join(".")
}

/// The segments of a checked dotted key (see [`segments`]), found byte by byte: keys are
/// short, and every read and write walks them several times.
#[derive(Clone, Copy)]
struct Segments<'k> {
    rest: Option<&'k str>,
}

impl<'k> Iterator for Segments<'k> {
    type Item = &'k str;

    fn next(&mut self) -> Option<&'k str> {
        let rest = self.rest?;
        match rest.bytes().position(|b| b == b'.') {
            // '.' is ASCII: both slices end and start on character boundaries.
            Some(dot) => {
                self.rest = Some(&rest[dot + 1..]);
                Some(&rest[..dot])
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Splits a dotted key, refusing an empty key or an empty segment.
fn segments(key: &str) -> Result<Segments<'_>, ConfigError> {
    let parts = Segments { rest: Some(key) };
    if key.is_empty() || { parts }.any(str::is_empty) {
        return Err(ConfigError::InvalidKey(key.to_owned()));
    }
    Ok(parts)
}

fn lookup<'v>(root: &'v Value, mut parts: Segments<'_>) -> Option<&'v Value> {
    parts.try_fold(root, |v, p| v.get(p))
}

/// Writes `value` at `parts`, turning whatever is in the way into objects: the value it
/// replaced, and where it is now. Segments that exist are not copied.
fn assign<'v>(
    root: &'v mut Value,
    parts: Segments<'_>,
    value: Value,
) -> (Option<Value>, &'v mut Value) {
    let mut node = root;
    let mut existed = false;
    for part in parts {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else {
            unreachable!("made an object just above")
        };
        existed = map.contains_key(part);
        if !existed {
            map.insert(part.to_owned(), Value::Null);
        }
        let Some(child) = map.get_mut(part) else {
            unreachable!("present or inserted just above")
        };
        node = child;
    }
    let replaced = std::mem::replace(node, value);
    (existed.then_some(replaced), node)
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
    /// Drops the runtime writes strictly below `key` (a write of `key` replaces them).
    /// They sort together, right after `key`, so this looks at no other write.
    fn drop_writes_below(&mut self, key: &str) {
        use std::ops::Bound;
        let below: Vec<String> = self
            .writes
            .range::<str, _>((Bound::Excluded(key), Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(key))
            .filter(|k| k[key.len()..].starts_with('.'))
            .cloned()
            .collect();
        for k in below {
            self.writes.remove(&k);
        }
    }

    fn remerge(&mut self) {
        let mut merged = Value::Object(Map::new());
        for layer in [&self.defaults, &self.file, &self.env] {
            merge(&mut merged, layer);
        }
        // Parents before children: a shorter path never comes after its own descendant.
        let mut writes: Vec<(&String, &Value)> = self.writes.iter().collect();
        writes.sort_by_key(|(k, _)| k.matches('.').count());
        for (key, value) in writes {
            if let Ok(parts) = segments(key) {
                assign(&mut merged, parts, value.clone());
            }
        }
        self.merged = merged;
    }
}

impl ConfigStore {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The trigger of readers of `parts`, created on first use.
    fn trigger(&self, parts: Segments<'_>) -> Arc<Trigger> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        // Every read after the first finds its trigger without changing the trie.
        let known = { parts }.try_fold(&*keys, |node, p| node.children.get(p));
        if let Some(trigger) = known.and_then(|node| node.trigger.clone()) {
            return trigger;
        }
        let mut node = &mut *keys;
        for p in parts {
            // Known keys (every read after the first) copy nothing.
            if !node.children.contains_key(p) {
                node.children.insert(p.to_owned(), KeyNode::default());
            }
            let Some(child) = node.children.get_mut(p) else {
                unreachable!("inserted just above")
            };
            node = child;
        }
        node.trigger.get_or_insert_with(Trigger::new).clone()
    }

    /// The triggers to fire after the value at `parts` went from `old` to `new`: every
    /// ancestor's (their value contains it) and every node's at or below it whose value
    /// changed.
    fn affected(
        &self,
        parts: Segments<'_>,
        old: Option<&Value>,
        new: Option<&Value>,
    ) -> Vec<Arc<Trigger>> {
        let mut out = Vec::new();
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let mut node = &*keys;
        for p in parts {
            match node.children.get(p) {
                Some(child) => node = child,
                // Nobody reads this key or anything below it.
                None => return out,
            }
            if let Some(t) = &node.trigger {
                out.push(t.clone());
            }
        }
        // `node` is the written key's own node (its trigger was pushed in the loop); now
        // the descendants whose value changed.
        for (name, child) in &node.children {
            child.changed_below(
                old.and_then(|v| v.get(name)),
                new.and_then(|v| v.get(name)),
                &mut out,
            );
        }
        out
    }

    fn fire(triggers: Vec<Arc<Trigger>>) {
        if triggers.is_empty() {
            return;
        }
        crate::reactive::batch(|| {
            for t in triggers {
                t.fire();
            }
        });
    }

    /// Replaces a lower layer and wakes the readers of every key whose value changed.
    fn relayer(&self, f: impl FnOnce(&mut Layers)) {
        let triggers = {
            let mut layers = self.layers.write().unwrap_or_else(|e| e.into_inner());
            let old = std::mem::take(&mut layers.merged);
            f(&mut layers);
            layers.remerge();
            let mut out = Vec::new();
            self.keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .changed_below(Some(&old), Some(&layers.merged), &mut out);
            out
        };
        Self::fire(triggers);
    }

    /// The merged tree (a copy).
    pub fn snapshot(&self) -> Value {
        self.layers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .merged
            .clone()
    }

    /// Replaces the defaults layer.
    pub fn set_defaults(&self, defaults: Value) {
        self.relayer(|l| l.defaults = defaults);
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
        self.relayer(|l| {
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
    ///
    /// Segments are lowercased, except a tenant's name: partitions are case-sensitive, so
    /// in `<prefix>TENANTS__<name>__DB_URL` the name keeps its case (`APP_TENANTS__acme__DB_URL`
    /// → `tenants.acme.db_url`, `APP_TENANTS__ACME__DB_URL` → `tenants.ACME.db_url`).
    pub fn load_env(&self, prefix: &str, vars: impl IntoIterator<Item = (String, String)>) {
        let mut env = Value::Object(Map::new());
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(prefix) else {
                continue;
            };
            let key = env_key(rest);
            let Ok(parts) = segments(&key) else { continue };
            let value = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            assign(&mut env, parts, value);
        }
        self.relayer(|l| l.env = env);
    }

    /// Reads `key` from the merged view; inside a computed value or an effect, the read
    /// is tracked.
    pub fn get(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        self.read(key, |v| v.cloned())
    }

    /// Hands `take` the value at `key` in the merged view, tracked like [`Self::get`],
    /// so that a reader takes only what it needs of it. `take` runs under the layers'
    /// read lock: it must not touch the config (it is never a caller's closure).
    fn read<R>(&self, key: &str, take: impl FnOnce(Option<&Value>) -> R) -> Result<R, ConfigError> {
        let parts = segments(key)?;
        if crate::reactive::is_tracking() {
            // Track before reading: a racing write re-validates, never goes unseen.
            self.trigger(parts).read();
        }
        let layers = self.layers.read().unwrap_or_else(|e| e.into_inner());
        Ok(take(lookup(&layers.merged, parts)))
    }

    /// Writes `key` in the top layer. Writing an equal value wakes nobody.
    pub fn set(&self, key: &str, value: Value) -> Result<(), ConfigError> {
        let parts = segments(key)?;
        let triggers = {
            let mut layers = self.layers.write().unwrap_or_else(|e| e.into_inner());
            if lookup(&layers.merged, parts) == Some(&value) {
                return Ok(());
            }
            layers.drop_writes_below(key);
            match layers.writes.get_mut(key) {
                Some(slot) => *slot = value.clone(),
                None => {
                    layers.writes.insert(key.to_owned(), value.clone());
                }
            }
            let (old, new) = assign(&mut layers.merged, parts, value);
            self.affected(parts, old.as_ref(), Some(new))
        };
        Self::fire(triggers);
        Ok(())
    }

    /// Number of reactive readers of `key` (diagnostics and tests).
    pub fn readers(&self, key: &str) -> usize {
        match segments(key) {
            Ok(parts) => crate::reactive::dependents(&self.trigger(parts)),
            Err(_) => 0,
        }
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
    fn visible(&self, mut parts: Segments<'_>) -> bool {
        match (self.partition.name(), parts.next(), parts.next()) {
            (Some(own), Some("tenants"), Some(tenant)) => tenant == own,
            _ => true,
        }
    }

    /// Reads `key`; `None` for keys outside this view. Reading `tenants` itself returns
    /// only this tenant's entry.
    pub fn get(&self, key: &str) -> Result<Option<Value>, ConfigError> {
        self.read(key, |v| v.cloned())
    }

    /// Reads `key` as a string (`None` if it is not one).
    pub fn get_str(&self, key: &str) -> Result<Option<String>, ConfigError> {
        self.read(key, |v| v.and_then(Value::as_str).map(str::to_owned))
    }

    /// Reads `key` as a shared string (`None` if it is not one), copied once from the
    /// config: what a computed value over a string key keeps, cheap to clone per call.
    pub fn get_shared_str(&self, key: &str) -> Result<Option<Arc<str>>, ConfigError> {
        self.read(key, |v| v.and_then(Value::as_str).map(Arc::from))
    }

    /// Hands `take` the value at `key` as this view sees it (see [`Self::get`]).
    fn read<R>(&self, key: &str, take: impl FnOnce(Option<&Value>) -> R) -> Result<R, ConfigError> {
        if !self.visible(segments(key)?) {
            return Ok(take(None));
        }
        match self.partition.name() {
            // `tenants` as seen by one tenant: its own entry only (and only it is tracked).
            Some(own) if key == "tenants" => self.store.read(&format!("tenants.{own}"), |mine| {
                let mut only = Map::new();
                if let Some(mine) = mine {
                    only.insert(own.to_owned(), mine.clone());
                }
                take(Some(&Value::Object(only)))
            }),
            _ => self.store.read(key, take),
        }
    }

    /// This tenant's own key: `tenants.<partition>.<key>` (or `key` when unpartitioned).
    pub fn tenant_key(&self, key: &str) -> String {
        match self.partition.name() {
            Some(p) => format!("tenants.{p}.{key}"),
            None => key.to_owned(),
        }
    }

    /// Whether this view may write.
    pub fn writable(&self) -> bool {
        self.may_write
    }

    /// Writes `key`; needs the admin grant.
    pub fn set(&self, key: &str, value: Value) -> Result<(), ConfigError> {
        if !self.may_write {
            return Err(ConfigError::Forbidden);
        }
        self.store.set(key, value)
    }
}
