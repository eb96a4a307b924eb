//! A bounded mailbox that costs nothing while empty.
//!
//! tokio's bounded channel allocates a block of 32 slots per channel up front, which is
//! most of an idle instance's footprint. This one is a mutex-guarded `VecDeque` (no
//! allocation until the first message) and one waker: a few dozen bytes per idle instance.
//! Control mail (stop requests) bypasses the bound so a full mailbox can still be stopped.

use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::Poll;

/// Why a letter was not queued; the letter comes back.
pub(crate) enum SendError<T> {
    Full(T),
    Closed(T),
}

struct Queue<T> {
    items: VecDeque<T>,
    /// Letters are refused (the instance is stopping); control mail still gets in.
    paused: bool,
    closed: bool,
}

pub(crate) struct Mailbox<T> {
    queue: Mutex<Queue<T>>,
    waker: AtomicWaker,
    capacity: usize,
}

/// A queue left with more spare room than this after draining gives it back.
const SHRINK_ABOVE: usize = 64;

impl<T> Mailbox<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                paused: false,
                closed: false,
            }),
            waker: AtomicWaker::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<T>> {
        // No code runs user logic under this lock, so poisoning cannot leave it inconsistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a letter if there is room.
    pub(crate) fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        {
            let mut q = self.lock();
            // Checked under the same lock as the stop's drain: a letter is either queued
            // before the drain (and handled) or refused — never accepted and then lost.
            if q.closed || q.paused {
                return Err(SendError::Closed(item));
            }
            if q.items.len() >= self.capacity {
                return Err(SendError::Full(item));
            }
            q.items.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }

    /// Queues control mail regardless of the bound.
    pub(crate) fn send_control(&self, item: T) -> Result<(), SendError<T>> {
        {
            let mut q = self.lock();
            if q.closed {
                return Err(SendError::Closed(item));
            }
            q.items.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }

    /// Takes the next letter without waiting.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let mut q = self.lock();
        let item = q.items.pop_front();
        if q.items.is_empty() && q.items.capacity() > SHRINK_ABOVE {
            q.items = VecDeque::new();
        }
        item
    }

    /// Waits for the next letter; `None` once closed and empty. Only the owning actor
    /// calls this (one receiver).
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
