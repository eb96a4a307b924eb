//! The journal of a durable instance: what its turns wrote to their scoped storage that
//! is not durable yet, and the replies its turns produced that wait for a commit.
//!
//! A durable (`EveryTurn`) instance commits each turn's state and storage writes together,
//! so its storage writes are not sent to the store when the handler makes them: they are
//! held here, in three layers, newest first — the running turn's, the accepted turns' not
//! yet submitted, and the ones a commit in flight carries. Reads look through the layers
//! before the store, so a turn reads its own writes and those of the turns before it.
//! The running turn's layer is thrown away when the turn fails.
//!
//! A turn that writes nothing takes no lock here: opening and closing a turn are atomic
//! stores. (The replies a durable turn holds live in its context, see [`HeldReply`].)

use crate::CallError;
use crate::store::{SideWrite, StoreKey};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A reply held until the turn that produced it is durable: called with `None` to send
/// it as it is, or with the error that replaces it.
pub(crate) type HeldReply = Box<dyn FnOnce(Option<CallError>) + Send>;

/// Storage writes by record: the new bytes, or `None` for a delete.
type Writes = HashMap<StoreKey, Option<Arc<[u8]>>>;

/// A durable instance's journal; shared by its actor and the storage handles its turns use.
#[derive(Default)]
pub(crate) struct Journal {
    /// The turn running now, by number (from 1); 0 between turns.
    open: AtomicU64,
    /// Turns opened so far (only the actor opens turns).
    turns: AtomicU64,
    /// Whether the running turn wrote anything.
    wrote: AtomicBool,
    layers: Mutex<Layers>,
}

#[derive(Default)]
struct Layers {
    /// The running turn's writes.
    turn: Writes,
    /// Accepted turns' writes, not yet submitted.
    queued: Writes,
    /// Writes carried by the commit in flight.
    in_flight: Writes,
}

/// What a storage read finds in the journal.
pub(crate) enum Journaled {
    /// The journal holds no write of the record: read the store.
    Unknown,
    /// The record's newest bytes (`None`: deleted).
    Known(Option<Arc<[u8]>>),
}

impl Journal {
    pub(crate) fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Layers> {
        // No user code runs under this lock.
        self.layers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a turn; storage handles made during it write into it.
    pub(crate) fn begin_turn(&self) {
        let turn = self.turns.fetch_add(1, Ordering::Relaxed) + 1;
        self.open.store(turn, Ordering::Release);
    }

    /// The turn running now, if any.
    pub(crate) fn open_turn(&self) -> Option<u64> {
        Some(self.open.load(Ordering::Acquire)).filter(|&t| t != 0)
    }

    /// Whether `turn` is the one running now.
    fn is_open(&self, turn: Option<u64>) -> bool {
        turn.is_some() && turn == self.open_turn()
    }

    /// Closes the running turn, keeping its writes (`keep`) or dropping them. Returns
    /// whether it kept any write.
    pub(crate) fn end_turn(&self, keep: bool) -> bool {
        // Under the lock: a write of this turn is either recorded before it closes (and
        // seen below) or refused after (and goes to the store).
        let mut layers = self.lock();
        self.open.store(0, Ordering::Release);
        if !self.wrote.swap(false, Ordering::AcqRel) {
            return false;
        }
        let writes = std::mem::take(&mut layers.turn);
        let wrote = keep && !writes.is_empty();
        if wrote {
            layers.queued.extend(writes);
        }
        wrote
    }

    /// The layers a reader in turn `turn` sees, newest first: the turn's own writes (if it
    /// is the one running), the accepted ones, the ones in flight.
    fn newest_first<'l>(
        &self,
        layers: &'l Layers,
        turn: Option<u64>,
    ) -> impl DoubleEndedIterator<Item = &'l Writes> {
        let own = self.is_open(turn).then_some(&layers.turn);
        own.into_iter().chain([&layers.queued, &layers.in_flight])
    }

    /// Records a write of turn `turn`; returns false (and records nothing) when that turn
    /// is over, so the caller writes to the store itself.
    pub(crate) fn write(&self, turn: u64, key: StoreKey, bytes: Option<Arc<[u8]>>) -> bool {
        let mut layers = self.lock();
        if !self.is_open(Some(turn)) {
            return false;
        }
        layers.turn.insert(key, bytes);
        self.wrote.store(true, Ordering::Release);
        true
    }

    /// The newest journaled bytes of `key` as seen from turn `turn` (`None`: from outside
    /// any turn, which sees accepted writes only).
    pub(crate) fn read(&self, turn: Option<u64>, key: &StoreKey) -> Journaled {
        let state = self.lock();
        self.newest_first(&state, turn)
            .find_map(|layer| layer.get(key))
            .map_or(Journaled::Unknown, |bytes| Journaled::Known(bytes.clone()))
    }

    /// Every journaled record of `manager`, oldest layer first, as `(key, exists)`: what
    /// a listing must add or remove.
    pub(crate) fn listed(&self, turn: Option<u64>, manager: &str) -> Vec<(StoreKey, bool)> {
        let state = self.lock();
        self.newest_first(&state, turn)
            .rev()
            .flat_map(|layer| layer.iter())
            .filter(|(k, _)| &*k.manager == manager)
            .map(|(k, v)| (k.clone(), v.is_some()))
            .collect()
    }

    /// Moves the accepted writes into flight and returns them as a commit's side writes.
    pub(crate) fn submit(&self) -> Vec<SideWrite> {
        let mut state = self.lock();
        let queued = std::mem::take(&mut state.queued);
        let side = queued
            .iter()
            .map(|(key, bytes)| SideWrite {
                key: key.clone(),
                bytes: bytes.clone(),
            })
            .collect();
        state.in_flight = queued;
        side
    }

    /// The commit in flight is durable: its writes are the store's now.
    pub(crate) fn committed(&self) {
        self.lock().in_flight.clear();
    }

    /// Forgets every write not durable yet (a commit failed; the instance starts over
    /// from its last durable state).
    pub(crate) fn discard(&self) {
        let mut state = self.lock();
        state.in_flight.clear();
        state.queued.clear();
        state.turn.clear();
        self.wrote.store(false, Ordering::Release);
    }
}
