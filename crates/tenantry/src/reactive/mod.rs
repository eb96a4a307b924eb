//! Reactive values: signals, computed values and effects with automatic dependency
//! tracking, safe to use from many tokio worker threads at once.
//!
//! - [`Signal`]: a value you set. Setting an equal value notifies nobody.
//! - [`Computed`]: a lazy, cached function of what it reads. It recomputes only when a
//!   value it read changed, and re-tracks what it reads on every run.
//! - [`Effect`]: a reaction run after what it read changed; a diamond (two computed values
//!   over one signal feeding one effect) runs it once per change. Effects created through
//!   [`crate::Context::effect`] run inside their instance's turn, through its mailbox,
//!   never concurrently with its handlers, and are disposed with it.
//! - [`batch`]: several writes, one notification.
//!
//! A small graph of our own (see `graph`): writes push dirtiness downstream, reads pull
//! and re-validate by version, so no reader observes a stale value after a write returned.

mod graph;

pub(crate) use graph::Trigger;
pub(crate) use graph::is_tracking;
pub use graph::{batch, untracked};

use graph::{
    Dep, Once, Source, Subscriber, Subscribers, changed, collect, next_version, resubscribe, track,
};
use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

struct SignalInner<T> {
    value: RwLock<T>,
    version: AtomicU64,
    subscribers: Subscribers,
}

impl<T: Send + Sync> Source for SignalInner<T> {
    fn refresh(&self) {}
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
    fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }
}

/// A writable reactive value. Cheap to clone; clones are the same signal.
pub struct Signal<T> {
    inner: Arc<SignalInner<T>>,
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Signal<T> {
    /// A signal holding `value`.
    pub fn new(value: T) -> Self {
        Self {
            inner: Arc::new(SignalInner {
                value: RwLock::new(value),
                version: AtomicU64::new(next_version()),
                subscribers: Subscribers::default(),
            }),
        }
    }

    /// The value; inside a computation, also a dependency.
    pub fn get(&self) -> T {
        // Version before value: a racing write makes the next check recompute, never skip.
        if graph::is_tracking() {
            track(self.inner.clone(), self.inner.version());
        }
        self.inner
            .value
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets the value. An equal value notifies nobody; returns whether it changed.
    pub fn set(&self, value: T) -> bool {
        {
            let mut current = self.inner.value.write().unwrap_or_else(|e| e.into_inner());
            if *current == value {
                return false;
            }
            *current = value;
            self.inner.version.store(next_version(), Ordering::SeqCst);
        }
        // Effects run only after the whole graph is marked, so none sees half of it.
        batch(|| self.inner.subscribers.notify());
        true
    }

    /// Sets the value to `f(current)`.
    pub fn update(&self, f: impl FnOnce(&T) -> T) -> bool {
        let next = f(&self.inner.value.read().unwrap_or_else(|e| e.into_inner()));
        self.set(next)
    }
}

struct ComputedState<T> {
    value: Option<T>,
    deps: Vec<Dep>,
}

struct ComputedInner<T> {
    f: Box<dyn Fn() -> T + Send + Sync>,
    state: Mutex<ComputedState<T>>,
    dirty: AtomicBool,
    version: AtomicU64,
    runs: AtomicU64,
    subscribers: Subscribers,
    me: Weak<ComputedInner<T>>,
}

thread_local! {
    /// Computed values being recomputed on this thread, to catch cycles.
    static COMPUTING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl<T: Clone + PartialEq + Send + Sync + 'static> ComputedInner<T> {
    fn id(&self) -> usize {
        self as *const Self as usize
    }

    fn subscriber(&self) -> Weak<dyn Subscriber> {
        self.me.clone()
    }

    fn refresh_locked(&self, state: &mut ComputedState<T>) {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return;
        }
        /// Leaves the value dirty if what follows unwinds (the function, or an upstream
        /// one it refreshes), so the next read tries again instead of trusting it.
        struct RedoOnUnwind<'a>(&'a AtomicBool, bool);
        impl Drop for RedoOnUnwind<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
        }
        let mut redo = RedoOnUnwind(&self.dirty, true);
        self.refresh_dirty(state);
        redo.1 = false;
    }

    /// [`Self::refresh_locked`] once the value was found dirty.
    fn refresh_dirty(&self, state: &mut ComputedState<T>) {
        if state.value.is_some() && !changed(&state.deps) {
            return;
        }
        COMPUTING.with(|c| c.borrow_mut().push(self.id()));
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                COMPUTING.with(|c| {
                    c.borrow_mut().pop();
                });
            }
        }
        let popped = Pop;
        let (value, deps) = collect(|| (self.f)());
        drop(popped);
        self.runs.fetch_add(1, Ordering::Relaxed);
        // The value, what it was computed from and the subscriptions change together,
        // with nothing between them that can unwind (an unwind after leaves the value
        // dirty, see above): a value kept with the inputs of another run would be
        // trusted as current, and `resubscribe` counts on the recorded inputs being what
        // the value is subscribed to.
        if state.value.as_ref() != Some(&value) {
            state.value = Some(value);
            self.version.store(next_version(), Ordering::SeqCst);
        }
        let old = std::mem::replace(&mut state.deps, deps);
        resubscribe(&self.subscriber(), &old, &state.deps);
        // A write between the read and the subscription notified nobody: look again.
        if changed(&state.deps) {
            self.dirty.store(true, Ordering::SeqCst);
        }
    }

    fn on_stack(&self) -> bool {
        COMPUTING.with(|c| c.borrow().contains(&self.id()))
    }
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Source for ComputedInner<T> {
    fn refresh(&self) {
        if self.on_stack() {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh_locked(&mut state);
    }
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }
    fn subscribers(&self) -> &Subscribers {
        &self.subscribers
    }
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Subscriber for ComputedInner<T> {
    fn invalidate(&self) {
        if !self.dirty.swap(true, Ordering::SeqCst) {
            self.subscribers.notify();
        }
    }
}

/// A lazy, cached, reactive function of other reactive values. Cheap to clone.
pub struct Computed<T> {
    inner: Arc<ComputedInner<T>>,
}

impl<T> Clone for Computed<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + PartialEq + Send + Sync + 'static> Computed<T> {
    /// A computed value of `f`. Nothing runs until the first read.
    pub fn new(f: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            inner: Arc::new_cyclic(|me| ComputedInner {
                f: Box::new(f),
                state: Mutex::new(ComputedState {
                    value: None,
                    deps: Vec::new(),
                }),
                dirty: AtomicBool::new(true),
                version: AtomicU64::new(next_version()),
                runs: AtomicU64::new(0),
                subscribers: Subscribers::default(),
                me: me.clone(),
            }),
        }
    }

    /// The value: cached unless something it read changed. Inside a computation, also a
    /// dependency.
    ///
    /// # Panics
    ///
    /// If the computed value reads itself (a dependency cycle in the program).
    pub fn get(&self) -> T {
        assert!(
            !self.inner.on_stack(),
            "reactive cycle: a computed value read itself while computing"
        );
        let (value, version) = {
            let mut state = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
            self.inner.refresh_locked(&mut state);
            // The version of exactly the value read, taken under the same lock.
            (state.value.clone(), self.inner.version())
        };
        if graph::is_tracking() {
            track(self.inner.clone(), version);
        }
        // refresh_locked always leaves a value behind.
        value.unwrap_or_else(|| unreachable!("a refreshed computed value holds a value"))
    }

    /// How many times the function ran.
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }
}

/// Where an effect runs when scheduled.
pub(crate) type EffectSink = Arc<dyn Fn(Arc<EffectInner>) + Send + Sync>;

enum Body {
    /// Runs on the thread whose write scheduled it (at the end of its batch).
    Inline(Box<dyn Fn() -> Result<(), String> + Send + Sync>),
    /// Runs in an instance's turn. The body is the instance layer's, opaque here: the
    /// turn that runs it knows its type.
    Instance {
        run: Box<dyn Any + Send + Sync>,
        sink: Arc<OnceLock<EffectSink>>,
    },
}

/// The shared part of an effect.
pub(crate) struct EffectInner {
    body: Body,
    deps: Mutex<Vec<Dep>>,
    scheduled: Once,
    ran_once: AtomicBool,
    disposed: AtomicBool,
    runs: AtomicU64,
    last_error: Mutex<Option<String>>,
    me: Weak<EffectInner>,
}

impl EffectInner {
    fn new(body: Body) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            body,
            deps: Mutex::new(Vec::new()),
            scheduled: Once::default(),
            ran_once: AtomicBool::new(false),
            disposed: AtomicBool::new(false),
            runs: AtomicU64::new(0),
            last_error: Mutex::new(None),
            me: me.clone(),
        })
    }

    fn subscriber(&self) -> Weak<dyn Subscriber> {
        self.me.clone()
    }

    /// Whether the effect should run now: first run, or a dependency really changed.
    fn due(&self) -> bool {
        self.scheduled.reset();
        if self.disposed.load(Ordering::SeqCst) {
            return false;
        }
        if !self.ran_once.swap(true, Ordering::SeqCst) {
            return true;
        }
        changed(&self.deps.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn record(&self, deps: Vec<Dep>) {
        let missed = {
            let mut current = self.deps.lock().unwrap_or_else(|e| e.into_inner());
            resubscribe(&self.subscriber(), &current, &deps);
            *current = deps;
            self.runs.fetch_add(1, Ordering::Relaxed);
            // A write between the read and the subscription notified nobody: look again.
            changed(&current)
        };
        if missed {
            self.invalidate();
        }
    }

    fn run_inline(&self) {
        let Body::Inline(f) = &self.body else { return };
        if !self.due() {
            return;
        }
        let (result, deps) = collect(f);
        self.record(deps);
        if let Err(e) = result {
            tracing::error!(error = %e, "effect failed");
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
        }
    }

    /// Runs an instance effect in its turn, if it is due: `turn` gets the body given to
    /// [`instance_effect`] and runs it; what it reads becomes the effect's dependencies.
    /// The error, if any, is returned for an event.
    pub(crate) fn run_in_turn(
        &self,
        turn: impl FnOnce(&(dyn Any + Send + Sync)) -> Result<(), String>,
    ) -> Result<(), String> {
        let Body::Instance { run, .. } = &self.body else {
            return Ok(());
        };
        if !self.due() {
            return Ok(());
        }
        let (result, deps) = collect(|| turn(run.as_ref()));
        self.record(deps);
        result
    }

    pub(crate) fn dispose(&self) {
        self.disposed.store(true, Ordering::SeqCst);
        let deps = std::mem::take(&mut *self.deps.lock().unwrap_or_else(|e| e.into_inner()));
        let me = self.subscriber();
        for d in deps {
            d.source.subscribers().remove(&me);
        }
    }
}

impl Subscriber for EffectInner {
    fn invalidate(&self) {
        if self.disposed.load(Ordering::SeqCst) || !self.scheduled.claim() {
            return;
        }
        if let Body::Instance { sink, .. } = &self.body
            && sink.get().is_none()
        {
            // Not started yet: its first run will read the latest values anyway.
            self.scheduled.reset();
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        graph::defer_or_run(me);
    }
}

impl graph::Flush for EffectInner {
    fn flush(&self) {
        match &self.body {
            Body::Inline(_) => self.run_inline(),
            Body::Instance { sink, .. } => {
                // Set before this flush was deferred (see `invalidate`), and never unset.
                if let (Some(sink), Some(me)) = (sink.get(), self.me.upgrade()) {
                    sink(me);
                }
            }
        }
    }
}

/// A reaction to reactive values. It runs once at creation, then after any value it read
/// changed (once per change, or per batch). Dropping it disposes it.
pub struct Effect {
    inner: Arc<EffectInner>,
}

impl Effect {
    /// An effect that runs on the writer's thread (at the end of the writer's batch).
    /// An error is logged and kept as [`Effect::last_error`].
    pub fn new(f: impl Fn() -> Result<(), String> + Send + Sync + 'static) -> Self {
        let inner = EffectInner::new(Body::Inline(Box::new(f)));
        inner.run_inline();
        Self { inner }
    }

    /// How many times it ran.
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// The error of its last failed run, if any.
    pub fn last_error(&self) -> Option<String> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for Effect {
    fn drop(&mut self) {
        self.inner.dispose();
    }
}

/// An effect owned by an instance (see `Context::effect`), whose body the instance layer
/// runs in the instance's turn.
pub(crate) fn instance_effect(
    run: Box<dyn Any + Send + Sync>,
    sink: Arc<OnceLock<EffectSink>>,
) -> Arc<EffectInner> {
    EffectInner::new(Body::Instance { run, sink })
}

/// Number of live dependents of a trigger (diagnostics and tests).
pub(crate) fn dependents(trigger: &Trigger) -> usize {
    trigger.dependents()
}
