//! The service registry: contracts, their providers' generations, and live references.
//!
//! Providers are the active instances whose factory provides a contract, ranked by the
//! `service.ranking` property. Each contract has a generation that moves whenever its
//! providers change (activation, removal, ranking), so consumers can tell when to
//! re-resolve. A [`ServiceRef`] resolves on every call and so never holds a stale provider.

use super::{InstanceStatus, Kernel, KernelCore, KernelState, Record, visible};
use crate::caller::{CallAs, Caller};
use crate::instance::cell::AnyInstance;
use crate::instance::context::Context;
use crate::reactive::Trigger;
use crate::{CallError, Error, Partition};
use dashmap::DashMap;
use std::sync::{Arc, Weak};

/// Generations of every contract, each with the trigger of its reactive readers.
#[derive(Default)]
pub struct ServiceRegistry {
    generations: DashMap<String, (u64, Arc<Trigger>)>,
}

impl ServiceRegistry {
    fn trigger(&self, contract: &str) -> Arc<Trigger> {
        self.generations
            .entry(contract.to_owned())
            .or_insert_with(|| (0, Trigger::new()))
            .1
            .clone()
    }

    /// Moves the generation and wakes what depends on the contract.
    pub(crate) fn bump(&self, contract: &str) {
        let trigger = {
            let mut entry = self
                .generations
                .entry(contract.to_owned())
                .or_insert_with(|| (0, Trigger::new()));
            entry.0 += 1;
            entry.1.clone()
        };
        trigger.fire();
    }

    /// Records a reactive read of `contract`'s providers.
    pub(crate) fn track(&self, contract: &str) {
        if crate::reactive::is_tracking() {
            self.trigger(contract).read();
        }
    }

    /// The generation of `contract`: changes whenever its providers change. Inside a
    /// computed value or an effect, the read is tracked.
    pub fn generation(&self, contract: &str) -> u64 {
        self.track(contract);
        self.generations.get(contract).map_or(0, |g| g.0)
    }
}

/// A live reference to the best provider of a contract, as seen from one partition.
#[derive(Clone)]
pub struct ServiceRef {
    kernel: Weak<KernelCore>,
    contract: String,
    partition: Partition,
    /// Who calls through this reference: providers see it as the caller.
    caller: Caller,
}

impl ServiceRef {
    pub(crate) fn new(
        kernel: Weak<KernelCore>,
        contract: &str,
        partition: Partition,
        caller: Caller,
    ) -> Self {
        Self {
            kernel,
            contract: contract.to_owned(),
            partition,
            caller,
        }
    }

    /// The contract.
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// The current best provider's instance name and a handle to it that calls with this
    /// reference's authority (the resolving instance's own), if any. Inside a computed
    /// value or an effect the read is tracked, so re-wiring re-runs it.
    pub fn resolve(&self) -> Option<(String, Arc<dyn AnyInstance>)> {
        self.best()
            .map(|(name, handle)| (name, handle.bound_as(CallAs(self.caller.clone()))))
    }

    /// The current best provider, as the kernel holds it.
    fn best(&self) -> Option<(String, Arc<dyn AnyInstance>)> {
        let kernel = self.kernel.upgrade()?;
        kernel.state.services.track(&self.contract);
        super::providers(&kernel.state, &self.contract, &self.partition)
            .into_iter()
            .next()
    }

    /// The current best provider's name.
    pub fn provider(&self) -> Option<String> {
        self.best().map(|(name, _)| name)
    }

    /// Calls `runnable` on the current best provider; `ServiceGone` when there is none.
    pub async fn call(
        &self,
        runnable: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let (_, handle) = self
            .best()
            .ok_or_else(|| Error::ServiceGone(self.contract.clone()))?;
        let caller = CallAs(self.caller.clone());
        let reply = match handle.call_json_as(runnable, params.into(), None, caller, false) {
            Ok(pending) => pending.reply().await,
            Err(refused) => Err(refused),
        };
        reply.map_err(|e| match e {
            CallError::Stopped => Error::ServiceGone(self.contract.clone()),
            other => Error::Call(other),
        })
    }
}

impl Kernel {
    /// The best active provider of `contract` visible from `partition`.
    pub fn require(&self, contract: &str, partition: &Partition) -> Option<String> {
        self.require_all(contract, partition).into_iter().next()
    }

    /// Every active provider of `contract` visible from `partition`, best first.
    pub fn require_all(&self, contract: &str, partition: &Partition) -> Vec<String> {
        providers(self.state(), contract, partition)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// A live reference to the best provider of `contract` for `partition`: it resolves
    /// on every use, so it follows re-wiring and never holds a removed provider.
    pub fn service(&self, contract: &str, partition: &Partition) -> ServiceRef {
        ServiceRef::new(
            Arc::downgrade(&self.core),
            contract,
            partition.clone(),
            crate::caller::Caller::host(),
        )
    }
}

impl Context {
    /// A live reference to the best provider of `contract` visible from this instance
    /// (its partition's or a shared one). Calls through it, and handles it resolves to,
    /// carry this instance's own authority.
    pub fn service(&self, contract: &str) -> ServiceRef {
        let kernel = self
            .part::<Arc<KernelCore>>()
            .map_or_else(|_| Weak::new(), |k| Arc::downgrade(&k));
        ServiceRef::new(
            kernel,
            contract,
            self.partition().clone(),
            self.own_caller(),
        )
    }
}

/// Active providers of `contract` visible from `partition`, best first, with handles.
pub(crate) fn providers(
    state: &KernelState,
    contract: &str,
    partition: &Partition,
) -> Vec<(String, Arc<dyn AnyInstance>)> {
    let factories = state.factories.read();
    let instances = state.instances.read();
    let mut found: Vec<&Record> = instances
        .values()
        .filter(|r| {
            r.status == InstanceStatus::Active
                && visible(&r.partition, partition)
                && factories
                    .get(r.factory)
                    .is_some_and(|f| f.provides.contains(&contract))
        })
        .collect();
    found.sort_by(|a, b| b.ranking.cmp(&a.ranking).then(a.seq.cmp(&b.seq)));
    found
        .into_iter()
        .filter_map(|r| r.handle.clone().map(|h| (r.name.clone(), h)))
        .collect()
}
