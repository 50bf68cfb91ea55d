//! What one receiver and one sender accumulate during a run, given explicit timestamps.
//!
//! Invariants: warm-up messages (sent before the measurement window opened) update sequence
//! accounting but never latency; deliveries and publishes count toward throughput only when they
//! happen inside the window. Latency is recorded once per message (the first reception), so a
//! duplicate cannot skew the distribution. No clock is read here: callers pass times in.

use super::latency::{self, Latency};
use super::seq::{Seen, SeqTracker};
use super::series::Series;
use super::StreamRecord;
use crate::payload;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The run's clock landmarks, in ns since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Common start of the load (publishing / connecting begins).
    pub t0_ns: u64,
    /// End of warm-up: measurement starts.
    pub start_ns: u64,
    /// End of measurement: publishing stops.
    pub end_ns: u64,
}

impl Window {
    /// Builds the window from the start, warm-up and measured duration.
    pub fn new(t0_ns: u64, warmup_ns: u64, duration_ns: u64) -> Self {
        let start_ns = t0_ns.saturating_add(warmup_ns);
        Window { t0_ns, start_ns, end_ns: start_ns.saturating_add(duration_ns) }
    }

    /// True when `ns` falls inside `[start, end)`.
    pub fn measures(&self, ns: u64) -> bool {
        ns >= self.start_ns && ns < self.end_ns
    }

    /// Length of the measurement window in seconds.
    pub fn secs(&self) -> f64 {
        (self.end_ns.saturating_sub(self.start_ns)) as f64 / 1e9
    }
}

/// Accumulates everything one subscriber sees.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    subscriber: u32,
    window: Window,
    streams: HashMap<u32, SeqTracker>,
    /// Latency of first receptions of messages sent inside the measurement window (or after it).
    pub latency: Latency,
    /// Receptions per second since t0.
    pub series: Series,
    /// Receptions (duplicates included) inside the measurement window.
    pub measured: u64,
    /// Payloads that did not carry this tool's header.
    pub undecodable: u64,
}

impl ReceiverStats {
    /// Stats for global subscriber index `subscriber`.
    pub fn new(subscriber: u32, window: Window) -> latency::Result<Self> {
        Ok(ReceiverStats {
            subscriber,
            window,
            streams: HashMap::new(),
            latency: Latency::new()?,
            series: Series::default(),
            measured: 0,
            undecodable: 0,
        })
    }

    /// Accounts one received payload at `recv_ns`; `None` when it carried no valid header.
    pub fn on_payload(&mut self, bytes: &[u8], recv_ns: u64) -> Option<Seen> {
        let Ok(h) = payload::decode(bytes) else {
            self.undecodable += 1;
            return None;
        };
        let seen = self.streams.entry(h.publisher).or_default().observe(h.seq);
        self.series.add(Series::bucket(self.window.t0_ns, recv_ns), 1);
        if self.window.measures(recv_ns) {
            self.measured += 1;
        }
        if matches!(seen, Seen::New | Seen::Reordered) && h.sent_ns >= self.window.start_ns {
            self.latency.record_ns_span(h.sent_ns, recv_ns);
        }
        Some(seen)
    }

    /// Total receptions so far (duplicates included).
    pub fn deliveries(&self) -> u64 {
        self.streams.values().map(|t| t.deliveries).sum()
    }

    /// One record per publisher heard from.
    pub fn records(&self) -> Vec<StreamRecord> {
        let mut out: Vec<StreamRecord> = self
            .streams
            .iter()
            .map(|(&publisher, t)| StreamRecord {
                subscriber: self.subscriber,
                publisher,
                received: t.received(),
                deliveries: t.deliveries,
                duplicates: t.duplicates,
                out_of_order: t.out_of_order,
            })
            .collect();
        out.sort_by_key(|r| r.publisher);
        out
    }
}

/// Accumulates what one publisher did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderStats {
    /// Global publisher index.
    pub publisher: u32,
    /// Messages handed to the client (sequence numbers 0..sent).
    pub sent: u64,
    /// Messages completed: written (QoS 0), PUBACKed (QoS 1) or PUBCOMPed (QoS 2).
    pub completed: u64,
    /// Completions inside the measurement window.
    pub completed_measured: u64,
    /// Completions per second since t0.
    pub series: Series,
    /// Acknowledgements carrying a failure reason code (MQTT 5).
    pub rejected: u64,
}

impl SenderStats {
    /// Accounts one completion at `at_ns`.
    pub fn on_complete(&mut self, window: &Window, at_ns: u64) {
        self.completed += 1;
        self.series.add(Series::bucket(window.t0_ns, at_ns), 1);
        if window.measures(at_ns) {
            self.completed_measured += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{encode, Header};

    const S: u64 = 1_000_000_000;

    fn msg(publisher: u32, seq: u32, sent_ns: u64) -> Vec<u8> {
        encode(&Header { publisher, seq, sent_ns }, 32).unwrap()
    }

    #[test]
    fn warmup_messages_are_sequenced_but_not_timed_or_counted_as_throughput() {
        let w = Window::new(100 * S, 2 * S, 10 * S);
        let mut r = ReceiverStats::new(3, w).unwrap();
        r.on_payload(&msg(0, 0, 100 * S), 100 * S + 5_000_000);
        r.on_payload(&msg(0, 1, 101 * S), 101 * S + 5_000_000);
        r.on_payload(&msg(0, 2, 102 * S), 102 * S + 7_000);
        r.on_payload(&msg(0, 3, 111 * S), 111 * S + 9_000);
        assert_eq!(r.latency.count(), 2);
        assert_eq!(r.latency.summary().max_us, 9);
        assert_eq!(r.measured, 2);
        assert_eq!(r.series.per_second, vec![1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let recs = r.records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].received.ranges(), &[(0, 4)]);
        assert_eq!(recs[0].subscriber, 3);
    }

    #[test]
    fn reception_after_the_window_of_a_measured_message_still_counts_latency() {
        let w = Window::new(0, 0, 10 * S);
        let mut r = ReceiverStats::new(0, w).unwrap();
        r.on_payload(&msg(0, 0, 9 * S), 12 * S);
        assert_eq!(r.latency.count(), 1);
        assert_eq!(r.measured, 0);
    }

    #[test]
    fn duplicates_do_not_record_latency_and_garbage_is_counted() {
        let w = Window::new(0, 0, 10 * S);
        let mut r = ReceiverStats::new(0, w).unwrap();
        assert_eq!(r.on_payload(&msg(1, 0, S), S + 1_000), Some(Seen::New));
        assert_eq!(r.on_payload(&msg(1, 0, S), 5 * S), Some(Seen::Duplicate));
        assert_eq!(r.on_payload(b"short", S), None);
        assert_eq!(r.latency.count(), 1);
        assert_eq!((r.deliveries(), r.undecodable), (2, 1));
        assert_eq!(r.records()[0].duplicates, 1);
    }

    #[test]
    fn sender_completions_inside_and_outside_the_window() {
        let w = Window::new(10 * S, S, 2 * S);
        let mut s = SenderStats::default();
        for at in [10 * S, 11 * S, 12 * S + 1, 13 * S] {
            s.on_complete(&w, at);
        }
        assert_eq!((s.completed, s.completed_measured), (4, 2));
        assert_eq!(s.series.per_second, vec![1, 1, 1, 1]);
        assert!((w.secs() - 2.0).abs() < 1e-9);
    }
}
