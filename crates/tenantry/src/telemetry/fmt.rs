//! Plain log lines for `tracing_subscriber`'s fmt layer that name each event's instance
//! at a fraction of a span's cost (feature `fmt`, on by default).
//!
//! Every turn runs in a `handler` span, and a fmt layer formats that span's four fields
//! as it opens: logging at `info` made a typed call about three times slower. With
//! [`TurnFormat`] as the layer's event format and [`without_turn_spans`] among its
//! filters, the span is never opened and each line names its turn all the same, as the
//! span would have. [`TurnJson`] does the same for the JSON format (with `JsonFields`).
//! [`PlainFields`] writes fields without colour as `DefaultFields` does, at less cost.
//!
//! ```no_run
//! use tenantry::telemetry::fmt::{PlainFields, TurnFormat, without_turn_spans};
//! use tracing_subscriber::filter::{EnvFilter, FilterExt};
//! use tracing_subscriber::layer::{Layer, SubscriberExt};
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let layer = tracing_subscriber::fmt::layer()
//!     .with_ansi(false)
//!     .event_format(TurnFormat::default())
//!     .fmt_fields(PlainFields)
//!     .with_filter(EnvFilter::new("info").and(without_turn_spans()));
//! tracing_subscriber::registry().with(layer).init();
//! ```

mod fields;
mod json;
mod lines;

pub use fields::PlainFields;
pub use json::TurnJson;
pub use lines::TurnFormat;

use super::RunningTurn;
use tracing::Metadata;
use tracing::span::Id;
use tracing_subscriber::filter::FilterFn;

/// A per-layer filter that refuses the span each turn runs in (the rest passes): for a
/// layer whose event format writes the running turns itself ([`TurnFormat`]). A span
/// that every layer refuses is never built: its callsite says so once.
pub fn without_turn_spans() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    FilterFn::new(|meta| !super::is_turn_span(meta))
}

/// One place in an event's scope: one of its spans, or a running turn.
enum InScope<'t, S> {
    Span(S),
    Turn(&'t RunningTurn),
}

/// Visits an event's `spans` (root first, each with its id) with the running `turns`
/// among them, each after the span that was current when it began (outermost first: a
/// turn run in place inside another began later); turns that began under a span the
/// event is not in come last.
fn interleave<'t, S, E>(
    spans: impl IntoIterator<Item = (Id, S)>,
    turns: &'t [RunningTurn],
    mut visit: impl FnMut(InScope<'t, S>) -> Result<(), E>,
) -> Result<(), E> {
    let mut turns = turns.iter().peekable();
    while let Some(turn) = turns.next_if(|t| t.parent().is_none()) {
        visit(InScope::Turn(turn))?;
    }
    for (id, span) in spans {
        visit(InScope::Span(span))?;
        while let Some(turn) = turns.next_if(|t| t.parent() == Some(&id)) {
            visit(InScope::Turn(turn))?;
        }
    }
    turns.try_for_each(|turn| visit(InScope::Turn(turn)))
}
