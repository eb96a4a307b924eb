//! Live runtime events as Server-Sent Events: `GET /v1/partitions/{p}/events` (a
//! tenant's own) and `GET /v1/admin/events` (every tenant's).
//!
//! A tenant's stream reads its partition's own channel
//! ([`Runtime::subscribe_partition`](tenantry::Runtime::subscribe_partition)), so it never
//! holds another tenant's events, not even to filter them out. Each event is one SSE
//! message of type `runtime` whose data is the event as JSON (its partition, manager,
//! key, time and kind). Panic texts and other failure details stay in the server log:
//! a crash says only that the instance crashed. Slow readers never slow the runtime: a
//! stream has a bounded buffer, and one that falls behind gets a `dropped` message with
//! how many of its events it missed, then goes on with the newest. Streams are counted:
//! at most [`STREAMS_PER_TENANT`] per tenant and [`STREAMS_IN_ALL`] in all (429
//! `too_many_streams` past them), since every open stream costs each event a send.

use super::extract::{Admin, Tenant};
use crate::app::App;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tenantry::Partition;
use tenantry::telemetry::{Event, EventKind, EventStream, RecvError};
use tokio::sync::watch;

/// The most event streams one tenant may hold open at once.
pub const STREAMS_PER_TENANT: usize = 8;
/// The most event streams open at once, every tenant and the admin together.
pub const STREAMS_IN_ALL: usize = 128;

/// The open event streams, by partition (`None`: the admin's), and the signal that ends
/// them all at shutdown (an endless response would hold the graceful drain up).
pub struct Streams {
    open: Mutex<HashMap<Option<Partition>, usize>>,
    closing: watch::Sender<bool>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            open: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }
}

/// One open stream's place among them, given back when the stream ends.
pub struct StreamSlot {
    streams: Arc<Streams>,
    of: Option<Partition>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        if let Some(n) = open.get_mut(&self.of) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.of);
            }
        }
    }
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<Partition>, usize>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every open stream, and every one opened from now on.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// A place for one more stream of `of`, or 429 past the limits.
    fn open(streams: &Arc<Streams>, of: Option<Partition>) -> Result<StreamSlot, ApiError> {
        let mut open = streams.lock();
        let total: usize = open.values().sum();
        let own = open.get(&of).copied().unwrap_or(0);
        if total >= STREAMS_IN_ALL || (of.is_some() && own >= STREAMS_PER_TENANT) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "at most {STREAMS_PER_TENANT} event streams per tenant and {STREAMS_IN_ALL} in all are open at once"
                ),
            )
            .retry_after(1));
        }
        *open.entry(of.clone()).or_insert(0) += 1;
        Ok(StreamSlot {
            streams: streams.clone(),
            of,
        })
    }
}

/// `GET /v1/partitions/{partition}/events`: the tenant's runtime events, live.
pub async fn tenant(State(app): State<Arc<App>>, tenant: Tenant) -> Result<Response, ApiError> {
    let slot = Streams::open(&app.streams, Some(tenant.partition.clone()))?;
    let events = app.runtime.subscribe_partition(&tenant.partition);
    Ok(sse(events, slot))
}

/// `GET /v1/admin/events`: every tenant's runtime events, live.
pub async fn admin(State(app): State<Arc<App>>, _: Admin) -> Result<Response, ApiError> {
    let slot = Streams::open(&app.streams, None)?;
    let events = app.runtime.subscribe();
    Ok(sse(events, slot))
}

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn sse(events: EventStream, slot: StreamSlot) -> Response {
    let closing = slot.streams.closing.subscribe();
    let state = (events, closing, slot);
    let messages = futures::stream::unfold(state, |(mut events, mut closing, slot)| async move {
        let message = loop {
            if *closing.borrow_and_update() {
                return None;
            }
            let next = tokio::select! {
                next = events.recv() => next,
                _ = closing.changed() => return None,
            };
            match next {
                Ok(event) => {
                    if let Some(message) = message_of(&event) {
                        break message;
                    }
                }
                Err(RecvError::Lagged(missed)) => break dropped(missed),
                Err(RecvError::Closed) => return None,
            }
        };
        Some((Ok::<_, Infallible>(message), (events, closing, slot)))
    });
    Sse::new(messages)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// The `dropped` message: the reader fell behind by `missed` events.
fn dropped(missed: u64) -> SseEvent {
    SseEvent::default()
        .event("dropped")
        .data(json!({ "dropped": missed }).to_string())
}

/// The `runtime` message of `event`, or `None` for events a stream does not carry
/// (each finished handler call: the metrics count those).
fn message_of(event: &Event) -> Option<SseEvent> {
    let data = event_json(event)?;
    Some(SseEvent::default().event("runtime").data(data.to_string()))
}

/// An event as a stream shows it: where, when, and what, without failure details that
/// belong in the server log.
pub fn event_json(event: &Event) -> Option<Value> {
    let (kind, detail) = match &event.kind {
        EventKind::Started => ("started", json!({})),
        EventKind::Thawed { version } => ("thawed", json!({ "version": version })),
        EventKind::Hibernated { version } => ("hibernated", json!({ "version": version })),
        EventKind::HibernateFailed { .. } => ("hibernate_failed", json!({})),
        EventKind::ThawFailed { .. } => ("thaw_failed", json!({})),
        EventKind::Stopped { reason } => (
            "stopped",
            json!({ "reason": format!("{reason:?}").to_ascii_lowercase() }),
        ),
        EventKind::IdleStopped { idle_for } => (
            "idle_stopped",
            json!({ "idle_ms": u64::try_from(idle_for.as_millis()).unwrap_or(u64::MAX) }),
        ),
        EventKind::Crashed { .. } => ("crashed", json!({})),
        EventKind::Restarted { attempt } => ("restarted", json!({ "attempt": attempt })),
        EventKind::GaveUp { .. } => ("gave_up", json!({})),
        EventKind::HookFailed { hook, .. } => ("hook_failed", json!({ "hook": hook })),
        EventKind::HandlerFinished { .. } => return None,
        EventKind::PodReconcile {
            phase,
            requested,
            completed,
            failed,
            pending,
            ..
        } => (
            "pod_reconcile",
            json!({
                "phase": format!("{phase:?}").to_ascii_lowercase(),
                "requested": requested, "completed": completed,
                "failed": failed, "pending": pending,
            }),
        ),
        EventKind::NodeEnsure { node, phase, .. } => (
            "node_ensure",
            json!({ "node": node, "phase": format!("{phase:?}").to_ascii_lowercase() }),
        ),
        EventKind::ServiceChanged { contract } => {
            ("service_changed", json!({ "contract": contract }))
        }
        EventKind::Audit { action, target } => (
            "audit",
            json!({ "action": action, "target": target.as_storage_str() }),
        ),
        EventKind::EffectFailed { .. } => ("effect_failed", json!({})),
        EventKind::MessageDropped { handler } => ("message_dropped", json!({ "handler": handler })),
        _ => ("other", json!({})),
    };
    let at_ms = event
        .at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Some(json!({
        "partition": event.partition.as_storage_str(),
        "manager": &*event.manager,
        "key": event.key.to_string(),
        "at_ms": at_ms,
        "kind": kind,
        "detail": detail,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lag_is_a_dropped_message_with_the_count() {
        // The SSE text of the marker a reader that fell behind by 17 events gets.
        let text = format!("{:?}", dropped(17));
        assert!(text.contains("dropped"), "{text}");
        assert!(text.contains(r#"{\"dropped\":17}"#), "{text}");
    }
}
