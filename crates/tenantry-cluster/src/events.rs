//! Bus events across nodes: an event published on one node reaches the subscribers of
//! its partition on every node.
//!
//! The runtime hands each published event to the [`EventRelay`] (a
//! [`tenantry::bus::EventSink`]) as its own subscribers get it. The relay queues it
//! (bounded: a node that cannot keep up drops events with a warning rather than grow)
//! and one task publishes the queue in order on `tenantry.<cluster>.events.<partition>`.
//! Every node subscribes to its cluster's events and delivers those of other nodes to
//! its own subscribers of the partition the subject names
//! ([`tenantry::Runtime::deliver_event`]); the partition comes from the subject, so
//! NATS permissions can confine a tenant's publisher to its own.

use crate::ClusterError;
use crate::wire::{partition_of, token};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tenantry::bus::EventSink;
use tenantry::{Partition, Runtime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How many events may wait for NATS before new ones are dropped.
const QUEUE: usize = 16_384;

/// An event on the wire.
#[derive(Serialize, Deserialize)]
struct WireEvent {
    /// The node that published it (it does not deliver it twice).
    origin: String,
    topic: String,
    payload: serde_json::Value,
}

fn subject(cluster: &str, partition: &Partition) -> String {
    format!("tenantry.{cluster}.events.{}", token(partition))
}

/// Sends this node's published events to the other nodes.
pub(crate) struct EventRelay {
    cluster: String,
    origin: String,
    queue: mpsc::Sender<(String, Vec<u8>)>,
}

impl EventSink for EventRelay {
    fn published(&self, partition: &Partition, topic: &str, payload: &serde_json::Value) {
        let event = WireEvent {
            origin: self.origin.clone(),
            topic: topic.to_owned(),
            payload: payload.clone(),
        };
        let Ok(body) = serde_json::to_vec(&event) else {
            return;
        };
        if self
            .queue
            .try_send((subject(&self.cluster, partition), body))
            .is_err()
        {
            tracing::warn!(%partition, topic, "the event queue to the other nodes is full; event dropped there");
        }
    }
}

/// The relay's tasks: publishing this node's events, delivering the others'.
pub(crate) struct Relaying {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Relaying {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Relays `runtime`'s events to and from the other nodes of `cluster`.
pub(crate) async fn relay(
    client: async_nats::Client,
    cluster: &str,
    node: &str,
    runtime: &Runtime,
) -> Result<Relaying, ClusterError> {
    let mut incoming = client
        .subscribe(format!("tenantry.{cluster}.events.*"))
        .await
        .map_err(crate::bucket::unavailable)?;
    let (queue, mut outgoing) = mpsc::channel::<(String, Vec<u8>)>(QUEUE);
    runtime.add_event_sink(EventRelay {
        cluster: cluster.to_owned(),
        origin: node.to_owned(),
        queue,
    });
    let publisher = tokio::spawn(async move {
        while let Some((subject, body)) = outgoing.recv().await {
            if let Err(e) = client.publish(subject, body.into()).await {
                tracing::warn!(error = %e, "relaying an event to the other nodes failed");
            }
        }
    });
    let (me, runtime) = (node.to_owned(), runtime.clone());
    let deliverer = tokio::spawn(async move {
        while let Some(message) = incoming.next().await {
            let partition = message
                .subject
                .as_str()
                .rsplit('.')
                .next()
                .and_then(partition_of);
            let Some(partition) = partition else {
                continue;
            };
            let Ok(event) = serde_json::from_slice::<WireEvent>(&message.payload) else {
                continue;
            };
            if event.origin != me {
                runtime.deliver_event(&partition, &event.topic, event.payload);
            }
        }
    });
    Ok(Relaying {
        tasks: [publisher, deliverer],
    })
}
