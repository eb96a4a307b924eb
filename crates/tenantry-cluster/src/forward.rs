//! Calls between nodes: a call for a keyed instance another node serves travels to it
//! over NATS request-reply, and comes back with its answer.
//!
//! A node subscribes to `tenantry.<cluster>.call.*.<shard>` for each shard it serves
//! (one queue group, so a request reaches one subscriber even while a shard changes
//! hands) and answers there ([`CallServer`]). A node whose runtime refuses a call with
//! `ServedElsewhere` hands it to the [`Forwarder`], which sends it to
//! `tenantry.<cluster>.call.<partition>.<shard>`: the subject names the partition, so
//! NATS permissions can confine a tenant-scoped gateway to its own subjects. The call
//! carries its caller, checked again by the receiver against the subject and the
//! identity; what is left of its deadline; and an id that names it in both nodes' logs.
//!
//! The forwarder retries, within the deadline, only the answers that prove the call did
//! not run: nobody subscribed (a hand-off is under way), or the receiver does not serve
//! the identity (`NotServed`). A call therefore runs at most once, and a call made during
//! a hand-off waits for the new owner instead of failing.

use crate::wire::{WireCall, WireCaller, WireError, WireReply, WireReplyOut};
use async_nats::client::RequestErrorKind;
use futures::StreamExt;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry::bus::{RemoteCall, Transport};
use tenantry::cluster::ShardId;
use tenantry::{Bus, CallError, Error, Identity, Invoke, Partition, Runtime};
use tenantry_postgres::ShardOf;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The deadline of a forwarded call that names no timeout.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// How long the first retry waits; each doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Extra time the request waits beyond the call's deadline, for the answer of a call
/// that timed out on the far side to arrive.
const ANSWER_SLACK: Duration = Duration::from_millis(250);
/// The queue group every call subscriber joins.
const QUEUE: &str = "owners";

/// The subject token of a partition: its name, or `_` (no name starts with `_`).
fn token(partition: &Partition) -> &str {
    partition.name().unwrap_or("_")
}

/// `tenantry.<cluster>.call.<partition>.<shard>`: where calls for `identity` go.
pub fn call_subject(cluster: &str, identity: &Identity, shard: ShardId) -> String {
    format!(
        "tenantry.{cluster}.call.{}.{}",
        token(&identity.partition),
        shard.0
    )
}

/// Sends calls for instances another node serves to that node (a [`Transport`]).
pub struct Forwarder {
    client: async_nats::Client,
    cluster: Arc<str>,
    shard_of: ShardOf,
}

impl Forwarder {
    /// A forwarder over `client` for `cluster`, mapping identities to shards by
    /// `shard_of` (the same function the nodes' admission and fences use).
    pub fn new(client: async_nats::Client, cluster: &str, shard_of: ShardOf) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            shard_of,
        }
    }

    async fn forward(
        &self,
        call: &RemoteCall,
        identity: &Identity,
    ) -> Result<serde_json::Value, Error> {
        let deadline_after = call.timeout.unwrap_or(DEFAULT_DEADLINE);
        let deadline = Instant::now() + deadline_after;
        let Some(shard) = (self.shard_of)(identity) else {
            // Served everywhere: refused here only because this node is shutting down.
            return Err(Error::ServedElsewhere(identity.clone()));
        };
        let subject = call_subject(&self.cluster, identity, shard);
        let id = call_id();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Nobody took the call in time: the shard is still changing hands.
                return Err(Error::ServedElsewhere(identity.clone()));
            }
            let body = serde_json::to_vec(&WireCall {
                id: id.clone(),
                handler: call.handler.clone(),
                params: call.params.clone(),
                identity: identity.clone(),
                caller: WireCaller::from(&call.caller),
                timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
            })
            .map_err(|e| Error::Remote(format!("encoding the forwarded call: {e}")))?;
            let request = async_nats::Request::new()
                .payload(body.into())
                .timeout(Some(left + ANSWER_SLACK));
            match self.client.send_request(subject.clone(), request).await {
                Ok(message) => match serde_json::from_slice::<WireReply>(&message.payload) {
                    Ok(WireReply::Ok(reply)) => return Ok(reply),
                    Ok(WireReply::Err(WireError::NotServed)) => {}
                    Ok(WireReply::Err(e)) => return Err(e.into_error(identity)),
                    Err(e) => {
                        return Err(Error::Remote(format!(
                            "the serving node's answer does not decode: {e}"
                        )));
                    }
                },
                Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                    return Err(Error::Call(CallError::Timeout(deadline_after)));
                }
                Err(e) if e.kind() == RequestErrorKind::NoResponders => {}
                Err(e) => {
                    tracing::warn!(call = %id, %subject, error = %e, "forwarding a call failed; retrying")
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

impl Transport for Forwarder {
    fn name(&self) -> &str {
        "nats"
    }

    fn invoke<'a>(
        &'a self,
        call: &'a RemoteCall,
    ) -> BoxFuture<'a, Option<Result<serde_json::Value, Error>>> {
        Box::pin(async move {
            // Only calls for an instance this runtime knows but another node serves.
            let identity = call.served_elsewhere.as_ref()?;
            Some(self.forward(call, identity).await)
        })
    }
}

/// 16 hex digits, random per call.
fn call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// Answers the calls forwarded to the shards this node serves, on its runtime.
pub(crate) struct CallServer {
    client: async_nats::Client,
    cluster: Arc<str>,
    runtime: Runtime,
    subscribed: Mutex<HashMap<ShardId, JoinHandle<()>>>,
}

impl Drop for CallServer {
    fn drop(&mut self) {
        for (_, task) in self
            .subscribed
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            task.abort();
        }
    }
}

impl CallServer {
    pub(crate) fn new(client: async_nats::Client, cluster: &str, runtime: Runtime) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            runtime,
            subscribed: Mutex::default(),
        }
    }

    /// Starts answering the calls for `shard`.
    pub(crate) async fn serve(self: &Arc<Self>, shard: ShardId) -> Result<(), crate::ClusterError> {
        let subject = format!("tenantry.{}.call.*.{}", self.cluster, shard.0);
        let mut subscriber = self
            .client
            .queue_subscribe(subject, QUEUE.to_owned())
            .await
            .map_err(crate::bucket::unavailable)?;
        let server = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Some(server) = server.upgrade() else {
                    return;
                };
                tokio::spawn(async move { server.answer(message).await });
            }
        });
        let old = self
            .subscribed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(shard, task);
        if let Some(old) = old {
            old.abort();
        }
        Ok(())
    }

    /// Stops answering the calls for `shard` (dropping the subscription unsubscribes).
    pub(crate) fn stop(&self, shard: ShardId) {
        let task = self
            .subscribed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&shard);
        if let Some(task) = task {
            task.abort();
        }
    }

    async fn answer(&self, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            return;
        };
        let body = match serde_json::from_slice::<WireCall>(&message.payload) {
            Ok(call) => self.run(call, message.subject.as_str()).await,
            Err(e) => encode_error(WireError::Other {
                message: format!("the forwarded call does not decode: {e}"),
            }),
        };
        if let Err(e) = self.client.publish(reply_to, body.into()).await {
            tracing::warn!(error = %e, "answering a forwarded call failed");
        }
    }

    /// Runs a forwarded call for its caller, checked again here, and encodes the answer.
    async fn run(&self, call: WireCall, subject: &str) -> Vec<u8> {
        let bus = match self.bus_for(&call, subject) {
            Ok(bus) => bus,
            Err(e) => return encode_error(WireError::from(&e)),
        };
        let identity = call.identity;
        let opts = Invoke {
            target: Some(identity.partition.clone()),
            key: Some(identity.key.clone()),
            timeout: Some(Duration::from_millis(call.timeout_ms)),
            local: true,
            ..Invoke::default()
        };
        match bus.invoke_raw(&call.handler, call.params, opts).await {
            Ok(reply) => serde_json::to_vec(&WireReplyOut::Ok(&reply)).unwrap_or_else(|e| {
                encode_error(WireError::Other {
                    message: e.to_string(),
                })
            }),
            Err(e) => {
                if !matches!(e, Error::ServedElsewhere(_)) {
                    tracing::debug!(call = %call.id, error = %e, "forwarded call failed");
                }
                encode_error(WireError::from(&e))
            }
        }
    }

    /// The bus the call runs on: its caller's, if the caller may reach the identity, the
    /// identity is what the handler names, and the subject names its partition.
    fn bus_for(&self, call: &WireCall, subject: &str) -> Result<Bus, Error> {
        let identity = &call.identity;
        let subject_partition = subject.split('.').nth(3);
        let forbidden = || Error::Forbidden("the call does not match its subject".into());
        if subject_partition != Some(token(&identity.partition)) {
            return Err(forbidden());
        }
        if call.handler.split_once('.').map(|(prefix, _)| prefix) != Some(&*identity.manager) {
            return Err(Error::RouteNotFound(call.handler.clone()));
        }
        match &call.caller {
            WireCaller::Host => Ok(self.runtime.bus()),
            WireCaller::Tenant(p) if p == &identity.partition => Ok(self.runtime.bus_for(p)),
            WireCaller::Tenant(_) => Err(forbidden()),
            WireCaller::Admin(granted) => self
                .runtime
                .bus_for_granted(granted)
                .ok_or_else(|| Error::Forbidden("no such admin-granted instance here".into())),
        }
    }
}

fn encode_error(e: WireError) -> Vec<u8> {
    serde_json::to_vec(&WireReplyOut::Err(e)).unwrap_or_default()
}
