//! Who runs an instance's turns: the caller itself when the instance is idle, else a task.
//!
//! An idle instance has no task: its actor is parked in its mailbox (see
//! [`super::mailbox`]). A caller that finds it parked runs the queue up to and including
//! its own letter on its own thread ([`run_here`]): no other thread is woken, and the
//! reply is there when the caller looks. The caller polls the actor's loop once; if a turn
//! has to wait (a handler awaits, a durable commit is in flight, mail arrived behind the
//! caller's letter), that same loop future becomes the actor's task and goes on there.
//! The caller never holds a turn it could drop: a turn polled in place is owned by the
//! loop future, which either finishes in place or moves to its task, so a caller that
//! gives up or times out cannot cut a turn in half. Mail queued by senders that do not run
//! turns (tells, control mail) schedules a *kick* ([`kick`]), a task that takes the actor
//! if nobody has taken it by then.

use super::cell::Cell;
use super::factory::Factory;
use futures::future::BoxFuture;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// An instance's actor while it is not running (the manager layer implements it).
pub(crate) trait Runner<F: Factory>: Send + 'static {
    /// The actor's loop from here: it runs the queued mail until the mailbox is empty,
    /// then parks itself again. With a `budget`, after that many letters it yields once
    /// (the caller running it in place then hands it to a task) if mail is still queued.
    fn run(self: Box<Self>, budget: Option<usize>) -> BoxFuture<'static, ()>;
    /// Ends the actor without running anything more: its manager is gone.
    fn abandon(self: Box<Self>);
}

/// How deeply turns run in place may nest on one thread (a turn calling an idle
/// instance runs that one in place too); deeper calls queue, so a call chain cannot
/// exhaust the thread's stack.
const MAX_NESTING: u32 = 8;

thread_local! {
    static NESTING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Whether a call made on this thread now may run its turn in place: not inside a
/// reactive computation (which would record the handler's reads as its own), and not
/// nested too deeply.
pub(crate) fn may_run_here() -> bool {
    NESTING.with(|n| n.get() < MAX_NESTING) && !crate::reactive::is_tracking()
}

/// Runs a parked actor's queue (`turns` letters, the caller's last) on this thread as far
/// as it goes without waiting; the rest continues in a task on `runtime`, and then this
/// returns true. The turns run in `runtime`'s context whatever runtime (or none) the
/// caller is on, so a handler's timers and tasks belong to its instance's runtime.
pub(crate) fn run_here<F: Factory>(
    actor: Box<dyn Runner<F>>,
    turns: usize,
    runtime: &tokio::runtime::Handle,
) -> bool {
    let mut run = actor.run(Some(turns));
    NESTING.with(|n| n.set(n.get() + 1));
    struct Unnest;
    impl Drop for Unnest {
        fn drop(&mut self) {
            NESTING.with(|n| n.set(n.get() - 1));
        }
    }
    let unnest = Unnest;
    let entered = runtime.enter();
    // The waker is never used: a future that is not done moves to its own task, whose
    // first poll registers the task's waker (a future re-checks what it waits for on
    // every poll). The loop contains its own panics; this one is a last line, so that
    // nothing of an instance ever unwinds into its caller.
    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }));
    drop(entered);
    drop(unnest);
    match polled {
        Ok(Poll::Ready(())) => false,
        Ok(Poll::Pending) => {
            runtime.spawn(run);
            true
        }
        Err(_) => {
            tracing::error!("an instance's loop panicked on its caller's thread");
            false
        }
    }
}

/// Schedules a task that runs the instance's queued mail, unless a caller took the actor
/// first.
pub(crate) fn kick<F: Factory>(cell: Arc<Cell<F>>) {
    let runtime = cell.runtime.clone();
    runtime.spawn(async move {
        if let Some(actor) = cell.mailbox.take_kicked() {
            drop(cell);
            actor.run(None).await;
        }
    });
}
