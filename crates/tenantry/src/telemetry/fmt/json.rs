//! JSON log lines, with each event's turn named without a span per turn.
//!
//! `tracing_subscriber`'s JSON format writes an event's current span as `span` and the
//! spans it is in, root first, as `spans`, each an object of the span's fields and its
//! `name`. [`TurnJson`] writes the line with that format and, for an event inside turns,
//! puts each running turn in `spans` after the span that was current when it began, as
//! the turn's own span would have been (and as `span`, if it is the innermost). Events
//! outside turns are written as they are; only lines inside turns are read back and
//! rewritten.

use super::{InScope, interleave};
use crate::telemetry::{RunningTurn, TURN_SPAN_NAME, is_turn_span, running_turns};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use tracing::span::Id;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `tracing_subscriber`'s JSON format with running turns written as their spans would
/// be. Use it with `JsonFields` as the layer's field format.
#[derive(Debug)]
pub struct TurnJson<T = SystemTime> {
    inner: Format<Json, T>,
}

impl Default for TurnJson {
    fn default() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format().json(),
        }
    }
}

impl TurnJson<()> {
    /// Lines without their timestamp (for comparing lines in tests).
    pub fn without_time() -> Self {
        Self {
            inner: tracing_subscriber::fmt::format().json().without_time(),
        }
    }
}

impl<S, N, T> FormatEvent<S, N> for TurnJson<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let rewritten = running_turns(|turns| {
            if turns.is_empty() {
                return None;
            }
            let mut line = String::new();
            let formatted = self.inner.format_event(ctx, Writer::new(&mut line), event);
            // A line that cannot be read back as expected is written as it is: better
            // without its turns than lost.
            Some(formatted.map(|()| with_turns(&line, ctx, turns).unwrap_or(line)))
        });
        match rewritten {
            None => self.inner.format_event(ctx, w, event),
            Some(Ok(line)) => w.write_str(&line),
            Some(Err(e)) => Err(e),
        }
    }
}

/// A JSON object's entries in their order, each value as its text.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// A running turn as the JSON format writes its span: the fields in name order, then
/// the span's name.
fn turn_object(turn: &RunningTurn) -> Result<String, serde_json::Error> {
    let id = turn.identity();
    let text = |v: &dyn fmt::Display| serde_json::to_string(&v.to_string());
    Ok(format!(
        r#"{{"handler":{},"key":{},"manager":{},"partition":{},"name":{}}}"#,
        serde_json::to_string(turn.handler())?,
        text(&id.key)?,
        text(&id.manager)?,
        text(&id.partition)?,
        serde_json::to_string(TURN_SPAN_NAME)?,
    ))
}

/// `line` (one JSON line of the inner format) with `turns` in its `spans` and `span`;
/// `None` if the line is not the object, or its `spans` not the list, expected.
fn with_turns<S, N>(line: &str, ctx: &FmtContext<'_, S, N>, turns: &[RunningTurn]) -> Option<String>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let Entries(mut entries) = serde_json::from_str(line.trim_end()).ok()?;
    let listed: Vec<Box<RawValue>> = match entries.iter().find(|(k, _)| k == "spans") {
        Some((_, spans)) => serde_json::from_str(spans.get()).ok()?,
        None => Vec::new(),
    };
    // The list is the current span's scope, root first: the same spans, in order.
    let scope: Vec<(Id, bool)> = ctx
        .lookup_current()
        .map(|leaf| {
            leaf.scope()
                .from_root()
                .map(|s| (s.id(), is_turn_span(s.metadata())))
                .collect()
        })
        .unwrap_or_default();
    if scope.len() != listed.len() {
        return None;
    }
    let mut spans: Vec<String> = Vec::new();
    let places = scope
        .into_iter()
        .zip(&listed)
        .map(|((id, is_turn), listed)| (id, (is_turn, listed)));
    interleave(places, turns, |place| {
        match place {
            // A turn's own span (under a subscriber that did not refuse it) is written
            // once, from the running turns.
            InScope::Span((true, _)) => {}
            InScope::Span((false, listed)) => spans.push(listed.get().to_owned()),
            InScope::Turn(turn) => spans.push(turn_object(turn)?),
        }
        Ok::<(), serde_json::Error>(())
    })
    .ok()?;
    let list = format!("[{}]", spans.join(","));
    let current = spans.last().cloned().unwrap_or_default();
    let mut set = |key: &str, value: String| -> Option<()> {
        let value = RawValue::from_string(value).ok()?;
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => entries.push((key.to_owned(), value)),
        }
        Some(())
    };
    set("span", current)?;
    set("spans", list)?;
    let mut out = String::with_capacity(line.len() + 128);
    out.push('{');
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).ok()?);
        out.push(':');
        out.push_str(value.get());
    }
    out.push_str("}\n");
    Some(out)
}
