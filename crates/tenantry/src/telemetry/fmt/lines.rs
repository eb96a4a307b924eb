//! The plain log line, with each event's instance named without a span per turn.
//!
//! `tracing_subscriber`'s full format writes `time level span{fields}:...: target:
//! fields`, the spans being those the event happened in. Every turn of an instance runs
//! in a `handler` span with its partition, manager, key and handler, so every event of a
//! turn names its instance and tenant. Opening that span for the fmt layer is most of what
//! logging adds to a call (the fields formatted into a string, the registry's slot), so
//! a subscriber can refuse it ([`super::without_turn_spans`]) and
//! [`TurnFormat`] write the turn instead from the runtime's record of the turns running
//! on the thread ([`crate::telemetry::running_turns`]), where the span would have been:
//! after the span that was current when the turn began. The lines are the full format's,
//! byte for byte (`tests/log_context.rs` holds it), with or without colour.

use super::fields::write_quoted;
use super::{InScope, interleave};
use crate::telemetry::{RunningTurn, TURN_SPAN_NAME, is_turn_span, running_turns};
use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The full format (timestamp, level, spans, target, fields) with running turns written
/// as their spans would be.
#[derive(Debug, Clone, Copy)]
pub struct TurnFormat {
    timestamps: bool,
}

impl Default for TurnFormat {
    fn default() -> Self {
        Self { timestamps: true }
    }
}

impl TurnFormat {
    /// Lines without their timestamp (for comparing lines in tests).
    pub fn without_time() -> Self {
        Self { timestamps: false }
    }
}

/// ANSI styles, as `nu_ansi_term` writes them.
const BOLD: &str = "1";
const DIMMED: &str = "2";
const ITALIC: &str = "3";

/// Writes `text` in `style` when the writer takes colour, else as it is.
fn paint(w: &mut Writer<'_>, style: &str, text: &str) -> fmt::Result {
    if w.has_ansi_escapes() {
        write!(w, "\x1b[{style}m{text}\x1b[0m")
    } else {
        w.write_str(text)
    }
}

/// The level, padded to five characters and coloured as the full format does it.
fn write_level(w: &mut Writer<'_>, level: &Level) -> fmt::Result {
    let (text, colour) = match *level {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        Level::ERROR => ("ERROR", "31"),
    };
    paint(w, colour, text)?;
    w.write_char(' ')
}

/// One span of the scope: `name{fields}:`.
fn write_span(w: &mut Writer<'_>, name: &str, fields: Option<&str>) -> fmt::Result {
    paint(w, BOLD, name)?;
    if let Some(fields) = fields.filter(|f| !f.is_empty()) {
        paint(w, BOLD, "{")?;
        w.write_str(fields)?;
        paint(w, BOLD, "}")?;
    }
    paint(w, DIMMED, ":")
}

/// A running turn as its span's fields would be written (`partition=... manager=...
/// key=... handler="..."`; names in italics with colour, as `DefaultFields` writes them).
fn write_turn(w: &mut Writer<'_>, turn: &RunningTurn) -> fmt::Result {
    paint(w, BOLD, TURN_SPAN_NAME)?;
    paint(w, BOLD, "{")?;
    let id = turn.identity();
    let name = |w: &mut Writer<'_>, name: &str| {
        paint(w, ITALIC, name)?;
        paint(w, DIMMED, "=")
    };
    name(w, "partition")?;
    write!(w, "{}", id.partition)?;
    w.write_char(' ')?;
    name(w, "manager")?;
    write!(w, "{}", id.manager)?;
    w.write_char(' ')?;
    name(w, "key")?;
    write!(w, "{}", id.key)?;
    w.write_char(' ')?;
    name(w, "handler")?;
    write_quoted(w, turn.handler())?;
    paint(w, BOLD, "}")?;
    paint(w, DIMMED, ":")
}

/// The spans the event happened in, root first, with the running turns where their spans
/// would be, and a space after them if there were any.
fn write_scope<S, N>(
    w: &mut Writer<'_>,
    ctx: &FmtContext<'_, S, N>,
    turns: &[RunningTurn],
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let spans = ctx.event_scope().into_iter().flat_map(|s| s.from_root());
    let mut seen = false;
    interleave(spans.map(|s| (s.id(), s)), turns, |place| {
        match place {
            // Under a subscriber that did not refuse the turns' spans, each turn is
            // written once, from the running turns.
            InScope::Span(span) if is_turn_span(span.metadata()) => return Ok(()),
            InScope::Span(span) => {
                let ext = span.extensions();
                let fields = ext.get::<FormattedFields<N>>().map(|f| f.as_str());
                write_span(w, span.metadata().name(), fields)?;
            }
            InScope::Turn(turn) => write_turn(w, turn)?,
        }
        seen = true;
        Ok(())
    })?;
    if seen {
        w.write_char(' ')?;
    }
    Ok(())
}

impl<S, N> FormatEvent<S, N> for TurnFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        if self.timestamps {
            let colour = w.has_ansi_escapes();
            if colour {
                w.write_str("\x1b[2m")?;
            }
            if SystemTime.format_time(&mut w).is_err() {
                w.write_str("<unknown time>")?;
            }
            if colour {
                w.write_str("\x1b[0m")?;
            }
            w.write_char(' ')?;
        }
        write_level(&mut w, meta.level())?;
        running_turns(|turns| write_scope(&mut w, ctx, turns))?;
        paint(&mut w, DIMMED, meta.target())?;
        paint(&mut w, DIMMED, ":")?;
        w.write_char(' ')?;
        ctx.format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}
