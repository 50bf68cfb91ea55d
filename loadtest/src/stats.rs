//! Pure measurement logic: latency histograms ([`latency`]), per-stream sequence accounting
//! ([`seq`]), per-second series ([`series`]), per-client accumulators ([`recorder`]), and the
//! exactness verdict computed from them.
//!
//! Invariants: nothing here does I/O or reads clocks, so every figure the tool reports can be
//! recomputed from the serialized worker results. Loss is counted against the number of messages
//! each publisher sent (all sent before the drain period started); a reception of a sequence number
//! at or above that count, from an unknown publisher, or on a stream the topology does not route, is
//! `unexpected`, never a fill for a lost message.

pub mod latency;
pub mod recorder;
pub mod seq;
pub mod series;

use seq::RangeSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which receivers should get which publisher's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Every subscriber receives every publisher (fan-in, fan-out).
    AllToAll {
        /// Number of subscribers.
        subscribers: u32,
    },
    /// Subscriber `i` receives publisher `i` only (point-to-point).
    Pairs,
    /// The subscribers form one shared-subscription group: each message goes to exactly one member.
    Group,
}

/// What one receiver saw from one publisher (a worker's output, mergeable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Global subscriber index.
    pub subscriber: u32,
    /// Global publisher index (from the payload).
    pub publisher: u32,
    /// Distinct sequence numbers received.
    pub received: RangeSet,
    /// Receptions, duplicates included.
    pub deliveries: u64,
    /// Receptions of an already received sequence number on this stream.
    pub duplicates: u64,
    /// First receptions that arrived after a higher sequence number on this stream.
    pub out_of_order: u64,
}

/// Delivery exactness over the whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exactness {
    /// Distinct deliveries the topology calls for (sent × receivers per message).
    pub expected: u64,
    /// Distinct expected deliveries that arrived.
    pub received: u64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Extra receptions of a message (per subscriber; for a shared group, across its members).
    pub duplicates: u64,
    /// First receptions that overtook a later message of the same publisher on the same receiver.
    pub out_of_order: u64,
    /// Distinct receptions no publisher of this run should have caused (see module doc).
    pub unexpected: u64,
}

/// Computes exactness from each publisher's sent count (`sent[p]` for publisher `p`) and the streams.
pub fn exactness(topology: Topology, sent: &[u64], streams: &[StreamRecord]) -> Exactness {
    let mut merged: BTreeMap<(u32, u32), RangeSet> = BTreeMap::new();
    let mut ex = Exactness::default();
    for st in streams {
        ex.duplicates += st.duplicates;
        ex.out_of_order += st.out_of_order;
        let receiver = if topology == Topology::Group { 0 } else { st.subscriber };
        ex.duplicates += merged.entry((receiver, st.publisher)).or_default().union_with(&st.received);
    }
    let publishers = u32::try_from(sent.len()).unwrap_or(u32::MAX);
    let expected_receivers: Vec<(u32, u32)> = match topology {
        Topology::AllToAll { subscribers } => {
            (0..subscribers).flat_map(|s| (0..publishers).map(move |p| (s, p))).collect()
        }
        Topology::Pairs => (0..publishers).map(|p| (p, p)).collect(),
        Topology::Group => (0..publishers).map(|p| (0, p)).collect(),
    };
    for key in &expected_receivers {
        let want = sent.get(key.1 as usize).copied().unwrap_or(0);
        ex.expected += want;
        let got = merged.remove(key).map(|set| {
            let below = set.count_below(want);
            ex.unexpected += set.len() - below;
            below
        });
        let got = got.unwrap_or(0);
        ex.received += got;
        ex.lost += want - got;
    }
    ex.unexpected += merged.values().map(RangeSet::len).sum::<u64>();
    ex
}

/// The run's pass/fail judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "UPPERCASE")]
pub enum Verdict {
    /// No loss, and no duplicate at QoS 2.
    Pass,
    /// A delivery guarantee was broken (or nothing could be measured).
    Fail(String),
    /// Stopped before the drain period ended, so missing messages may still have been in flight.
    Incomplete(String),
}

impl Verdict {
    /// True only for [`Verdict::Pass`].
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// PASS when lost == 0 and (qos != 2 or duplicates == 0); unexpected deliveries or nothing sent
/// also fail; an interrupted run is INCOMPLETE unless it already broke a guarantee that waiting
/// cannot repair (duplicates at QoS 2, unexpected deliveries).
pub fn verdict(qos: u8, ex: &Exactness, interrupted: bool) -> Verdict {
    if qos == 2 && ex.duplicates > 0 {
        return Verdict::Fail(format!("{} duplicate deliveries at QoS 2 (exactly-once broken)", ex.duplicates));
    }
    if ex.unexpected > 0 {
        return Verdict::Fail(format!("{} unexpected deliveries (not sent by this run's publishers)", ex.unexpected));
    }
    if interrupted {
        return Verdict::Incomplete(format!(
            "interrupted before the drain completed ({} of {} expected deliveries not yet seen)",
            ex.lost, ex.expected
        ));
    }
    if ex.expected == 0 {
        return Verdict::Fail("no message was sent, nothing was measured".to_string());
    }
    if ex.lost > 0 {
        return Verdict::Fail(format!("{} of {} expected deliveries lost at QoS {qos}", ex.lost, ex.expected));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(subscriber: u32, publisher: u32, ranges: &[(u64, u64)], dups: u64, ooo: u64) -> StreamRecord {
        let received = RangeSet::from_ranges(ranges.iter().copied());
        StreamRecord {
            subscriber,
            publisher,
            deliveries: received.len() + dups,
            received,
            duplicates: dups,
            out_of_order: ooo,
        }
    }

    #[test]
    fn all_to_all_complete_delivery_has_no_loss() {
        let streams: Vec<_> = (0..2).flat_map(|s| (0..3).map(move |p| stream(s, p, &[(0, 10)], 0, 0))).collect();
        let ex = exactness(Topology::AllToAll { subscribers: 2 }, &[10, 10, 10], &streams);
        assert_eq!(ex, Exactness { expected: 60, received: 60, ..Exactness::default() });
        assert_eq!(verdict(2, &ex, false), Verdict::Pass);
    }

    #[test]
    fn missing_stream_and_gaps_count_as_loss() {
        let streams = vec![stream(0, 0, &[(0, 4), (6, 10)], 0, 0), stream(1, 0, &[(0, 10)], 0, 0)];
        let ex = exactness(Topology::AllToAll { subscribers: 3 }, &[10], &streams);
        assert_eq!(ex.expected, 30);
        assert_eq!(ex.lost, 2 + 10);
        assert_eq!(ex.received, 18);
        assert!(matches!(verdict(1, &ex, false), Verdict::Fail(r) if r.contains("12 of 30")));
    }

    #[test]
    fn duplicates_pass_at_qos1_and_fail_at_qos2() {
        let streams = vec![stream(0, 0, &[(0, 5)], 2, 1)];
        let ex = exactness(Topology::Pairs, &[5], &streams);
        assert_eq!((ex.lost, ex.duplicates, ex.out_of_order), (0, 2, 1));
        assert_eq!(verdict(1, &ex, false), Verdict::Pass);
        assert!(matches!(verdict(2, &ex, false), Verdict::Fail(r) if r.contains("2 duplicate")));
    }

    #[test]
    fn receptions_beyond_sent_or_misrouted_are_unexpected_not_fills() {
        let streams = vec![stream(0, 0, &[(0, 3), (8, 12)], 0, 0), stream(1, 0, &[(0, 1)], 0, 0)];
        let ex = exactness(Topology::Pairs, &[10, 0], &streams);
        assert_eq!(ex.expected, 10);
        assert_eq!(ex.received, 5);
        assert_eq!(ex.lost, 5);
        assert_eq!(ex.unexpected, 2 + 1);
        let unknown = vec![stream(0, 7, &[(0, 1)], 0, 0)];
        assert_eq!(exactness(Topology::Pairs, &[0], &unknown).unexpected, 1);
    }

    #[test]
    fn shared_group_counts_across_members() {
        let streams =
            vec![stream(0, 0, &[(0, 6)], 0, 0), stream(1, 0, &[(4, 10)], 0, 0), stream(2, 1, &[(0, 3)], 0, 0)];
        let ex = exactness(Topology::Group, &[10, 5], &streams);
        assert_eq!(ex.expected, 15);
        assert_eq!(ex.duplicates, 2, "seqs 4 and 5 went to two members");
        assert_eq!(ex.lost, 2, "publisher 1 seqs 3 and 4 reached no member");
        assert!(matches!(verdict(2, &ex, false), Verdict::Fail(_)));
        assert!(matches!(verdict(1, &ex, false), Verdict::Fail(r) if r.contains("lost")));
    }

    #[test]
    fn duplicate_of_a_message_split_across_worker_records_is_counted_once_per_extra() {
        let streams = vec![stream(0, 0, &[(0, 5)], 0, 0), stream(0, 0, &[(3, 5)], 0, 0)];
        let ex = exactness(Topology::AllToAll { subscribers: 1 }, &[5], &streams);
        assert_eq!((ex.received, ex.duplicates, ex.lost), (5, 2, 0));
    }

    #[test]
    fn interrupted_is_incomplete_and_nothing_sent_fails() {
        let ex = exactness(Topology::Pairs, &[10], &[stream(0, 0, &[(0, 7)], 0, 0)]);
        assert!(matches!(verdict(1, &ex, true), Verdict::Incomplete(r) if r.contains("3 of 10")));
        let none = exactness(Topology::Pairs, &[0], &[]);
        assert!(matches!(verdict(0, &none, false), Verdict::Fail(r) if r.contains("no message")));
    }

    #[test]
    fn verdict_json_shape() {
        assert_eq!(serde_json::to_string(&Verdict::Pass).unwrap(), r#"{"verdict":"PASS"}"#);
        assert_eq!(serde_json::to_string(&Verdict::Fail("x".into())).unwrap(), r#"{"verdict":"FAIL","reason":"x"}"#);
    }
}
