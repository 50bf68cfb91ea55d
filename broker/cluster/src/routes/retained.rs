//! Retained messages in a cluster: each topic's retained message lives on the shard the ring
//! assigns the topic to; a subscribe gathers matching ones from the owners.
//!
//! Invariants: a query that gets no answer within the heartbeat timeout (one deadline for all the
//! shards asked) is dropped (its waiter removed) and the subscribe goes on without that shard's
//! messages; `$SYS` topics are each node's own and never asked for elsewhere; an answer holds at most one
//! session queue's worth of messages.

use super::{ShardMsg, ShardRouting};
use crate::mux::Link;
use bytes::Bytes;
use fleetmq_core::broker::{Broker, Found};
use fleetmq_core::message::record;
use fleetmq_core::message::Message;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

impl ShardRouting {
    /// The peer owning the retained message of `topic` (`None`: this shard owns it, or the topic
    /// is one of this node's own `$SYS` topics).
    pub fn retained_owner(&self, topic: &str) -> Option<usize> {
        if super::node_local(topic) {
            return None;
        }
        let owner = self.ring.owner(topic)?;
        if owner == self.me {
            None
        } else {
            self.peer_index(owner)
        }
    }

    /// Retained messages matching the plain `filter` owned by other shards: all of them for a
    /// wildcard filter, the topic's owner otherwise. A shard that does not answer within the
    /// heartbeat timeout is skipped (logged).
    pub async fn gather_retained(&self, filter: &str) -> Vec<Arc<Message>> {
        let wildcard = filter.contains(['+', '#']);
        let peers: Vec<usize> =
            if wildcard { (0..self.peers.len()).collect() } else { self.retained_owner(filter).into_iter().collect() };
        let mut waiting = Vec::new();
        for i in peers {
            let Some(link) = self.peers[i].link.lock().clone() else {
                tracing::debug!(peer = %self.peers[i].id, %filter, "retained messages of an unreachable shard skipped");
                continue;
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.queries.lock().insert(id, tx);
            link.send(ShardMsg::RetainedQuery { id, filter: filter.to_string() }, Bytes::new());
            waiting.push((i, id, rx));
        }
        let mut out = Vec::new();
        let now = Instant::now();
        // One deadline for all: the shards answer concurrently.
        let deadline = tokio::time::Instant::now() + self.opts.heartbeat_timeout;
        for (i, id, rx) in waiting {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(records)) => {
                    out.extend(records.iter().filter_map(|r| record::decode_message(r, now).ok()).map(Arc::new))
                }
                _ => {
                    self.queries.lock().remove(&id);
                    tracing::warn!(peer = %self.peers[i].id, %filter, "no retained messages from a shard in time");
                }
            }
        }
        out
    }
}

/// Answers a peer's retained query with this shard's matching retained messages (stored-only ones
/// read on the blocking pool), at most one session queue's worth.
pub(super) fn answer(broker: &Arc<Broker>, link: &Link, id: u64, filter: String) {
    let broker = broker.clone();
    let link = link.clone();
    tokio::spawn(async move {
        let now = Instant::now();
        let mut loaded = Vec::new();
        let mut stored = Vec::new();
        for found in broker.retained_matching(&filter, now) {
            match found {
                Found::Loaded(m, _) => loaded.push(m),
                Found::InStore(topic, _) => stored.push(topic),
            }
        }
        if !stored.is_empty() {
            let b = broker.clone();
            loaded.extend(tokio::task::spawn_blocking(move || b.read_retained(&stored)).await.unwrap_or_default());
        }
        loaded.truncate(broker.config.limits.max_queued_messages);
        let records = loaded.iter().filter_map(|m| record::encode_message(m, now).ok()).map(|b| b.to_vec()).collect();
        link.send(ShardMsg::RetainedReply { id, records }, Bytes::new());
    });
}
