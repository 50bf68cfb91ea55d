//! The retained-message set: a topic trie for wildcard lookups plus a byte budget with an eviction
//! order.
//!
//! Invariants: `bytes` is the sum of `Message::cost` over the retained messages and never exceeds
//! the budget after an insert (eviction or rejection happens first); `order` lists topics oldest
//! first, with stale entries (topics replaced or removed since) skipped lazily.

use crate::config::RetainedOverflow;
use crate::message::Message;
use crate::router::RetainedIndex;
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

struct Entry {
    msg: Arc<Message>,
    seq: u64,
}

#[derive(Default)]
struct State {
    index: RetainedIndex<Entry>,
    order: VecDeque<(u64, Arc<str>)>,
    bytes: usize,
    next: u64,
}

/// What happened to a message offered for retention.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// Retained; these older topics were evicted to make room.
    Yes { evicted: Vec<Arc<str>> },
    /// Over budget with `reject_new`: not retained.
    Rejected,
}

/// Retained messages of a node.
pub struct Retained {
    state: RwLock<State>,
    max_bytes: usize,
    overflow: RetainedOverflow,
}

impl Retained {
    /// An empty set with a byte budget (0: unlimited).
    pub fn new(max_bytes: usize, overflow: RetainedOverflow) -> Retained {
        Retained { state: RwLock::new(State::default()), max_bytes, overflow }
    }

    /// Retains `msg` on its topic, replacing what was there, within the budget.
    pub fn set(&self, msg: Arc<Message>) -> Stored {
        let mut s = self.state.write();
        let cost = msg.cost();
        let old = s.index.get(&msg.topic).map(|e| e.msg.cost()).unwrap_or(0);
        let mut evicted = Vec::new();
        if self.max_bytes > 0 && s.bytes - old + cost > self.max_bytes {
            if self.overflow == RetainedOverflow::RejectNew || cost > self.max_bytes {
                return Stored::Rejected;
            }
            while s.bytes - s.index.get(&msg.topic).map(|e| e.msg.cost()).unwrap_or(0) + cost > self.max_bytes {
                let Some((seq, topic)) = s.order.pop_front() else { break };
                if s.index.get(&topic).is_some_and(|e| e.seq == seq) && *topic != *msg.topic {
                    if let Some(e) = s.index.remove(&topic) {
                        s.bytes -= e.msg.cost();
                    }
                    evicted.push(topic);
                }
            }
        }
        let seq = s.next;
        s.next += 1;
        let topic = msg.topic.clone();
        if let Some(e) = s.index.insert(&topic, Entry { msg, seq }) {
            s.bytes -= e.msg.cost();
        }
        s.bytes += cost;
        s.order.push_back((seq, topic));
        if s.order.len() > 2 * s.index.len() + 1024 {
            let State { index, order, .. } = &mut *s;
            order.retain(|(seq, t)| index.get(t).is_some_and(|e| e.seq == *seq));
        }
        Stored::Yes { evicted }
    }

    /// Removes the retained message of `topic`, if any.
    pub fn remove(&self, topic: &str) -> bool {
        let mut s = self.state.write();
        match s.index.remove(topic) {
            Some(e) => {
                s.bytes -= e.msg.cost();
                true
            }
            None => false,
        }
    }

    /// Unexpired retained messages matching `filter`; expired ones found on the way are returned
    /// in the second list (the caller removes them from storage).
    pub fn matching(&self, filter: &str, now: Instant) -> (Vec<Arc<Message>>, Vec<Arc<str>>) {
        let mut found = Vec::new();
        let mut expired = Vec::new();
        self.state.read().index.for_each_match(filter, |_, e| {
            if e.msg.is_expired(now) {
                expired.push(e.msg.topic.clone());
            } else {
                found.push(e.msg.clone());
            }
        });
        for t in &expired {
            self.remove_if_expired(t, now);
        }
        (found, expired)
    }

    fn remove_if_expired(&self, topic: &str, now: Instant) {
        let mut s = self.state.write();
        if s.index.get(topic).is_some_and(|e| e.msg.is_expired(now)) {
            if let Some(e) = s.index.remove(topic) {
                s.bytes -= e.msg.cost();
            }
        }
    }

    /// Removes every expired retained message, returning their topics.
    pub fn purge_expired(&self, now: Instant) -> Vec<Arc<str>> {
        let expired: Vec<Arc<str>> = self
            .state
            .read()
            .index
            .iter()
            .filter(|(_, e)| e.msg.is_expired(now))
            .map(|(_, e)| e.msg.topic.clone())
            .collect();
        for t in &expired {
            self.remove_if_expired(t, now);
        }
        expired
    }

    pub fn len(&self) -> usize {
        self.state.read().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes retained (the budgeted cost).
    pub fn bytes(&self) -> usize {
        self.state.read().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::ids::ClientId;
    use bytes::Bytes;

    fn msg(topic: &str, size: usize) -> Arc<Message> {
        Arc::new(Message {
            topic: Arc::from(topic),
            payload: Bytes::from(vec![b'x'; size]),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: ClientId::new("p"),
            expires_at: None,
        })
    }

    #[test]
    fn evicts_oldest_to_fit_the_budget() {
        let one = msg("a", 100).cost();
        let r = Retained::new(one * 3, RetainedOverflow::EvictOldest);
        for t in ["a", "b", "c"] {
            assert_eq!(r.set(msg(t, 100)), Stored::Yes { evicted: vec![] });
        }
        assert_eq!(r.set(msg("b", 100)), Stored::Yes { evicted: vec![] }, "replacing does not grow");
        assert_eq!(r.set(msg("d", 100)), Stored::Yes { evicted: vec![Arc::from("a")] });
        assert_eq!(r.set(msg("e", 100)), Stored::Yes { evicted: vec![Arc::from("c")] }, "b was refreshed");
        assert_eq!(r.len(), 3);
        assert!(r.bytes() <= one * 3);
    }

    #[test]
    fn reject_new_keeps_existing() {
        let one = msg("a", 100).cost();
        let r = Retained::new(one * 2, RetainedOverflow::RejectNew);
        r.set(msg("a", 100));
        r.set(msg("b", 100));
        assert_eq!(r.set(msg("c", 100)), Stored::Rejected);
        assert_eq!(r.set(msg("a", 100)), Stored::Yes { evicted: vec![] }, "same-size replacement fits");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn expired_messages_are_purged() {
        let r = Retained::new(0, RetainedOverflow::EvictOldest);
        let mut m = (*msg("a/1", 1)).clone();
        m.expires_at = Some(Instant::now());
        r.set(Arc::new(m));
        r.set(msg("a/2", 1));
        let (found, expired) = r.matching("a/#", Instant::now() + std::time::Duration::from_millis(5));
        assert_eq!(found.len(), 1);
        assert_eq!(expired, vec![Arc::<str>::from("a/1")]);
        assert_eq!(r.len(), 1);
    }
}
