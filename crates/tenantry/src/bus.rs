//! The bus: routes `prefix.handler` calls to the right instance, and carries events.
//!
//! Resolution order for `invoke(handler, params)`:
//! 1. `instance.runnable` — an exact component instance;
//! 2. `factory.runnable` plus a target — the instance of that factory in the target
//!    partition;
//! 3. `manager.handler` plus a target and a key — a keyed instance, activated through its
//!    manager if needed (virtual-actor style);
//! 4. remote transports, in the order they were added: for a handler no local route
//!    knows, and for a keyed instance another node serves (cluster mode);
//! 5. otherwise `RouteNotFound`. Unknown targets are never guessed.
//!
//! The caller decides what is reachable. A call from inside partition P
//! ([`CallerKind::Partition`]) reaches only instances of P,
//! whatever target it names; an admin-granted instance may reach other partitions and
//! every such call is audited; host code is trusted. A bus handle's caller is fixed when
//! the runtime makes it ([`Runtime::bus`](crate::Runtime::bus),
//! [`Runtime::bus_for`](crate::Runtime::bus_for), [`Context::bus`](crate::Context::bus)). Events are published into the publisher's partition and delivered only
//! to subscribers of that partition: channels subscribed here, and the active component
//! instances whose factory subscribes to the topic (the kernel answers which).
//!
//! The bus sits above the kernel and the managers and asks them through queries
//! ([`KernelCore::named`], [`KernelCore::listed`], [`KernelCore::subscribers`], the
//! managers' roles); it never reads their tables.

use crate::caller::{CallAs, Caller, CallerKind};
use crate::component::{BusEvent, EVENT_RUNNABLE};
use crate::instance::JsonParams;
use crate::instance::cell::{AnyInstance, Pending};
use crate::instance::context::Context;
use crate::instance::envelope::{AnyReply, encoding_failed};
use crate::kernel::{KernelCore, Named, Reachable};
use crate::manager::{AnyManager, Managers, Role, Shared};
use crate::quota::Quotas;
use crate::telemetry::EventKind;
use crate::{CallError, Error, Identity, Key, Partition};
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::any::TypeId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc;

/// Options of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Invoke {
    /// The target partition (for factory and keyed routes).
    pub target: Option<Partition>,
    /// The key (for keyed routes).
    pub key: Option<Key>,
    /// The call timeout (default: the manager's).
    pub timeout: Option<Duration>,
    /// Always hand the call to the instance's own task, never run its turn on the calling
    /// thread (by default a call to an idle instance runs there: see
    /// [`InstanceHandle`](crate::InstanceHandle)). For callers whose own work should not
    /// wait behind turns, such as a server's connection tasks: measured on the HTTP
    /// gateway, queueing kept more requests per second than running turns in place.
    pub queued: bool,
    /// Never hand the call to a transport, even when another node serves its instance:
    /// for a node answering a call forwarded to it (a forwarded call never travels on).
    pub local: bool,
}

impl Invoke {
    /// Targets partition `p`.
    pub fn target(p: &Partition) -> Self {
        Self {
            target: Some(p.clone()),
            ..Self::default()
        }
    }

    /// Adds a key.
    pub fn key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// Hands the call to the instance's own task (see [`Invoke::queued`]).
    pub fn queued(mut self) -> Self {
        self.queued = true;
        self
    }
}

/// A call that no local route took, handed to remote transports: either no route here
/// knows the handler, or its keyed instance is served by another node (`identity`).
#[derive(Debug, Clone)]
pub struct RemoteCall {
    /// The handler (`prefix.name`).
    pub handler: String,
    /// The params.
    pub params: serde_json::Value,
    /// The effective target partition.
    pub target: Option<Partition>,
    /// The key, if any.
    pub key: Option<Key>,
    /// Who is calling: a transport must make the far side act for no one else.
    pub caller: Caller,
    /// The call timeout asked for (`None`: the far side's default).
    pub timeout: Option<Duration>,
    /// The keyed instance the call is for, when this runtime knows it but another node
    /// serves it (cluster mode: `Error::ServedElsewhere`).
    pub served_elsewhere: Option<Identity>,
}

/// A remote transport: another place calls can go. `None` means "not mine".
pub trait Transport: Send + Sync + 'static {
    /// A name for logs.
    fn name(&self) -> &str;
    /// Tries to deliver a call.
    fn invoke<'a>(
        &'a self,
        call: &'a RemoteCall,
    ) -> BoxFuture<'a, Option<Result<serde_json::Value, Error>>>;
}

/// Where a runtime's published events also go, besides its own subscribers (cluster
/// mode: the other nodes, which deliver them to theirs with
/// [`Runtime::deliver_event`](crate::Runtime::deliver_event)). Called in the publisher's
/// thread, just before the runtime's own subscribers get the event: it must not block.
pub trait EventSink: Send + Sync + 'static {
    /// `payload` was published on `topic` into `partition`.
    fn published(&self, partition: &Partition, topic: &str, payload: &serde_json::Value);
}

/// A reply's size in bytes of JSON, for the partition's `max_reply_bytes`.
trait ReplyBytes {
    fn reply_bytes(&self) -> usize;
}

impl ReplyBytes for Box<RawValue> {
    fn reply_bytes(&self) -> usize {
        self.get().len()
    }
}

impl ReplyBytes for serde_json::Value {
    /// Encoded only to be measured, so only for partitions with a reply limit.
    fn reply_bytes(&self) -> usize {
        let mut counter = ByteCounter(0);
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }
}

/// A reply that did not decode as `R`, and why.
fn reply_not_decoded<R>(handler: &str, why: impl std::fmt::Display) -> Error {
    let why = format!("does not decode as {}: {why}", std::any::type_name::<R>());
    Error::Call(encoding_failed(handler, why))
}

/// A writer that only counts.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A call to a resolved instance, for one reply form (see [`Bus::invoke`],
/// [`Bus::invoke_raw`] and [`Bus::invoke_as`]).
type LocalCall<O> = for<'a> fn(
    &'a dyn AnyInstance,
    &'a str,
    JsonParams<'a>,
    &'a Invoke,
    CallAs,
) -> Result<Pending<O>, CallError>;

/// How a route resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `instance.runnable`.
    Instance,
    /// `factory.runnable` plus a target.
    Factory,
    /// `manager.handler` plus a target and a key.
    Keyed,
}

/// One callable handler, as introspection lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HandlerDescriptor {
    /// The route (`tenant-db-acme.query`, `tenant-db.query`, `counters.increment`).
    pub route: String,
    /// How it resolves.
    pub kind: RouteKind,
    /// What it does.
    pub description: String,
    /// JSON Schema of the params.
    pub params_schema: serde_json::Value,
    /// JSON Schema of the reply.
    pub reply_schema: serde_json::Value,
    /// The largest JSON reply a call may produce, in bytes.
    pub max_reply_bytes: usize,
}

struct Sub {
    id: u64,
    partition: Partition,
    pattern: String,
    tx: mpsc::UnboundedSender<BusEvent>,
}

/// What every bus handle of a runtime shares: its transports and channel subscriptions,
/// and the layers it routes into.
pub(crate) struct BusCore {
    shared: Arc<Shared>,
    managers: Arc<Managers>,
    kernel: Arc<KernelCore>,
    transports: RwLock<Vec<Arc<dyn Transport>>>,
    sinks: RwLock<Vec<Arc<dyn EventSink>>>,
    subs: RwLock<Vec<Sub>>,
    next_id: AtomicU64,
    /// The partitions' limits, for calls from outside.
    pub(crate) quotas: Arc<Quotas>,
}

impl BusCore {
    pub(crate) fn new(
        shared: Arc<Shared>,
        managers: Arc<Managers>,
        kernel: Arc<KernelCore>,
    ) -> Self {
        let quotas = shared.quotas.clone();
        Self {
            shared,
            managers,
            kernel,
            quotas,
            transports: RwLock::default(),
            sinks: RwLock::default(),
            subs: RwLock::default(),
            next_id: AtomicU64::new(0),
        }
    }

    pub(crate) fn add_sink(&self, sink: Arc<dyn EventSink>) {
        self.sinks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sink);
    }

    pub(crate) fn add_transport(&self, t: Arc<dyn Transport>) {
        self.transports
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(t);
    }

    fn push(
        &self,
        partition: &Partition,
        pattern: &str,
        tx: mpsc::UnboundedSender<BusEvent>,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Sub {
                id,
                partition: partition.clone(),
                pattern: pattern.to_owned(),
                tx,
            });
        id
    }

    fn unsubscribe(&self, id: u64) {
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s.id != id);
    }

    fn len(&self) -> usize {
        self.subs.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Whether `topic` matches `pattern`: dot-separated, `*` matches one segment, a final
/// `**` matches the rest.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some("**"), _) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A subscription's receiving end; dropping it unsubscribes.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<BusEvent>,
    id: u64,
    bus: Weak<BusCore>,
}

impl Subscription {
    /// The next event.
    pub async fn recv(&mut self) -> Option<BusEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<BusEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.unsubscribe(self.id);
        }
    }
}

/// A bus handle for one caller. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    core: Arc<BusCore>,
    caller: Caller,
    /// Calls made through it enter from outside: its partition's limits admit them.
    metered: bool,
}

enum Route {
    Instance(Arc<dyn AnyInstance>),
    Keyed(Arc<dyn AnyManager>, Key, Partition),
}

impl Context {
    /// The bus, calling from this instance: confined to its partition unless it holds
    /// the admin grant (then audited whenever it reaches another partition).
    pub fn bus(&self) -> Result<Bus, Error> {
        Ok(Bus::new(self.part::<Arc<BusCore>>()?, self.own_caller()))
    }
}

impl Bus {
    pub(crate) fn new(core: Arc<BusCore>, caller: Caller) -> Self {
        Self {
            core,
            caller,
            metered: false,
        }
    }

    /// A bus whose calls enter the runtime from outside, confined to `partition`: each
    /// is admitted by the partition's limits first ([`crate::quota`]).
    pub(crate) fn entry(core: Arc<BusCore>, partition: &Partition) -> Self {
        Self {
            core,
            caller: Caller::tenant(partition.clone()),
            metered: true,
        }
    }

    /// Number of event subscriptions (channels and active component instances), all
    /// partitions together (host diagnostics).
    pub fn subscription_count(&self) -> usize {
        self.core.len() + self.core.kernel.subscription_count()
    }

    /// Who this bus calls as.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The partition this caller is confined to, if any.
    fn confined(&self) -> Option<&Partition> {
        self.caller.confined_to()
    }

    /// The runtime's proof that calls routed here act for this bus's caller.
    fn stamp(&self) -> CallAs {
        CallAs(self.caller.clone())
    }

    /// Records an admin's reach into another partition.
    fn audit(&self, action: &str, target: &Partition) {
        if let CallerKind::Admin(identity) = self.caller.kind() {
            if &identity.partition != target {
                tracing::info!(actor = %identity, %target, action, "cross-partition admin access");
                self.core.shared.telemetry.emit(
                    identity,
                    EventKind::Audit {
                        action: action.to_owned(),
                        target: target.clone(),
                    },
                );
            }
        }
    }

    fn resolve<'h>(
        &self,
        handler: &'h str,
        opts: &Invoke,
    ) -> Result<Option<(Route, &'h str)>, Error> {
        let not_found = || Error::RouteNotFound(handler.to_owned());
        let (prefix, runnable) = handler.rsplit_once('.').ok_or_else(not_found)?;
        if runnable.is_empty() || runnable == EVENT_RUNNABLE {
            return Err(not_found());
        }
        // A confined caller reaches its own partition, whatever target it names.
        let target = match (self.confined(), &opts.target) {
            (Some(own), Some(t)) if t != own => return Err(not_found()),
            (Some(own), _) => Some(own.clone()),
            (None, t) => t.clone(),
        };
        let reached = |reach: Reachable, partition: &Partition| match reach {
            Reachable::Active(h) => {
                self.audit(handler, partition);
                Ok(Some((Route::Instance(h), runnable)))
            }
            Reachable::Inactive(why) => Err(why.unwrap_or_else(not_found)),
        };
        match self.core.kernel.named(prefix, target.as_ref()) {
            // 1. an exact instance
            Named::Instance(partition, reach) => {
                if self.confined().is_some_and(|own| own != &partition) {
                    return Err(not_found());
                }
                return reached(reach, &partition);
            }
            // 2. a factory plus a target
            Named::Factory(reach) => {
                let Some(target) = target else {
                    return Err(not_found());
                };
                return reached(reach, &target);
            }
            Named::Nothing => {}
        }
        // 3. a keyed manager plus a target and a key
        if let (Some(key), Some(manager)) =
            (&opts.key, self.core.managers.with_role(prefix, Role::Keyed))
        {
            let target = target.unwrap_or_else(Partition::unpartitioned);
            self.audit(handler, &target);
            return Ok(Some((Route::Keyed(manager, key.clone(), target), runnable)));
        }
        Ok(None)
    }

    /// Invokes `handler` with JSON `params` (see the module docs for the resolution order).
    /// The params may be a value or a borrowed one (`&value`: a local handler only reads
    /// them), or JSON text ([`JsonParams::Text`]).
    pub async fn invoke(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'_>>,
        opts: Invoke,
    ) -> Result<serde_json::Value, Error> {
        let local: LocalCall<serde_json::Value> = |h, runnable, params, opts, caller| {
            h.call_json_as(runnable, params, opts.timeout, caller, opts.queued)
        };
        self.route(handler, params.into(), opts, local, Ok).await
    }

    /// [`Bus::invoke`], with the reply as JSON text: an instance's reply is encoded once
    /// and never built as a JSON value. For callers that send the reply on (a gateway
    /// writing a response body). The params may be JSON text too ([`JsonParams::Text`]):
    /// a local handler decodes its params type straight from it.
    pub async fn invoke_raw(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'_>>,
        opts: Invoke,
    ) -> Result<Box<RawValue>, Error> {
        let local: LocalCall<Box<RawValue>> = |h, runnable, params, opts, caller| {
            h.call_text_as(runnable, params, opts.timeout, caller, opts.queued)
        };
        let remote = |reply: serde_json::Value| {
            serde_json::value::to_raw_value(&reply)
                .map_err(|e| Error::Call(encoding_failed(handler, e)))
        };
        self.route(handler, params.into(), opts, local, remote)
            .await
    }

    /// [`Bus::invoke`], with the reply as the Rust type `R`.
    ///
    /// For host code, a reply that already is an `R` (the handler's own reply type, on an
    /// instance of this runtime) comes as itself: never encoded as JSON nor decoded. Like
    /// any typed in-process call it is then not bounded by the manager's
    /// `max_reply_bytes`, and what only the JSON would show is not applied: fields the
    /// type skips when serializing keep their values, a failing `Serialize` is not an
    /// error, and `R`'s `Deserialize` checks do not run.
    ///
    /// Every other reply is decoded from its JSON into `R`: another type, a remote
    /// instance's, and every reply to a caller other than host code (an instance's own
    /// bus, a tenant's entry bus). So an instance never receives another instance's live
    /// value (an `Arc` into its state, say), whatever partition it may reach, and a
    /// metered entry bus measures every reply for its partition's limit. A reply that does
    /// not decode is [`CallError::ReplyEncoding`].
    pub async fn invoke_as<R: DeserializeOwned + Send + 'static>(
        &self,
        handler: &str,
        params: impl Into<JsonParams<'_>>,
        opts: Invoke,
    ) -> Result<R, Error> {
        let decoded = |value: serde_json::Value| {
            serde_json::from_value(value).map_err(|e| reply_not_decoded::<R>(handler, e))
        };
        if !self.caller.is_host() {
            return decoded(self.invoke(handler, params, opts).await?);
        }
        // What `route` adds (admission, the reply's measure) is for metered buses only.
        debug_assert!(!self.metered, "a host bus is never metered");
        let local: LocalCall<AnyReply> = |h, runnable, params, opts, caller| {
            let wanted = TypeId::of::<R>();
            h.call_typed_as(runnable, params, opts.timeout, caller, opts.queued, wanted)
        };
        let reply = self
            .route_admitted(handler, params.into(), opts, local, |v| {
                Ok(AnyReply::Json(v))
            })
            .await?;
        match reply {
            // The slot boxed it because its type is `R`: the downcast cannot fail.
            AnyReply::Itself(reply) => reply
                .downcast::<R>()
                .map(|r| *r)
                .map_err(|_| reply_not_decoded::<R>(handler, "the instance answered another type")),
            AnyReply::Json(value) => decoded(value),
        }
    }

    /// Resolves `handler` and calls it: `local` on an instance of this runtime, else
    /// through the transports, whose JSON reply `remote` converts.
    async fn route<O: ReplyBytes>(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        opts: Invoke,
        local: LocalCall<O>,
        remote: impl FnOnce(serde_json::Value) -> Result<O, Error>,
    ) -> Result<O, Error> {
        // A forwarded call was admitted (and its reply is measured) where it entered.
        let permit = match self.confined() {
            Some(partition) if self.metered && !opts.local => Some(
                self.core
                    .quotas
                    .admit(partition)
                    .map_err(|throttled| Error::Throttled {
                        partition: partition.clone(),
                        throttled,
                    })?,
            ),
            _ => None,
        };
        let reply = self
            .route_admitted(handler, params, opts, local, remote)
            .await?;
        if let Some(max) = permit.as_ref().and_then(|p| p.max_reply_bytes())
            && reply.reply_bytes() as u64 > max
        {
            return Err(Error::Call(CallError::ReplyTooLarge {
                handler: handler.to_owned(),
                limit: usize::try_from(max).unwrap_or(usize::MAX),
            }));
        }
        Ok(reply)
    }

    /// [`Bus::route`] once the call's partition admitted it.
    async fn route_admitted<O>(
        &self,
        handler: &str,
        params: JsonParams<'_>,
        opts: Invoke,
        local: LocalCall<O>,
        remote: impl FnOnce(serde_json::Value) -> Result<O, Error>,
    ) -> Result<O, Error> {
        match self.resolve(handler, &opts)? {
            Some((Route::Instance(h), runnable)) => {
                Ok(local(&*h, runnable, params, &opts, self.stamp())?
                    .reply()
                    .await?)
            }
            Some((Route::Keyed(manager, key, partition), runnable)) => {
                match manager.get_dyn(key, &partition).await {
                    Ok(h) => Ok(local(&*h, runnable, params, &opts, self.stamp())?
                        .reply()
                        .await?),
                    Err(Error::ServedElsewhere(identity)) if !opts.local => {
                        let elsewhere = Some(identity.clone());
                        let params = params.into_value(handler)?;
                        let answer = self.call_remote(handler, params, &opts, elsewhere).await;
                        remote(answer.unwrap_or(Err(Error::ServedElsewhere(identity)))?)
                    }
                    Err(e) => Err(e),
                }
            }
            None if opts.local => Err(Error::RouteNotFound(handler.to_owned())),
            None => match self
                .call_remote(handler, params.into_value(handler)?, &opts, None)
                .await
            {
                Some(result) => remote(result?),
                None => Err(Error::RouteNotFound(handler.to_owned())),
            },
        }
    }

    fn remote_call(
        &self,
        handler: &str,
        params: serde_json::Value,
        opts: &Invoke,
        served_elsewhere: Option<Identity>,
    ) -> RemoteCall {
        RemoteCall {
            handler: handler.to_owned(),
            params,
            target: match self.confined() {
                Some(own) => Some(own.clone()),
                None => opts.target.clone(),
            },
            key: opts.key.clone(),
            caller: self.caller.clone(),
            timeout: opts.timeout,
            served_elsewhere,
        }
    }

    /// The transports' answer to a call no instance of this runtime serves, if one takes
    /// it. Boxed: this path's state would otherwise size every local call's future, which
    /// callers move and box.
    fn call_remote<'a>(
        &'a self,
        handler: &str,
        params: serde_json::Value,
        opts: &Invoke,
        served_elsewhere: Option<Identity>,
    ) -> BoxFuture<'a, Option<Result<serde_json::Value, Error>>> {
        let call = self.remote_call(handler, params, opts, served_elsewhere);
        Box::pin(async move { self.through_transports(&call).await })
    }

    /// The first transport's answer to `call`, if one takes it.
    async fn through_transports(
        &self,
        call: &RemoteCall,
    ) -> Option<Result<serde_json::Value, Error>> {
        let transports: Vec<Arc<dyn Transport>> = self
            .core
            .transports
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for t in transports {
            if let Some(result) = t.invoke(call).await {
                return Some(result);
            }
        }
        None
    }

    /// Every handler this caller can reach, with descriptions and JSON Schemas.
    pub fn handlers(&self) -> Vec<HandlerDescriptor> {
        let mut out = Vec::new();
        let reach = |p: &Partition| self.confined().is_none_or(|own| own == p);
        let push =
            |out: &mut Vec<HandlerDescriptor>, prefix: &str, kind, manager: &dyn AnyManager| {
                for h in manager.handlers_dyn() {
                    out.push(HandlerDescriptor {
                        route: format!("{prefix}.{}", h.name),
                        kind,
                        description: h.description.to_owned(),
                        params_schema: h.params_schema,
                        reply_schema: h.reply_schema,
                        max_reply_bytes: h.max_reply_bytes,
                    });
                }
            };
        let (instances, factories) = self.core.kernel.listed(reach);
        for l in instances {
            push(&mut out, &l.prefix, RouteKind::Instance, &*l.manager);
        }
        for l in factories {
            push(&mut out, &l.prefix, RouteKind::Factory, &*l.manager);
        }
        for (name, m) in self.core.managers.playing(Role::Keyed) {
            push(&mut out, &name, RouteKind::Keyed, &*m);
        }
        out
    }

    /// Publishes an event into this caller's partition (host code: see
    /// [`Bus::publish_in`]). Returns how many subscribers it reached.
    pub fn publish(&self, topic: &str, payload: serde_json::Value) -> Result<usize, Error> {
        match self.caller.home() {
            Some(p) => Ok(self.broadcast(p, topic, payload)),
            None => Err(Error::Forbidden(
                "host code publishes with publish_in(partition, ...)".into(),
            )),
        }
    }

    /// Publishes an event into `partition` (host and admin callers).
    pub fn publish_in(
        &self,
        partition: &Partition,
        topic: &str,
        payload: serde_json::Value,
    ) -> Result<usize, Error> {
        match self.caller.confined_to() {
            Some(own) if own != partition => Err(Error::Forbidden(
                "a tenant publishes into its own partition only".into(),
            )),
            _ => {
                self.audit(&format!("publish {topic}"), partition);
                Ok(self.broadcast(partition, topic, payload))
            }
        }
    }

    /// Delivers to this runtime's subscribers, then hands the event to the sinks.
    fn broadcast(&self, partition: &Partition, topic: &str, payload: serde_json::Value) -> usize {
        // Sinks never block (see `EventSink`), so they are called under the read lock.
        for sink in self
            .core
            .sinks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            sink.published(partition, topic, &payload);
        }
        self.deliver(partition, topic, payload)
    }

    /// Delivers to this runtime's subscribers of `partition` only; how many it reached.
    pub(crate) fn deliver(
        &self,
        partition: &Partition,
        topic: &str,
        payload: serde_json::Value,
    ) -> usize {
        let event = BusEvent {
            topic: topic.to_owned(),
            payload,
        };
        let mut reached = 0;
        {
            let subs = self.core.subs.read().unwrap_or_else(|e| e.into_inner());
            for sub in subs
                .iter()
                .filter(|s| &s.partition == partition && topic_matches(&s.pattern, topic))
            {
                reached += usize::from(sub.tx.send(event.clone()).is_ok());
            }
        }
        let instances = self
            .core
            .kernel
            .subscribers(partition, |pattern| topic_matches(pattern, topic));
        if !instances.is_empty() {
            let Ok(value) = serde_json::to_value(&event) else {
                return reached;
            };
            for handle in instances {
                // The subscriber handles it as coming from the publisher.
                let told = handle.tell_internal(EVENT_RUNNABLE, value.clone(), self.stamp());
                reached += usize::from(told.is_ok());
            }
        }
        reached
    }

    /// Subscribes to topics matching `pattern` in this caller's partition.
    pub fn subscribe(&self, pattern: &str) -> Result<Subscription, Error> {
        let Some(partition) = self.caller.home().cloned() else {
            return Err(Error::Forbidden(
                "host code subscribes with subscribe_in(partition, ...)".into(),
            ));
        };
        self.subscribe_in(&partition, pattern)
    }

    /// Subscribes to topics matching `pattern` in `partition` (host and admin callers).
    pub fn subscribe_in(
        &self,
        partition: &Partition,
        pattern: &str,
    ) -> Result<Subscription, Error> {
        if let Some(own) = self.caller.confined_to() {
            if own != partition {
                return Err(Error::Forbidden(
                    "a tenant subscribes in its own partition only".into(),
                ));
            }
        }
        self.audit(&format!("subscribe {pattern}"), partition);
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.core.push(partition, pattern, tx);
        Ok(Subscription {
            rx,
            id,
            bus: Arc::downgrade(&self.core),
        })
    }
}
