//! Which shard each stored identity belongs to, for a runtime's managers: the function
//! a cluster node's admission, fences and forwarding share.
//!
//! Each keyed manager routes by one [`Routing`]. A pod's own identity and its nodes'
//! identities route by the pod's key when their managers route by [`Routing::Pod`], so a
//! pod and its nodes live on one shard (a node's key is `(pod factory, pod key, node
//! name)`). Scoped storage belongs to its owner's shard. Anything else (component
//! instances, which every node runs, and the records of the host) belongs to no shard:
//! every node serves it, and its writes are not fenced (they are compare-and-set records).
//!
//! A pinned tenant's identities route the same way into the tenant's own
//! [`ShardRange`](super::pins::ShardRange) instead ([`ShardMap::set_pins`]).

use super::pins::Pins;
use super::shard::{RoutingKey, ShardCount, ShardId, shard_of};
use crate::{Identity, Key, KeyPart, Partition};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

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

/// The shard of every stored identity of a runtime (see the module docs). Shared behind
/// an `Arc` by everything that maps identities on one node (admission, fences,
/// forwarding), so that [`ShardMap::set_pins`] reaches them all at once.
#[derive(Debug)]
pub struct ShardMap {
    count: ShardCount,
    routes: HashMap<Arc<str>, Routing>,
    pins: RwLock<Arc<Pins>>,
    /// Whether any tenant is pinned or moving: keeps the usual lookup off the lock.
    pinned: AtomicBool,
}

/// The prefix of scoped storage's managers: `storage/<owner manager>/<owner key>`.
const STORAGE: &str = "storage/";

impl ShardMap {
    /// A map over `count` shards in which no manager is sharded yet.
    pub fn new(count: ShardCount) -> Self {
        Self {
            count,
            routes: HashMap::new(),
            pins: RwLock::default(),
            pinned: AtomicBool::new(false),
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

    /// Routes pinned tenants by `pins` from now on.
    pub fn set_pins(&self, pins: Pins) {
        let mut slot = self.pins.write().unwrap_or_else(|e| e.into_inner());
        self.pinned.store(!pins.is_empty(), Ordering::Release);
        *slot = Arc::new(pins);
    }

    /// The pins it routes by.
    pub fn pins(&self) -> Arc<Pins> {
        self.read_pins().clone()
    }

    fn read_pins(&self) -> std::sync::RwLockReadGuard<'_, Arc<Pins>> {
        self.pins.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `partition`'s placement is changing (no node serves its sharded
    /// identities meanwhile).
    pub fn is_moving(&self, partition: &Partition) -> bool {
        self.pinned.load(Ordering::Acquire) && self.read_pins().is_moving(partition)
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
        let range = if self.pinned.load(Ordering::Acquire) {
            self.read_pins().range(partition)
        } else {
            None
        };
        let (first, count) = range.map_or((0, self.count), |r| (r.first, r.count));
        let shard = match routing {
            Routing::Key => shard_of(partition, RoutingKey::Key(key.encoded()), count),
            Routing::Tenant => shard_of(partition, RoutingKey::Tenant, count),
            Routing::Pod => match pod_of_node(key) {
                Some(pod) => shard_of(partition, RoutingKey::Pod(pod.encoded()), count),
                // The pod's own identity.
                None => shard_of(partition, RoutingKey::Pod(key.encoded()), count),
            },
        };
        ShardId(first + shard.0)
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

    #[test]
    fn a_pinned_tenant_routes_into_its_own_range_and_the_others_do_not_move() {
        use crate::cluster::pins::ShardRange;
        let map = ShardMap::new(ShardCount::new(1024).unwrap())
            .route("carts", Routing::Key)
            .route("pods", Routing::Pod)
            .route("workers", Routing::Pod);
        let cart = |p: &str, i: usize| {
            Identity::new(
                Partition::new(p).unwrap(),
                "carts",
                Key::new(&format!("c{i}")).unwrap(),
            )
        };
        let before: Vec<_> = (0..64).map(|i| map.shard(&cart("globex", i))).collect();
        let range = ShardRange {
            first: 1024,
            count: ShardCount::new(8).unwrap(),
        };
        map.set_pins(Pins::new().pin("acme", range).moving("acme"));
        let acme: std::collections::HashSet<_> = (0..64)
            .map(|i| map.shard(&cart("acme", i)).unwrap().0)
            .collect();
        assert!(acme.iter().all(|s| (1024..1032).contains(s)), "{acme:?}");
        assert!(acme.len() > 4, "keys spread over the range");
        let after: Vec<_> = (0..64).map(|i| map.shard(&cart("globex", i))).collect();
        assert_eq!(before, after, "other tenants keep their shards");
        // A pod and its nodes still share a shard inside the range.
        let pod = map.shard(&id("pods", Key::new("w1").unwrap())).unwrap();
        let node = Key::tuple(["workspace", "w1", "coordinator"]).unwrap();
        assert_eq!(map.shard(&id("workers", node)), Some(pod));
        assert!((1024..1032).contains(&pod.0));
        assert!(map.is_moving(&Partition::new("acme").unwrap()));
        assert!(!map.is_moving(&Partition::new("globex").unwrap()));
        // Unpinned: back where it was.
        let unpinned = map.shard(&cart("acme", 0));
        map.set_pins(Pins::new());
        assert_ne!(map.shard(&cart("acme", 0)), unpinned);
        assert!(map.shard(&cart("acme", 0)).unwrap().0 < 1024);
        assert!(!map.is_moving(&Partition::new("acme").unwrap()));
    }
}
