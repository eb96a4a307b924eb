//! Components: named, property-configured instances of a factory, booted by the kernel.
//!
//! A component is a plain Rust type implementing [`Component`]: a factory name and
//! version, the contracts it provides and requires, the factories it depends on,
//! lifecycle hooks (`activate`, `deactivate`) and runnables — named handlers with a
//! description and typed params, declared as closures in [`Component::runnables`]:
//!
//! ```no_run
//! # use tenantry::component::*;
//! # use tenantry::{Context, HandlerError};
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Query { sql: String }
//!
//! struct TenantDb { queries: u64 }
//!
//! impl Component for TenantDb {
//!     const FACTORY: &'static str = "tenant-db";
//!     fn create(_: &Context) -> Result<Self, HandlerError> { Ok(Self { queries: 0 }) }
//!     fn runnables(r: &mut Runnables<'_, Self>) {
//!         r.runnable("query", "Runs a query", |db, _ctx, q: Query| { db.queries += 1; Ok(q.sql) });
//!         r.runnable("status", "Queries served", |db, _ctx, _: NoParams| Ok(db.queries));
//!     }
//! }
//! ```
//!
//! Under the hood a component instance is an ordinary instance of the factory's
//! ephemeral manager: its key is the instance name and its partition the `target`
//! property. Its "state" for restarts is its properties: a crash rebuilds it with `create`.

use crate::instance::factory::Factory;
use crate::instance::handlers::{HandlerFn, Handlers, SyncHandlerFn};
use crate::{Context, HandlerError, Identity};
use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;

/// An instance's properties, as given to `instantiate`.
pub type Properties = serde_json::Map<String, serde_json::Value>;

/// Params of a runnable that takes none: accepts `null` or `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NoParams {}

impl JsonSchema for NoParams {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NoParams".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["object", "null"],
            "properties": {},
            "additionalProperties": false
        })
    }
}

impl<'de> Deserialize<'de> for NoParams {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<serde_json::Map<String, serde_json::Value>>::deserialize(d)? {
            None => Ok(NoParams {}),
            Some(m) if m.is_empty() => Ok(NoParams {}),
            Some(m) => Err(serde::de::Error::custom(format!(
                "unknown field `{}`: this runnable takes no params",
                m.keys().next().map(String::as_str).unwrap_or_default()
            ))),
        }
    }
}

/// A published bus event, as delivered to a component's `on_event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BusEvent {
    /// The topic (dot-separated).
    pub topic: String,
    /// The payload.
    pub payload: serde_json::Value,
}

/// A component factory.
pub trait Component: Send + Sized + 'static {
    /// The factory name (`tenant-db`). Unique per runtime; also the name of its manager.
    const FACTORY: &'static str;
    /// The factory version.
    const VERSION: &'static str = "0.1.0";

    /// Service contracts this component provides (`IConfig`, ...).
    fn provides() -> &'static [&'static str] {
        &[]
    }

    /// Service contracts that must have an active provider before this one activates.
    fn requires() -> &'static [&'static str] {
        &[]
    }

    /// Factories whose instances must be active before this one activates.
    fn depends() -> &'static [&'static str] {
        &[]
    }

    /// Bus topic patterns this component subscribes to (delivered to `on_event`).
    fn subscriptions() -> &'static [&'static str] {
        &[]
    }

    /// Builds the component from its properties (`ctx.properties()`).
    fn create(ctx: &Context) -> Result<Self, HandlerError>;

    /// Declares the runnables.
    fn runnables(r: &mut Runnables<'_, Self>);

    /// Runs when the instance activates (after `create`).
    fn activate(
        &mut self,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs when the instance deactivates.
    fn deactivate(
        &mut self,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles an event published in the instance's partition on a subscribed topic.
    fn on_event(&mut self, event: BusEvent, ctx: &mut Context) -> Result<(), HandlerError> {
        let _ = (event, ctx);
        Ok(())
    }
}

/// The runnable registry a component fills in [`Component::runnables`].
pub struct Runnables<'h, C: Component> {
    handlers: &'h mut Handlers<ComponentState<C>>,
}

fn created<C>(state: &mut ComponentState<C>) -> Result<&mut C, HandlerError> {
    state
        .inner
        .as_mut()
        .ok_or_else(|| HandlerError::with_code("not_active", "the component is not active"))
}

impl<C: Component> Runnables<'_, C> {
    /// Adds a synchronous runnable. Params decode from JSON (defaults apply through
    /// serde; unknown fields are refused, naming the field).
    pub fn runnable<P, R, Fun>(
        &mut self,
        name: &'static str,
        description: &'static str,
        f: Fun,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
        Fun: Fn(&mut C, &mut Context, P) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        let handler: SyncHandlerFn<ComponentState<C>, P, R> =
            Arc::new(move |state, ctx, params| created(state).and_then(|c| f(c, ctx, params)));
        self.handlers.add_sync_fn(name, description, handler);
        self
    }

    /// Adds an asynchronous runnable: the closure returns a boxed future borrowing the
    /// component and the context (`Box::pin(async move { ... })`).
    pub fn runnable_async<P, R, Fun>(
        &mut self,
        name: &'static str,
        description: &'static str,
        f: Fun,
    ) -> &mut Self
    where
        P: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize + JsonSchema + Send + 'static,
        Fun: for<'a> Fn(&'a mut C, &'a mut Context, P) -> BoxFuture<'a, Result<R, HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        let f = Arc::new(f);
        let handler: HandlerFn<ComponentState<C>, P, R> = Arc::new(move |state, ctx, params| {
            let f = f.clone();
            Box::pin(async move {
                let c = created(state)?;
                f(c, ctx, params).await
            })
        });
        self.handlers.add_fn(name, description, handler);
        self
    }
}

/// The instance state behind a component: its properties (what a restart rebuilds from)
/// and the live component.
pub struct ComponentState<C> {
    properties: Arc<Properties>,
    inner: Option<C>,
}

impl<C> Serialize for ComponentState<C> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.properties.serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for ComponentState<C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let properties = Option::<Properties>::deserialize(d)?.unwrap_or_default();
        Ok(Self {
            properties: Arc::new(properties),
            inner: None,
        })
    }
}

/// The hidden runnable that delivers subscribed bus events.
pub(crate) const EVENT_RUNNABLE: &str = "__event";

impl<C: Component> Factory for ComponentState<C> {
    const NAME: &'static str = C::FACTORY;

    fn fresh(_: &Identity) -> Self {
        Self {
            properties: Arc::default(),
            inner: None,
        }
    }

    fn handlers(h: &mut Handlers<Self>) {
        C::runnables(&mut Runnables { handlers: h });
        if !C::subscriptions().is_empty() {
            // Internal: reachable only through the bus's delivery, and handled as coming
            // from the publisher.
            let deliver: HandlerFn<Self, BusEvent, ()> = Arc::new(|state, ctx, event| {
                Box::pin(std::future::ready(
                    created(state).and_then(|c| c.on_event(event, ctx)),
                ))
            });
            h.add_internal_fn(EVENT_RUNNABLE, "Delivers a subscribed bus event.", deliver);
        }
    }

    fn effect_target(&mut self) -> Option<&mut dyn std::any::Any> {
        self.inner.as_mut().map(|c| c as &mut dyn std::any::Any)
    }

    async fn on_start(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        ctx.set_properties(self.properties.clone());
        let mut component = C::create(ctx)?;
        component.activate(ctx).await?;
        self.inner = Some(component);
        Ok(())
    }

    async fn on_thaw(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        self.on_start(ctx).await
    }

    async fn on_stop(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        match self.inner.as_mut() {
            Some(c) => c.deactivate(ctx).await,
            None => Ok(()),
        }
    }
}
