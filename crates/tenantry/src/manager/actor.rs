//! The actor loop: one message at a time, in a task while there is mail, parked in the
//! mailbox while there is none (a caller may then run it in place: see
//! [`crate::instance::runner`]).
//!
//! The loop owns the state. It runs letters in order, restarts from the last good state
//! after a panic (bounded by the manager's restart policy), idles out when the manager's
//! sweeper finds it idle, and performs the stop sequence: refuse new letters, finish the queued ones, run `on_stop`,
//! write the checkpoint (compare-and-set on the version), then leave the directory. A
//! crash never writes a checkpoint; a failed write keeps the instance live. Instances of
//! `EveryTurn` managers also commit after changing turns (see [`super::durable`]); the
//! loop waits for their commit in flight beside their mailbox.

use super::durable::{Committed, FinalCommit, Pipeline, encode_state, store_acknowledged};
use super::{ManagerCore, PartitionDir, Slot};
use crate::failure::Failure;
use crate::instance::cell::{Cell, Mail};
use crate::instance::context::Context;
use crate::instance::envelope::{EffectLetter, Envelope, Ran, Turn, panic_message};
use crate::instance::factory::Factory;
use crate::instance::mailbox::Door;
use crate::instance::runner::Runner;
use crate::store::{StoreError, TurnCommit};
use crate::telemetry::{
    Entered, EventKind, HandlerMetrics, Outcome, RunningTurn, StopReason, TURN_SPAN_NAME,
    TURN_SPAN_TARGET, metric,
};
use crate::{CallError, Error, Identity};
use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

type StopReply = oneshot::Sender<Result<(), Error>>;

/// Runs a start hook (`on_start` or `on_thaw`), turning an error or a panic into a reason.
pub(crate) async fn start_hook<F: Factory>(
    state: &mut F,
    ctx: &mut Context,
    thawed: bool,
) -> Result<(), String> {
    let hook = async {
        if thawed {
            state.on_thaw(ctx).await
        } else {
            state.on_start(ctx).await
        }
    };
    match AssertUnwindSafe(hook).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "{} returned an error: {e}",
            if thawed { "on_thaw" } else { "on_start" }
        )),
        Err(payload) => Err(format!(
            "{} panicked: {}",
            if thawed { "on_thaw" } else { "on_start" },
            panic_message(&*payload)
        )),
    }
}

pub(crate) struct Actor<F: Factory> {
    pub(crate) core: Arc<ManagerCore<F>>,
    pub(crate) dir: Arc<PartitionDir<F>>,
    pub(crate) cell: Arc<Cell<F>>,
    pub(crate) state: F,
    pub(crate) ctx: Context,
    /// Store version of the last checkpoint read or written (`None`: never stored).
    pub(crate) version: Option<u64>,
    pub(crate) metrics: HandlerMetrics,
    /// What only a restart needs (crashes, earlier failures, the initial state): boxed,
    /// made on the first crash (or at a start after a give-up or with an initial state),
    /// so a healthy instance pays one word for it.
    pub(crate) crashes: Option<Box<CrashRecord>>,
    /// Durable turns (`EveryTurn` managers only).
    pub(crate) pipeline: Option<Box<Pipeline>>,
    /// Its place among its partition's live instances (keyed managers only).
    pub(crate) seat: Option<crate::quota::Seat>,
}

/// What an actor remembers for restarts.
pub(crate) struct CrashRecord {
    /// Restarts within the restart policy's window.
    restarts: VecDeque<Instant>,
    /// Consecutive give-ups of earlier incarnations (they set this one's backoff).
    failures: u32,
    /// When this incarnation started.
    started: tokio::time::Instant,
    /// Serialized initial state given to `get_with`, to restart from when never stored.
    pub(super) initial: Option<Arc<[u8]>>,
}

impl CrashRecord {
    /// The record of an incarnation starting after `failures` consecutive give-ups and
    /// with `initial` state, if there is anything to remember.
    pub(crate) fn after(failures: u32, initial: Option<Arc<[u8]>>) -> Option<Box<Self>> {
        (failures > 0 || initial.is_some()).then(|| {
            Box::new(Self {
                initial,
                ..Self::new(failures)
            })
        })
    }

    fn new(failures: u32) -> Self {
        Self {
            restarts: VecDeque::new(),
            failures,
            started: tokio::time::Instant::now(),
            initial: None,
        }
    }
}

/// A letter's turn, to be counted as handled.
#[derive(Clone, Copy)]
pub(crate) struct Handled {
    pub(crate) handler: &'static str,
    pub(crate) outcome: Outcome,
    pub(crate) duration: Duration,
}

/// What woke a durable instance waiting on its commit.
enum Woken<F> {
    /// Mail (`None`: the mailbox was closed).
    Mail(Option<Mail<F>>),
    /// The commit in flight ended, and the instance goes on.
    Committed,
    /// The commit in flight failed and the instance is gone.
    Gone,
}

/// Where a run of the loop stopped.
enum Flow<'c, F: Factory> {
    /// The mailbox is empty (held locked, so the actor can park before anyone sends).
    Empty(Door<'c, Mail<F>, Box<dyn Runner<F>>>),
    /// The instance ended: it stopped, gave up or was fenced.
    End,
}

impl<F: Factory> Runner<F> for Actor<F> {
    fn run(self: Box<Self>, budget: Option<usize>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let mut actor = self;
            let mut budget = budget;
            let cell = actor.cell.clone();
            loop {
                // In a block of its own: the locked door must not live across an await.
                let payload = {
                    let ran = AssertUnwindSafe(actor.run_until_empty(&cell, &mut budget))
                        .catch_unwind()
                        .await;
                    match ran {
                        Ok(Flow::Empty(door)) => {
                            if actor.core.is_abandoned() {
                                drop(door);
                                actor.abandon();
                            } else {
                                door.park(actor);
                            }
                            return;
                        }
                        Ok(Flow::End) => return actor.retire(),
                        Err(payload) => payload,
                    }
                };
                // Handlers' panics are caught in their turns; this is one of the runtime's
                // own steps failing on user code (a reply or a state that panicked while
                // being encoded, say). Treat it as a crash of the instance.
                let reason = format!(
                    "the instance panicked outside a handler: {}",
                    panic_message(&*payload)
                );
                if !Box::pin(actor.crash_after_commits(reason)).await {
                    return actor.retire();
                }
            }
        })
    }

    fn abandon(mut self: Box<Self>) {
        self.close_mailbox(CallError::Stopped, Vec::new());
        self.retire();
    }
}

impl<F: Factory> Actor<F> {
    /// Runs mail until the mailbox is empty (returned locked) or the instance ends. With
    /// a `budget` (a caller runs it in place), once that many letters ran it yields once
    /// if more mail waits or a commit is in flight, so the caller hands the rest to a
    /// task.
    async fn run_until_empty<'c>(
        &mut self,
        cell: &'c Cell<F>,
        budget: &mut Option<usize>,
    ) -> Flow<'c, F> {
        loop {
            if self.ctx.has_effect_work() && !Box::pin(self.run_pending_effects()).await {
                return Flow::End;
            }
            let spent = *budget == Some(0);
            let mail = if self.commit_in_flight() {
                if spent {
                    *budget = None;
                    tokio::task::yield_now().await;
                }
                // Boxed: an idle instance has no commit in flight and should not carry
                // this wait in its future.
                match Box::pin(self.mail_or_commit()).await {
                    Woken::Mail(mail) => mail,
                    Woken::Committed => continue,
                    Woken::Gone => return Flow::End,
                }
            } else {
                // One lock decides: the next letter, a hand-off to a task, or parking.
                let next = {
                    let mut door = cell.mailbox.door();
                    if door.is_empty() {
                        return Flow::Empty(door);
                    }
                    (!spent).then(|| door.pop())
                };
                match next {
                    Some(mail) => mail,
                    None => {
                        *budget = None;
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
            };
            if let Some(left) = budget {
                *left = left.saturating_sub(1);
            }
            // `None` only after the mailbox was closed, which happens on the way out.
            let Some(mail) = mail else {
                return Flow::End;
            };
            match mail {
                Mail::Letter(letter) => {
                    let goes_on = self.turn(letter).await;
                    // Activity up to the turn's end (the sweeper asks only parked actors,
                    // so a turn in progress is never taken for idleness), kept only when
                    // something reads it: the idle sweeper, or the choice of what to
                    // hibernate at the partition's live-instance cap.
                    if self.core.config.idle_timeout.is_some()
                        || self.seat.as_ref().is_some_and(|s| s.is_capped())
                    {
                        self.cell.live.touch();
                    }
                    if !goes_on {
                        return Flow::End;
                    }
                }
                Mail::Stop {
                    reason: StopReason::Idle,
                    reply,
                } => {
                    if Box::pin(self.idle_stop(reply)).await {
                        return Flow::End;
                    }
                }
                Mail::Stop {
                    reason: StopReason::Evicted,
                    reply,
                } => {
                    if Box::pin(self.evict(reply)).await {
                        return Flow::End;
                    }
                }
                Mail::Stop { reason, reply } => {
                    if Box::pin(self.stop(reason, None, reply.into_iter().collect())).await {
                        return Flow::End;
                    }
                }
            }
            if self.ctx.take_stop_request()
                && Box::pin(self.stop(StopReason::Requested, None, Vec::new())).await
            {
                return Flow::End;
            }
        }
    }

    /// The idle sweeper found the instance idle: stop it if it still is. A stop that
    /// fails restarts the idle clock, so the next attempt is a whole timeout away.
    /// Returns true when the instance is gone.
    async fn idle_stop(&mut self, reply: Option<StopReply>) -> bool {
        // Letters queued behind the sweeper's request are activity: it is not idle.
        let waiting = !self.cell.mailbox.door().is_empty();
        let expired = self
            .core
            .config
            .idle_timeout
            .and_then(|t| self.cell.live.idle_for(t));
        let (false, Some(idle_for)) = (waiting, expired) else {
            answer(reply.into_iter().collect(), Ok(()));
            return false;
        };
        let gone = self
            .stop(
                StopReason::Idle,
                Some(idle_for),
                reply.into_iter().collect(),
            )
            .await;
        if !gone {
            self.cell.live.touch();
        }
        gone
    }

    /// Its partition needs room: hibernate if still idle (no letters waiting, no
    /// keep-alive owner). Returns true when the instance is gone.
    async fn evict(&mut self, reply: Option<StopReply>) -> bool {
        let busy = !self.cell.mailbox.door().is_empty()
            || self
                .cell
                .live
                .owners
                .load(std::sync::atomic::Ordering::Acquire)
                > 0;
        if busy {
            answer(reply.into_iter().collect(), Ok(()));
            return false;
        }
        let gone = self
            .stop(StopReason::Evicted, None, reply.into_iter().collect())
            .await;
        if !gone {
            // It could not hibernate: to the back of the line, not first again.
            self.cell.live.touch();
        }
        gone
    }

    /// Drops an actor that ended, then counts it out: the live gauge, and the tracker
    /// last (once it reads zero no actor holds the store).
    fn retire(self: Box<Self>) {
        let tracker = self.core.shared.actors.clone();
        self.core.shared.telemetry.live(&self.cell.identity, -1.0);
        drop(self);
        tracker.exit();
    }

    fn commit_in_flight(&self) -> bool {
        self.pipeline
            .as_ref()
            .is_some_and(|p| p.in_flight.is_some())
    }

    /// Waits for the commit in flight (first) or mail, and takes the commit's outcome if
    /// it came first. (The idle sweeper asks only parked actors, never one waiting here.)
    async fn mail_or_commit(&mut self) -> Woken<F> {
        let in_flight = self
            .pipeline
            .as_deref_mut()
            .and_then(|p| p.in_flight.as_mut());
        let commit = async {
            match in_flight {
                Some(f) => (&mut f.write).await,
                None => std::future::pending().await,
            }
        };
        let mailbox = &self.cell.mailbox;
        let result = tokio::select! {
            biased;
            result = commit => result,
            mail = mailbox.recv() => return Woken::Mail(mail),
        };
        if self.settle_commit(result).await {
            Woken::Committed
        } else {
            Woken::Gone
        }
    }

    /// Takes a commit's outcome. Returns false when the instance must exit: it was fenced
    /// out, or gave up restarting after the failure.
    async fn settle_commit(&mut self, result: Result<u64, Error>) -> bool {
        match self.committed(result) {
            Committed::Done | Committed::RolledBack => true,
            Committed::Failed(err) => Box::pin(self.commit_failed(err)).await,
        }
    }

    /// After a commit that failed past a rollback: a version conflict means another
    /// activation wrote the record, so this one stops, fenced; otherwise the instance
    /// restarts from the store. Returns false when the instance must exit.
    async fn commit_failed(&mut self, err: Error) -> bool {
        let id = self.cell.identity.clone();
        tracing::warn!(partition = %id.partition, manager = %id.manager, key = %id.key, error = %err, "a durable turn's commit failed");
        if matches!(&err, Error::Store(e) if e.is_fence()) {
            let (gate, _) = watch::channel(());
            self.finish(StopReason::Fenced, None, gate, Vec::new(), Ok(()));
            return false;
        }
        self.crashed(format!("a durable turn's commit failed: {err}"))
            .await
    }

    /// A crash of a durable instance waits for the turns accepted before it to be
    /// committed (or failed) first: the restart then reloads what is durable.
    async fn crash_after_commits(&mut self, reason: String) -> bool {
        match self.drain_commits().await {
            None | Some(Committed::Done | Committed::RolledBack) => self.crashed(reason).await,
            Some(Committed::Failed(err)) => self.commit_failed(err).await,
        }
    }

    /// First runs of effects registered since the last turn. Returns false when a panic
    /// in one made the instance give up.
    async fn run_pending_effects(&mut self) -> bool {
        if self.ctx.wants_effect_sink() {
            let cell = Arc::downgrade(&self.cell);
            self.ctx.install_effect_sink(Arc::new(move |effect| {
                if let Some(cell) = cell.upgrade() {
                    // Control mail: a full mailbox must not lose a reaction.
                    let _ = cell.post_control(Mail::Letter(Box::new(EffectLetter { effect })));
                }
            }));
        }
        loop {
            let pending = self.ctx.take_pending_effects();
            if pending.is_empty() {
                return true;
            }
            for effect in pending {
                if !self.turn(Box::new(EffectLetter { effect })).await {
                    return false;
                }
            }
        }
    }

    /// Runs one letter. Returns false when the instance gave up and must exit.
    async fn turn(&mut self, letter: Box<dyn Envelope<F>>) -> bool {
        let crash = self.run_letter(letter).await;
        if crash.is_none() {
            self.submit();
        }
        match crash {
            None => true,
            // Boxed: the cold path should not size every idle instance's future.
            Some(reason) => Box::pin(self.crash_after_commits(reason)).await,
        }
    }

    /// Runs one letter with its span, metrics and event, and settles it if durable;
    /// returns a reason to crash (a panic) if any.
    async fn run_letter(&mut self, letter: Box<dyn Envelope<F>>) -> Option<String> {
        let handler = letter.handler();
        let read_only = letter.read_only();
        let id = &self.cell.identity;
        // Named in the thread's running turns too, for formatters that refuse the span
        // (see `telemetry::running_turns`); a span refused by every subscriber costs a
        // check of its callsite.
        let running = RunningTurn::begin(id, handler);
        let span = tracing::info_span!(
            target: TURN_SPAN_TARGET,
            TURN_SPAN_NAME,
            partition = %id.partition,
            manager = %id.manager,
            key = %id.key,
            handler
        );
        let started = Instant::now();
        self.begin_turn();
        let (state, ctx) = (&mut self.state, &mut self.ctx);
        let entered = running.map(RunningTurn::enter);
        let turn = match span.in_scope(move || letter.run(state, ctx)) {
            Ran::Now(turn) => {
                drop(entered);
                turn
            }
            Ran::Later(rest) => match entered.and_then(Entered::leave) {
                Some(running) => running.polling(rest).instrument(span).await,
                None => rest.instrument(span).await,
            },
        };
        // The sender's authority ends with its letter: hooks that follow act as the
        // instance itself.
        self.ctx.set_caller(None);
        let duration = started.elapsed();
        let (outcome, panic) = match turn {
            Turn::Done(outcome) => (outcome, None),
            Turn::Panicked(message) => (Outcome::Panic, Some(message)),
        };
        let done = Handled {
            handler,
            outcome,
            duration,
        };
        // A durable turn counts as handled once its commit landed (see `end_turn`).
        let (rollback, waiting) = self.end_turn(done, read_only);
        if let Some(done) = waiting {
            self.handled(done);
        }
        panic.or(rollback)
    }

    /// Counts a handled letter: its metrics and its `HandlerFinished` event.
    pub(super) fn handled(&mut self, done: Handled) {
        let telemetry = &self.core.shared.telemetry;
        let id = &self.cell.identity;
        let Handled {
            handler,
            outcome,
            duration,
        } = done;
        self.metrics
            .record(telemetry, id, handler, outcome, duration);
        telemetry.emit(
            id,
            EventKind::HandlerFinished {
                handler,
                duration,
                outcome,
            },
        );
    }

    /// Handles a crash: restart from the last good state, or give up past the bound.
    /// Returns false when the instance gave up.
    async fn crashed(&mut self, message: String) -> bool {
        let mut message = message;
        loop {
            let telemetry = &self.core.shared.telemetry;
            let id = self.cell.identity.clone();
            tracing::warn!(partition = %id.partition, manager = %id.manager, key = %id.key, %message, "instance crashed");
            telemetry.count(metric::CRASHES, &id, ("kind", "panic"));
            telemetry.emit(
                &id,
                EventKind::Crashed {
                    message: message.clone(),
                },
            );

            let policy = self.core.config.restart;
            let now = Instant::now();
            let record = self
                .crashes
                .get_or_insert_with(|| Box::new(CrashRecord::new(0)));
            let restarts = &mut record.restarts;
            while restarts
                .front()
                .is_some_and(|t| now.duration_since(*t) > policy.window)
            {
                restarts.pop_front();
            }
            if restarts.len() >= policy.max_restarts as usize {
                let reason = format!(
                    "crashed {} times within {:?} (restart bound {} in {:?}); last: {message}",
                    restarts.len() + 1,
                    policy.window,
                    policy.max_restarts,
                    policy.window
                );
                self.give_up(reason);
                return false;
            }
            restarts.push_back(now);
            let attempt = restarts.len() as u32;
            match self.reload().await {
                Ok(()) => {
                    self.core
                        .shared
                        .telemetry
                        .emit(&id, EventKind::Restarted { attempt });
                    return true;
                }
                Err(Reload::Fatal(reason)) => {
                    self.give_up(format!("restart failed: {reason}"));
                    return false;
                }
                Err(Reload::HookCrashed(reason)) => message = reason,
            }
        }
    }

    /// Replaces the state with the last good one: the last checkpoint, else the initial
    /// state, else a fresh one, and runs the start hook again. A durable instance that
    /// knows its last checkpoint (it wrote it, or never had one) does not read the store,
    /// so it restarts while the store is down.
    async fn reload(&mut self) -> Result<(), Reload> {
        self.ctx.release_all();
        let identity = self.cell.identity.clone();
        let stored = match self.known_durable_state() {
            Some(known) => known.map_err(Reload::Fatal),
            None => self
                .core
                .thaw(&identity)
                .await
                .map_err(|e| Reload::Fatal(e.to_string())),
        };
        let (state, version, thawed) = match stored? {
            Some((state, version)) => (state, Some(version), true),
            None => {
                let initial = self.crashes.as_ref().and_then(|c| c.initial.as_ref());
                let state = match initial {
                    Some(bytes) => serde_json::from_slice(bytes)
                        .map_err(|e| Reload::Fatal(format!("initial state: {e}")))?,
                    None => F::fresh(&identity),
                };
                (state, None, false)
            }
        };
        self.state = state;
        self.version = version;
        let loaded = self
            .loaded_state()
            .map_err(|e| Reload::Fatal(e.to_string()))?;
        start_hook(&mut self.state, &mut self.ctx, thawed)
            .await
            .map_err(Reload::HookCrashed)?;
        self.restart_pipeline(loaded)
            .map_err(|e| Reload::Fatal(e.to_string()))
    }

    /// Stops without a checkpoint after the restart bound was passed, leaving a failure
    /// in its slot: it may start again once the manager's backoff has passed.
    fn give_up(&mut self, reason: String) {
        let id = self.cell.identity.clone();
        let backoff = self.core.config.backoff;
        // An incarnation that outlived the longest delay starts the count anew.
        let attempt = match &self.crashes {
            Some(r) if r.failures > 0 && r.started.elapsed() <= backoff.max => {
                r.failures.saturating_add(1)
            }
            _ => 1,
        };
        let failure = Arc::new(Failure::new(
            reason.clone(),
            attempt,
            backoff.delay(attempt),
        ));
        tracing::error!(partition = %id.partition, manager = %id.manager, key = %id.key, %reason, attempt, retry_in = ?failure.retry_in(), "instance gave up");
        self.cell.mailbox.pause();
        self.leave_directory_failed(failure.clone());
        self.close_mailbox(CallError::Stopped, Vec::new());
        self.ctx.release_all();
        // Children follow their policy here too; stopping them cannot wait in this path.
        let doomed = self.core.shared.lineage.parent_stopped(&id);
        if let (false, Some(managers)) = (doomed.is_empty(), self.core.shared.managers.upgrade()) {
            tokio::spawn(async move {
                for child in doomed {
                    if let Some(m) = managers.get(&child.manager) {
                        let _ = m.stop_dyn(child.key.clone(), &child.partition).await;
                    }
                }
            });
        }
        self.core
            .shared
            .telemetry
            .emit(&id, EventKind::GaveUp { reason });
        if let Some(hook) = self.core.give_up_hook.get() {
            hook(&id, &failure);
        }
    }

    /// Closes the mailbox and answers whatever is left in it.
    fn close_mailbox(&mut self, err: CallError, waiters: Vec<StopReply>) {
        self.cell.mailbox.close();
        let mut stop_waiters = waiters;
        while let Some(mail) = self.cell.mailbox.try_recv() {
            match mail {
                Mail::Letter(letter) => {
                    let handler = letter.handler();
                    if !letter.reject(err.clone()) {
                        self.core
                            .shared
                            .telemetry
                            .emit(&self.cell.identity, EventKind::MessageDropped { handler });
                    }
                }
                Mail::Stop { reply, .. } => stop_waiters.extend(reply),
            }
        }
        for w in stop_waiters {
            let _ = w.send(Ok(()));
        }
    }

    /// The stop sequence. Returns true when the instance is gone and the loop must end.
    async fn stop(
        &mut self,
        reason: StopReason,
        idle_for: Option<Duration>,
        mut waiters: Vec<StopReply>,
    ) -> bool {
        let id = self.cell.identity.clone();
        match self.drain_commits().await {
            None | Some(Committed::Done) => {}
            Some(Committed::RolledBack) => {
                // Nothing is lost and nothing new is durable: the stop can go on.
            }
            Some(Committed::Failed(err)) => {
                answer(waiters, Err(err.clone()));
                return !Box::pin(self.commit_failed(err)).await;
            }
        }
        self.cell.mailbox.pause();
        let (gate, gate_rx) = watch::channel(());
        self.dir.insert(id.key.clone(), Slot::Stopping(gate_rx));

        // Finish what was accepted before the door closed (a durable instance's turns
        // are committed with the checkpoint below).
        while let Some(mail) = self.cell.mailbox.try_recv() {
            match mail {
                Mail::Letter(letter) => {
                    if let Some(panic) = self.run_letter(letter).await {
                        self.reopen(gate);
                        answer(waiters, Err(Error::CrashedWhileStopping((*id).clone())));
                        return !Box::pin(self.crash_after_commits(panic)).await;
                    }
                }
                Mail::Stop { reply, .. } => waiters.extend(reply),
            }
        }

        // A durable instance's `on_stop` writes storage in a turn of its own, committed
        // with the final checkpoint.
        self.begin_turn();
        let hook = AssertUnwindSafe(self.state.on_stop(&mut self.ctx))
            .catch_unwind()
            .await;
        self.end_hook_turn(hook.is_ok());
        match hook {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.core.shared.telemetry.emit(
                &id,
                EventKind::HookFailed {
                    hook: "on_stop",
                    error: e.to_string(),
                },
            ),
            Err(payload) => {
                self.reopen(gate);
                answer(waiters, Err(Error::CrashedWhileStopping((*id).clone())));
                let reason = format!("on_stop panicked: {}", panic_message(&*payload));
                return !Box::pin(self.crash_after_commits(reason)).await;
            }
        }

        release_children(self.core.clone(), self.cell.identity.clone()).await;

        let telemetry = self.core.shared.telemetry.clone();
        let written = if !self.core.config.persist {
            // Ephemeral instances stop without a checkpoint.
            self.encode().map(|_| self.version.unwrap_or(0))
        } else if self.pipeline.is_some() {
            match self.final_commit().await {
                FinalCommit::Stored(version) => Ok(version),
                FinalCommit::Failed(err) => Err(err),
                FinalCommit::Broken(reason) => {
                    self.reopen(gate);
                    let err = Error::Store(StoreError::Unavailable(reason.clone()));
                    answer(waiters, Err(err));
                    return !Box::pin(self.crashed(format!("hibernation failed: {reason}"))).await;
                }
            }
        } else {
            match self.encode() {
                Ok(bytes) => {
                    let turn = TurnCommit::checkpoint((*id).clone(), bytes.into(), self.version);
                    store_acknowledged(self.core.shared.store.clone(), turn).await
                }
                Err(e) => Err(e),
            }
        };
        match written {
            Ok(version) => {
                self.version = Some(version);
                telemetry.count(metric::HIBERNATIONS, &id, ("outcome", "ok"));
                telemetry.emit(&id, EventKind::Hibernated { version });
                self.finish(reason, idle_for, gate, waiters, Ok(()));
                true
            }
            Err(Error::Store(err)) if err.is_fence() => {
                // Someone else wrote a newer checkpoint, or owns the shard now: we are
                // fenced out and must not keep serving a stale state.
                telemetry.count(metric::HIBERNATIONS, &id, ("outcome", "conflict"));
                telemetry.emit(
                    &id,
                    EventKind::HibernateFailed {
                        error: err.to_string(),
                    },
                );
                self.finish(
                    StopReason::Fenced,
                    None,
                    gate,
                    waiters,
                    Err(Error::Store(err)),
                );
                true
            }
            Err(err) => {
                tracing::warn!(partition = %id.partition, manager = %id.manager, key = %id.key, error = %err, "hibernation failed; instance stays live");
                telemetry.count(metric::HIBERNATIONS, &id, ("outcome", "error"));
                telemetry.emit(
                    &id,
                    EventKind::HibernateFailed {
                        error: err.to_string(),
                    },
                );
                self.reopen(gate);
                answer(waiters, Err(err));
                false
            }
        }
    }

    fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(256);
        encode_state(&self.cell.identity, &self.state, &mut out)?;
        Ok(out)
    }

    /// Removes this incarnation's slot, and only it (a `Live` slot of this cell, or the
    /// `Stopping` slot this actor put there).
    pub(super) fn leave_directory(&self) {
        let key = &self.cell.identity.key;
        self.dir.remove_if(key, |_, slot| match slot {
            Slot::Live(cell) => Arc::ptr_eq(cell, &self.cell),
            Slot::Stopping(_) => true,
            Slot::Activating(_) | Slot::Failed(_) => false,
        });
    }

    /// Replaces this incarnation's slot (and only it) with its failure.
    fn leave_directory_failed(&self, failure: Arc<Failure>) {
        let key = &self.cell.identity.key;
        if let Some(mut slot) = self.dir.get_mut(key) {
            let ours = match &*slot {
                Slot::Live(cell) => Arc::ptr_eq(cell, &self.cell),
                Slot::Stopping(_) => true,
                Slot::Activating(_) | Slot::Failed(_) => false,
            };
            if ours {
                *slot = Slot::Failed(failure);
            }
        }
    }

    /// Undoes the start of a stop: accept letters again and be findable again.
    fn reopen(&mut self, gate: watch::Sender<()>) {
        self.cell.mailbox.resume();
        self.dir.insert(
            self.cell.identity.key.clone(),
            Slot::Live(self.cell.clone()),
        );
        drop(gate);
    }

    /// Leaves for good: close the mailbox, leave the directory, wake waiting `get`s.
    fn finish(
        &mut self,
        reason: StopReason,
        idle_for: Option<Duration>,
        gate: watch::Sender<()>,
        waiters: Vec<StopReply>,
        result: Result<(), Error>,
    ) {
        let id = self.cell.identity.clone();
        self.close_mailbox(CallError::Stopped, Vec::new());
        self.ctx.release_all();
        self.leave_directory();
        // Its room is free before anyone waiting on the stop looks for room.
        self.seat = None;
        drop(gate);
        answer(waiters, result);
        let kind = match (reason, idle_for) {
            (StopReason::Idle, Some(idle_for)) => EventKind::IdleStopped { idle_for },
            _ => EventKind::Stopped { reason },
        };
        self.core.shared.telemetry.emit(&id, kind);
    }
}

enum Reload {
    /// The last good state could not be loaded.
    Fatal(String),
    /// The start hook crashed again.
    HookCrashed(String),
}

fn answer(waiters: Vec<StopReply>, result: Result<(), Error>) {
    for w in waiters {
        let _ = w.send(result.clone());
    }
}

/// Children bound to `id` follow their policy: orphaned, or stopped (and hibernated)
/// before `id` writes its own checkpoint.
async fn release_children<F: Factory>(core: Arc<ManagerCore<F>>, id: Arc<Identity>) {
    let doomed = core.shared.lineage.parent_stopped(&id);
    if doomed.is_empty() {
        return;
    }
    let Some(managers) = core.shared.managers.upgrade() else {
        return;
    };
    let stops = doomed.into_iter().filter_map(|child| {
        let manager = managers.get(&child.manager)?;
        Some(async move {
            match manager.stop_dyn(child.key.clone(), &child.partition).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(child = %child, error = %e, "child failed to stop with its parent")
                }
            }
        })
    });
    futures::future::join_all(stops).await;
}
