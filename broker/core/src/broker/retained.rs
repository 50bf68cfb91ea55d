//! The retained-message set: a topic trie for wildcard lookups plus a byte budget with an eviction
//! order. An entry holds its message in memory, or only its metadata (cost, expiry) when the
//! message lives in the store alone — that is how the set is rebuilt at startup (each record is
//! read once to index it), so a node with a million retained messages does not keep a million
//! payloads in memory.
//!
//! Invariants: `bytes` is the sum of the entries' costs (`Message::cost`, also for stored-only
//! entries) and never exceeds the budget after an insert (eviction or rejection happens first);
//! `order` lists topics oldest first, with stale entries (topics replaced or removed since) skipped
//! lazily. A stored-only entry is only ever created for a record already in the store, and any
//! later publish on its topic replaces it with an in-memory entry.

use crate::config::RetainedOverflow;
use crate::message::Message;
use crate::router::RetainedIndex;
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

struct Entry {
    seq: u64,
    cost: usize,
    expires_at: Option<Instant>,
    /// The message, or `None` while it is only in the store.
    msg: Option<Arc<Message>>,
}

impl Entry {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
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

/// A retained message found by a lookup, with the version of its entry (see
/// [`Retained::is_current`]).
#[derive(Debug, Clone)]
pub enum Found {
    /// The message is in memory.
    Loaded(Arc<Message>, u64),
    /// Only the store has it; read it by topic (off the reactor threads).
    InStore(Arc<str>, u64),
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
        let (cost, expires_at, topic) = (msg.cost(), msg.expires_at, msg.topic.clone());
        self.insert(topic, cost, expires_at, Some(msg))
    }

    /// Indexes a message that is in the store only, by its metadata (startup rebuild).
    pub fn set_stored(&self, topic: Arc<str>, cost: usize, expires_at: Option<Instant>) -> Stored {
        self.insert(topic, cost, expires_at, None)
    }

    fn insert(&self, topic: Arc<str>, cost: usize, expires_at: Option<Instant>, msg: Option<Arc<Message>>) -> Stored {
        let mut s = self.state.write();
        let old = |s: &State| s.index.get(&topic).map_or(0, |e| e.cost);
        let mut evicted = Vec::new();
        if self.max_bytes > 0 && s.bytes - old(&s) + cost > self.max_bytes {
            if self.overflow == RetainedOverflow::RejectNew || cost > self.max_bytes {
                return Stored::Rejected;
            }
            while s.bytes - old(&s) + cost > self.max_bytes {
                let Some((seq, victim)) = s.order.pop_front() else { break };
                if s.index.get(&victim).is_some_and(|e| e.seq == seq) && victim != topic {
                    if let Some(e) = s.index.remove(&victim) {
                        s.bytes -= e.cost;
                    }
                    evicted.push(victim);
                }
            }
        }
        let seq = s.next;
        s.next += 1;
        if let Some(e) = s.index.insert(&topic, Entry { seq, cost, expires_at, msg }) {
            s.bytes -= e.cost;
        }
        s.bytes += cost;
        s.order.push_back((seq, topic));
        if s.order.len() > 2 * s.index.len() + 1024 {
            let State { index, order, .. } = &mut *s;
            order.retain(|(seq, t)| index.get(t).is_some_and(|e| e.seq == *seq));
        }
        Stored::Yes { evicted }
    }

    /// Whether `topic` has a retained message (expired or not).
    pub fn contains(&self, topic: &str) -> bool {
        self.state.read().index.get(topic).is_some()
    }

    /// Removes the retained message of `topic`, if any.
    pub fn remove(&self, topic: &str) -> bool {
        let mut s = self.state.write();
        match s.index.remove(topic) {
            Some(e) => {
                s.bytes -= e.cost;
                true
            }
            None => false,
        }
    }

    /// Unexpired retained messages matching `filter`; expired ones found on the way are returned
    /// in the second list (the caller removes them from storage).
    pub fn matching(&self, filter: &str, now: Instant) -> (Vec<Found>, Vec<Arc<str>>) {
        let mut found = Vec::new();
        let mut expired = Vec::new();
        self.state.read().index.for_each_match(filter, |topic, e| {
            if e.is_expired(now) {
                expired.push(Arc::from(topic));
            } else {
                found.push(match &e.msg {
                    Some(m) => Found::Loaded(m.clone(), e.seq),
                    None => Found::InStore(Arc::from(topic), e.seq),
                });
            }
        });
        for t in &expired {
            self.remove_if_expired(t, now);
        }
        (found, expired)
    }

    fn remove_if_expired(&self, topic: &str, now: Instant) {
        let mut s = self.state.write();
        if s.index.get(topic).is_some_and(|e| e.is_expired(now)) {
            if let Some(e) = s.index.remove(topic) {
                s.bytes -= e.cost;
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
            .filter(|(_, e)| e.is_expired(now))
            .map(|(topic, _)| Arc::from(topic))
            .collect();
        for t in &expired {
            self.remove_if_expired(t, now);
        }
        expired
    }

    /// Whether `topic` still retains the entry version `seq` found by [`Retained::matching`]: a
    /// retained message delivered late (after a store read or a commit) is dropped when a newer
    /// one replaced it meanwhile, since the subscription already received that one live.
    pub fn is_current(&self, topic: &str, seq: u64) -> bool {
        self.state.read().index.get(topic).is_some_and(|e| e.seq == seq)
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.state.read().index.len()
    }

    /// Whether nothing is retained.
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
    use crate::ids::ClientId;
    use bytes::Bytes;
    use fleetmq_codec::QoS;

    fn msg(topic: &str, size: usize) -> Arc<Message> {
        Arc::new(Message {
            topic: Arc::from(topic),
            payload: Bytes::from(vec![b'x'; size]),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: ClientId::new("p"),
            expires_at: None,
            uid: crate::ids::MessageUid::next(),
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

    #[test]
    fn stored_only_entries_count_and_are_replaced_by_loaded_ones() {
        let one = msg("s/1", 100).cost();
        let r = Retained::new(one * 2, RetainedOverflow::EvictOldest);
        r.set_stored(Arc::from("s/1"), one, None);
        r.set_stored(Arc::from("s/2"), one, Some(Instant::now()));
        assert_eq!(r.bytes(), one * 2);
        let (found, expired) = r.matching("s/+", Instant::now() + std::time::Duration::from_millis(5));
        assert!(matches!(&found[..], [Found::InStore(t, _)] if &**t == "s/1"), "{found:?}");
        assert_eq!(expired, vec![Arc::<str>::from("s/2")]);
        let Found::InStore(_, old) = found[0] else { unreachable!() };
        r.set(msg("s/1", 100));
        assert!(!r.is_current("s/1", old), "replaced");
        let (found, _) = r.matching("s/1", Instant::now());
        assert!(matches!(&found[..], [Found::Loaded(m, seq)] if m.payload.len() == 100 && r.is_current("s/1", *seq)));
        assert_eq!(r.bytes(), one);
        assert_eq!(r.set_stored(Arc::from("t/1"), one, None), Stored::Yes { evicted: vec![] });
        assert_eq!(r.set(msg("u/1", 100)), Stored::Yes { evicted: vec![Arc::from("s/1")] });
    }
}
