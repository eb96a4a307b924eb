//! Plain log lines for `tracing_subscriber`'s fmt layer that name each event's instance
//! at a fraction of a span's cost (feature `fmt`, on by default).
//!
//! Every turn runs in a `handler` span, and a fmt layer formats that span's four fields
//! as it opens: logging at `info` made a typed call about three times slower. With
//! [`TurnFormat`] as the layer's event format and [`without_turn_spans`] among its
//! filters, the span is never opened and each line names its turn all the same, as the
//! span would have (see [`lines`](self::TurnFormat)). [`PlainFields`] writes fields
//! without colour as `DefaultFields` does, at less cost.
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
mod lines;

pub use fields::PlainFields;
pub use lines::TurnFormat;

use tracing::Metadata;
use tracing_subscriber::filter::FilterFn;

/// A per-layer filter that refuses the span each turn runs in (the rest passes): for a
/// layer whose event format writes the running turns itself ([`TurnFormat`]). A span
/// that every layer refuses is never built: its callsite says so once.
pub fn without_turn_spans() -> FilterFn<fn(&Metadata<'_>) -> bool> {
    FilterFn::new(|meta| !super::is_turn_span(meta))
}
