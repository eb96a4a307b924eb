//! What a running instance sees of the world: its identity and partition-scoped access.
//!
//! There is deliberately no way to name another partition from here: [`Context::get`]
//! always activates in the instance's own partition. Every capability handed out here
//! (bus, service references, agent handles, config view, storage, credentials) is built
//! from the instance's own identity and grant, never from whoever sent the current letter,
//! so code running in a tenant acts as that tenant whether it runs in a handler, a hook,
//! an effect or a task it spawned.

use super::cell::KeepAlive;
use super::host::{Host, HostRef};
use crate::HandlerError;
use crate::caller::{Caller, CallerKind};
use crate::component::Properties;
use crate::config::ConfigView;
use crate::reactive::{Computed, EffectInner, EffectSink, instance_effect};
use crate::scope::journal::{HeldReply, Journal};
use crate::scope::{Credentials, Storage};
use crate::{Error, Identity, Key, Partition};
use std::any::{Any, TypeId};
use std::sync::Arc;

/// The body of an instance's effect: its state (as `Any`) and its context.
pub(crate) type EffectBody =
    Box<dyn Fn(&mut dyn Any, &mut Context) -> Result<(), HandlerError> + Send + Sync>;

/// An instance's view of the runtime, passed to every handler and hook.
pub struct Context {
    identity: Arc<Identity>,
    host: HostRef,
    held: Vec<KeepAlive>,
    stop_requested: bool,
    /// Who sent the letter being handled (`None`: nobody — a hook or an effect of the
    /// instance itself, which act with its own authority).
    caller: Option<Caller>,
    /// What components, reactive and durable instances need; boxed so a plain agent
    /// pays one word.
    extras: Option<Box<Extras>>,
}

/// What a durable instance's turns leave for the commit that makes them durable.
struct Durable {
    /// Their storage writes.
    journal: Arc<Journal>,
    /// The running turn's replies. Only ever reached through `&mut` (`get_mut`, no
    /// locking); the mutex is what makes a context with held replies `Sync`.
    replies: std::sync::Mutex<Vec<HeldReply>>,
}

impl Durable {
    fn replies(&mut self) -> &mut Vec<HeldReply> {
        self.replies.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Extras {
    properties: Option<Arc<Properties>>,
    /// Whether the instance holds the admin grant; fixed at instantiation, so cached.
    admin: std::sync::OnceLock<bool>,
    /// Effects owned by this instance, disposed with it.
    effects: Vec<Arc<EffectInner>>,
    /// Effects waiting for their first run (registered before or during a turn).
    pending_effects: Vec<Arc<EffectInner>>,
    /// How a scheduled effect reaches the instance's mailbox (set by its task).
    effect_sink: Arc<std::sync::OnceLock<EffectSink>>,
    /// A durable instance's journal and held replies.
    durable: Option<Durable>,
}

impl Context {
    pub(crate) fn new(identity: Arc<Identity>, host: HostRef) -> Self {
        Self {
            identity,
            host,
            held: Vec::new(),
            stop_requested: false,
            caller: None,
            extras: None,
        }
    }

    /// Makes this a durable instance's context: storage writes go to `journal`, replies
    /// are held while a turn runs.
    pub(crate) fn set_journal(&mut self, journal: Arc<Journal>) {
        self.extras().durable = Some(Durable {
            journal,
            replies: Default::default(),
        });
    }

    /// Whether this is a durable (`EveryTurn`) instance.
    pub(crate) fn is_durable(&self) -> bool {
        self.durable().is_some()
    }

    fn durable(&self) -> Option<&Durable> {
        self.extras.as_ref().and_then(|e| e.durable.as_ref())
    }

    fn durable_mut(&mut self) -> Option<&mut Durable> {
        self.extras.as_mut().and_then(|e| e.durable.as_mut())
    }

    fn journal(&self) -> Option<&Arc<Journal>> {
        self.durable().map(|d| &d.journal)
    }

    /// Holds a reply until the running durable turn is settled; gives it back when this
    /// is no durable instance or no turn is running.
    pub(crate) fn hold_reply(&mut self, reply: HeldReply) -> Result<(), HeldReply> {
        match self.durable_mut() {
            Some(d) if d.journal.open_turn().is_some() => {
                d.replies().push(reply);
                Ok(())
            }
            _ => Err(reply),
        }
    }

    /// The replies the last durable turn held (`None` for other instances).
    pub(crate) fn held_replies(&mut self) -> Option<&mut Vec<HeldReply>> {
        self.durable_mut().map(|d| d.replies())
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// This instance's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This instance's partition.
    pub fn partition(&self) -> &Partition {
        &self.identity.partition
    }

    /// This instance's key.
    pub fn key(&self) -> &Key {
        &self.identity.key
    }

    /// The manager hosting this instance.
    pub fn manager(&self) -> &str {
        &self.identity.manager
    }

    /// Who sent the letter being handled: host code, a partition (a tenant's key or an
    /// instance), or an admin-granted instance. In a hook or an effect nobody sent
    /// anything, and this is the instance itself ([`Context::own_caller`]).
    pub fn caller(&self) -> Caller {
        match &self.caller {
            Some(caller) => caller.clone(),
            None => self.own_caller(),
        }
    }

    /// Whether the current caller is host code or an admin-granted instance.
    pub fn caller_is_privileged(&self) -> bool {
        match &self.caller {
            Some(caller) => caller.is_privileged(),
            None => self.is_admin(),
        }
    }

    pub(crate) fn set_caller(&mut self, caller: Option<Caller>) {
        self.caller = caller;
    }

    /// The authority this instance's own calls carry: confined to its partition, or its
    /// admin grant.
    pub fn own_caller(&self) -> Caller {
        if self.is_admin() {
            Caller::admin(self.identity.clone())
        } else {
            Caller::tenant(self.identity.partition.clone())
        }
    }

    /// The config as the current turn may act on it: the narrower of this instance's
    /// reach and its caller's.
    ///
    /// - A tenant's instance sees its own partition's view whoever calls it (a host call
    ///   does not lend it the host's reach); it writes only if it holds the admin grant
    ///   and its caller is privileged.
    /// - A shared (unpartitioned) instance acts within its caller's reach: a partition
    ///   caller gets that partition's read-only view (whatever grant the instance holds);
    ///   host and admin callers the whole config, writable. In its own hooks and effects
    ///   it reads everything and writes only with the admin grant.
    pub fn caller_config(&self) -> Result<ConfigView, Error> {
        let host = self.host()?;
        let own = &self.identity.partition;
        let admin = self.is_admin();
        let (partition, may_write) = if own.is_unpartitioned() {
            match self.caller.as_ref().map(Caller::kind) {
                Some(CallerKind::Partition(p)) => (p.clone(), false),
                Some(CallerKind::Host | CallerKind::Admin(_)) => (Partition::unpartitioned(), true),
                None => (Partition::unpartitioned(), admin),
            }
        } else {
            (own.clone(), admin && self.caller_is_privileged())
        };
        Ok(ConfigView::new(host.config().clone(), partition, may_write))
    }

    /// The instance's properties (components; empty for agents).
    pub fn properties(&self) -> &Properties {
        static EMPTY: std::sync::OnceLock<Properties> = std::sync::OnceLock::new();
        match self.extras.as_ref().and_then(|e| e.properties.as_ref()) {
            Some(p) => p,
            None => EMPTY.get_or_init(Properties::new),
        }
    }

    pub(crate) fn set_properties(&mut self, properties: Arc<Properties>) {
        self.extras().properties = Some(properties);
    }

    /// Asks to hibernate and stop once the current turn is over.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    pub(crate) fn take_stop_request(&mut self) -> bool {
        std::mem::take(&mut self.stop_requested)
    }

    /// Keeps another instance alive (see [`KeepAlive`]) for as long as this one runs.
    pub fn hold(&mut self, keep_alive: KeepAlive) {
        self.held.push(keep_alive);
    }

    /// Releases every keep-alive this instance holds and disposes its effects (done on
    /// restart and stop).
    pub(crate) fn release_all(&mut self) {
        self.held.clear();
        if let Some(extras) = self.extras.as_mut() {
            for e in extras.effects.drain(..) {
                e.dispose();
            }
            extras.pending_effects.clear();
        }
    }

    /// Registers an effect of this instance: `f` runs in the instance's turn (never
    /// concurrently with its handlers) first right after the current turn, then whenever
    /// a reactive value it read changed. `S` is the instance's state type (the component
    /// type for components). An error is reported as an `EffectFailed` event. Effects are
    /// disposed when the instance stops or restarts.
    pub fn effect<S: Any>(
        &mut self,
        f: impl Fn(&mut S, &mut Context) -> Result<(), HandlerError> + Send + Sync + 'static,
    ) {
        let body: EffectBody =
            Box::new(move |target: &mut dyn Any, ctx: &mut Context| {
                match target.downcast_mut::<S>() {
                    Some(state) => f(state, ctx),
                    None => Err(HandlerError::with_code(
                        "effect_type",
                        "the effect was registered for another state type",
                    )),
                }
            });
        let extras = self.extras();
        let effect = instance_effect(Box::new(body), extras.effect_sink.clone());
        extras.effects.push(effect.clone());
        extras.pending_effects.push(effect);
    }

    /// A computed value (see [`Computed`]); a convenience for component `create`.
    pub fn computed<T: Clone + PartialEq + Send + Sync + 'static>(
        &self,
        f: impl Fn() -> T + Send + Sync + 'static,
    ) -> Computed<T> {
        Computed::new(f)
    }

    /// Whether effects wait for a first run or for their sink (cheap; checked every turn).
    pub(crate) fn has_effect_work(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|e| !e.pending_effects.is_empty())
    }

    /// Whether this instance has effects but no way yet to schedule them.
    pub(crate) fn wants_effect_sink(&self) -> bool {
        self.extras
            .as_ref()
            .is_some_and(|e| !e.effects.is_empty() && e.effect_sink.get().is_none())
    }

    pub(crate) fn install_effect_sink(&self, sink: EffectSink) {
        if let Some(extras) = &self.extras {
            let _ = extras.effect_sink.set(sink);
        }
    }

    pub(crate) fn take_pending_effects(&mut self) -> Vec<Arc<EffectInner>> {
        match self.extras.as_mut() {
            Some(extras) => std::mem::take(&mut extras.pending_effects),
            None => Vec::new(),
        }
    }

    pub(crate) fn report_effect_error(&self, error: String) {
        tracing::warn!(instance = %self.identity, %error, "effect failed");
        if let Ok(host) = self.host() {
            host.telemetry().emit(
                &self.identity,
                crate::telemetry::EventKind::EffectFailed { error },
            );
        }
    }

    /// The runtime hosting this instance, while it runs.
    pub(crate) fn host(&self) -> Result<Arc<dyn Host>, Error> {
        self.host.upgrade().ok_or(Error::ShutDown)
    }

    /// The hosting runtime's part of type `T` (a higher layer's core; see [`Host::part`]).
    pub(crate) fn part<T: Any + Clone>(&self) -> Result<T, Error> {
        let host = self.host()?;
        host.part(TypeId::of::<T>())
            .and_then(|part| part.downcast_ref::<T>())
            .cloned()
            .ok_or(Error::ShutDown)
    }

    /// Whether this instance was instantiated with the admin grant.
    pub(crate) fn is_admin(&self) -> bool {
        // Grants are given to component instances, which always have properties; an
        // agent never holds one, and never takes the kernel's lock to learn so.
        match &self.extras {
            Some(extras) if extras.properties.is_some() => {
                *extras.admin.get_or_init(|| self.lookup_admin())
            }
            _ => false,
        }
    }

    fn lookup_admin(&self) -> bool {
        self.host
            .upgrade()
            .is_some_and(|host| host.holds_admin_grant(&self.identity))
    }

    /// This instance's own storage.
    pub fn storage(&self) -> Result<Storage, Error> {
        Ok(Storage::new(
            self.host()?.store().clone(),
            &self.identity,
            self.journal(),
        ))
    }

    /// This instance's own credentials.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        Ok(Credentials::new(
            self.host()?.credentials().clone(),
            &self.identity,
        ))
    }

    /// This instance's view of the config: shared keys plus its own tenant's subtree.
    pub fn config(&self) -> Result<ConfigView, Error> {
        Ok(ConfigView::new(
            self.host()?.config().clone(),
            self.identity.partition.clone(),
            self.is_admin(),
        ))
    }
}
