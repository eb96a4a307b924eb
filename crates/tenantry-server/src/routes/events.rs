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
//! at most [`STREAMS_PER_TENANT`] per tenant, [`TENANT_STREAMS_IN_ALL`] for all tenants
//! together, and [`ADMIN_STREAMS`] on the admin key (whichever route it uses), 429
//! `too_many_streams` past them. Offboarding a tenant ends its open streams (its keys are
//! gone), and shutdown ends them all.
//!
//! In cluster mode a stream carries the events of the instances on the node that serves
//! it.

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
/// The most event streams all tenants together may hold open at once.
pub const TENANT_STREAMS_IN_ALL: usize = 1024;
/// The most event streams the admin key may hold open at once.
pub const ADMIN_STREAMS: usize = 16;

/// The open streams of one holder, and the signal that ends them.
struct Open {
    count: usize,
    closing: watch::Sender<bool>,
}

/// The open event streams, by holder (a tenant, or `None`: the admin), and the signal
/// that ends them all at shutdown (an endless response would hold the graceful drain
/// up).
pub struct Streams {
    open: Mutex<HashMap<Option<Partition>, Open>>,
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
        if let Some(holder) = open.get_mut(&self.of) {
            holder.count -= 1;
            if holder.count == 0 {
                open.remove(&self.of);
            }
        }
    }
}

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Option<Partition>, Open>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every open stream, and every one opened from now on.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Ends the open streams of `partition`'s tenant (offboarded: its keys are gone).
    pub fn close_partition(&self, partition: &Partition) {
        if let Some(holder) = self.lock().remove(&Some(partition.clone())) {
            holder.closing.send_replace(true);
        }
    }

    /// A place for one more stream of `of`, and the signal that ends its holder's
    /// streams; 429 past the limits.
    fn open(
        streams: &Arc<Streams>,
        of: Option<Partition>,
    ) -> Result<(StreamSlot, watch::Receiver<bool>), ApiError> {
        let mut open = streams.lock();
        let tenants: usize = open
            .iter()
            .filter(|(holder, _)| holder.is_some())
            .map(|(_, o)| o.count)
            .sum();
        let own = open.get(&of).map_or(0, |o| o.count);
        let full = match of {
            Some(_) => own >= STREAMS_PER_TENANT || tenants >= TENANT_STREAMS_IN_ALL,
            None => own >= ADMIN_STREAMS,
        };
        if full {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "at most {STREAMS_PER_TENANT} event streams per tenant and {ADMIN_STREAMS} on the admin key are open at once"
                ),
            )
            .retry_after(1));
        }
        let holder = open.entry(of.clone()).or_insert_with(|| Open {
            count: 0,
            closing: watch::Sender::new(false),
        });
        holder.count += 1;
        let closing = holder.closing.subscribe();
        let slot = StreamSlot {
            streams: streams.clone(),
            of,
        };
        Ok((slot, closing))
    }
}

/// `GET /v1/partitions/{partition}/events`: the tenant's runtime events, live.
pub async fn tenant(State(app): State<Arc<App>>, tenant: Tenant) -> Result<Response, ApiError> {
    // The admin's streams count as the admin's, whichever tenant it looks at.
    let holder = (!tenant.is_admin()).then(|| tenant.partition.clone());
    let (slot, closing) = Streams::open(&app.streams, holder)?;
    let events = app.runtime.subscribe_partition(&tenant.partition);
    Ok(sse(events, slot, closing))
}

/// `GET /v1/admin/events`: every tenant's runtime events, live.
pub async fn admin(State(app): State<Arc<App>>, _: Admin) -> Result<Response, ApiError> {
    let (slot, closing) = Streams::open(&app.streams, None)?;
    let events = app.runtime.subscribe();
    Ok(sse(events, slot, closing))
}

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn sse(events: EventStream, slot: StreamSlot, holder_closing: watch::Receiver<bool>) -> Response {
    let closing = slot.streams.closing.subscribe();
    let state = (events, closing, holder_closing, slot);
    let messages = futures::stream::unfold(state, |state| async move {
        let (mut events, mut closing, mut holder_closing, slot) = state;
        let message = loop {
            if *closing.borrow_and_update() || *holder_closing.borrow_and_update() {
                return None;
            }
            let next = tokio::select! {
                next = events.recv() => next,
                _ = closing.changed() => return None,
                _ = holder_closing.changed() => return None,
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
        Some((
            Ok::<_, Infallible>(message),
            (events, closing, holder_closing, slot),
        ))
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
        EventKind::Throttled { throttled, refused } => (
            "throttled",
            json!({
                "limit": throttled.limit.name(),
                // As the 429's Retry-After and message round it: up, at least 1 ms.
                "retry_after_ms": throttled.retry_after_ms(),
                "refused": refused,
            }),
        ),
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
