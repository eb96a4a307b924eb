//! The turns running on this thread, for log formatters that name an event's instance
//! without a span per turn.
//!
//! Every turn runs in a `handler` span (`partition`, `manager`, `key`, `handler`), so
//! any subscriber can tell which instance an event came from. Opening a span is most of a
//! cheap turn's cost while logging, though: `tracing_subscriber`'s fmt layer formats the
//! span's fields into a string as it opens, the registry allocates and frees its slot,
//! and entering and leaving it update the thread's span stack — about 3,000 instructions
//! for a turn that takes 1,000 to 2,000 on its own. So the runtime also keeps, per
//! thread, the stack of turns being polled on it (a turn run in place inside another's
//! is pushed over it), each with the span that was current when it began. A formatter
//! that reads this stack ([`running_turns`]) can write the turn where the span would
//! have appeared, and its subscriber can then refuse the span ([`is_turn_span`]) and
//! never open it. The stack costs a push and a pop per poll of a turn.

use crate::Identity;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Metadata;
use tracing::span::Id;

/// The target of every turn's span (the module that runs turns).
pub(crate) const TURN_SPAN_TARGET: &str = "tenantry::manager::actor";
/// The name of every turn's span.
pub const TURN_SPAN_NAME: &str = "handler";

/// Whether `metadata` is that of the span each turn runs in (`handler`, with the
/// instance's `partition`, `manager` and `key` and the `handler` name). A subscriber
/// whose formatter writes the [`running_turns`] may refuse this span.
pub fn is_turn_span(metadata: &Metadata<'_>) -> bool {
    metadata.is_span() && metadata.name() == TURN_SPAN_NAME && metadata.target() == TURN_SPAN_TARGET
}

/// A turn being polled on this thread.
#[derive(Debug, Clone)]
pub struct RunningTurn {
    identity: Arc<Identity>,
    handler: &'static str,
    parent: Option<Id>,
}

impl RunningTurn {
    /// The instance whose turn it is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The handler the turn runs.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The span that was current when the turn began (the turn's span's parent), if any:
    /// spans up to it were entered before the turn, spans after it within the turn.
    pub fn parent(&self) -> Option<&Id> {
        self.parent.as_ref()
    }
}

thread_local! {
    static RUNNING: RefCell<Vec<RunningTurn>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the turns being polled on this thread, outermost first (empty outside
/// turns, and while the stack is being changed). Turns are recorded once a tracing
/// dispatcher has been set (`tracing::dispatcher::has_been_set`), as for the log
/// formatters this is for.
pub fn running_turns<R>(f: impl FnOnce(&[RunningTurn]) -> R) -> R {
    RUNNING.with(|running| match running.try_borrow() {
        Ok(turns) => f(&turns),
        Err(_) => f(&[]),
    })
}

impl RunningTurn {
    /// A turn of `identity`'s `handler` beginning now, under the current span; `None`
    /// while no tracing dispatcher was ever set (nothing formats events then, and the
    /// record is not free: it holds the identity, one atomic count per turn).
    pub(crate) fn begin(identity: &Arc<Identity>, handler: &'static str) -> Option<Self> {
        if !tracing::dispatcher::has_been_set() {
            return None;
        }
        let parent = tracing::dispatcher::get_default(|d| d.current_span().id().cloned());
        Some(Self {
            identity: identity.clone(),
            handler,
            parent,
        })
    }

    /// Pushes this turn on the thread's stack until the guard drops (also on unwinding).
    pub(crate) fn enter(self) -> Entered {
        let pushed = RUNNING.with(|running| match running.try_borrow_mut() {
            Ok(mut turns) => {
                turns.push(self);
                true
            }
            // Only a formatter reading the stack holds it, and a formatter does not run
            // turns; should one, its turn goes unnamed rather than panicking.
            Err(_) => false,
        });
        Entered { pushed }
    }

    /// Runs `future` (the rest of a turn that waits) with this turn on the stack of the
    /// thread polling it, each time it is polled.
    pub(crate) fn polling<F: Future + Unpin>(self, future: F) -> InTurn<F> {
        InTurn {
            turn: Some(self),
            future,
        }
    }
}

/// The running turn pushed by [`RunningTurn::enter`]; popped on drop.
pub(crate) struct Entered {
    pushed: bool,
}

impl Entered {
    /// Pops the turn, handing it back.
    pub(crate) fn leave(mut self) -> Option<RunningTurn> {
        std::mem::take(&mut self.pushed).then(pop).flatten()
    }
}

fn pop() -> Option<RunningTurn> {
    RUNNING.with(|running| running.try_borrow_mut().ok().and_then(|mut t| t.pop()))
}

impl Drop for Entered {
    fn drop(&mut self) {
        if self.pushed {
            pop();
        }
    }
}

/// A future polled with its turn on the thread's stack (see [`RunningTurn::polling`]).
pub(crate) struct InTurn<F> {
    turn: Option<RunningTurn>,
    future: F,
}

impl<F: Future + Unpin> Future for InTurn<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let entered = this.turn.take().map(RunningTurn::enter);
        let polled = Pin::new(&mut this.future).poll(cx);
        if let Some(entered) = entered {
            this.turn = entered.leave();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, Partition};

    fn turn(key: &str, handler: &'static str) -> RunningTurn {
        // Turns are recorded once a dispatcher was ever set; setting one (dropped at once)
        // is enough.
        let _ = tracing::dispatcher::set_default(&tracing::Dispatch::none());
        let identity = Identity::new(Partition::new("acme").unwrap(), "m", Key::new(key).unwrap());
        RunningTurn::begin(&Arc::new(identity), handler).expect("a dispatcher was set")
    }

    fn stack() -> Vec<(String, &'static str)> {
        running_turns(|t| {
            t.iter()
                .map(|t| (t.identity().key.to_string(), t.handler()))
                .collect()
        })
    }

    #[test]
    fn nested_turns_stack_and_unwind_in_order() {
        assert!(stack().is_empty());
        let outer = turn("a", "one").enter();
        {
            let _inner = turn("b", "two").enter();
            assert_eq!(stack(), [("a".into(), "one"), ("b".into(), "two")]);
        }
        assert_eq!(stack(), [("a".into(), "one")]);
        drop(outer);
        assert!(stack().is_empty());
    }

    #[test]
    fn a_panicking_turn_leaves_the_stack_as_it_found_it() {
        let caught = std::panic::catch_unwind(|| {
            let _turn = turn("a", "one").enter();
            panic!("in the turn");
        });
        assert!(caught.is_err());
        assert!(stack().is_empty());
    }

    #[test]
    fn a_waiting_turn_is_on_the_stack_only_while_polled() {
        let mut polls = 0;
        let future = std::future::poll_fn(move |cx| {
            polls += 1;
            assert_eq!(stack(), [("k".into(), "wait")]);
            if polls < 2 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        });
        let mut in_turn = turn("k", "wait").polling(Box::pin(future));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut in_turn).poll(&mut cx).is_pending());
        assert!(stack().is_empty());
        assert_eq!(Pin::new(&mut in_turn).poll(&mut cx), Poll::Ready(2));
        assert!(stack().is_empty());
    }
}
