//! What the bus asks of the kernel: where a route prefix leads, which component routes a
//! caller can list, and which active instances subscribe to a topic.
//!
//! The bus never reads the kernel's tables itself; these queries take the kernel's locks
//! briefly, copy out handles, and hand them back, so routing policy (confinement, audit)
//! stays the bus's and table layout stays the kernel's.

use super::{InstanceStatus, KernelCore, Record};
use crate::instance::cell::AnyInstance;
use crate::manager::AnyManager;
use crate::{Error, Identity, Key, Partition};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What a route prefix names in the kernel.
pub(crate) enum Named {
    /// An instance of that name, in its partition.
    Instance(Partition, Reachable),
    /// A factory: its oldest active instance in the target partition.
    Factory(Reachable),
    /// Nothing of the kernel's.
    Nothing,
}

/// Whether a named component answers now.
pub(crate) enum Reachable {
    /// It is active: its handle.
    Active(Arc<dyn AnyInstance>),
    /// It is not; with the `BackingOff` error when it waits out a backoff.
    Inactive(Option<Error>),
}

/// Routes that led to an active instance, kept while the kernel's tables have seen no
/// write since: a hot call then finds its instance with one hash lookup instead of three
/// ordered-map searches under three locks. Only active answers are kept (an inactive
/// one's error depends on the time), so the cache holds no more routes than there are
/// active instances, times the targets callers named for them.
#[derive(Default)]
pub(crate) struct RouteCache {
    inner: RwLock<Resolved>,
}

#[derive(Default)]
struct Resolved {
    /// The tables' write count the routes were resolved at.
    writes: u64,
    by_prefix: HashMap<Box<str>, Targets, Hasher>,
}

/// A prefix's routes: for calls that name no target, and per target named. Apart, so a
/// lookup borrows the caller's target rather than cloning it into a key.
#[derive(Default)]
struct Targets {
    untargeted: Option<Hit>,
    by_target: HashMap<Partition, Hit, Hasher>,
}

impl Targets {
    fn get(&self, target: Option<&Partition>) -> Option<&Hit> {
        match target {
            None => self.untargeted.as_ref(),
            Some(target) => self.by_target.get(target),
        }
    }

    fn insert(&mut self, target: Option<&Partition>, hit: Hit) {
        match target {
            None => self.untargeted = Some(hit),
            Some(target) => {
                self.by_target.insert(target.clone(), hit);
            }
        }
    }
}

type Hasher = foldhash::fast::RandomState;

/// A route that reached an active instance.
#[derive(Clone)]
enum Hit {
    Instance(Partition, Arc<dyn AnyInstance>),
    Factory(Arc<dyn AnyInstance>),
}

impl Hit {
    fn of(named: &Named) -> Option<Self> {
        match named {
            Named::Instance(p, Reachable::Active(h)) => Some(Self::Instance(p.clone(), h.clone())),
            Named::Factory(Reachable::Active(h)) => Some(Self::Factory(h.clone())),
            _ => None,
        }
    }

    fn named(self) -> Named {
        match self {
            Self::Instance(p, h) => Named::Instance(p, Reachable::Active(h)),
            Self::Factory(h) => Named::Factory(Reachable::Active(h)),
        }
    }
}

impl RouteCache {
    fn get(&self, writes: u64, prefix: &str, target: Option<&Partition>) -> Option<Hit> {
        let resolved = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if resolved.writes != writes {
            return None;
        }
        resolved.by_prefix.get(prefix)?.get(target).cloned()
    }

    /// Keeps `hit`, resolved from tables at `writes` (read before resolving). Routes of
    /// older tables are dropped; a hit from tables older than those kept is not kept.
    fn put(&self, writes: u64, prefix: &str, target: Option<&Partition>, hit: Hit) {
        let mut resolved = self.inner.write().unwrap_or_else(|e| e.into_inner());
        if writes < resolved.writes {
            return;
        }
        if writes > resolved.writes {
            *resolved = Resolved {
                writes,
                by_prefix: HashMap::default(),
            };
        }
        resolved
            .by_prefix
            .entry(prefix.into())
            .or_default()
            .insert(target, hit);
    }
}

/// A component route a caller may list: its prefix and the manager of its handlers.
pub(crate) struct Listed {
    pub(crate) prefix: String,
    pub(crate) manager: Arc<dyn AnyManager>,
}

impl KernelCore {
    /// Where `prefix` leads for a call aimed at `target`. The exact instance wins, unless
    /// it merely shares its factory's name and the call targets another partition: then
    /// the factory route decides.
    pub(crate) fn named(&self, prefix: &str, target: Option<&Partition>) -> Named {
        let writes = self.table_writes();
        if let Some(hit) = self.state.resolved.get(writes, prefix, target) {
            return hit.named();
        }
        let named = self.resolve_named(prefix, target);
        if let Some(hit) = Hit::of(&named) {
            self.state.resolved.put(writes, prefix, target, hit);
        }
        named
    }

    /// Writes to the tables a route depends on, so far (they only grow, so the sum moves
    /// on with any of them).
    fn table_writes(&self) -> u64 {
        let s = &self.state;
        s.instances.writes() + s.factories.writes() + s.routes.writes()
    }

    /// [`KernelCore::named`] from the tables.
    fn resolve_named(&self, prefix: &str, target: Option<&Partition>) -> Named {
        let instances = self.state.instances.read();
        let exact = instances.get(prefix);
        // The factory table is asked only when an exact name does not settle it.
        let is_factory = || self.state.factories.read().contains_key(prefix);
        if let Some(record) = exact {
            let elsewhere = target.is_some_and(|t| t != &record.partition);
            if !elsewhere || !is_factory() {
                return Named::Instance(record.partition.clone(), reachable(record));
            }
        } else if !is_factory() {
            return Named::Nothing;
        }
        let Some(target) = target else {
            return Named::Factory(Reachable::Inactive(None));
        };
        let routes = self.state.routes.read();
        let oldest = routes
            .get(&(prefix, target.clone()))
            .and_then(|by_seq| by_seq.values().next());
        let found = oldest
            .and_then(|name| instances.get(name))
            .filter(|r| r.status == InstanceStatus::Active)
            .and_then(|r| r.handle.clone());
        Named::Factory(match found {
            Some(handle) => Reachable::Active(handle),
            // None active: say so if one is backing off (a cold path).
            None => Reachable::Inactive(
                instances
                    .values()
                    .filter(|r| *r.factory == *prefix && &r.partition == target)
                    .find_map(backing_off),
            ),
        })
    }

    /// The component routes whose instances `reach` accepts: active instances by name,
    /// then factories with an active partitioned instance in reach.
    pub(crate) fn listed(&self, reach: impl Fn(&Partition) -> bool) -> (Vec<Listed>, Vec<Listed>) {
        let factories = self.state.factories.read();
        let instances = self.state.instances.read();
        let active = || {
            instances
                .values()
                .filter(|r| r.status == InstanceStatus::Active && reach(&r.partition))
        };
        let by_instance = active()
            .filter_map(|r| {
                let f = factories.get(r.factory)?;
                Some(Listed {
                    prefix: r.name.clone(),
                    manager: f.manager.clone(),
                })
            })
            .collect();
        let by_factory = factories
            .values()
            .filter(|f| active().any(|r| r.factory == f.name && !r.partition.is_unpartitioned()))
            .map(|f| Listed {
                prefix: f.name.to_owned(),
                manager: f.manager.clone(),
            })
            .collect();
        (by_instance, by_factory)
    }

    /// The active instances of `partition` whose factory subscribes to a pattern that
    /// `matches` accepts.
    pub(crate) fn subscribers(
        &self,
        partition: &Partition,
        matches: impl Fn(&str) -> bool,
    ) -> Vec<Arc<dyn AnyInstance>> {
        let factories = self.state.factories.read();
        self.state
            .instances
            .read()
            .values()
            .filter(|r| r.status == InstanceStatus::Active && &r.partition == partition)
            .filter(|r| {
                factories
                    .get(r.factory)
                    .is_some_and(|f| f.subscriptions.iter().any(|p| matches(p)))
            })
            .filter_map(|r| r.handle.clone())
            .collect()
    }

    /// How many subscriptions the active instances hold (a pattern each), all partitions.
    pub(crate) fn subscription_count(&self) -> usize {
        let factories = self.state.factories.read();
        self.state
            .instances
            .read()
            .values()
            .filter(|r| r.status == InstanceStatus::Active && r.handle.is_some())
            .filter_map(|r| factories.get(r.factory))
            .map(|f| f.subscriptions.len())
            .sum()
    }

    /// The factory of instance `name`, if it lives in `partition`.
    pub(crate) fn factory_of(&self, name: &str, partition: &Partition) -> Option<&'static str> {
        self.state
            .instances
            .read()
            .get(name)
            .filter(|r| &r.partition == partition)
            .map(|r| r.factory)
    }

    /// Whether the component instance `identity` was instantiated with the admin grant.
    pub(crate) fn holds_admin_grant(&self, identity: &Identity) -> bool {
        self.state
            .instances
            .read()
            .get(identity.key.encoded())
            .is_some_and(|r| {
                r.grant == super::Grant::Admin
                    && *r.factory == *identity.manager
                    && r.partition == identity.partition
            })
    }
}

fn reachable(record: &Record) -> Reachable {
    match (&record.status, &record.handle) {
        (InstanceStatus::Active, Some(h)) => Reachable::Active(h.clone()),
        _ => Reachable::Inactive(backing_off(record)),
    }
}

/// The error of a call to an instance backing off, if `record` is one.
fn backing_off(record: &Record) -> Option<Error> {
    let InstanceStatus::BackingOff {
        attempt,
        next_try_at_ms,
        ..
    } = &record.status
    else {
        return None;
    };
    let next = std::time::UNIX_EPOCH + Duration::from_millis(*next_try_at_ms);
    let retry_in = next
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(Error::BackingOff {
        identity: Identity::new(
            record.partition.clone(),
            record.factory,
            Key::new(&record.name).ok()?,
        ),
        attempt: *attempt,
        retry_in,
    })
}
