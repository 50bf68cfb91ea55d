//! The bridge on the publish path: copies publishes matching `[[bridge.rule]]` into the
//! partitioned log, at least once and in order per key.
//!
//! Invariants:
//! - A matching publish is buffered before its publisher is acknowledged: on a durable engine its
//!   records go into the publish's own commit (column family `bridge`), so an acknowledged QoS 1/2
//!   publish is in the buffer after any crash; on the memory engine the buffer is memory.
//! - The [`shipper`] moves buffered records to the log in buffer order (one batch per partition
//!   per shipment) and deletes them from the buffer only once the log has them; after a crash the
//!   records of the last unconfirmed shipment are shipped again — the only repeats, marked by the
//!   `fleetmq.node` + `fleetmq.seq` headers. The sequence never goes back on a node: on a durable
//!   engine blocks of it are reserved in the store; on the memory engine (whose buffer does not
//!   outlive the process) each process starts at the wall clock in microseconds.
//! - `bytes`/`records` count what is buffered: raised before a record becomes visible to the
//!   shipper, lowered when it is shipped or when the commit carrying it fails.
//! - The buffer is bounded by `max_buffer_bytes`: past it, `on_buffer_full` refuses QoS 1/2
//!   publishes on bridged topics or drops the bridge copy, counted either way.

pub mod record;
pub mod shipper;
pub mod start;

use crate::config::{BridgeConfig, BufferFullPolicy};
use crate::message::Message;
use crate::persist::Durability;
use crate::store::{Batch, Cf, Store};
use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use record::{Pending, Rule};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Sequences reserved ahead in the store, so a restarted node never reuses one.
const SEQ_BLOCK: u64 = 1 << 20;
const SEQ_KEY: &[u8] = b"bridge/next-seq";

/// What the bridge did with one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// No rule matches (or the copy was dropped by policy): publish as usual.
    Passed,
    /// Buffered for the log (durably in the caller's batch when the engine is durable): `cost`
    /// bytes in `records` records under bridge sequence `seq`, to give back with
    /// [`Bridge::abandon`] if that batch fails.
    Buffered { seq: u64, cost: u64, records: u64 },
    /// The buffer is full and the policy refuses: the publish must be refused (5.0: 0x97).
    Refused,
}

/// Milliseconds since the Unix epoch (record timestamps, lag).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The bridge of one node.
pub struct Bridge {
    rules: Vec<Rule>,
    node: String,
    policy: BufferFullPolicy,
    max_bytes: u64,
    /// Next bridge sequence, and the first one not yet reserved in the store.
    seq: AtomicU64,
    reserved: AtomicU64,
    /// Accepted and not yet shipped: bytes and records.
    bytes: AtomicU64,
    records: AtomicU64,
    durability: Arc<Durability>,
    /// The buffer when the engine is not durable.
    memory: Mutex<VecDeque<(Bytes, Pending)>>,
    wake: tokio::sync::Notify,
    /// Durable buffer: where the next scan starts.
    cursor: Mutex<Cursor>,
    pub(crate) config: BridgeConfig,
}

/// Where scans of the durable buffer start: past the records shipped and deleted (which a scan
/// from the start would step over again), but never past a sequence whose commit may still be in
/// flight. Publishers commit concurrently, so sequence 7 can land after 8 was shipped; a scan
/// resuming after 8 would then ship a later record of 7's key before 7 itself. Scans therefore
/// start at the lowest sequence not yet settled (shipped, or its commit failed), and sequences
/// settled past a gap wait in `ahead` until the gap closes.
#[derive(Debug)]
struct Cursor {
    /// Records recovered at open (all below the first sequence of this process) may remain:
    /// scan from the start until they are gone.
    recovered: bool,
    /// Every sequence from this process's first up to (not including) this one is settled.
    upto: u64,
    /// Settled sequences above `upto`.
    ahead: BTreeSet<u64>,
}

/// A gap that stays open while more than this many later sequences settle is taken as a commit
/// that failed unseen (its waiter gone, as for a will): the cursor moves past gaps until half as
/// many are left, so `ahead` stays bounded.
const MAX_AHEAD: usize = 65_536;

/// The big-endian u64 `k` starts with: a buffer key's sequence, or the stored next sequence.
fn key_seq(k: &[u8]) -> u64 {
    k.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes)
}

/// Buffer key of record `index` of publish `seq`: in buffer order.
fn buffer_key(seq: u64, index: usize) -> Bytes {
    let mut k = BytesMut::with_capacity(10);
    k.put_u64(seq);
    k.put_u16(index as u16);
    k.freeze()
}

/// `from..to` key ranges covering exactly `keys` (buffer keys in ascending order, as one scan
/// returns them): consecutive keys share a range only when no key can exist between them (the
/// next record of the same publish, or the first of the next sequence), so a range never covers
/// a record that was not shipped, such as one whose commit was still in flight during the scan.
/// One range tombstone per run instead of one tombstone per record.
fn runs<'a>(keys: impl Iterator<Item = &'a Bytes>) -> Vec<(Bytes, Bytes)> {
    let parse = |k: &Bytes| -> Option<(u64, u16)> {
        let seq = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
        let index = u16::from_be_bytes(k.get(8..10)?.try_into().ok()?);
        (k.len() == 10).then_some((seq, index))
    };
    // The key right after `k` in byte order: a range ending there covers `k` and nothing more.
    let after = |k: &Bytes| Bytes::from([k.as_ref(), &[0]].concat());
    let mut out: Vec<(Bytes, Bytes)> = Vec::new();
    let mut last: Option<&Bytes> = None;
    for k in keys {
        let adjacent = match (last.and_then(parse), parse(k)) {
            (Some((s1, i1)), Some((s2, i2))) => {
                (s2 == s1 && i1.checked_add(1) == Some(i2)) || (s2 == s1 + 1 && i2 == 0)
            }
            _ => false,
        };
        match out.last_mut() {
            Some(run) if adjacent => run.1 = after(k),
            _ => out.push((k.clone(), after(k))),
        }
        last = Some(k);
    }
    out
}

impl Bridge {
    /// The bridge of a validated config, resuming after what `store` holds (blocking: scans the
    /// buffer; call it off the reactor threads).
    pub fn open(config: &BridgeConfig, node: &str, durability: Arc<Durability>) -> crate::store::Result<Bridge> {
        let (mut next, mut bytes, mut records) = (0u64, 0u64, 0u64);
        if !durability.enabled() {
            next = (now_ms() as u64).saturating_mul(1000);
        } else {
            let store = durability.store();
            if let Some(v) = store.get(Cf::Meta, SEQ_KEY)? {
                next = key_seq(&v);
            }
            store.scan_prefix(Cf::Bridge, &[], &mut |k, v| {
                next = next.max(key_seq(k) + 1);
                bytes += Pending::decode(v).map_or(0, |p| p.cost());
                records += 1;
                true
            })?;
        }
        if records > 0 {
            tracing::info!(records, bytes, "bridge records to ship again after a restart (repeats are marked)");
            metrics::counter!("fleetmq_bridge_recovered_total").increment(records);
        }
        Ok(Bridge {
            rules: config.rules.iter().map(Rule::new).collect(),
            node: node.to_string(),
            policy: config.on_buffer_full,
            max_bytes: config.max_buffer_bytes,
            seq: AtomicU64::new(next),
            reserved: AtomicU64::new(next),
            bytes: AtomicU64::new(bytes),
            records: AtomicU64::new(records),
            durability,
            memory: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            cursor: Mutex::new(Cursor { recovered: records > 0, upto: next, ahead: BTreeSet::new() }),
            config: config.clone(),
        })
    }

    /// The rules, for creating their log topics.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Buffers the records of an accepted publish (before its publisher is acknowledged: durable
    /// records join `batch`, the publish's own commit). `may_refuse`: whether a full buffer may
    /// refuse the publish (not for wills and `$SYS`, which no publisher would retry).
    pub fn capture(
        &self,
        msg: &Message,
        batch: &mut Batch,
        stats: &crate::metrics::Stats,
        may_refuse: bool,
    ) -> Capture {
        // One record per log topic: of several rules writing one topic, the first matching one.
        let mut matching: Vec<&Rule> = Vec::new();
        for r in self.rules.iter().filter(|r| crate::topic::matches(&r.filter, &msg.topic)) {
            if !matching.iter().any(|m| m.log_topic == r.log_topic) {
                matching.push(r);
            }
        }
        if matching.is_empty() {
            return Capture::Passed;
        }
        if self.bytes.load(Ordering::Relaxed) >= self.max_bytes {
            stats.limit_rejection("bridge_buffer");
            return match self.policy {
                BufferFullPolicy::Refuse if may_refuse && msg.qos != fleetmq_codec::QoS::AtMostOnce => Capture::Refused,
                _ => {
                    metrics::counter!("fleetmq_bridge_dropped_total").increment(1);
                    Capture::Passed
                }
            };
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let records = record::records(&matching, msg, &self.node, seq, now_ms());
        let cost: u64 = records.iter().map(Pending::cost).sum();
        let n = records.len() as u64;
        // Counted before the shipper can see them, so shipping never lowers below zero.
        self.bytes.fetch_add(cost, Ordering::Relaxed);
        self.records.fetch_add(n, Ordering::Relaxed);
        if self.durability.enabled() {
            let reserved = self.reserved.load(Ordering::Relaxed);
            if seq + SEQ_BLOCK / 2 >= reserved
                && self
                    .reserved
                    .compare_exchange(reserved, seq + SEQ_BLOCK, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                batch.put(
                    Cf::Meta,
                    Bytes::from_static(SEQ_KEY),
                    Bytes::copy_from_slice(&(seq + SEQ_BLOCK).to_be_bytes()),
                );
            }
            for (i, r) in records.iter().enumerate() {
                batch.put(Cf::Bridge, buffer_key(seq, i), r.encode());
            }
        } else {
            let mut memory = self.memory.lock();
            memory.extend(records.into_iter().enumerate().map(|(i, r)| (buffer_key(seq, i), r)));
        }
        self.wake.notify_one();
        Capture::Buffered { seq, cost, records: n }
    }

    /// Gives back a capture whose commit failed: its records never reached the buffer, so its
    /// sequence is settled.
    pub fn abandon(&self, seq: u64, cost: u64, records: u64) {
        self.forget(cost, records);
        self.settle([seq]);
    }

    /// Marks sequences settled and moves the scan start over every settled one in a row.
    fn settle(&self, seqs: impl IntoIterator<Item = u64>) {
        let mut c = self.cursor.lock();
        let upto = c.upto;
        c.ahead.extend(seqs.into_iter().filter(|&s| s >= upto));
        let (from, mut skipped) = (c.upto, false);
        loop {
            let upto = c.upto;
            if c.ahead.remove(&upto) {
                c.upto += 1;
                continue;
            }
            // A gap. Past the cap it is taken as a commit that failed unseen: gaps are skipped
            // until half the cap is left, with one warning.
            if c.ahead.len() > MAX_AHEAD || (skipped && c.ahead.len() > MAX_AHEAD / 2) {
                let Some(first) = c.ahead.first().copied() else { break };
                c.upto = first;
                skipped = true;
                continue;
            }
            break;
        }
        if skipped {
            tracing::warn!(from, to = c.upto, "bridge sequences never committed; scans move past them");
        }
    }

    /// Gives back what [`Capture::Buffered`] counted for records that left the buffer (shipped)
    /// or never reached it (their commit failed).
    fn forget(&self, cost: u64, records: u64) {
        self.bytes.fetch_sub(cost, Ordering::Relaxed);
        self.records.fetch_sub(records, Ordering::Relaxed);
    }

    /// Bytes buffered and not yet shipped.
    pub fn buffered_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The oldest buffered records, in buffer order, up to about `max_bytes` (at least one).
    /// Blocking on a durable engine.
    fn oldest(&self, max_bytes: usize) -> crate::store::Result<Vec<(Bytes, Pending)>> {
        let mut out = Vec::new();
        let mut size = 0usize;
        if !self.durability.enabled() {
            for (k, p) in self.memory.lock().iter() {
                if size >= max_bytes {
                    break;
                }
                size += p.cost() as usize;
                out.push((k.clone(), p.clone()));
            }
            return Ok(out);
        }
        let store: &Arc<dyn Store> = self.durability.store();
        let (recovered, upto) = {
            let c = self.cursor.lock();
            (c.recovered, c.upto)
        };
        let start = if recovered { Bytes::new() } else { buffer_key(upto, 0) };
        let found = self.scan(store, &start, max_bytes)?;
        if recovered && found.first().is_none_or(|(k, _)| key_seq(k) >= upto) {
            self.cursor.lock().recovered = false;
        }
        Ok(found)
    }

    /// Decodes buffered records from key `start` on, up to about `max_bytes`, and all the
    /// records of a sequence or none (a sequence is settled as a whole once shipped).
    fn scan(
        &self,
        store: &Arc<dyn Store>,
        start: &[u8],
        max_bytes: usize,
    ) -> crate::store::Result<Vec<(Bytes, Pending)>> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut last = None;
        store.scan_from(Cf::Bridge, start, &mut |k, v| {
            let seq = key_seq(k);
            if size >= max_bytes && last != Some(seq) {
                return false;
            }
            last = Some(seq);
            match Pending::decode(v) {
                Some(p) => {
                    size += p.cost() as usize;
                    out.push((Bytes::copy_from_slice(k), p));
                }
                None => {
                    tracing::warn!("unreadable bridge record dropped");
                    out.push((Bytes::copy_from_slice(k), Pending::unreadable()));
                }
            }
            true
        })?;
        Ok(out)
    }

    /// Forgets shipped records (durably on a durable engine).
    async fn shipped(&self, records: &[(Bytes, Pending)]) -> crate::store::Result<()> {
        if self.durability.enabled() {
            let mut batch = Batch::new();
            for (from, to) in runs(records.iter().map(|(k, _)| k)) {
                batch.delete_range(Cf::Bridge, from, to);
            }
            if let Some(commit) = self.durability.submit(batch) {
                commit.await?;
            }
            self.settle(records.iter().map(|(k, _)| key_seq(k)));
        } else {
            let mut memory = self.memory.lock();
            for _ in records {
                memory.pop_front();
            }
        }
        self.forget(records.iter().map(|(_, p)| p.cost()).sum(), records.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
