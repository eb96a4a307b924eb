//! Which shard each stored identity belongs to, for a runtime's managers: the function
//! a cluster node's admission, fences and forwarding share.
//!
//! Each keyed manager routes by one [`Routing`]. A pod's own identity and its nodes'
//! identities route by the pod's key when their managers route by [`Routing::Pod`], so a
//! pod and its nodes live on one shard (a node's key is `(pod factory, pod key, node
//! name)`). Scoped storage belongs to its owner's shard. Anything else (component
//! instances, which every node runs, and the records of the host) belongs to no shard:
//! every node serves it, and its writes are not fenced (they are compare-and-set records).

use super::shard::{RoutingKey, ShardCount, ShardId, shard_of};
use crate::{Identity, Key, KeyPart};
use std::collections::HashMap;
use std::sync::Arc;

/// How one manager's identities map to shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// By the instance's key: a manager's instances spread over the shards.
    Key,
    /// By the pod's key: a pods manager, and the managers of its nodes, keep each pod on
    /// one shard.
    Pod,
    /// The whole partition on one shard (so a tenant's limits hold in one place).
    Tenant,
}

/// The shard of every stored identity of a runtime (see the module docs).
#[derive(Debug, Clone)]
pub struct ShardMap {
    count: ShardCount,
    routes: HashMap<Arc<str>, Routing>,
}

/// The prefix of scoped storage's managers: `storage/<owner manager>/<owner key>`.
const STORAGE: &str = "storage/";

impl ShardMap {
    /// A map over `count` shards in which no manager is sharded yet.
    pub fn new(count: ShardCount) -> Self {
        Self {
            count,
            routes: HashMap::new(),
        }
    }

    /// Shards the identities of `manager` by `routing`.
    pub fn route(mut self, manager: &str, routing: Routing) -> Self {
        self.routes.insert(manager.into(), routing);
        self
    }

    /// The shard count.
    pub fn count(&self) -> ShardCount {
        self.count
    }

    /// How `manager` routes, if it is sharded.
    pub fn routing(&self, manager: &str) -> Option<Routing> {
        self.routes.get(manager).copied()
    }

    /// The shard `identity` belongs to; `None` for what no shard owns.
    pub fn shard(&self, identity: &Identity) -> Option<ShardId> {
        let manager = &*identity.manager;
        if let Some(owner) = manager.strip_prefix(STORAGE) {
            // Scoped storage: its owner's shard.
            let (owner_manager, owner_key) = owner.split_once('/')?;
            let key = Key::from_encoded(owner_key).ok()?;
            let routing = self.routing(owner_manager)?;
            return Some(self.shard_by(identity, routing, &key));
        }
        let routing = self.routing(manager)?;
        Some(self.shard_by(identity, routing, &identity.key))
    }

    fn shard_by(&self, identity: &Identity, routing: Routing, key: &Key) -> ShardId {
        let partition = &identity.partition;
        match routing {
            Routing::Key => shard_of(partition, RoutingKey::Key(key.encoded()), self.count),
            Routing::Tenant => shard_of(partition, RoutingKey::Tenant, self.count),
            Routing::Pod => match pod_of_node(key) {
                Some(pod) => shard_of(partition, RoutingKey::Pod(pod.encoded()), self.count),
                // The pod's own identity.
                None => shard_of(partition, RoutingKey::Pod(key.encoded()), self.count),
            },
        }
    }
}

/// The pod key in a pod node's key `(pod factory, pod key, node name)`.
fn pod_of_node(key: &Key) -> Option<Key> {
    if !key.is_tuple() {
        return None;
    }
    let mut parts = key.parts();
    if parts.len() != 3 {
        return None;
    }
    match parts.swap_remove(1) {
        KeyPart::Str(s) => Key::new(&s).ok(),
        KeyPart::Tuple(parts) => Key::tuple(parts).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Partition;

    fn id(manager: &str, key: Key) -> Identity {
        Identity::new(Partition::new("acme").unwrap(), manager, key)
    }

    #[test]
    fn pods_their_nodes_and_their_storage_share_a_shard_and_components_have_none() {
        let map = ShardMap::new(ShardCount::new(1024).unwrap())
            .route("pods", Routing::Pod)
            .route("workers", Routing::Pod)
            .route("carts", Routing::Key)
            .route("quotas", Routing::Tenant);
        let mut pod_shards = std::collections::HashSet::new();
        for pod in ["w1", "w2", "w3", "w4"] {
            let pod_key = Key::new(pod).unwrap();
            let own = map.shard(&id("pods", pod_key.clone())).unwrap();
            pod_shards.insert(own);
            for node in ["coordinator", "reviewer"] {
                let node_key = Key::tuple(["workspace", pod, node]).unwrap();
                assert_eq!(map.shard(&id("workers", node_key.clone())), Some(own));
                let storage = format!("storage/workers/{}", node_key.encoded());
                let stored = id(&storage, Key::tuple(["notes"]).unwrap());
                assert_eq!(map.shard(&stored), Some(own), "{storage}");
            }
        }
        assert!(pod_shards.len() > 1, "pods spread over shards");
        let carts: std::collections::HashSet<_> = (0..64)
            .map(|i| map.shard(&id("carts", Key::new(&format!("c{i}")).unwrap())))
            .collect();
        assert!(carts.len() > 32, "keys spread");
        let quotas: std::collections::HashSet<_> = (0..8)
            .map(|i| map.shard(&id("quotas", Key::new(&format!("q{i}")).unwrap())))
            .collect();
        assert_eq!(quotas.len(), 1, "one shard per tenant");
        assert_eq!(
            map.shard(&id("tenant-db", Key::new("tenant-db-acme").unwrap())),
            None
        );
        let component_storage = id("storage/tenant-db/tenant-db-acme", Key::new("x").unwrap());
        assert_eq!(map.shard(&component_storage), None);
    }
}
