//! Calls between nodes: a call for a keyed instance another node serves travels to it
//! over NATS request-reply, and comes back with its answer.
//!
//! Each node answers on `tenantry.<cluster>.node.<node>.<partition>` ([`CallServer`]),
//! one subscription for its life. A node whose runtime refuses a call with
//! `ServedElsewhere` hands it to the [`Forwarder`], which looks up the shard's owner in
//! its view of the ownership record and sends the call to that node's subject: the
//! subject names the partition, so NATS permissions can confine a tenant-scoped gateway
//! to its own subjects. The call carries its caller, checked again by the receiver
//! against the subject and the identity; what is left of its deadline; and an id that
//! names it in both nodes' logs.
//!
//! A call that names no timeout gets 10 s ([`DEFAULT_DEADLINE`]) end to end, not the
//! owner manager's call timeout. Host code's and admin-granted instances' calls travel on
//! `tenantry.<cluster>.host.<node>.<partition>`, which only full nodes may be allowed
//! to publish on; a call that claims more than a tenant's authority on a tenant's subject
//! is refused.
//!
//! The forwarder retries, within the deadline, only the answers that prove the call did
//! not run: nobody listens on the owner's subject (it died or is restarting), the
//! receiver does not serve the identity (`NotServed`: a hand-off is under way, or the
//! view was stale), or the instance stopped before it took the call. It reads the
//! ownership record again before retrying. A call therefore runs at most once, and a call
//! made during a hand-off waits for the new owner instead of failing. A node that leaves
//! keeps answering `NotServed` for a grace period after it gave its shards up, so the
//! calls on their way to it are turned back rather than dropped.

use crate::Ownership;
use crate::wire::{WireCall, WireCaller, WireError, WireReply, WireReplyOut, token};
use async_nats::client::RequestErrorKind;
use futures::StreamExt;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tenantry::bus::{RemoteCall, Transport};
use tenantry::{Bus, CallError, Error, Identity, Invoke, Partition, Runtime};
use tenantry_postgres::ShardOf;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The deadline of a forwarded call that names no timeout.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How long a draining subscription waits for the last calls the server sent it.
const DRAIN_WAIT: Duration = Duration::from_millis(500);
/// The longest deadline a forwarded call keeps (a longer timeout is cut to it).
const MAX_DEADLINE: Duration = Duration::from_secs(3_600);

/// How long the first retry waits; each doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// Extra time the request waits beyond the call's deadline, for the answer of a call
/// that timed out on the far side to arrive.
const ANSWER_SLACK: Duration = Duration::from_millis(250);

/// Where `node` takes the calls for instances of `partition`:
/// `tenantry.<cluster>.node.<node>.<partition>` for a tenant's calls, and
/// `tenantry.<cluster>.host.<node>.<partition>` for host code's and admin-granted
/// instances'. A tenant-scoped gateway may be allowed to publish on the first for its
/// partition only; only full nodes on the second, so no tenant can claim more authority
/// than a tenant's.
pub fn call_subject(cluster: &str, node: &str, partition: &Partition, privileged: bool) -> String {
    let kind = if privileged { "host" } else { "node" };
    format!("tenantry.{cluster}.{kind}.{node}.{}", token(partition))
}

/// The subject on which node `node` of `cluster` takes the gateway requests relayed to it
/// for `partition`'s instances (requests that act on an instance rather than call it:
/// the server's pod and instance routes).
pub fn relay_subject(cluster: &str, node: &str, partition: &Partition) -> String {
    format!("tenantry.{cluster}.http.{node}.{}", token(partition))
}

/// Sends calls for instances another node serves to that node (a [`Transport`]).
pub struct Forwarder {
    client: async_nats::Client,
    cluster: Arc<str>,
    shard_of: ShardOf,
    ownership: Ownership,
    /// The owners as last read (shard number order); `None` until the first read.
    owners: RwLock<Option<Arc<Vec<Option<String>>>>>,
}

impl Forwarder {
    /// A forwarder over `client` for `cluster`, mapping identities to shards by
    /// `shard_of` (the same function the nodes' admission and fences use) and shards to
    /// nodes by `ownership`.
    pub fn new(
        client: async_nats::Client,
        cluster: &str,
        shard_of: ShardOf,
        ownership: Ownership,
    ) -> Self {
        Self {
            client,
            cluster: cluster.into(),
            shard_of,
            ownership,
            owners: RwLock::new(None),
        }
    }

    /// The owner of `shard` in the view, read again first when `fresh` (or never read).
    async fn owner(&self, shard: usize, fresh: bool) -> Option<String> {
        let cached = self
            .owners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let owners = match cached {
            Some(owners) if !fresh => owners,
            _ => match self.ownership.owners().await {
                Ok(owners) => {
                    let owners = Arc::new(owners);
                    *self.owners.write().unwrap_or_else(|e| e.into_inner()) = Some(owners.clone());
                    owners
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the shard owners failed");
                    return None;
                }
            },
        };
        owners.get(shard).cloned().flatten()
    }

    async fn forward(
        &self,
        call: &RemoteCall,
        identity: &Identity,
    ) -> Result<serde_json::Value, Error> {
        let deadline_after = call.timeout.unwrap_or(DEFAULT_DEADLINE).min(MAX_DEADLINE);
        let deadline = Instant::now() + deadline_after;
        let id = call_id();
        let mut backoff = FIRST_BACKOFF;
        let mut fresh = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Nobody took the call in time: the shard is still changing hands.
                return Err(Error::ServedElsewhere(identity.clone()));
            }
            // Every try maps it again: a pin may have moved the tenant meanwhile.
            let Some(shard) = (self.shard_of)(identity) else {
                // Served everywhere: refused here only because this node is shutting down.
                return Err(Error::ServedElsewhere(identity.clone()));
            };
            if let Some(node) = self.owner(shard.0 as usize, fresh).await {
                let privileged = call.caller.is_privileged();
                let subject = call_subject(&self.cluster, &node, &identity.partition, privileged);
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
                        // Neither ran the call: the receiver does not serve it, or its
                        // instance stopped first (a hand-off).
                        Ok(WireReply::Err(WireError::NotServed | WireError::Stopped)) => {
                            tracing::debug!(call = %id, %subject, "not served there; retrying");
                        }
                        Ok(WireReply::Err(e)) => return Err(e.into_error(identity)),
                        Err(e) => {
                            return Err(Error::Remote(format!(
                                "the serving node's answer does not decode: {e}"
                            )));
                        }
                    },
                    Err(e) if e.kind() == RequestErrorKind::TimedOut => {
                        tracing::warn!(call = %id, %subject, "a forwarded call got no answer in time");
                        return Err(Error::Call(CallError::Timeout(deadline_after)));
                    }
                    Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                        tracing::debug!(call = %id, %subject, "no responder; retrying");
                    }
                    // The request may have gone out: retrying could run it twice.
                    Err(e) => {
                        return Err(Error::Remote(format!("forwarding the call failed: {e}")));
                    }
                }
            }
            fresh = true;
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

/// Answers the calls forwarded to this node, on its runtime.
pub(crate) struct CallServer {
    client: async_nats::Client,
    runtime: Runtime,
    /// Tells the subscriptions' task to drain and end.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The subscriptions' task, until the node leaves.
    task: Mutex<Option<JoinHandle<()>>>,
    /// Calls being answered now.
    answering: Arc<Answering>,
}

/// Counts the calls being answered, and wakes whoever waits for none.
#[derive(Default)]
struct Answering {
    count: std::sync::atomic::AtomicUsize,
    none: tokio::sync::Notify,
}

/// One call being answered (dropped when its answer is sent).
struct AnsweringGuard(Arc<Answering>);

impl AnsweringGuard {
    fn new(answering: &Arc<Answering>) -> Self {
        answering
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self(answering.clone())
    }
}

impl Drop for AnsweringGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.0.none.notify_waiters();
        }
    }
}

impl Drop for CallServer {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl CallServer {
    /// Subscribes to node `node`'s calls in `cluster` and answers them on `runtime`.
    /// Start it once the runtime's admission is set: it runs what arrives.
    pub(crate) async fn start(
        client: async_nats::Client,
        cluster: &str,
        node: &str,
        runtime: Runtime,
    ) -> Result<Arc<Self>, crate::ClusterError> {
        let mut subscribers = Vec::with_capacity(2);
        for kind in ["node", "host"] {
            let subscriber = client
                .subscribe(format!("tenantry.{cluster}.{kind}.{node}.*"))
                .await
                .map_err(crate::bucket::unavailable)?;
            subscribers.push(subscriber);
        }
        let mut calls = futures::stream::select_all(subscribers);
        let server = Arc::new(Self {
            client,
            runtime,
            stop: Mutex::new(None),
            task: Mutex::new(None),
            answering: Arc::default(),
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let weak = Arc::downgrade(&server);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = calls.next() => {
                        let (Some(message), Some(server)) = (message, weak.upgrade()) else {
                            return;
                        };
                        let guard = AnsweringGuard::new(&server.answering);
                        tokio::spawn(async move {
                            server.answer(message).await;
                            drop(guard);
                        });
                    }
                    _ = &mut stopped => break,
                }
            }
            // Drain: what the server sent before the unsubscriptions is turned back.
            for subscriber in calls.iter_mut() {
                let _ = subscriber.drain().await;
            }
            let Some(server) = weak.upgrade() else { return };
            let _ = server.client.flush().await;
            while let Ok(Some(message)) = tokio::time::timeout(DRAIN_WAIT, calls.next()).await {
                if let Some(reply_to) = message.reply {
                    let body = encode_error(WireError::NotServed);
                    let _ = server.client.publish(reply_to, body.into()).await;
                }
            }
        });
        *server.stop.lock().unwrap_or_else(|e| e.into_inner()) = Some(stop);
        *server.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(server)
    }

    /// Stops taking calls, for a node that leaves: keeps answering for `grace` (the
    /// node serves nothing by then, so every call is turned back with `NotServed` and
    /// its caller asks the new owner), then unsubscribes, turns back what was already
    /// on its way, waits (at most `limit`) until every call taken has its answer, and
    /// flushes the answers to NATS.
    pub(crate) async fn stop(&self, grace: Duration, limit: Duration) {
        tokio::time::sleep(grace).await;
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let deadline = Instant::now() + limit;
        loop {
            let none = self.answering.none.notified();
            if self
                .answering
                .count
                .load(std::sync::atomic::Ordering::Acquire)
                == 0
            {
                break;
            }
            if tokio::time::timeout_at(deadline, none).await.is_err() {
                tracing::warn!("calls forwarded here were still running when the node left");
                break;
            }
        }
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "flushing the last answers failed");
        }
    }

    async fn answer(&self, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            return;
        };
        let body = match serde_json::from_slice::<WireCall>(&message.payload) {
            Ok(call) => {
                tracing::debug!(call = %call.id, subject = %message.subject, "answering");
                self.run(call, message.subject.as_str()).await
            }
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
        // tenantry.<cluster>.<node|host>.<node>.<partition>
        let mut tokens = subject.split('.').skip(2);
        let privileged = tokens.next() == Some("host");
        let subject_partition = tokens.nth(1);
        let forbidden = || Error::Forbidden("the call does not match its subject".into());
        if subject_partition != Some(token(&identity.partition)) {
            return Err(forbidden());
        }
        // Host and admin authority only on the subject only full nodes may publish to.
        if !privileged && !matches!(call.caller, WireCaller::Tenant(_)) {
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
