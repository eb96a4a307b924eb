//! Parent bindings: who adopted whom, stored per partition.
//!
//! A binding says that a child instance belongs to a parent (a pod or an owner node).
//! Bindings live in one bucket per partition, and adoption by child id resolves the child
//! in the parent's own partition, so a normal adoption can never cross tenants. The one
//! exception is `Runtime::adopt_across_partitions_unchecked`, an explicitly named
//! escape hatch that pods never use.
//!
//! When a parent stops, [`Lineage::parent_stopped`] hands back its children with their
//! policies: those that continue become orphans that remember their former parent.

use crate::{Identity, Partition};
use dashmap::DashMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// What a node does when its parent (the pod or its owner node) stops.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnParentStop {
    /// Keep running as an orphan that remembers its former parent; a later reconcile of
    /// the pod re-adopts it.
    #[default]
    Continue,
    /// Stop (and hibernate) with the parent.
    Stop,
}

/// A child's binding as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binding {
    /// The current parent, if bound.
    pub parent: Option<Identity>,
    /// The parent it had before its parent stopped, if it was orphaned.
    pub former_parent: Option<Identity>,
    /// What it does when its parent stops.
    #[serde(skip)]
    pub policy: OnParentStop,
}

#[derive(Default)]
struct Bucket {
    /// Bindings of the children that live in this partition.
    by_child: HashMap<Identity, Binding>,
    /// Children of the parents that live in this partition.
    by_parent: HashMap<Identity, BTreeSet<Identity>>,
}

/// The runtime's parent bindings.
#[derive(Default)]
pub(crate) struct Lineage {
    buckets: DashMap<Partition, Mutex<Bucket>>,
}

impl Lineage {
    fn with_bucket<R>(&self, partition: &Partition, f: impl FnOnce(&mut Bucket) -> R) -> R {
        let bucket = self.buckets.entry(partition.clone()).or_default();
        let mut guard = bucket.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// Binds `child` to `parent`, replacing any earlier binding. The caller has checked
    /// that both are in one partition (or used the escape hatch on purpose).
    pub(crate) fn bind(&self, child: &Identity, parent: &Identity, policy: OnParentStop) {
        let previous = self.with_bucket(&child.partition, |b| {
            b.by_child.insert(
                child.clone(),
                Binding {
                    parent: Some(parent.clone()),
                    former_parent: None,
                    policy,
                },
            )
        });
        if let Some(Binding {
            parent: Some(old), ..
        }) = previous
        {
            if &old != parent {
                self.with_bucket(&old.partition, |b| {
                    if let Some(set) = b.by_parent.get_mut(&old) {
                        set.remove(child);
                    }
                });
            }
        }
        self.with_bucket(&parent.partition, |b| {
            b.by_parent
                .entry(parent.clone())
                .or_default()
                .insert(child.clone());
        });
    }

    /// The binding of `child`, if any.
    pub(crate) fn binding(&self, child: &Identity) -> Option<Binding> {
        let bucket = self.buckets.get(&child.partition)?;
        let guard = bucket.lock().unwrap_or_else(|e| e.into_inner());
        guard.by_child.get(child).cloned()
    }

    /// Whether `child` is bound to `parent` (no clone: the hot check of `ensure_node`).
    pub(crate) fn is_bound_to(&self, child: &Identity, parent: &Identity) -> bool {
        let Some(bucket) = self.buckets.get(&child.partition) else {
            return false;
        };
        let guard = bucket.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .by_child
            .get(child)
            .is_some_and(|b| b.parent.as_ref() == Some(parent))
    }

    /// Forgets `child` entirely (it was removed from its pod).
    pub(crate) fn unbind(&self, child: &Identity) {
        let previous = self.with_bucket(&child.partition, |b| b.by_child.remove(child));
        if let Some(Binding {
            parent: Some(parent),
            ..
        }) = previous
        {
            self.with_bucket(&parent.partition, |b| {
                if let Some(set) = b.by_parent.get_mut(&parent) {
                    set.remove(child);
                }
            });
        }
    }

    /// Detaches every child of `parent`: children that continue are orphaned with their
    /// former parent remembered; children that stop are unbound. Returns the children that
    /// must stop. Costs one lookup when `parent` has no children.
    pub(crate) fn parent_stopped(&self, parent: &Identity) -> Vec<Identity> {
        let Some(bucket) = self.buckets.get(&parent.partition) else {
            return Vec::new();
        };
        let children = {
            let mut guard = bucket.lock().unwrap_or_else(|e| e.into_inner());
            guard.by_parent.remove(parent).unwrap_or_default()
        };
        drop(bucket);
        let mut to_stop = Vec::new();
        for child in children {
            self.with_bucket(&child.partition, |b| {
                let Some(binding) = b.by_child.get_mut(&child) else {
                    return;
                };
                if binding.parent.as_ref() != Some(parent) {
                    return;
                }
                match binding.policy {
                    OnParentStop::Continue => {
                        binding.former_parent = binding.parent.take();
                    }
                    OnParentStop::Stop => {
                        b.by_child.remove(&child);
                        to_stop.push(child.clone());
                    }
                }
            });
        }
        to_stop
    }

    /// Drops every binding of one partition (offboarding).
    pub(crate) fn purge_partition(&self, partition: &Partition) {
        self.buckets.remove(partition);
    }
}
