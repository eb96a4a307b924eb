//! Instance managers: the get-or-start directory for keyed instances of one factory.
//!
//! The directory is two-level, partition then key, so every operation is scoped to one
//! partition by construction and `stats` never scans another tenant. A slot is
//! `Activating` while one winner thaws or starts the instance (concurrent `get`s wait for
//! it), `Live` while it runs, `Stopping` while it hibernates (a `get` waits, then thaws
//! the fresh checkpoint), and `Failed` after it gave up, until its backoff has passed (see
//! [`crate::failure`]), so there are never two live instances with one identity.

mod actor;
mod durable;
pub mod lineage;
mod registry;
mod shared;

pub(crate) use registry::{Managers, Role};
pub use shared::Admission;
pub(crate) use shared::Shared;

use crate::checkpoint;
use crate::failure::{Backoff, Failure};
use crate::instance::cell::{AnyInstance, Cell, InstanceHandle, KeepAlive, Liveness, Mail};
use crate::instance::context::Context;
use crate::instance::factory::Factory;
use crate::instance::handlers::{HandlerInfo, HandlerTable};
use crate::instance::mailbox::Mailbox;
use crate::instance::runner::Runner;
use crate::quota::Seat;
use crate::scope::journal::Journal;
use crate::telemetry::{EventKind, StopReason, metric};
use crate::{Error, Identity, IntoKey, Key, Partition};
use actor::{Actor, CrashRecord, start_hook};
use dashmap::DashMap;
use durable::Pipeline;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How many crashes an instance survives, and over what window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed within `window`; the next crash stops the instance.
    pub max_restarts: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 3,
            window: Duration::from_secs(5),
        }
    }
}

/// A manager's settings.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Letters an instance's mailbox holds before `tell`/`call` fail with `MailboxFull`.
    pub mailbox_capacity: usize,
    /// Hibernate an instance after this long with no message and no keep-alive owner.
    /// Off (`None`) by default.
    pub idle_timeout: Option<Duration>,
    /// Default timeout of `call`.
    pub call_timeout: Duration,
    /// Crash restart bound.
    pub restart: RestartPolicy,
    /// Whether instances hibernate to the store and thaw from it (default true). Off for
    /// components, which are rebuilt from their properties.
    pub persist: bool,
    /// The largest JSON reply one call may produce, in bytes (default 1 MiB); a larger
    /// one is refused with [`CallError::ReplyTooLarge`](crate::CallError::ReplyTooLarge).
    /// Typed in-process calls are not encoded and not bounded.
    pub max_reply_bytes: usize,
    /// How long an instance that gave up waits before it may start again.
    pub backoff: Backoff,
    /// When an instance's state reaches the store (default [`Durability::OnHibernate`]).
    pub durability: Durability,
}

/// When an instance's state and scoped storage writes reach the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// At hibernation (idle, stop, offboarding, shutdown). Turns cost no store write, but
    /// a process that dies without hibernating (kill -9, OOM, power loss) loses every
    /// change since the instance was loaded, including changes callers were told of.
    /// Storage writes go to the store as they are made. For caches and ephemeral work.
    #[default]
    OnHibernate,
    /// After every turn that changed the state or wrote storage: the state and the
    /// turn's storage writes are committed together, atomically, before the turn's reply
    /// is released. A turn that fails or panics commits nothing and the instance
    /// continues from its last durable state. Turns that change nothing write nothing.
    EveryTurn,
}

/// The default [`ManagerConfig::max_reply_bytes`]: 1 MiB.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 1 << 20;

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            mailbox_capacity: 1024,
            idle_timeout: None,
            call_timeout: Duration::from_secs(5),
            restart: RestartPolicy::default(),
            persist: true,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            backoff: Backoff::default(),
            durability: Durability::OnHibernate,
        }
    }
}

impl ManagerConfig {
    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Sets the mailbox capacity (at least 1).
    pub fn mailbox_capacity(mut self, capacity: usize) -> Self {
        self.mailbox_capacity = capacity.max(1);
        self
    }

    /// Sets the default call timeout.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets when state reaches the store.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Whether every changing turn is committed before its reply (and instances persist).
    pub(crate) fn durable_turns(&self) -> bool {
        self.persist && self.durability == Durability::EveryTurn
    }

    /// Instances are neither checkpointed nor thawed: a stop just stops.
    pub fn ephemeral(mut self) -> Self {
        self.persist = false;
        self
    }

    /// Sets the restart policy.
    pub fn restart(mut self, policy: RestartPolicy) -> Self {
        self.restart = policy;
        self
    }

    /// Sets the backoff of instances that gave up.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the largest JSON reply one call may produce (at least 1 byte).
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes.max(1);
        self
    }
}

/// Live instances of one manager in one partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManagerStats {
    /// The partition counted.
    pub partition: Partition,
    /// Number of live instances.
    pub count: usize,
    /// Their keys, sorted.
    pub keys: Vec<Key>,
}

pub(crate) enum Slot<F: Factory> {
    /// A winner is starting it; wait for the sender to drop, then look again.
    Activating(watch::Receiver<()>),
    /// Running; handles are made from the cell on lookup (a slot holds no caller).
    Live(Arc<Cell<F>>),
    /// It is hibernating; wait, then look again (and thaw).
    Stopping(watch::Receiver<()>),
    /// It gave up; it may start again once the backoff has passed.
    Failed(Arc<Failure>),
}

/// What a manager calls when one of its instances gives up (the kernel restarts
/// components with it).
pub(crate) type GiveUpHook = Arc<dyn Fn(&Identity, &Arc<Failure>) + Send + Sync>;

pub(crate) type PartitionDir<F> = DashMap<Key, Slot<F>>;

pub(crate) struct ManagerCore<F: Factory> {
    pub(crate) name: Arc<str>,
    pub(crate) config: ManagerConfig,
    pub(crate) table: Arc<HandlerTable<F>>,
    pub(crate) shared: Arc<Shared>,
    dirs: DashMap<Partition, Arc<PartitionDir<F>>>,
    pub(crate) give_up_hook: std::sync::OnceLock<GiveUpHook>,
    /// Whether its instances count against their partition's live-instance cap (keyed
    /// agents and pods do; components, which the kernel runs, do not).
    counted: bool,
    /// Every handle of the manager is gone: actors end instead of parking.
    abandoned: AtomicBool,
    sweeper_started: AtomicBool,
}

/// A named manager of keyed instances of factory `F`. Cheap to clone.
pub struct Manager<F: Factory> {
    core: Arc<ManagerCore<F>>,
}

impl<F: Factory> Clone for Manager<F> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
        }
    }
}

/// The most instances one activation hibernates to make room at its partition's cap
/// before it is refused (the candidates it tried were busy again by then).
const MAX_EVICTIONS: usize = 16;

/// How often a manager's sweeper looks for idle instances: an instance idles out between
/// its timeout and 1.125 times it (or ten seconds past it, for long timeouts).
fn sweep_period(timeout: Duration) -> Duration {
    (timeout / 8).clamp(Duration::from_millis(1), Duration::from_secs(10))
}

/// Removes an `Activating` slot if its winner goes away before finishing (an error or a
/// cancelled `get`), and wakes the waiters either way.
struct ActivationGuard<'a, F: Factory> {
    dir: &'a PartitionDir<F>,
    key: &'a Key,
    _gate: watch::Sender<()>,
    done: bool,
}

impl<F: Factory> Drop for ActivationGuard<'_, F> {
    fn drop(&mut self) {
        if !self.done {
            self.dir
                .remove_if(self.key, |_, slot| matches!(slot, Slot::Activating(_)));
        }
    }
}

enum Lookup<F: Factory> {
    Live(InstanceHandle<F>),
    Wait(watch::Receiver<()>),
    Failed(Arc<Failure>),
    Vacant,
}

impl<F: Factory> ManagerCore<F> {
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// The runtime is gone: end the parked actors (as if the process had ended: no
    /// hibernation) and tell running ones not to park again. A parked actor holds the
    /// core (and through it the store) and the core holds the actor's cell, so without
    /// this they would keep each other alive.
    fn abandon(&self) {
        // Set before looking at any mailbox: an actor parks under its mailbox's lock only
        // after seeing this clear, so each actor is either found parked here or ends.
        self.abandoned.store(true, Ordering::SeqCst);
        for cell in self.live_cells(|_| true) {
            if let Some(actor) = cell.mailbox.evict() {
                actor.abandon();
            }
        }
    }

    /// The live cells of every partition that `keep` accepts, collected so that no
    /// directory lock is held while the caller acts on them.
    fn live_cells(&self, keep: impl Fn(&Cell<F>) -> bool) -> Vec<Arc<Cell<F>>> {
        self.dirs
            .iter()
            .flat_map(|dir| {
                dir.iter()
                    .filter_map(|slot| match slot.value() {
                        Slot::Live(cell) if keep(cell) => Some(cell.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Starts the idle sweeper, once, if instances idle out. Idle instances have no task
    /// (their actors are parked), so one task per manager looks for them.
    fn ensure_sweeper(self: &Arc<Self>) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let period = sweep_period(timeout);
            loop {
                tokio::time::sleep(period).await;
                match weak.upgrade() {
                    Some(core) if !core.is_abandoned() => core.sweep_idle(timeout),
                    _ => break,
                }
            }
        });
    }

    /// Asks every instance idle for `timeout` with no keep-alive owner to stop; each
    /// checks again in its own turn.
    fn sweep_idle(&self, timeout: Duration) {
        let idle = self.live_cells(|cell| cell.live.idle_for(timeout).is_some());
        // A running actor is busy by definition (its turn or commit counts up to its end).
        for cell in idle.into_iter().filter(|c| c.mailbox.is_parked()) {
            let _ = cell.post_control(Mail::Stop {
                reason: StopReason::Idle,
                reply: None,
            });
        }
    }

    fn dir(&self, partition: &Partition) -> Arc<PartitionDir<F>> {
        if let Some(dir) = self.dirs.get(partition) {
            return dir.clone();
        }
        self.dirs
            .entry(partition.clone())
            .or_insert_with(|| Arc::new(DashMap::new()))
            .clone()
    }

    fn look(&self, key: &Key, partition: &Partition) -> Lookup<F> {
        let Some(dir) = self.dirs.get(partition) else {
            return Lookup::Vacant;
        };
        match dir.get(key).as_deref() {
            Some(Slot::Live(cell)) => Lookup::Live(InstanceHandle::host(cell.clone())),
            Some(Slot::Activating(rx) | Slot::Stopping(rx)) => Lookup::Wait(rx.clone()),
            Some(Slot::Failed(f)) => Lookup::Failed(f.clone()),
            None => Lookup::Vacant,
        }
    }

    /// Removes the failure of `key`, if it holds one; returns whether it did.
    fn clear_failure(&self, key: &Key, partition: &Partition) -> bool {
        self.dirs.get(partition).is_some_and(|dir| {
            dir.remove_if(key, |_, slot| matches!(slot, Slot::Failed(_)))
                .is_some()
        })
    }

    /// The instances of `partition` that gave up and are waiting out their backoff.
    fn failures(&self, partition: &Partition) -> Vec<(Key, Arc<Failure>)> {
        let Some(dir) = self.dirs.get(partition) else {
            return Vec::new();
        };
        let mut out: Vec<(Key, Arc<Failure>)> = dir
            .iter()
            .filter_map(|e| match e.value() {
                Slot::Failed(f) => Some((e.key().clone(), f.clone())),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn identity(&self, key: Key, partition: &Partition) -> Identity {
        Identity::new(partition.clone(), self.name.clone(), key)
    }

    /// Reads and checks the checkpoint of `identity`: `None` when there is none.
    pub(crate) async fn thaw(&self, identity: &Identity) -> Result<Option<(F, u64)>, Error> {
        if !self.config.persist {
            return Ok(None);
        }
        let Some(record) = self.shared.store.get(identity).await? else {
            return Ok(None);
        };
        let thaw_failed = |cause| {
            let err = Error::ThawFailed {
                identity: identity.clone(),
                cause,
            };
            self.shared.telemetry.emit(
                identity,
                EventKind::ThawFailed {
                    error: err.to_string(),
                },
            );
            err
        };
        let decoded =
            checkpoint::decode(&record.bytes, durable::checkpoint_identity::<F>(identity))
                .map_err(thaw_failed)?;
        let state = if decoded.state_version < F::STATE_VERSION {
            let old: serde_json::Value = serde_json::from_str(decoded.state)
                .map_err(|e| thaw_failed(checkpoint::CheckpointError::State(e.to_string())))?;
            let upgraded = F::upgrade(decoded.state_version, old).map_err(|reason| {
                thaw_failed(checkpoint::CheckpointError::UpgradeFailed {
                    from: decoded.state_version,
                    reason,
                })
            })?;
            serde_json::from_value(upgraded)
        } else {
            serde_json::from_str(decoded.state)
        }
        .map_err(|e| thaw_failed(checkpoint::CheckpointError::State(e.to_string())))?;
        Ok(Some((state, record.version)))
    }

    async fn get(
        self: &Arc<Self>,
        key: Key,
        partition: &Partition,
        initial: Option<F>,
    ) -> Result<InstanceHandle<F>, Error> {
        let mut initial = initial;
        loop {
            let mut failures = 0;
            match self.look(&key, partition) {
                Lookup::Live(h) => {
                    // A node past its lease answers for nothing it still holds.
                    self.shared
                        .admit(|| self.identity(key.clone(), partition))?;
                    return Ok(h);
                }
                Lookup::Wait(mut rx) => {
                    let _ = rx.changed().await;
                    continue;
                }
                Lookup::Failed(f) if !f.expired() => {
                    return Err(Error::BackingOff {
                        identity: self.identity(key, partition),
                        attempt: f.attempt,
                        retry_in: f.retry_in(),
                    });
                }
                Lookup::Failed(f) => failures = f.attempt,
                Lookup::Vacant => {}
            }
            if self.shared.is_closed() || self.is_abandoned() {
                return Err(Error::ShutDown);
            }
            self.shared
                .admit(|| self.identity(key.clone(), partition))?;
            // Room first, before the slot says "activating": making room waits for an
            // instance to hibernate, and its `on_stop` (or a parent stopping its children)
            // may reach this very key, which must not be waiting on us then. A seat taken
            // for a key someone else activates meanwhile is given back below.
            let seat = match self.counted {
                true => Some(self.take_seat(partition).await?),
                false => None,
            };
            let dir = self.dir(partition);
            let (gate, rx) = watch::channel(());
            match dir.entry(key.clone()) {
                // The backoff has passed: this get starts it again.
                dashmap::Entry::Occupied(mut slot) if matches!(slot.get(), Slot::Failed(f) if f.expired()) =>
                {
                    slot.insert(Slot::Activating(rx));
                }
                dashmap::Entry::Occupied(_) => continue,
                dashmap::Entry::Vacant(slot) => {
                    slot.insert(Slot::Activating(rx));
                }
            }
            let mut guard = ActivationGuard {
                dir: &dir,
                key: &key,
                _gate: gate,
                done: false,
            };
            let (handle, mut actor) = self
                .activate(&dir, key.clone(), partition, initial.take(), failures)
                .await?;
            actor.seat = seat;
            let has_effect_work = actor.ctx.has_effect_work();
            // Published before the actor runs, so its own removal on a quick exit always
            // finds its slot (never the other way round).
            dir.insert(key.clone(), Slot::Live(handle.cell.clone()));
            guard.done = true;
            self.shared.actors.enter();
            self.shared.telemetry.live(&handle.cell.identity, 1.0);
            self.ensure_sweeper();
            // It parks at once unless it has work already: effects to run first, or mail
            // sent since it was published.
            let actor: Box<dyn Runner<F>> = Box::new(actor);
            let first = if has_effect_work {
                Err(actor)
            } else {
                handle.cell.mailbox.try_park(actor)
            };
            if let Err(actor) = first {
                handle.cell.runtime.spawn(actor.run(None));
            }
            return Ok(handle);
        }
    }

    /// A place among `partition`'s live instances: at its cap, the least recently used
    /// idle instances (of every keyed manager) hibernate to make room, one at a time;
    /// refused only when none can.
    async fn take_seat(&self, partition: &Partition) -> Result<Seat, Error> {
        let quotas = &self.shared.quotas;
        let mut tried = Vec::new();
        loop {
            if let Some(seat) = quotas.seat(partition) {
                return Ok(seat);
            }
            let candidate = self
                .shared
                .managers
                .upgrade()
                .and_then(|m| m.least_recently_used(partition, &tried));
            let Some((name, key, manager)) = candidate.filter(|_| tried.len() < MAX_EVICTIONS)
            else {
                return Err(Error::Throttled {
                    partition: partition.clone(),
                    throttled: quotas.refuse_activation(partition),
                });
            };
            // It stops only if still idle; either way the seat is tried again.
            let _ = manager.evict_dyn(key.clone(), partition).await;
            tried.push((name, key));
        }
    }

    async fn activate(
        self: &Arc<Self>,
        dir: &Arc<PartitionDir<F>>,
        key: Key,
        partition: &Partition,
        initial: Option<F>,
        failures: u32,
    ) -> Result<(InstanceHandle<F>, Actor<F>), Error> {
        self.shared.ensure_timer_anchor();
        let identity = Arc::new(self.identity(key, partition));
        let (mut state, version, initial_bytes) = match self.thaw(&identity).await? {
            Some((state, version)) => (state, Some(version), None),
            None => match initial {
                Some(state) => {
                    let bytes = serde_json::to_vec(&state).map_err(|e| Error::StateEncoding {
                        identity: (*identity).clone(),
                        reason: e.to_string(),
                    })?;
                    (state, None, Some(Arc::<[u8]>::from(bytes)))
                }
                None => (F::fresh(&identity), None, None),
            },
        };
        let thawed = version.is_some();
        let mut ctx = Context::new(identity.clone(), self.shared.host.clone());
        let journal = self.config.durable_turns().then(Journal::new);
        // A durable instance remembers the state it was loaded with: what its start hook
        // changes is not durable until committed.
        let mut loaded = Vec::new();
        if let Some(journal) = &journal {
            ctx.set_journal(journal.clone());
            durable::encode_state(&identity, &state, &mut loaded)?;
        }
        if let Err(reason) = start_hook(&mut state, &mut ctx, thawed).await {
            self.shared
                .telemetry
                .count(metric::CRASHES, &identity, ("kind", "activation"));
            return Err(Error::ActivationFailed {
                identity: (*identity).clone(),
                reason,
            });
        }
        let cell = Arc::new(Cell {
            identity: identity.clone(),
            mailbox: Mailbox::new(self.config.mailbox_capacity),
            live: Liveness::new(self.shared.epoch),
            table: self.table.clone(),
            call_timeout: self.config.call_timeout,
            runtime: tokio::runtime::Handle::current(),
        });
        let telemetry = &self.shared.telemetry;
        telemetry.count(
            metric::ACTIVATIONS,
            &identity,
            ("mode", if thawed { "thawed" } else { "fresh" }),
        );
        telemetry.emit(
            &identity,
            match version {
                Some(version) => EventKind::Thawed { version },
                None => EventKind::Started,
            },
        );
        let pipeline = match journal {
            Some(journal) => {
                let mut started = Vec::new();
                durable::encode_state(&identity, &state, &mut started)?;
                // An initial state given to `get_with` is not stored yet either.
                let unstored = initial_bytes.is_some();
                Some(Pipeline::new(journal, loaded, started, thawed, unstored))
            }
            None => None,
        };
        let actor = Actor {
            pipeline,
            core: self.clone(),
            dir: dir.clone(),
            cell: cell.clone(),
            state,
            ctx,
            version,
            metrics: Default::default(),
            crashes: CrashRecord::after(failures, initial_bytes),
            seat: None,
        };
        Ok((InstanceHandle::host(cell), actor))
    }

    async fn stop(
        &self,
        key: &Key,
        partition: &Partition,
        reason: StopReason,
    ) -> Result<(), Error> {
        loop {
            match self.look(key, partition) {
                Lookup::Live(h) => {
                    let (tx, rx) = oneshot::channel();
                    let mail = Mail::Stop {
                        reason,
                        reply: Some(tx),
                    };
                    if h.cell.post_control(mail).is_err() {
                        // It ended between the lookup and the send.
                        return Err(Error::NotFound(self.identity(key.clone(), partition)));
                    }
                    return rx.await.unwrap_or(Ok(()));
                }
                Lookup::Wait(mut rx) => {
                    let _ = rx.changed().await;
                }
                Lookup::Failed(_) => {
                    // Nothing runs; stopping it forgets the failure.
                    self.clear_failure(key, partition);
                    return Err(Error::NotFound(self.identity(key.clone(), partition)));
                }
                Lookup::Vacant => {
                    return Err(Error::NotFound(self.identity(key.clone(), partition)));
                }
            }
        }
    }

    /// The idle instance of `partition` used least recently (no keep-alive owner, its
    /// actor parked), leaving out `skip`: when it was last active, and its key.
    fn least_recently_used(&self, partition: &Partition, skip: &[&Key]) -> Option<(u64, Key)> {
        let dir = self.dirs.get(partition)?;
        dir.iter()
            .filter_map(|e| match e.value() {
                Slot::Live(cell)
                    if cell.live.owners.load(Ordering::Acquire) == 0
                        && cell.mailbox.is_parked()
                        && !skip.contains(&e.key()) =>
                {
                    Some((
                        cell.live.last_active_ms.load(Ordering::Relaxed),
                        e.key().clone(),
                    ))
                }
                _ => None,
            })
            .min_by_key(|(last_active, _)| *last_active)
    }

    fn live_keys(&self, partition: &Partition) -> Vec<Key> {
        let Some(dir) = self.dirs.get(partition) else {
            return Vec::new();
        };
        let mut keys: Vec<Key> = dir
            .iter()
            .filter(|e| matches!(e.value(), Slot::Live(_)))
            .map(|e| e.key().clone())
            .collect();
        keys.sort();
        keys
    }

    /// Gates of the slots of `partition` that are activating or stopping.
    fn transitions(&self, partition: &Partition) -> Vec<watch::Receiver<()>> {
        self.dirs.get(partition).map_or_else(Vec::new, |dir| {
            dir.iter()
                .filter_map(|e| match e.value() {
                    Slot::Activating(rx) | Slot::Stopping(rx) => Some(rx.clone()),
                    Slot::Live(_) | Slot::Failed(_) => None,
                })
                .collect()
        })
    }

    fn live_count(&self, partition: &Partition) -> usize {
        self.dirs.get(partition).map_or(0, |dir| {
            dir.iter()
                .filter(|e| matches!(e.value(), Slot::Live(_)))
                .count()
        })
    }

    fn partitions(&self) -> Vec<Partition> {
        self.dirs.iter().map(|e| e.key().clone()).collect()
    }
}

impl<F: Factory> Manager<F> {
    pub(crate) fn new(
        name: Arc<str>,
        config: ManagerConfig,
        shared: Arc<Shared>,
        role: Role,
    ) -> Result<Self, Error> {
        let table = HandlerTable::<F>::build(config.max_reply_bytes).map_err(|handlers| {
            Error::DuplicateHandler {
                factory: F::NAME,
                handlers,
            }
        })?;
        let core = Arc::new(ManagerCore {
            name,
            config,
            table: Arc::new(table),
            shared,
            dirs: DashMap::new(),
            give_up_hook: std::sync::OnceLock::new(),
            counted: role != Role::Component,
            abandoned: AtomicBool::new(false),
            sweeper_started: AtomicBool::new(false),
        });
        Ok(Self { core })
    }

    /// Calls `hook` whenever an instance gives up (one hook per manager).
    pub(crate) fn on_give_up(&self, hook: GiveUpHook) {
        let _ = self.core.give_up_hook.set(hook);
    }

    /// The manager's name.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The manager's settings.
    pub fn config(&self) -> &ManagerConfig {
        &self.core.config
    }

    /// Gets the live instance of `key` in `partition`, else thaws it from the store, else
    /// starts it fresh. Concurrent `get`s of one key yield one instance.
    pub async fn get(
        &self,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<InstanceHandle<F>, Error> {
        self.core.get(key.into_key()?, partition, None).await
    }

    /// Like [`Manager::get`], with the state to use if it starts fresh (a checkpoint, if
    /// any, wins).
    pub async fn get_with(
        &self,
        key: impl IntoKey,
        partition: &Partition,
        initial: F,
    ) -> Result<InstanceHandle<F>, Error> {
        self.core
            .get(key.into_key()?, partition, Some(initial))
            .await
    }

    /// The live instance of `key` in `partition`, if any. Never starts one.
    pub fn lookup(
        &self,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<Option<InstanceHandle<F>>, Error> {
        let key = key.into_key()?;
        Ok(match self.core.look(&key, partition) {
            Lookup::Live(h) => Some(h),
            _ => None,
        })
    }

    /// Stops the instance cleanly: finishes its queued letters, hibernates it, and
    /// removes it. `NotFound` when it is not live. If the checkpoint cannot be written the
    /// instance stays live and the error is returned; note that `on_stop` has run and its
    /// children have followed their parent-stop policy by then, so a factory whose
    /// `on_stop` releases resources should be ready to serve again (or be stopped again).
    pub async fn stop(&self, key: impl IntoKey, partition: &Partition) -> Result<(), Error> {
        let key = key.into_key()?;
        self.core.stop(&key, partition, StopReason::Requested).await
    }

    /// Starts an instance that gave up now, without waiting out its backoff (the same as
    /// `get` for any other).
    pub async fn retry_now(
        &self,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<InstanceHandle<F>, Error> {
        let key = key.into_key()?;
        self.core.clear_failure(&key, partition);
        self.core.get(key, partition, None).await
    }

    /// The instances of `partition` that gave up and wait out their backoff.
    pub fn failures(&self, partition: &Partition) -> Vec<(Key, Arc<Failure>)> {
        self.core.failures(partition)
    }

    /// Count and keys of the live instances in `partition` only.
    pub fn stats(&self, partition: &Partition) -> ManagerStats {
        let keys = self.core.live_keys(partition);
        ManagerStats {
            partition: partition.clone(),
            count: keys.len(),
            keys,
        }
    }

    /// Number of live instances in `partition` (no key list, no sort).
    pub fn count(&self, partition: &Partition) -> usize {
        self.core.live_count(partition)
    }

    /// Attaches a keep-alive owner to a live instance (`NotFound` otherwise).
    pub fn attach(&self, key: impl IntoKey, partition: &Partition) -> Result<KeepAlive, Error> {
        let key = key.into_key()?;
        match self.core.look(&key, partition) {
            Lookup::Live(h) => Ok(h.attach()),
            _ => Err(Error::NotFound(self.core.identity(key, partition))),
        }
    }

    /// Resets a live instance's idle timer (`NotFound` otherwise).
    pub fn touch(&self, key: impl IntoKey, partition: &Partition) -> Result<(), Error> {
        let key = key.into_key()?;
        match self.core.look(&key, partition) {
            Lookup::Live(h) => {
                h.touch();
                Ok(())
            }
            _ => Err(Error::NotFound(self.core.identity(key, partition))),
        }
    }

    /// The factory's handlers with their descriptions and JSON Schemas.
    pub fn handlers(&self) -> Vec<HandlerInfo> {
        self.core.table.infos().cloned().collect()
    }

    /// Hibernates and stops every live instance in every partition; returns how many
    /// stopped and the errors of those that could not hibernate.
    pub async fn stop_all(&self) -> (usize, Vec<Error>) {
        self.stop_matching(None, StopReason::Shutdown, None).await
    }

    /// Hibernates and stops every live instance of one partition.
    pub async fn stop_partition(&self, partition: &Partition) -> (usize, Vec<Error>) {
        self.stop_matching(Some(partition), StopReason::Requested, None)
            .await
    }

    /// Hibernates and stops every live instance whose identity `matches` (a cluster
    /// node handing a shard off).
    pub async fn stop_where(
        &self,
        matches: &(dyn Fn(&Identity) -> bool + Sync),
    ) -> (usize, Vec<Error>) {
        self.stop_matching(None, StopReason::Requested, Some(matches))
            .await
    }

    async fn stop_matching(
        &self,
        partition: Option<&Partition>,
        reason: StopReason,
        matches: Option<&(dyn Fn(&Identity) -> bool + Sync)>,
    ) -> (usize, Vec<Error>) {
        // Without a filter every instance matches, and no identity is built.
        let matching = |key: &Key, p: &Partition| {
            matches.is_none_or(|m| m(&self.core.identity(key.clone(), p)))
        };
        let mut stopped = 0;
        let mut errors = Vec::new();
        // Instances that gave up have nothing to stop; their failures are forgotten.
        let partitions = match partition {
            Some(p) => vec![p.clone()],
            None => self.core.partitions(),
        };
        for p in &partitions {
            if let Some(dir) = self.core.dirs.get(p) {
                dir.retain(|key, slot| !(matches!(slot, Slot::Failed(_)) && matching(key, p)));
            }
        }
        // Activations in flight when the stop began become live afterwards: wait for them
        // and stop them too (a few passes; a partition still taking traffic may keep
        // starting new ones, which the caller refuses first when it matters).
        for _pass in 0..3 {
            let partitions = match partition {
                Some(p) => vec![p.clone()],
                None => self.core.partitions(),
            };
            let mut stops = FuturesUnordered::new();
            let mut pending = Vec::new();
            for p in &partitions {
                for key in self.core.live_keys(p) {
                    if !matching(&key, p) {
                        continue;
                    }
                    let core = self.core.clone();
                    let p = p.clone();
                    stops.push(async move { core.stop(&key, &p, reason).await });
                }
                pending.extend(self.core.transitions(p));
            }
            if stops.is_empty() && pending.is_empty() {
                break;
            }
            while let Some(result) = stops.next().await {
                match result {
                    Ok(()) | Err(Error::NotFound(_)) => stopped += 1,
                    Err(e) => errors.push(e),
                }
            }
            for mut gate in pending {
                let _ = gate.changed().await;
            }
        }
        (stopped, errors)
    }
}

/// A manager without its factory type: what the runtime registry, the bus and the gateway
/// hold.
pub trait AnyManager: Send + Sync + 'static {
    /// The manager's name.
    fn name(&self) -> &str;
    /// The factory it manages.
    fn factory(&self) -> &'static str;
    /// [`Manager::get`] without the factory type.
    fn get_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyInstance>, Error>>;
    /// [`Manager::get_with`] without the factory type: `initial` (JSON of the state type)
    /// is used only if the instance starts fresh.
    fn get_json_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
        initial: Option<serde_json::Value>,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyInstance>, Error>>;
    /// [`Manager::lookup`] without the factory type.
    fn lookup_dyn(&self, key: &Key, partition: &Partition) -> Option<Arc<dyn AnyInstance>>;
    /// [`Manager::stop`] without the factory type.
    fn stop_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// [`Manager::stats`].
    fn stats_dyn(&self, partition: &Partition) -> ManagerStats;
    /// [`Manager::count`].
    fn count_dyn(&self, partition: &Partition) -> usize;
    /// [`Manager::handlers`].
    fn handlers_dyn(&self) -> Vec<HandlerInfo>;
    /// [`Manager::stop_all`].
    fn stop_all_dyn(&self) -> BoxFuture<'_, (usize, Vec<Error>)>;
    /// [`Manager::stop_partition`].
    fn stop_partition_dyn<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, (usize, Vec<Error>)>;
    /// [`Manager::stop_where`].
    fn stop_where_dyn<'a>(
        &'a self,
        matches: &'a (dyn Fn(&Identity) -> bool + Sync),
    ) -> BoxFuture<'a, (usize, Vec<Error>)>;
    /// [`Manager::config`].
    fn config_dyn(&self) -> &ManagerConfig;
    /// [`Manager::failures`].
    fn failures_dyn(&self, partition: &Partition) -> Vec<(Key, Arc<Failure>)>;
    /// Forgets the failure of an instance that gave up (it may start at once); returns
    /// whether there was one.
    fn clear_failure_dyn(&self, key: &Key, partition: &Partition) -> bool;
    /// The idle instance of `partition` used least recently, leaving out `skip`: when it
    /// was last active (milliseconds of the manager's clock) and its key.
    #[doc(hidden)]
    fn least_recently_used_dyn(&self, partition: &Partition, skip: &[&Key]) -> Option<(u64, Key)>;
    /// Hibernates the instance to make room at its partition's cap, if it is still idle.
    #[doc(hidden)]
    fn evict_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// For downcasting to [`Manager<F>`].
    fn as_any(&self) -> &dyn Any;
    /// Ends the manager's idle instances for good: its runtime is gone.
    #[doc(hidden)]
    fn abandon(&self) {}
}

impl<F: Factory> AnyManager for Manager<F> {
    fn name(&self) -> &str {
        Manager::name(self)
    }

    fn factory(&self) -> &'static str {
        F::NAME
    }

    fn get_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyInstance>, Error>> {
        self.get_json_dyn(key, partition, None)
    }

    fn get_json_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
        initial: Option<serde_json::Value>,
    ) -> BoxFuture<'a, Result<Arc<dyn AnyInstance>, Error>> {
        Box::pin(async move {
            let initial = match initial {
                None => None,
                Some(value) => Some(serde_json::from_value::<F>(value).map_err(|e| {
                    Error::InvalidInitialState {
                        identity: self.core.identity(key.clone(), partition),
                        reason: e.to_string(),
                    }
                })?),
            };
            let handle = self.core.get(key, partition, initial).await?;
            Ok(Arc::new(handle) as Arc<dyn AnyInstance>)
        })
    }

    fn lookup_dyn(&self, key: &Key, partition: &Partition) -> Option<Arc<dyn AnyInstance>> {
        match self.core.look(key, partition) {
            Lookup::Live(h) => Some(Arc::new(h)),
            _ => None,
        }
    }

    fn stop_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.core.stop(&key, partition, StopReason::Requested).await })
    }

    fn count_dyn(&self, partition: &Partition) -> usize {
        self.count(partition)
    }

    fn stats_dyn(&self, partition: &Partition) -> ManagerStats {
        self.stats(partition)
    }

    fn handlers_dyn(&self) -> Vec<HandlerInfo> {
        self.handlers()
    }

    fn stop_all_dyn(&self) -> BoxFuture<'_, (usize, Vec<Error>)> {
        Box::pin(self.stop_all())
    }

    fn stop_partition_dyn<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, (usize, Vec<Error>)> {
        Box::pin(self.stop_partition(partition))
    }

    fn stop_where_dyn<'a>(
        &'a self,
        matches: &'a (dyn Fn(&Identity) -> bool + Sync),
    ) -> BoxFuture<'a, (usize, Vec<Error>)> {
        Box::pin(self.stop_where(matches))
    }

    fn config_dyn(&self) -> &ManagerConfig {
        self.config()
    }

    fn failures_dyn(&self, partition: &Partition) -> Vec<(Key, Arc<Failure>)> {
        self.failures(partition)
    }

    fn clear_failure_dyn(&self, key: &Key, partition: &Partition) -> bool {
        self.core.clear_failure(key, partition)
    }

    fn least_recently_used_dyn(&self, partition: &Partition, skip: &[&Key]) -> Option<(u64, Key)> {
        self.core.least_recently_used(partition, skip)
    }

    fn evict_dyn<'a>(
        &'a self,
        key: Key,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.core.stop(&key, partition, StopReason::Evicted).await })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn abandon(&self) {
        self.core.abandon();
    }
}
