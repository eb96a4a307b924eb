//! What a server hosts: an application's components, keyed agents and pods.
//!
//! Any Rust program can serve its own application through the same gateway (auth, admin
//! API, onboarding, OpenAPI, metrics, graceful shutdown, redb or PostgreSQL):
//!
//! ```no_run
//! # use tenantry_server::Application;
//! # #[derive(serde::Serialize, serde::Deserialize, Default)] struct Cart;
//! # impl tenantry::Factory for Cart {
//! #     const NAME: &'static str = "cart";
//! #     fn fresh(_: &tenantry::Identity) -> Self { Cart }
//! #     fn handlers(_: &mut tenantry::Handlers<Self>) {}
//! # }
//! fn main() -> std::process::ExitCode {
//!     tenantry_server::cli::run_application(Application::new("shop").agents::<Cart>("carts"))
//! }
//! ```
//!
//! The standard providers (config, credentials, storage, logging) are always there; a
//! tenant's instances, declared in the config file or at onboarding, may be of any
//! component factory the application registers.

use crate::settings::ManagerSection;
use anyhow::{Context as _, anyhow, bail};
use std::collections::BTreeMap;
use std::time::Duration;
use tenantry::component::Component;
use tenantry::{Durability, Factory, ManagerConfig, PodFactory, Runtime};
use tenantry_demo::workspace::{PODS_MANAGER, WORKERS_MANAGER, Worker, WorkspacePod};
use tenantry_demo::{MysqlDb, TenantDb};

/// Registers one part of the application in a runtime, given the `[managers]` settings.
type Registration =
    Box<dyn Fn(&Runtime, &BTreeMap<String, ManagerSection>) -> anyhow::Result<()> + Send + Sync>;

/// An application: what a server registers in its runtime before it boots the tenants.
pub struct Application {
    name: String,
    registrations: Vec<Registration>,
    keyed: Vec<String>,
    demo: bool,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.name)
            .field("keyed_managers", &self.keyed)
            .finish_non_exhaustive()
    }
}

/// A keyed manager's settings from its `[managers.<name>]` section. Unlike the library,
/// the server makes every turn durable unless the section says `on_hibernate`: a client
/// told "200" must not lose its write to a crash.
pub(crate) fn manager_config(section: Option<&ManagerSection>) -> anyhow::Result<ManagerConfig> {
    let mut config = ManagerConfig::default().durability(Durability::EveryTurn);
    let Some(s) = section else {
        return Ok(config);
    };
    if let Some(durability) = s.durability {
        config = config.durability(durability);
    }
    if let Some(secs) = s.idle_timeout_secs {
        let d = Duration::try_from_secs_f64(secs)
            .map_err(|_| anyhow!("idle_timeout_secs must be a positive number, not {secs}"))?;
        config = config.idle_timeout(d);
    }
    if let Some(cap) = s.mailbox_capacity {
        if cap == 0 {
            bail!("mailbox_capacity must be at least 1");
        }
        config = config.mailbox_capacity(cap);
    }
    if let Some(ms) = s.call_timeout_ms {
        config = config.call_timeout(Duration::from_millis(ms));
    }
    Ok(config)
}

impl Application {
    /// An application with nothing registered yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            registrations: Vec::new(),
            keyed: Vec::new(),
            demo: false,
        }
    }

    /// The built-in demo: `tenant-db` and `mysql-db` components, `workspace_workers`
    /// agents and `workspace_pods` pods. With no config file the server also gives it
    /// the demo tenants.
    pub fn demo() -> Self {
        let mut app = Self::new("tenantry demo")
            .component::<TenantDb>()
            .component::<MysqlDb>()
            .agents::<Worker>(WORKERS_MANAGER)
            .pods::<WorkspacePod>(PODS_MANAGER);
        app.demo = true;
        app
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the built-in demo.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// The keyed managers (agents and pods), the ones `[managers.<name>]` may configure.
    pub fn keyed_managers(&self) -> &[String] {
        &self.keyed
    }

    /// Registers component factory `C`: tenants may have instances of it.
    pub fn component<C: Component>(mut self) -> Self {
        self.registrations.push(Box::new(|rt, _| {
            rt.kernel()
                .register::<C>()
                .with_context(|| format!("component {}", C::FACTORY))
        }));
        self
    }

    /// Registers a manager named `manager` of keyed agents of factory `F`, configured by
    /// `[managers.<manager>]`.
    pub fn agents<F: Factory>(self, manager: &str) -> Self {
        self.keyed(manager, |rt, name, config| {
            rt.register::<F>(name, config).map(|_| ())
        })
    }

    /// Registers a pods manager named `manager` of pod factory `P`, configured by
    /// `[managers.<manager>]`. The managers its nodes live in must be registered first.
    pub fn pods<P: PodFactory>(self, manager: &str) -> Self {
        self.keyed(manager, |rt, name, config| {
            rt.register_pod::<P>(name, config).map(|_| ())
        })
    }

    /// Registers a keyed manager with `register`, given its `[managers.<name>]` settings.
    fn keyed(
        mut self,
        manager: &str,
        register: impl Fn(&Runtime, &str, ManagerConfig) -> Result<(), tenantry::Error>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        let name = manager.to_owned();
        self.keyed.push(name.clone());
        self.registrations.push(Box::new(move |rt, sections| {
            let config = manager_config(sections.get(&name))
                .with_context(|| format!("[managers.{name}]"))?;
            register(rt, &name, config).with_context(|| format!("manager {name}"))
        }));
        self
    }

    /// Registers everything in `runtime`; a `[managers.<name>]` section for a manager the
    /// application does not have is an error.
    pub(crate) fn install(
        &self,
        runtime: &Runtime,
        sections: &BTreeMap<String, ManagerSection>,
    ) -> anyhow::Result<()> {
        for name in sections.keys() {
            if !self.keyed.contains(name) {
                bail!(
                    "[managers.{name}]: no such manager (configurable: {})",
                    self.keyed.join(", ")
                );
            }
        }
        for register in &self.registrations {
            register(runtime, sections)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml: &str) -> ManagerSection {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn keyed_managers_make_every_turn_durable_unless_their_section_says_otherwise() {
        assert_eq!(
            manager_config(None).unwrap().durability,
            Durability::EveryTurn
        );
        let on_hibernate = section("durability = \"on_hibernate\"");
        assert_eq!(
            manager_config(Some(&on_hibernate)).unwrap().durability,
            Durability::OnHibernate
        );
        let other = section("mailbox_capacity = 8");
        assert_eq!(
            manager_config(Some(&other)).unwrap().durability,
            Durability::EveryTurn
        );
        assert!(toml::from_str::<ManagerSection>("durability = \"sometimes\"").is_err());
    }
}
