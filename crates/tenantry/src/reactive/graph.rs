//! The dependency graph underneath signals, computed values and effects.
//!
//! Push dirtiness, pull values: a write bumps the source's version and marks everything
//! downstream dirty (effects get scheduled once); a read of a dirty computed first
//! refreshes what it read and compares versions, and recomputes only if one of them
//! really changed. Tracking is a thread-local stack of collectors, so it works from any
//! number of tokio worker threads: a computation is synchronous and stays on one thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Something a computation can read: a signal, a computed value or a config key.
pub(crate) trait Source: Send + Sync {
    /// Brings the value up to date (computed values recompute if needed).
    fn refresh(&self);
    /// The version of the current value; changes only when the value changes.
    fn version(&self) -> u64;
    /// The downstream list.
    fn subscribers(&self) -> &Subscribers;
}

/// Something downstream: a computed value or an effect.
pub(crate) trait Subscriber: Send + Sync {
    /// Something upstream changed: mark dirty and pass it on (or schedule the effect).
    fn invalidate(&self);
}

/// The weak list of a node's dependents.
#[derive(Default)]
pub(crate) struct Subscribers {
    list: Mutex<Vec<Weak<dyn Subscriber>>>,
}

impl Subscribers {
    pub(crate) fn add(&self, s: Weak<dyn Subscriber>) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|x| Weak::ptr_eq(x, &s)) {
            list.push(s);
        }
    }

    pub(crate) fn remove(&self, s: &Weak<dyn Subscriber>) {
        self.list
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|x| !Weak::ptr_eq(x, s) && x.strong_count() > 0);
    }

    /// Invalidates every live dependent (outside the lock: dependents take their own).
    pub(crate) fn notify(&self) {
        // Most sources have one dependent: it is taken apart, so that notifying it
        // allocates nothing.
        let (first, rest) = {
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|x| x.strong_count() > 0);
            let mut live = list.iter().filter_map(Weak::upgrade);
            (live.next(), live.collect::<Vec<_>>())
        };
        for s in first.into_iter().chain(rest) {
            s.invalidate();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A dependency as recorded by a computation: the source and the version it saw.
pub(crate) struct Dep {
    pub(crate) source: Arc<dyn Source>,
    pub(crate) version: u64,
}

/// A deferred flush: an effect to run or to post to its instance.
pub(crate) trait Flush: Send + Sync {
    /// Runs (or posts) it.
    fn flush(&self);
}

/// A deferred flush, shared with the node it flushes (deferring it allocates nothing).
pub(crate) type Action = Arc<dyn Flush>;

/// The batch depth and the actions deferred to its end.
type BatchState = (usize, Vec<Action>);

thread_local! {
    static TRACKING: RefCell<Vec<Vec<Dep>>> = const { RefCell::new(Vec::new()) };
    static BATCH: RefCell<BatchState> = RefCell::new((0, Vec::new()));
}

/// Records that the running computation (if any) read `source` at `version`.
pub(crate) fn track(source: Arc<dyn Source>, version: u64) {
    TRACKING.with(|t| {
        if let Some(frame) = t.borrow_mut().last_mut() {
            if !frame.iter().any(|d| Arc::ptr_eq(&d.source, &source)) {
                frame.push(Dep { source, version });
            }
        }
    });
}

/// Whether a computation is collecting dependencies on this thread.
pub(crate) fn is_tracking() -> bool {
    TRACKING.with(|t| !t.borrow().is_empty())
}

/// Runs `f`, collecting what it reads.
pub(crate) fn collect<R>(f: impl FnOnce() -> R) -> (R, Vec<Dep>) {
    TRACKING.with(|t| t.borrow_mut().push(Vec::new()));
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            TRACKING.with(|t| {
                t.borrow_mut().pop();
            });
        }
    }
    let guard = Pop;
    let result = f();
    let deps = TRACKING.with(|t| {
        t.borrow_mut()
            .last_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    });
    drop(guard);
    (result, deps)
}

/// Runs `f` without recording its reads in the surrounding computation.
pub fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let saved = TRACKING.with(|t| std::mem::take(&mut *t.borrow_mut()));
    struct Restore(Option<Vec<Vec<Dep>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(saved) = self.0.take() {
                TRACKING.with(|t| *t.borrow_mut() = saved);
            }
        }
    }
    let _restore = Restore(Some(saved));
    f()
}

/// Whether any recorded dependency changed, refreshing each first.
pub(crate) fn changed(deps: &[Dep]) -> bool {
    deps.iter().any(|d| {
        d.source.refresh();
        d.source.version() != d.version
    })
}

/// Re-subscribes `me` from `old` dependencies to `new` ones. A source in both lists
/// keeps its subscription, so a computation that reads what it read before takes no lock
/// of its sources. That counts on `old` being exactly what `me` is subscribed to: the
/// caller records `new` in the same step, before anything that can unwind, and only this
/// and disposal remove a subscription.
pub(crate) fn resubscribe(me: &Weak<dyn Subscriber>, old: &[Dep], new: &[Dep]) {
    let among = |deps: &[Dep], d: &Dep| deps.iter().any(|o| Arc::ptr_eq(&o.source, &d.source));
    for d in old {
        if !among(new, d) {
            d.source.subscribers().remove(me);
        }
    }
    for d in new {
        if !among(old, d) {
            d.source.subscribers().add(me.clone());
        }
    }
}

/// Runs a flush action now, or at the end of the current batch on this thread.
pub(crate) fn defer_or_run(action: Action) {
    let deferred = BATCH.with(|b| {
        let mut b = b.borrow_mut();
        if b.0 > 0 {
            b.1.push(action.clone());
            true
        } else {
            false
        }
    });
    if !deferred {
        action.flush();
    }
}

/// Runs `f` as one batch: effects scheduled by its writes run once, after it returns.
pub fn batch<R>(f: impl FnOnce() -> R) -> R {
    BATCH.with(|b| b.borrow_mut().0 += 1);
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let mut pending = BATCH.with(|b| {
                let mut b = b.borrow_mut();
                b.0 -= 1;
                if b.0 == 0 {
                    std::mem::take(&mut b.1)
                } else {
                    Vec::new()
                }
            });
            for action in pending.drain(..) {
                action.flush();
            }
            // The emptied list goes back for this thread's next batch (unless a nested
            // one already left its own), so that deferring seldom allocates.
            BATCH.with(|b| {
                let mut b = b.borrow_mut();
                if b.1.capacity() == 0 {
                    b.1 = pending;
                }
            });
        }
    }
    let _end = End;
    f()
}

/// A monotonically increasing version source shared by every node.
pub(crate) fn next_version() -> u64 {
    static VERSION: AtomicU64 = AtomicU64::new(1);
    VERSION.fetch_add(1, Ordering::Relaxed)
}

/// A value-less source whose version moves when told: config keys and service contracts.
pub(crate) struct Trigger {
    version: AtomicU64,
    subscribers: Subscribers,
}

impl Trigger {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            version: AtomicU64::new(next_version()),
            subscribers: Subscribers::default(),
        })
    }

    /// Records a read by the running computation.
    pub(crate) fn read(self: &Arc<Self>) {
        if is_tracking() {
            track(self.clone(), self.version());
        }
    }

    /// Announces a change to every dependent.
    pub(crate) fn fire(&self) {
        self.version.store(next_version(), Ordering::SeqCst);
        batch(|| self.subscribers.notify());
    }

    pub(crate) fn dependents(&self) -> usize {
        self.subscribers.len()
    }
}

impl Source for Trigger {
    fn refresh(&self) {}
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
    fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }
}

/// A flag that collapses many schedules into one run.
#[derive(Default)]
pub(crate) struct Once {
    set: AtomicBool,
}

impl Once {
    /// True for the first caller until `reset`.
    pub(crate) fn claim(&self) -> bool {
        !self.set.swap(true, Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        self.set.store(false, Ordering::SeqCst);
    }
}
