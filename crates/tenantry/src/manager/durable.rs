//! Durable turns: how an `EveryTurn` instance makes each changing turn durable before its
//! reply is released.
//!
//! After a turn the actor encodes the state into a reused buffer and compares it with
//! the encoding of the last accepted turn: that is the change check (one serialization and
//! one comparison, no allocation when nothing changed). A turn that changed the state or
//! wrote storage is accepted: its storage writes (in the journal) and the new encoding
//! join the next commit, and its replies wait for that commit. At most one commit per
//! instance is in flight; while it is, the instance keeps running letters, and the next
//! commit covers every turn accepted meanwhile — group commit within one instance, on top
//! of the stores folding the commits of many instances into one transaction. A turn that
//! read state no commit has covered yet holds its reply too, so nobody is told of
//! anything that could still be lost.
//!
//! A turn that fails (an error, or a state that does not encode) is rolled back to the
//! last accepted state and its storage writes are dropped. A commit that fails answers
//! every waiting caller with [`CallError::NotDurable`] and the instance rolls back to its
//! last durable state, kept encoded in memory, so it goes on serving reads while the store
//! is down; a commit refused for its version means another activation wrote the record,
//! and the instance stops, fenced.
//!
//! Hooks are not turns, but what a start hook changes is treated as an accepted turn (the
//! first turn's reply waits for its commit), and `on_stop` runs in a journal turn of its
//! own so its storage writes commit with the final checkpoint. A turn counts as handled
//! (metrics, `HandlerFinished`) when its commit lands.

use super::actor::{Actor, Handled};
use crate::checkpoint::{self, CheckpointIdentity};
use crate::instance::factory::Factory;
use crate::scope::journal::{HeldReply, Journal};
use crate::store::{CheckpointStore, StoreError, TurnCommit};
use crate::telemetry::Outcome;
use crate::{CallError, Error, Identity};
use futures::future::BoxFuture;
use std::sync::Arc;

/// The durable-turn state of one instance.
pub(crate) struct Pipeline {
    pub(crate) journal: Arc<Journal>,
    /// The encoded checkpoint of the last accepted state (durable, in flight or waiting).
    accepted: Arc<[u8]>,
    /// The encoded checkpoint of the state in the store as far as this incarnation knows
    /// (the one it loaded, or last committed): what a restart reloads without the store.
    durable: Arc<[u8]>,
    /// Whether `durable` is the stored record (it was loaded from, or committed to, the
    /// store; not so for a fresh or initial state never stored).
    durable_is_stored: bool,
    /// Where a failed commit rolls back to: the last committed state, or the state the
    /// start hook left, with `base_unstored` saying it still needs a commit.
    base: Arc<[u8]>,
    base_unstored: bool,
    /// Where each turn's state is encoded for the change check.
    scratch: Vec<u8>,
    /// Some accepted turn is not covered by a commit yet.
    dirty: bool,
    /// Replies of turns no commit covers yet.
    waiting: Vec<HeldReply>,
    /// Those turns, to be counted as handled once committed.
    waiting_turns: Vec<Handled>,
    /// The commit in flight and the replies it covers.
    pub(crate) in_flight: Option<InFlight>,
}

pub(crate) struct InFlight {
    pub(crate) write: BoxFuture<'static, Result<u64, Error>>,
    replies: Vec<HeldReply>,
    turns: Vec<Handled>,
    /// The state it commits.
    bytes: Arc<[u8]>,
}

impl Pipeline {
    /// The pipeline of an instance loaded with the state encoded as `loaded` (from the
    /// store: `stored`), whose state after its start hook encodes as `started`. What the
    /// hook changed, or a state not stored yet (`unstored`), is committed with the first
    /// turn, and no reply goes out before that commit.
    pub(crate) fn new(
        journal: Arc<Journal>,
        loaded: Vec<u8>,
        started: Vec<u8>,
        stored: bool,
        unstored: bool,
    ) -> Box<Self> {
        let dirty = unstored || loaded != started;
        let started: Arc<[u8]> = started.into();
        Box::new(Self {
            journal,
            scratch: Vec::with_capacity(started.len()),
            durable: loaded.into(),
            durable_is_stored: stored,
            base: started.clone(),
            base_unstored: dirty,
            accepted: started,
            dirty,
            waiting: Vec::new(),
            waiting_turns: Vec::new(),
            in_flight: None,
        })
    }
}

/// How a commit ended.
pub(crate) enum Committed {
    /// Durable; its callers have their replies.
    Done,
    /// It failed; its callers and those waiting behind it were told so, and the state is
    /// back to the last durable one.
    RolledBack,
    /// It failed and the instance cannot go on: fenced out by a newer version (`Conflict`),
    /// or the durable state could not be restored.
    Failed(Error),
}

/// How a stop's final commit ended.
pub(crate) enum FinalCommit {
    /// Stored at this version.
    Stored(u64),
    /// Not stored; the state is back to the last committed one (a version conflict:
    /// fenced).
    Failed(Error),
    /// Not stored, and the last committed state could not be restored: restart.
    Broken(String),
}

impl FinalCommit {
    /// The final commit's outcome from a drain's (`version`: the one stored now).
    fn of(c: Committed, version: Option<u64>) -> Self {
        match c {
            Committed::Done => Self::Stored(version.unwrap_or(0)),
            Committed::RolledBack => Self::Failed(Error::Store(StoreError::Unavailable(
                "the final commit failed; the state is back to the last committed one".into(),
            ))),
            Committed::Failed(Error::Store(err)) if err.is_fence() => {
                Self::Failed(Error::Store(err))
            }
            Committed::Failed(err) => Self::Broken(err.to_string()),
        }
    }
}

/// Encodes `state` as the checkpoint of `id` into `out`.
pub(crate) fn encode_state<F: Factory>(
    id: &Identity,
    state: &F,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    checkpoint::encode_into(checkpoint_identity::<F>(id), state, out).map_err(|e| {
        Error::StateEncoding {
            identity: id.clone(),
            reason: e.to_string(),
        }
    })
}

/// The identity a checkpoint of `id` is written for and checked against.
pub(crate) fn checkpoint_identity<F: Factory>(id: &Identity) -> CheckpointIdentity<'_> {
    CheckpointIdentity {
        factory: F::NAME,
        state_version: F::STATE_VERSION,
        partition: &id.partition,
        key: &id.key,
    }
}

/// Decodes a checkpoint this build encoded (the accepted state).
fn decode_state<F: Factory>(id: &Identity, bytes: &[u8]) -> Result<F, String> {
    let decoded =
        checkpoint::decode(bytes, checkpoint_identity::<F>(id)).map_err(|e| e.to_string())?;
    serde_json::from_str(decoded.state).map_err(|e| e.to_string())
}

fn release(replies: Vec<HeldReply>, failure: Option<&CallError>) {
    for reply in replies {
        reply(failure.cloned());
    }
}

/// Commits a turn (compare-and-set on its expected version). A networked store can
/// commit and still fail to answer; on `Unavailable`, read the record back: if it holds
/// exactly these bytes at a newer version, the commit did land (its side writes with it).
pub(crate) async fn commit_turn(
    store: Arc<dyn CheckpointStore>,
    turn: TurnCommit,
) -> Result<u64, Error> {
    write_checkpoint(store, turn, false).await
}

/// Writes the checkpoint of an instance whose changes were acknowledged before they were
/// stored (it hibernates at last): with `put`, which the partition's byte limits count
/// but never refuse, since refusing would lose what callers were told of. Otherwise as
/// [`commit_turn`].
pub(crate) async fn store_acknowledged(
    store: Arc<dyn CheckpointStore>,
    turn: TurnCommit,
) -> Result<u64, Error> {
    write_checkpoint(store, turn, true).await
}

async fn write_checkpoint(
    store: Arc<dyn CheckpointStore>,
    turn: TurnCommit,
    acknowledged: bool,
) -> Result<u64, Error> {
    let (key, bytes, expected) = (turn.key.clone(), turn.bytes.clone(), turn.expected);
    let written = if acknowledged && turn.side.is_empty() {
        store.put(&key, turn.bytes, expected).await
    } else {
        store.commit(turn).await
    };
    match written {
        Ok(version) => Ok(version),
        Err(StoreError::Unavailable(reason)) => match store.get(&key).await {
            Ok(Some(record)) if record.bytes == bytes && Some(record.version) > expected => {
                Ok(record.version)
            }
            _ => Err(Error::Store(StoreError::Unavailable(reason))),
        },
        Err(e) => Err(Error::Store(e)),
    }
}

impl<F: Factory> Actor<F> {
    /// Opens a durable turn (storage writes and replies go to the journal).
    pub(crate) fn begin_turn(&self) {
        if let Some(p) = &self.pipeline {
            p.journal.begin_turn();
        }
    }

    /// Settles a durable turn: accept it, or roll it back. A turn of a handler declared
    /// read-only ([`Message::READ_ONLY`]) that succeeded skips the change check (debug
    /// builds still check, and warn). Returns a reason to crash when the rollback itself
    /// failed, and the turn back when it counts as handled now (not waiting for a
    /// commit; always, for an instance that is not durable).
    ///
    /// [`Message::READ_ONLY`]: crate::Message::READ_ONLY
    pub(crate) fn end_turn(
        &mut self,
        done: Handled,
        read_only: bool,
    ) -> (Option<String>, Option<Handled>) {
        let outcome = done.outcome;
        let Some(p) = self.pipeline.as_deref_mut() else {
            return (None, Some(done));
        };
        let id = &self.cell.identity;
        let trusted = read_only && outcome == Outcome::Ok && !cfg!(debug_assertions);
        let (changed, encoded) = if trusted {
            (false, Ok(()))
        } else {
            let encoded = encode_state(id, &self.state, &mut p.scratch);
            (encoded.is_err() || *p.scratch != *p.accepted, encoded)
        };
        if read_only && changed && outcome == Outcome::Ok {
            tracing::warn!(partition = %id.partition, manager = %id.manager, key = %id.key, "a handler declared read-only changed the state");
        }
        let keep = outcome == Outcome::Ok && encoded.is_ok();
        let wrote = p.journal.end_turn(keep);
        let mut failure = None;
        let mut crash = None;
        if keep {
            if changed {
                p.accepted = Arc::from(p.scratch.as_slice());
            }
            p.dirty |= changed || wrote;
        } else if outcome != Outcome::Panic {
            if let Err(e) = &encoded {
                failure = Some(CallError::NotDurable {
                    reason: e.to_string(),
                });
            }
            if changed {
                let accepted = p.accepted.clone();
                if let Err(reason) = self.restore(&accepted) {
                    crash = Some(format!("rolling back a failed turn: {reason}"));
                }
            }
        }
        let Some(p) = self.pipeline.as_deref_mut() else {
            return (crash, Some(done));
        };
        // Drained, not taken: the context keeps its buffer's capacity for the next turn.
        let mut empty = Vec::new();
        let replies = self.ctx.held_replies().unwrap_or(&mut empty);
        if failure.is_none() && outcome != Outcome::Panic && (p.dirty || p.in_flight.is_some()) {
            p.waiting.append(replies);
            p.waiting_turns.push(done);
            (crash, None)
        } else {
            for reply in replies.drain(..) {
                reply(failure.clone());
            }
            let outcome = if failure.is_some() {
                Outcome::Error
            } else {
                outcome
            };
            (crash, Some(Handled { outcome, ..done }))
        }
    }

    /// Closes the turn a hook ran in, keeping its storage writes (`keep`) for the next
    /// commit or dropping them.
    pub(crate) fn end_hook_turn(&mut self, keep: bool) {
        if let Some(p) = self.pipeline.as_deref_mut() {
            p.dirty |= p.journal.end_turn(keep);
        }
    }

    /// Starts a commit of the accepted turns if none is in flight.
    pub(crate) fn submit(&mut self) {
        let Some(p) = self.pipeline.as_deref_mut() else {
            return;
        };
        if p.in_flight.is_some() || !p.dirty {
            return;
        }
        p.dirty = false;
        let turn = TurnCommit {
            key: (*self.cell.identity).clone(),
            bytes: p.accepted.clone(),
            expected: self.version,
            side: p.journal.submit(),
        };
        p.in_flight = Some(InFlight {
            write: Box::pin(commit_turn(self.core.shared.store.clone(), turn)),
            replies: std::mem::take(&mut p.waiting),
            turns: std::mem::take(&mut p.waiting_turns),
            bytes: p.accepted.clone(),
        });
    }

    /// Takes the outcome of the commit in flight: release its replies, or fail them and
    /// every reply waiting behind it.
    pub(crate) fn committed(&mut self, result: Result<u64, Error>) -> Committed {
        let Some(p) = self.pipeline.as_deref_mut() else {
            return Committed::Done;
        };
        let Some(done) = p.in_flight.take() else {
            return Committed::Done;
        };
        match result {
            Ok(version) => {
                self.version = Some(version);
                p.durable = done.bytes.clone();
                p.durable_is_stored = true;
                p.base = done.bytes;
                p.base_unstored = false;
                p.journal.committed();
                release(done.replies, None);
                for turn in done.turns {
                    self.handled(turn);
                }
                self.submit();
                // Turns that waited without changing anything saw only what just became
                // durable: unless a new commit took them along, they are answered now.
                if let Some(p) = self.pipeline.as_deref_mut()
                    && p.in_flight.is_none()
                {
                    release(std::mem::take(&mut p.waiting), None);
                    for turn in std::mem::take(&mut p.waiting_turns) {
                        self.handled(turn);
                    }
                }
                Committed::Done
            }
            Err(err) => {
                let fenced = matches!(&err, Error::Store(e) if e.is_fence());
                if fenced {
                    // Out of the directory before anyone hears of it: a caller retrying
                    // on the error must reach a new activation, not this one.
                    self.cell.mailbox.pause();
                    self.leave_directory();
                }
                let failure = match &err {
                    Error::Store(StoreError::OverLimit(over)) => CallError::OverLimit(over.clone()),
                    err => CallError::NotDurable {
                        reason: err.to_string(),
                    },
                };
                release(done.replies, Some(&failure));
                for turn in done.turns {
                    self.handled(Handled {
                        outcome: Outcome::Error,
                        ..turn
                    });
                }
                self.fail_waiting(&failure);
                if fenced {
                    return Committed::Failed(err);
                }
                match self.restore_durable() {
                    Ok(()) => Committed::RolledBack,
                    Err(reason) => Committed::Failed(Error::StateEncoding {
                        identity: (*self.cell.identity).clone(),
                        reason: format!("restoring the durable state: {reason}"),
                    }),
                }
            }
        }
    }

    /// Answers every reply waiting for a commit with `failure` (counting their turns as
    /// errors) and forgets what they wrote.
    fn fail_waiting(&mut self, failure: &CallError) {
        let Some(p) = self.pipeline.as_deref_mut() else {
            return;
        };
        release(std::mem::take(&mut p.waiting), Some(failure));
        let turns = std::mem::take(&mut p.waiting_turns);
        p.journal.discard();
        p.dirty = false;
        for turn in turns {
            self.handled(Handled {
                outcome: Outcome::Error,
                ..turn
            });
        }
    }

    /// Goes back to the last committed state (or the state the start hook left, which
    /// then needs its commit again).
    fn restore_durable(&mut self) -> Result<(), String> {
        let Some(p) = self.pipeline.as_deref() else {
            return Ok(());
        };
        let (base, unstored) = (p.base.clone(), p.base_unstored);
        self.restore(&base)?;
        if let Some(p) = self.pipeline.as_deref_mut() {
            p.dirty = unstored;
        }
        Ok(())
    }

    /// Replaces the state with the one encoded in `bytes`, and accepts its encoding anew:
    /// decoding may reorder what has no order (a `HashMap`), and the change check must
    /// not see that as a change.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.state = decode_state::<F>(&self.cell.identity, bytes)?;
        let Some(p) = self.pipeline.as_deref_mut() else {
            return Ok(());
        };
        encode_state(&self.cell.identity, &self.state, &mut p.scratch)
            .map_err(|e| e.to_string())?;
        p.accepted = Arc::from(p.scratch.as_slice());
        Ok(())
    }

    /// Accepts the state as it is now (after `on_stop`), so the final commit covers it;
    /// an instance never stored is committed even unchanged, as hibernation always did.
    fn accept_final_state(&mut self) -> Result<(), Error> {
        let Some(p) = self.pipeline.as_deref_mut() else {
            return Ok(());
        };
        encode_state(&self.cell.identity, &self.state, &mut p.scratch)?;
        if *p.scratch != *p.accepted {
            p.accepted = Arc::from(p.scratch.as_slice());
            p.dirty = true;
        }
        p.dirty |= self.version.is_none();
        Ok(())
    }

    /// The encoding of the state as loaded, before its start hook runs (durable
    /// instances only), for [`Self::restart_pipeline`].
    pub(crate) fn loaded_state(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.pipeline.is_none() {
            return Ok(None);
        }
        let mut loaded = Vec::new();
        encode_state(&self.cell.identity, &self.state, &mut loaded)?;
        Ok(Some(loaded))
    }

    /// Starts over from a state just loaded (encoded as `loaded`, before the start hook):
    /// nothing journaled stands any more; what the hook changed is committed with the
    /// next turn, as at activation.
    pub(crate) fn restart_pipeline(&mut self, loaded: Option<Vec<u8>>) -> Result<(), Error> {
        let (Some(p), Some(loaded)) = (self.pipeline.as_deref_mut(), loaded) else {
            return Ok(());
        };
        p.journal.discard();
        encode_state(&self.cell.identity, &self.state, &mut p.scratch)?;
        let unstored =
            self.version.is_none() && self.crashes.as_ref().is_some_and(|c| c.initial.is_some());
        p.dirty = unstored || *p.scratch != *loaded;
        p.accepted = Arc::from(p.scratch.as_slice());
        p.base = p.accepted.clone();
        p.base_unstored = p.dirty;
        p.durable = loaded.into();
        p.durable_is_stored = self.version.is_some();
        Ok(())
    }

    /// The last checkpoint, when a durable instance knows it without the store: the one
    /// it committed, or none if it never had one. `None`: ask the store.
    pub(crate) fn known_durable_state(&self) -> Option<Result<Option<(F, u64)>, String>> {
        let p = self.pipeline.as_deref()?;
        match self.version {
            None => Some(Ok(None)),
            Some(version) if p.durable_is_stored => {
                Some(decode_state::<F>(&self.cell.identity, &p.durable).map(|s| Some((s, version))))
            }
            Some(_) => None,
        }
    }

    /// The stop's commit: the turns accepted before it, then the state after `on_stop`.
    pub(crate) async fn final_commit(&mut self) -> FinalCommit {
        if let Some(failed) = self.drain_commits().await {
            return FinalCommit::of(failed, self.version);
        }
        if let Err(err) = self.accept_final_state() {
            // The state `on_stop` left does not encode: back to the last committed one.
            return match self.restore_durable() {
                Ok(()) => FinalCommit::Failed(err),
                Err(reason) => {
                    FinalCommit::Broken(format!("restoring the durable state: {reason}"))
                }
            };
        }
        match self.drain_commits().await {
            None => FinalCommit::Stored(self.version.unwrap_or(0)),
            Some(done) => FinalCommit::of(done, self.version),
        }
    }

    /// Waits until every accepted turn is durable. `None` (or `Done`): all committed;
    /// otherwise how the failed commit ended (its callers were told).
    pub(crate) async fn drain_commits(&mut self) -> Option<Committed> {
        loop {
            self.submit();
            let p = self.pipeline.as_deref_mut()?;
            let write = &mut p.in_flight.as_mut()?.write;
            let result = write.await;
            match self.committed(result) {
                Committed::Done => {}
                failed => return Some(failed),
            }
        }
    }
}
