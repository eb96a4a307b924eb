//! A bounded mailbox that costs nothing while empty, and the parking place of its actor.
//!
//! tokio's bounded channel allocates a block of 32 slots per channel up front, which is
//! most of an idle instance's footprint. This one is a mutex-guarded `VecDeque` (no
//! allocation until the first message) and one waker: a few dozen bytes per idle instance.
//! Control mail (stop requests, effects) bypasses the bound so a full mailbox can still be
//! stopped.
//!
//! The same lock guards where the instance's actor is. An idle actor is *parked* here
//! (no task runs it); whoever finds it parked takes it, under the lock that also decides
//! whether their letter queues, so a letter is never queued for an actor nobody runs:
//! - a caller able to run turns itself ([`Mailbox::deliver`]) takes it, with the letters
//!   queued ahead of its own;
//! - a sender that only queues (a tell, control mail) leaves it parked and is told to
//!   schedule a *kick*, a task that takes it later if nobody took it meanwhile;
//! - the actor parks itself only when its queue is empty ([`Door::park`]).

use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::Poll;

/// Why a letter was not queued; the letter comes back.
pub(crate) enum SendError<T> {
    Full(T),
    Closed(T),
}

/// What a sender that queued a letter must do next.
#[must_use = "a parked actor with mail needs its kick scheduled"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Nothing: the actor runs (or a kick is already scheduled) and will see the letter.
    Seen,
    /// The actor is parked: schedule a kick ([`Mailbox::take_kicked`]).
    Kick,
}

/// How a delivered letter will be run.
pub(crate) enum Delivered<A> {
    /// Queued for the running actor.
    Queued(Queued),
    /// The actor was parked and is the deliverer's to run now: the queue holds `turns`
    /// letters, the deliverer's last.
    Run { actor: A, turns: usize },
}

struct Queue<T, A> {
    items: VecDeque<T>,
    /// The actor, while nobody runs it.
    parked: Option<A>,
    /// A kick task is scheduled and has not looked yet.
    kick_pending: bool,
    /// Letters are refused (the instance is stopping); control mail still gets in.
    paused: bool,
    closed: bool,
}

impl<T, A> Queue<T, A> {
    /// Queues `item`. The first letter reserves room for one: a mailbox keeps its room
    /// while idle, and one caller at a time never needs more (a second letter makes it
    /// four, and it doubles from there).
    fn push(&mut self, item: T) {
        if self.items.capacity() == 0 {
            self.items.reserve_exact(1);
        }
        self.items.push_back(item);
    }

    /// What a sender must do after queueing.
    fn after_push(&mut self) -> Queued {
        if self.parked.is_some() && !self.kick_pending {
            self.kick_pending = true;
            Queued::Kick
        } else {
            Queued::Seen
        }
    }
}

pub(crate) struct Mailbox<T, A> {
    queue: Mutex<Queue<T, A>>,
    waker: AtomicWaker,
    capacity: usize,
}

/// A queue left with more spare room than this after draining gives it back.
const SHRINK_ABOVE: usize = 64;

/// The mailbox held locked by its actor, deciding between its next letter and parking.
pub(crate) struct Door<'a, T, A> {
    q: MutexGuard<'a, Queue<T, A>>,
}

impl<T, A> Door<'_, T, A> {
    /// Takes the next letter.
    pub(crate) fn pop(&mut self) -> Option<T> {
        let item = self.q.items.pop_front();
        if self.q.items.is_empty() && self.q.items.capacity() > SHRINK_ABOVE {
            self.q.items = VecDeque::new();
        }
        item
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.q.items.is_empty()
    }

    /// Parks the actor; only with an empty queue (the caller just found it so).
    pub(crate) fn park(mut self, actor: A) {
        debug_assert!(self.q.items.is_empty(), "an actor parks only with no mail");
        self.q.parked = Some(actor);
    }
}

impl<T, A> Mailbox<T, A> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                parked: None,
                kick_pending: false,
                paused: false,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<T, A>> {
        // No code runs user logic under this lock, so poisoning cannot leave it inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the mailbox for its actor's next step.
    pub(crate) fn door(&self) -> Door<'_, T, A> {
        Door { q: self.lock() }
    }

    /// Checks a letter in under the lock: refused while closed or paused, or when full.
    fn admit(&self, q: &Queue<T, A>, item: T) -> Result<T, SendError<T>> {
        // Checked under the same lock as the stop's drain: a letter is either queued
        // before the drain (and handled) or refused — never accepted and then lost.
        if q.closed || q.paused {
            return Err(SendError::Closed(item));
        }
        if q.items.len() >= self.capacity {
            return Err(SendError::Full(item));
        }
        Ok(item)
    }

    /// Queues a letter if there is room.
    pub(crate) fn try_send(&self, item: T) -> Result<Queued, SendError<T>> {
        let next = {
            let mut q = self.lock();
            let item = self.admit(&q, item)?;
            q.push(item);
            q.after_push()
        };
        self.waker.wake();
        Ok(next)
    }

    /// Queues a letter; if the actor is parked, hands it to the caller to run the queue
    /// (its letter last) instead.
    pub(crate) fn deliver(&self, item: T) -> Result<Delivered<A>, SendError<T>> {
        let delivered = {
            let mut q = self.lock();
            let item = self.admit(&q, item)?;
            q.push(item);
            match q.parked.take() {
                Some(actor) => Delivered::Run {
                    actor,
                    turns: q.items.len(),
                },
                None => Delivered::Queued(q.after_push()),
            }
        };
        if matches!(delivered, Delivered::Queued(_)) {
            self.waker.wake();
        }
        Ok(delivered)
    }

    /// Queues control mail regardless of the bound.
    pub(crate) fn send_control(&self, item: T) -> Result<Queued, SendError<T>> {
        let next = {
            let mut q = self.lock();
            if q.closed {
                return Err(SendError::Closed(item));
            }
            q.push(item);
            q.after_push()
        };
        self.waker.wake();
        Ok(next)
    }

    /// A kick's look: takes the parked actor if mail waits for it (nobody took it since
    /// the kick was scheduled).
    pub(crate) fn take_kicked(&self) -> Option<A> {
        let mut q = self.lock();
        q.kick_pending = false;
        if q.items.is_empty() {
            None
        } else {
            q.parked.take()
        }
    }

    /// Parks a new actor, unless mail already waits for it (then it comes back).
    pub(crate) fn try_park(&self, actor: A) -> Result<(), A> {
        let mut q = self.lock();
        if q.items.is_empty() && !q.closed {
            q.parked = Some(actor);
            Ok(())
        } else {
            Err(actor)
        }
    }

    /// Whether the actor is parked (nobody runs it).
    pub(crate) fn is_parked(&self) -> bool {
        self.lock().parked.is_some()
    }

    /// Takes the parked actor for good and closes the mailbox (its owner is gone).
    pub(crate) fn evict(&self) -> Option<A> {
        let mut q = self.lock();
        let actor = q.parked.take()?;
        q.closed = true;
        Some(actor)
    }

    /// Takes the next letter without waiting.
    pub(crate) fn try_recv(&self) -> Option<T> {
        self.door().pop()
    }

    /// Waits for the next letter; `None` once closed and empty. Only the actor running
    /// the instance calls this (one receiver).
    pub(crate) async fn recv(&self) -> Option<T> {
        poll_fn(|cx| {
            if let Some(item) = self.try_recv() {
                return Poll::Ready(Some(item));
            }
            self.waker.register(cx.waker());
            // Look again: a sender may have pushed between the first look and the register.
            let mut q = self.lock();
            match q.items.pop_front() {
                Some(item) => Poll::Ready(Some(item)),
                None if q.closed => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Refuses further letters; what is queued stays for `try_recv`.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.waker.wake();
    }

    /// Refuses letters (not control mail) until `resume`.
    pub(crate) fn pause(&self) {
        self.lock().paused = true;
    }

    pub(crate) fn resume(&self) {
        self.lock().paused = false;
    }

    /// Whether letters are accepted.
    pub(crate) fn is_accepting(&self) -> bool {
        let q = self.lock();
        !q.closed && !q.paused
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
