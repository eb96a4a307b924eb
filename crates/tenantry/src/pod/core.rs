//! The pods layer's part of a runtime: the declared topologies of its pods managers, the
//! topology caches of live pods, and the checks a topology must pass against the
//! registry (node managers exist and manage their factories, no pod contains itself).

use super::PodFactory;
use super::state::{LivePod, PodManager, PodState};
use super::topology::{NodeKind, Topology, TopologyError, node_label};
use crate::manager::{AnyManager, ManagerConfig, Managers, Role, Shared};
use crate::{Error, Identity};
use dashmap::DashMap;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

struct PodDecl {
    factory: &'static str,
    topology: Topology,
}

/// What the pods of one runtime share.
pub(crate) struct PodCore {
    pub(crate) shared: Arc<Shared>,
    managers: Arc<Managers>,
    /// Declared topologies of the pods managers, by manager name.
    decls: RwLock<HashMap<String, PodDecl>>,
    /// Topology caches of live pods.
    pub(crate) live: DashMap<Identity, Arc<LivePod>>,
}

impl PodCore {
    pub(crate) fn new(shared: Arc<Shared>, managers: Arc<Managers>) -> Self {
        Self {
            shared,
            managers,
            decls: RwLock::default(),
            live: DashMap::new(),
        }
    }

    fn decls(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PodDecl>> {
        self.decls.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a pods manager named `name` for pod factory `P`, after checking its
    /// declared topology: its structure, its node managers, and that no nested pod
    /// contains this pod at any depth.
    pub(crate) fn register<P: PodFactory>(
        self: &Arc<Self>,
        name: &str,
        config: ManagerConfig,
    ) -> Result<PodManager<P>, Error> {
        let topology = P::topology()?;
        topology.validate()?;
        self.check_topology(P::NAME, name, &topology)?;
        let manager =
            self.managers
                .register::<PodState<P>>(&self.shared, name, config, Role::Pods)?;
        self.decls
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_owned(),
                PodDecl {
                    factory: P::NAME,
                    topology,
                },
            );
        Ok(PodManager {
            manager,
            core: self.clone(),
        })
    }

    /// The manager named `name` (a node manager or a pods manager).
    pub(crate) fn manager_dyn(&self, name: &str) -> Option<Arc<dyn AnyManager>> {
        self.managers.get(name)
    }

    /// The pods manager `name`.
    pub(crate) fn pod_manager(&self, name: &str) -> Result<Arc<dyn AnyManager>, Error> {
        self.managers
            .with_role(name, Role::Pods)
            .ok_or_else(|| Error::UnknownManager(name.to_owned()))
    }

    /// The names of the pods managers, sorted.
    pub(crate) fn manager_names(&self) -> Vec<String> {
        self.managers.names(Some(Role::Pods))
    }

    /// The topology a pods manager declared.
    pub(crate) fn declared(&self, manager: &str) -> Option<Topology> {
        self.decls().get(manager).map(|d| d.topology.clone())
    }

    /// Checks a topology against the registry: every node's manager exists and manages
    /// its factory, pod nodes live in pods managers, and no pod contains itself.
    pub(crate) fn check_topology(
        &self,
        pod_factory: &str,
        own_manager: &str,
        topology: &Topology,
    ) -> Result<(), TopologyError> {
        let decls = self.decls();
        for node in &topology.nodes {
            let label = node_label(&node.name);
            if node.kind == NodeKind::Pod
                && (node.manager == own_manager || node.factory == pod_factory)
            {
                return Err(TopologyError::ContainsItself {
                    pod: pod_factory.to_owned(),
                    path: vec![pod_factory.to_owned(), node.factory.clone()],
                });
            }
            let manager =
                self.manager_dyn(&node.manager)
                    .ok_or_else(|| TopologyError::UnknownManager {
                        node: label.clone(),
                        manager: node.manager.clone(),
                    })?;
            if manager.factory() != node.factory {
                return Err(TopologyError::ManagerMismatch {
                    node: label,
                    manager: node.manager.clone(),
                    expected: node.factory.clone(),
                    actual: manager.factory().to_owned(),
                });
            }
            if node.kind == NodeKind::Pod {
                if !decls.contains_key(&node.manager) {
                    return Err(TopologyError::NotAPodManager {
                        node: label,
                        manager: node.manager.clone(),
                    });
                }
                let mut path = vec![pod_factory.to_owned()];
                contains(&decls, &node.manager, pod_factory, &mut path)?;
            }
        }
        Ok(())
    }
}

/// Walks nested pods from `manager` and fails if `target` appears at any depth.
fn contains(
    decls: &HashMap<String, PodDecl>,
    manager: &str,
    target: &str,
    path: &mut Vec<String>,
) -> Result<(), TopologyError> {
    let Some(decl) = decls.get(manager) else {
        return Ok(());
    };
    path.push(decl.factory.to_owned());
    if decl.factory == target {
        return Err(TopologyError::ContainsItself {
            pod: target.to_owned(),
            path: path.clone(),
        });
    }
    for node in decl
        .topology
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Pod)
    {
        contains(decls, &node.manager, target, path)?;
    }
    path.pop();
    Ok(())
}
