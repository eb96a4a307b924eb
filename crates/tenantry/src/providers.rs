//! Standard components: config, credentials, storage and logging providers.
//!
//! Each is an ordinary component, instantiated like any other (usually unpartitioned,
//! so that every tenant's instances can `require` it). Tenant code reaches config,
//! credentials and storage through its own scoped views on [`crate::Context`]; these
//! providers own the shared side: loading config layers, writing secrets, describing the
//! storage backend, and a logging sink.
//!
//! A provider acts within the narrower of its own reach and its caller's
//! ([`Context::caller_config`]): a tenant reads its own config view and writes no config
//! and no secrets; host code and admin-granted instances may write. A provider placed in
//! a tenant's partition never acts beyond that partition, whoever calls it.

use crate::component::{Component, NoParams, Runnables};
use crate::instance::host::Host;
use crate::kernel::KernelCore;
use crate::scope::Secret;
use crate::{Context, HandlerError, Partition};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The contracts of the standard providers, for `provides`, `requires` and
/// [`Context::service`].
pub mod contracts {
    /// The config provider's contract.
    pub const CONFIG: &str = "IConfig";
    /// The credentials provider's contract.
    pub const CREDENTIALS: &str = "ICredentials";
    /// The storage provider's contract.
    pub const STORAGE: &str = "IStorage";
    /// The logging provider's contract.
    pub const LOGGING: &str = "ILogging";
}

fn host(ctx: &Context) -> Result<Arc<dyn Host>, HandlerError> {
    ctx.host().map_err(|_| shut_down())
}

fn shut_down() -> HandlerError {
    HandlerError::with_code("shut_down", "the runtime is shut down")
}

fn forbidden(what: &str) -> HandlerError {
    HandlerError::forbidden(
        "forbidden",
        format!("{what} needs host access or the admin grant"),
    )
}

/// Refuses callers confined to one partition: only host code and admin-granted
/// instances may act on the shared side of a provider.
fn privileged(ctx: &Context, what: &str) -> Result<(), HandlerError> {
    if ctx.caller_is_privileged() {
        Ok(())
    } else {
        Err(forbidden(what))
    }
}

/// The config view this turn may act on, refusing a read-only one for `what`.
fn writable_config(ctx: &Context, what: &str) -> Result<crate::config::ConfigView, HandlerError> {
    let view = ctx
        .caller_config()
        .map_err(|e| HandlerError::new(e.to_string()))?;
    if view.writable() {
        Ok(view)
    } else {
        Err(forbidden(what))
    }
}

fn config_error(e: crate::config::ConfigError) -> HandlerError {
    HandlerError::with_code("config", e.to_string())
}

/// The config provider (`IConfig`). Properties: `defaults` (an object), `file` (a JSON
/// file path), `env_prefix` (variables `<prefix>A__B` set `a.b`).
pub struct ConfigProvider;

/// Params of `config.get`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    /// The dotted key.
    pub key: String,
}

/// Params of `config.set`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigWrite {
    /// The dotted key.
    pub key: String,
    /// The new value.
    pub value: serde_json::Value,
}

impl Component for ConfigProvider {
    const FACTORY: &'static str = "config";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[contracts::CONFIG]
    }

    fn create(ctx: &Context) -> Result<Self, HandlerError> {
        let host = host(ctx)?;
        let store = host.config();
        let props = ctx.properties();
        if let Some(defaults) = props.get("defaults") {
            store.set_defaults(defaults.clone());
        }
        if let Some(file) = props.get("file").and_then(|f| f.as_str()) {
            store.load_file(file).map_err(config_error)?;
        }
        if let Some(prefix) = props.get("env_prefix").and_then(|p| p.as_str()) {
            store.load_env(prefix, std::env::vars());
        }
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "get",
            "Reads a config value by dotted key.",
            |_, ctx, p: ConfigKey| {
                // What the caller may see, not what the provider may.
                ctx.caller_config()
                    .map_err(|e| HandlerError::new(e.to_string()))?
                    .get(&p.key)
                    .map_err(config_error)
            },
        );
        r.runnable(
            "set",
            "Writes a config value by dotted key.",
            |_, ctx, p: ConfigWrite| {
                writable_config(ctx, "writing config")?
                    .set(&p.key, p.value)
                    .map_err(config_error)
            },
        );
        r.runnable(
            "reload",
            "Re-reads the config file.",
            |_, ctx, _: NoParams| {
                writable_config(ctx, "reloading config")?;
                host(ctx)?.config().reload_file().map_err(config_error)
            },
        );
    }
}

/// The credentials provider (`ICredentials`): writes secrets into instance scopes.
pub struct CredentialsProvider;

/// Params of `credentials.set`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretWrite {
    /// The partition of the instance (omit for unpartitioned).
    #[serde(default)]
    pub partition: Option<String>,
    /// The component instance name.
    pub instance: String,
    /// The secret's name.
    pub name: String,
    /// The secret's value.
    pub value: String,
}

/// Params of `credentials.names`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretScope {
    /// The partition of the instance (omit for unpartitioned).
    #[serde(default)]
    pub partition: Option<String>,
    /// The component instance name.
    pub instance: String,
}

fn scope_of(
    ctx: &Context,
    partition: Option<&str>,
    instance: &str,
) -> Result<(Partition, String), HandlerError> {
    let partition = match partition {
        Some(p) => Partition::new(p)
            .map_err(|e| HandlerError::with_code("invalid_partition", e.to_string()))?,
        None => Partition::unpartitioned(),
    };
    // A provider placed in a tenant's partition acts in that partition only.
    let own = ctx.partition();
    if !own.is_unpartitioned() && *own != partition {
        return Err(HandlerError::with_code(
            "not_found",
            format!("no instance {instance} in that partition"),
        ));
    }
    let factory = ctx
        .part::<Arc<KernelCore>>()
        .map_err(|_| shut_down())?
        .factory_of(instance, &partition)
        .ok_or_else(|| {
            HandlerError::with_code(
                "not_found",
                format!("no instance {instance} in that partition"),
            )
        })?;
    Ok((partition, format!("{factory}/{instance}")))
}

impl Component for CredentialsProvider {
    const FACTORY: &'static str = "credentials";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[contracts::CREDENTIALS]
    }

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "set",
            "Sets a secret in one instance's scope.",
            |_, ctx, p: SecretWrite| {
                privileged(ctx, "writing secrets")?;
                let (partition, scope) = scope_of(ctx, p.partition.as_deref(), &p.instance)?;
                host(ctx)?
                    .credentials()
                    .set(&partition, &scope, &p.name, Secret::new(p.value));
                Ok(())
            },
        );
        r.runnable(
            "names",
            "Lists the secret names of one instance's scope.",
            |_, ctx, p: SecretScope| {
                privileged(ctx, "listing secrets")?;
                let (partition, scope) = scope_of(ctx, p.partition.as_deref(), &p.instance)?;
                Ok(host(ctx)?.credentials().names(&partition, &scope))
            },
        );
    }
}

/// The storage provider (`IStorage`): instances use `ctx.storage()`; this describes the
/// backend.
pub struct StorageProvider;

/// What `storage.backend` returns.
#[derive(Serialize, JsonSchema)]
pub struct BackendInfo {
    /// The store kind (`memory`, `redb`, `postgres`).
    pub kind: String,
}

impl Component for StorageProvider {
    const FACTORY: &'static str = "storage";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[contracts::STORAGE]
    }

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable(
            "backend",
            "Describes the storage backend.",
            |_, ctx, _: NoParams| {
                Ok(BackendInfo {
                    kind: host(ctx)?.store().kind().to_owned(),
                })
            },
        );
    }
}

/// The logging provider (`ILogging`): a tracing sink tagged with the provider's identity
/// and the caller's partition.
pub struct LoggingProvider;

/// Params of `logging.log`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// `error`, `warn`, `info` (default) or `debug`.
    #[serde(default)]
    pub level: Option<String>,
    /// The message.
    pub message: String,
}

impl Component for LoggingProvider {
    const FACTORY: &'static str = "logging";
    const VERSION: &'static str = "1.0.0";

    fn provides() -> &'static [&'static str] {
        &[contracts::LOGGING]
    }

    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }

    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("log", "Writes a log line.", |_, ctx, line: LogLine| {
            let id = ctx.identity();
            let (partition, instance) = (id.partition.to_string(), id.key.to_string());
            let caller = ctx.caller();
            let caller = caller.home().map(|p| p.to_string()).unwrap_or_default();
            match line.level.as_deref().unwrap_or("info") {
                "error" => tracing::error!(%partition, %instance, %caller, "{}", line.message),
                "warn" => tracing::warn!(%partition, %instance, %caller, "{}", line.message),
                "debug" => tracing::debug!(%partition, %instance, %caller, "{}", line.message),
                "info" => tracing::info!(%partition, %instance, %caller, "{}", line.message),
                other => {
                    return Err(HandlerError::with_code(
                        "invalid_level",
                        format!("unknown level {other:?}"),
                    ));
                }
            }
            Ok(())
        });
    }
}
