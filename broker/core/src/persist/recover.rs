//! Startup recovery of persistent session state: one pass over the session, queue, inbound and
//! message key spaces that rebuilds reference counts and id counters and deletes orphans, without
//! decoding or keeping any payload (message records are only looked at by key; the engine still
//! reads them off disk while scanning).
//!
//! Invariant: after recovery every stored message is referenced by a queue entry of a live session
//! record, and every queue or inbound entry belongs to one; the newest incarnation of a client id
//! wins and older ones are deleted.

use super::records::{QueueEntry, SessionRecord};
use super::{keys, Durability};
use crate::ids::SessionId;
use crate::store::{Batch, Cf, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// A stored persistent session, ready to be brought back as an offline session.
#[derive(Debug, Clone)]
pub struct RecoveredSession {
    pub client_id: String,
    pub incarnation: u64,
    pub record: SessionRecord,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Vec<u16>,
    /// Next free delivery sequence.
    pub next_seq: u64,
    /// Stored deliveries (queued or in flight).
    pub queued: usize,
}

pub(super) fn run(d: &Durability) -> Result<Vec<RecoveredSession>> {
    let store = d.store.as_ref();
    let mut cleanup = Batch::new();
    let mut newest: HashMap<String, (u64, SessionRecord)> = HashMap::new();
    let mut corrupt = 0usize;
    store.scan_prefix(Cf::Sessions, b"", &mut |k, v| {
        match (keys::parse(k), SessionRecord::decode(v)) {
            (Some((id, inc, [])), Ok(record)) => match newest.get(&id) {
                Some((old, _)) if *old > inc => {
                    cleanup.delete(Cf::Sessions, Bytes::copy_from_slice(k));
                }
                Some((old, _)) => {
                    cleanup.delete(Cf::Sessions, keys::session(&id, *old));
                    newest.insert(id, (inc, record));
                }
                None => {
                    newest.insert(id, (inc, record));
                }
            },
            _ => {
                corrupt += 1;
                cleanup.delete(Cf::Sessions, Bytes::copy_from_slice(k));
            }
        }
        true
    })?;
    let live = |id: &str, inc: u64| newest.get(id).is_some_and(|(i, _)| *i == inc);
    let mut refs: HashMap<u64, u32> = HashMap::new();
    let mut seqs: HashMap<(String, u64), (u64, usize)> = HashMap::new();
    store.scan_prefix(Cf::Queue, b"", &mut |k, v| {
        let parsed = keys::parse(k).and_then(|(id, inc, rest)| Some((id, inc, keys::parse_u64(rest)?)));
        match (parsed, QueueEntry::decode(v)) {
            (Some((id, inc, seq)), Ok(entry)) if live(&id, inc) => {
                *refs.entry(entry.msg_id).or_default() += 1;
                let s = seqs.entry((id, inc)).or_default();
                s.0 = s.0.max(seq + 1);
                s.1 += 1;
            }
            _ => {
                cleanup.delete(Cf::Queue, Bytes::copy_from_slice(k));
            }
        }
        true
    })?;
    let mut inbound: HashMap<(String, u64), Vec<u16>> = HashMap::new();
    store.scan_prefix(Cf::Inbound, b"", &mut |k, _| {
        let parsed = keys::parse(k).and_then(|(id, inc, rest)| Some((id, inc, keys::parse_u16(rest)?)));
        match parsed {
            Some((id, inc, pid)) if live(&id, inc) => inbound.entry((id, inc)).or_default().push(pid),
            _ => {
                cleanup.delete(Cf::Inbound, Bytes::copy_from_slice(k));
            }
        }
        true
    })?;
    let mut max_msg = 0u64;
    store.scan_prefix(Cf::Messages, b"", &mut |k, _| {
        match keys::parse_u64(k) {
            Some(id) if refs.contains_key(&id) => max_msg = max_msg.max(id),
            _ => {
                cleanup.delete(Cf::Messages, Bytes::copy_from_slice(k));
            }
        }
        true
    })?;
    if !cleanup.is_empty() {
        tracing::info!(deletes = cleanup.ops.len(), corrupt, "removing orphaned session state");
        store.write(cleanup)?;
    }
    *d.refs.lock() = refs;
    d.next_msg.store(max_msg + 1, Ordering::Relaxed);
    let mut out = Vec::with_capacity(newest.len());
    for (client_id, (incarnation, record)) in newest {
        SessionId::advance_past(incarnation);
        let key = (client_id, incarnation);
        let (next_seq, queued) = seqs.get(&key).copied().unwrap_or((0, 0));
        let inbound = inbound.remove(&key).unwrap_or_default();
        out.push(RecoveredSession { client_id: key.0, incarnation, record, inbound, next_seq, queued });
    }
    Ok(out)
}
