//! Boot: every inactive instance activated in dependency order, cycles refused before
//! anything starts, failures and blocked instances reported.

use super::*;
use crate::cycles::find_cycle;
use crate::error::Dependency;
use std::collections::BTreeSet;

impl Kernel {
    /// What `name` waits for: instances of its `depends` factories and providers of its
    /// required contracts, visible from its partition. `Err` lists what does not exist.
    pub(super) fn prerequisites(&self, name: &str) -> Result<Vec<String>, Vec<Dependency>> {
        let factories = self.state().factories.read();
        let instances = self.state().instances.read();
        let Some(record) = instances.get(name) else {
            return Err(vec![Dependency::Instance(name.to_owned())]);
        };
        let Some(entry) = factories.get(record.factory) else {
            return Err(vec![Dependency::Factory(record.factory.to_owned())]);
        };
        let mut needed = Vec::new();
        let mut missing = Vec::new();
        for dep in entry.depends {
            let found: Vec<&Record> = instances
                .values()
                .filter(|r| r.factory == *dep && visible(&r.partition, &record.partition))
                .collect();
            if found.is_empty() {
                missing.push(Dependency::Factory((*dep).to_owned()));
            }
            needed.extend(found.iter().map(|r| r.name.clone()));
        }
        for contract in entry.requires {
            let found: Vec<&Record> = instances
                .values()
                .filter(|r| {
                    r.name != record.name
                        && visible(&r.partition, &record.partition)
                        && factories
                            .get(r.factory)
                            .is_some_and(|f| f.provides.contains(contract))
                })
                .collect();
            if found.is_empty() {
                missing.push(Dependency::Service((*contract).to_owned()));
            }
            needed.extend(found.iter().map(|r| r.name.clone()));
        }
        if missing.is_empty() {
            needed.sort();
            needed.dedup();
            Ok(needed)
        } else {
            Err(missing)
        }
    }

    /// Activates every instance that is not active, in dependency order. A cycle is
    /// refused (naming it) before anything starts. An instance whose activation fails is
    /// reported and nothing of it runs; instances that need it are reported blocked and
    /// not started; the rest runs. Boot again to retry.
    pub async fn boot(&self) -> Result<BootReport, Error> {
        // Instances backing off are restarted by their recovery, not by boot.
        let pending: Vec<String> = self
            .state()
            .instances
            .read()
            .values()
            .filter(|r| {
                !matches!(
                    r.status,
                    InstanceStatus::Active | InstanceStatus::BackingOff { .. }
                )
            })
            .map(|r| r.name.clone())
            .collect();
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut report = BootReport::default();
        let mut blocked: BTreeMap<String, Vec<Dependency>> = BTreeMap::new();
        for name in &pending {
            match self.prerequisites(name) {
                Ok(deps) => {
                    edges.insert(name.clone(), deps);
                }
                Err(missing) => {
                    blocked.insert(name.clone(), missing);
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            return Err(Error::DependencyCycle(cycle));
        }
        let order = topo_order(&edges, |n| self.seq_of(n));
        for name in order {
            if let Some(missing) = blocked.get(&name) {
                self.set_status(&name, InstanceStatus::Blocked(missing.clone()));
                report.blocked.push((name.clone(), missing.clone()));
                continue;
            }
            let not_ready: Vec<Dependency> = edges
                .get(&name)
                .map(|deps| {
                    deps.iter()
                        .filter(|d| !self.is_active(d))
                        .map(|d| Dependency::Instance(d.clone()))
                        .collect()
                })
                .unwrap_or_default();
            if !not_ready.is_empty() && !self.missing_active(&name).is_empty() {
                self.set_status(&name, InstanceStatus::Blocked(not_ready.clone()));
                report.blocked.push((name.clone(), not_ready));
                continue;
            }
            match self.activate(&name).await {
                Ok(()) => report.activated.push(name),
                Err(e) => {
                    let reason = e.to_string();
                    self.set_status(&name, InstanceStatus::Failed(reason.clone()));
                    report.failed.push((name, reason));
                }
            }
        }
        // Blocked instances that only waited for names missing from the graph.
        for (name, missing) in blocked {
            if !report.blocked.iter().any(|(n, _)| n == &name) {
                self.set_status(&name, InstanceStatus::Blocked(missing.clone()));
                report.blocked.push((name, missing));
            }
        }
        Ok(report)
    }

    /// What `name` needs that is not active, looked up in the route index (cost grows
    /// with the number of factories, not of instances): an active visible instance of each
    /// `depends` factory and an active visible provider of each required contract.
    pub(super) fn missing_active(&self, name: &str) -> Vec<Dependency> {
        let factories = self.state().factories.read();
        let instances = self.state().instances.read();
        let routes = self.state().routes.read();
        let Some(record) = instances.get(name) else {
            return vec![Dependency::Instance(name.to_owned())];
        };
        let Some(entry) = factories.get(record.factory) else {
            return vec![Dependency::Factory(record.factory.to_owned())];
        };
        let shared = Partition::unpartitioned();
        let active = |factory: &'static str| {
            [&record.partition, &shared]
                .into_iter()
                .any(|p| routes.contains_key(&(factory, p.clone())))
        };
        let mut missing = Vec::new();
        for dep in entry.depends {
            if !active(dep) {
                missing.push(Dependency::Factory((*dep).to_owned()));
            }
        }
        for contract in entry.requires {
            let provided = factories
                .values()
                .filter(|f| f.provides.contains(contract))
                .any(|f| active(f.name));
            if !provided {
                missing.push(Dependency::Service((*contract).to_owned()));
            }
        }
        missing
    }
}

/// Prerequisites first; among the ready, the older instance first.
fn topo_order(edges: &BTreeMap<String, Vec<String>>, seq: impl Fn(&str) -> u64) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    let mut left: Vec<&String> = edges.keys().collect();
    left.sort_by_key(|n| seq(n));
    while !left.is_empty() {
        let ready = left.iter().position(|n| {
            edges[*n]
                .iter()
                .all(|d| done.contains(d) || !edges.contains_key(d))
        });
        // No cycle (checked before), so some node is always ready.
        let Some(i) = ready else { break };
        let n = left.remove(i);
        done.insert(n.clone());
        order.push(n.clone());
    }
    order
}
