//! Scenario drivers. A run has two steps so that several processes can start together:
//! [`prepare`] connects (and subscribes) every client this process owns, then
//! [`Prepared::run`] starts the load at a common wall-clock instant `t0` and returns a [`RawResult`]
//! that merges with other processes' results. [`local::run_local`] drives both steps in-process.
//!
//! Invariants: a process owns the clients whose global index `i` satisfies
//! `i % slice.count == slice.index`; every wait is bounded by the scenario's durations and the
//! connect timeout; [`Control::stop`] (Ctrl-C) ends every phase early and marks the result
//! interrupted; a client that fails after setup is counted as an error, never retried.

pub mod connect;
pub mod local;
pub mod pubsub;

use crate::client::{self, Endpoint, Failure};
use crate::scenario::{Scenario, Workload};
use crate::stats::latency::{self, LatencyData};
use crate::stats::recorder::{SenderStats, Window};
use crate::stats::series::Series;
use crate::stats::StreamRecord;
use crate::sys::ProcessUsage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Client setup (TLS material) failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The broker could not be reached or refused a setup connection.
    #[error("cannot connect to {addr}: {failure}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Classified failure.
        failure: Failure,
    },
    /// A subscription was refused during setup.
    #[error("subscription to {filter:?} refused: {reason}")]
    Subscribe {
        /// Topic filter.
        filter: String,
        /// SUBACK reason.
        reason: String,
    },
    /// A histogram could not be created.
    #[error(transparent)]
    Latency(#[from] latency::Error),
    /// A spawned task died.
    #[error("internal task failed: {0}")]
    Task(String),
    /// Ctrl-C arrived before the load started.
    #[error("interrupted during setup")]
    Interrupted,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Which share of the clients this process drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// This process's index.
    pub index: u32,
    /// Number of processes.
    pub count: u32,
}

impl Slice {
    /// The whole run in one process.
    pub const WHOLE: Slice = Slice { index: 0, count: 1 };

    /// True when this process drives client `i`.
    pub fn owns(&self, i: u32) -> bool {
        i % self.count.max(1) == self.index
    }

    /// The owned indices below `n`.
    pub fn indices(&self, n: u32) -> impl Iterator<Item = u32> + '_ {
        (self.index..n).step_by(self.count.max(1) as usize)
    }
}

/// External signals to a running scenario.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Stop everything now (Ctrl-C); the result is marked interrupted.
    pub stop: CancellationToken,
    /// Every expected delivery has arrived everywhere: end the drain period early.
    pub drained: CancellationToken,
}

/// Counters updated while running, for the progress line and for early drain completion.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages handed to clients.
    pub sent: AtomicU64,
    /// Messages completed (written at QoS 0, acknowledged at QoS 1/2).
    pub completed: AtomicU64,
    /// Receptions (duplicates included).
    pub delivered: AtomicU64,
    /// First receptions.
    pub distinct: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
    /// Connections established (connect scenario).
    pub connected: AtomicU64,
    /// Connection attempts that failed (connect scenario).
    pub failed: AtomicU64,
    /// Publishers that finished publishing.
    pub publishers_done: AtomicU64,
    /// The run's `t0` in ns since the epoch once chosen (0 before), for progress display.
    pub t0_ns: AtomicU64,
}

/// A copy of [`Live`] (what worker processes report to the parent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// See [`Live::sent`].
    pub sent: u64,
    /// See [`Live::completed`].
    pub completed: u64,
    /// See [`Live::delivered`].
    pub delivered: u64,
    /// See [`Live::distinct`].
    pub distinct: u64,
    /// See [`Live::errors`].
    pub errors: u64,
    /// See [`Live::connected`].
    pub connected: u64,
    /// See [`Live::failed`].
    pub failed: u64,
    /// See [`Live::publishers_done`].
    pub publishers_done: u64,
}

impl Live {
    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            sent: r(&self.sent),
            completed: r(&self.completed),
            delivered: r(&self.delivered),
            distinct: r(&self.distinct),
            errors: r(&self.errors),
            connected: r(&self.connected),
            failed: r(&self.failed),
            publishers_done: r(&self.publishers_done),
        }
    }

    /// Overwrites every counter (the parent mirrors summed worker snapshots).
    pub fn store(&self, s: &Snapshot) {
        let w = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        w(&self.sent, s.sent);
        w(&self.completed, s.completed);
        w(&self.delivered, s.delivered);
        w(&self.distinct, s.distinct);
        w(&self.errors, s.errors);
        w(&self.connected, s.connected);
        w(&self.failed, s.failed);
        w(&self.publishers_done, s.publishers_done);
    }
}

impl Snapshot {
    /// Field-wise sum.
    pub fn add(&mut self, o: &Snapshot) {
        self.sent += o.sent;
        self.completed += o.completed;
        self.delivered += o.delivered;
        self.distinct += o.distinct;
        self.errors += o.errors;
        self.connected += o.connected;
        self.failed += o.failed;
        self.publishers_done += o.publishers_done;
    }

    /// True when every publisher finished, every message completed, and every expected delivery
    /// arrived, so the drain period can end early.
    pub fn drained(&self, publishers: u32, receivers_per_message: u64) -> bool {
        self.publishers_done >= u64::from(publishers)
            && self.completed >= self.sent
            && self.distinct >= self.sent.saturating_mul(receivers_per_message)
    }
}

/// Connect-scenario figures from one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectRaw {
    /// Connection attempts.
    pub attempted: u64,
    /// Attempts that got CONNACK success.
    pub connected: u64,
    /// Failed attempts by reason.
    pub failures: BTreeMap<String, u64>,
    /// Established connections lost before the hold ended, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Connections still open when the hold ended.
    pub held: u64,
    /// Connect latency (TCP connect to CONNACK).
    pub latency: LatencyData,
    /// Successful connections per second since t0.
    pub series: Series,
    /// Seconds from t0 until this process's last attempt finished.
    pub ramp_secs: f64,
    /// Broker RSS before connecting (bytes).
    pub rss_before: Option<u64>,
    /// Broker RSS at the end of the hold (bytes; max over processes).
    pub rss_after: Option<u64>,
}

/// Everything one process measured; merges across processes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RawResult {
    /// Clock landmarks of the run.
    pub window: Option<Window>,
    /// Per-publisher figures.
    pub senders: Vec<SenderStats>,
    /// Per-(subscriber, publisher) sequence accounting.
    pub streams: Vec<StreamRecord>,
    /// End-to-end latency of measured messages.
    pub latency: LatencyData,
    /// Publish → PUBACK/PUBCOMP latency of measured QoS 1/2 messages.
    pub ack_latency: LatencyData,
    /// Receptions per second since t0.
    pub delivered: Series,
    /// Receptions inside the measurement window.
    pub delivered_measured: u64,
    /// Payloads without this tool's header.
    pub undecodable: u64,
    /// Errors by reason.
    pub errors: BTreeMap<String, u64>,
    /// Connect-scenario figures.
    pub connect: Option<ConnectRaw>,
    /// CPU use of each process.
    pub processes: Vec<ProcessUsage>,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// When an interrupted run stopped publishing (ns since the epoch; latest over processes).
    pub load_end_ns: Option<u64>,
}

impl RawResult {
    /// Seconds of measurement actually covered: the window, cut short by an interrupt.
    pub fn measured_secs(&self) -> f64 {
        let Some(w) = self.window else { return 0.0 };
        let end = self.load_end_ns.map_or(w.end_ns, |e| e.min(w.end_ns));
        end.saturating_sub(w.start_ns) as f64 / 1e9
    }
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

fn merge_latency(a: &LatencyData, b: &LatencyData) -> Result<LatencyData> {
    let mut l = latency::Latency::new()?;
    l.merge_data(a);
    l.merge_data(b);
    Ok(l.data())
}

impl RawResult {
    /// Adds another process's result.
    pub fn merge(&mut self, o: RawResult) -> Result<()> {
        self.window = self.window.or(o.window);
        self.senders.extend(o.senders);
        self.streams.extend(o.streams);
        self.latency = merge_latency(&self.latency, &o.latency)?;
        self.ack_latency = merge_latency(&self.ack_latency, &o.ack_latency)?;
        self.delivered.merge(&o.delivered);
        self.delivered_measured += o.delivered_measured;
        self.undecodable += o.undecodable;
        add_map(&mut self.errors, &o.errors);
        self.processes.extend(o.processes);
        self.interrupted |= o.interrupted;
        self.load_end_ns = self.load_end_ns.max(o.load_end_ns);
        self.connect = match (self.connect.take(), o.connect) {
            (Some(mut a), Some(b)) => {
                a.attempted += b.attempted;
                a.connected += b.connected;
                add_map(&mut a.failures, &b.failures);
                add_map(&mut a.dropped, &b.dropped);
                a.held += b.held;
                a.latency = merge_latency(&a.latency, &b.latency)?;
                a.series.merge(&b.series);
                a.ramp_secs = a.ramp_secs.max(b.ramp_secs);
                a.rss_before = a.rss_before.or(b.rss_before);
                a.rss_after = a.rss_after.max(b.rss_after);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

/// Connected clients waiting for the common start.
pub enum Prepared {
    /// Connect scenario (nothing is connected in advance).
    Connect(Box<connect::Prepared>),
    /// Pub/sub scenario.
    PubSub(Box<pubsub::Prepared>),
}

/// Connects and subscribes this process's share of clients.
pub async fn prepare(scn: &Scenario, slice: Slice, live: std::sync::Arc<Live>) -> Result<Prepared> {
    let ep = Endpoint::new(&scn.connection)?;
    match &scn.workload {
        Workload::Connect(load) => Ok(Prepared::Connect(Box::new(connect::prepare(scn, load, ep, slice, live).await?))),
        Workload::PubSub(load) => Ok(Prepared::PubSub(Box::new(pubsub::prepare(scn, load, ep, slice, live).await?))),
    }
}

impl Prepared {
    /// Runs the load from `t0_ns` (ns since the epoch) to the end of the drain/hold period.
    pub async fn run(self, t0_ns: u64, control: Control) -> Result<RawResult> {
        match self {
            Prepared::Connect(p) => p.run(t0_ns, control).await,
            Prepared::PubSub(p) => p.run(t0_ns, control).await,
        }
    }
}

/// The tokio instant corresponding to wall-clock `ns` since the epoch.
pub fn instant_at(ns: u64) -> tokio::time::Instant {
    let now_i = tokio::time::Instant::now();
    let now_ns = crate::payload::now_ns();
    if ns >= now_ns {
        now_i + Duration::from_nanos(ns - now_ns)
    } else {
        now_i.checked_sub(Duration::from_nanos(now_ns - ns)).unwrap_or(now_i)
    }
}

/// Nanoseconds in a duration, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_partition_indices() {
        let a: Vec<u32> = Slice { index: 0, count: 3 }.indices(8).collect();
        let b: Vec<u32> = Slice { index: 1, count: 3 }.indices(8).collect();
        let c: Vec<u32> = Slice { index: 2, count: 3 }.indices(8).collect();
        assert_eq!((a, b, c), (vec![0, 3, 6], vec![1, 4, 7], vec![2, 5]));
        assert!(Slice::WHOLE.indices(3).eq(0..3));
        assert!(Slice { index: 1, count: 3 }.owns(4));
    }

    #[test]
    fn drained_needs_all_publishers_acks_and_deliveries() {
        let s = Snapshot { sent: 10, completed: 10, distinct: 20, publishers_done: 2, ..Snapshot::default() };
        assert!(s.drained(2, 2));
        assert!(!s.drained(3, 2));
        assert!(!s.drained(2, 3));
        assert!(!Snapshot { completed: 9, ..s }.drained(2, 2));
    }

    #[test]
    fn merge_sums_and_keeps_extremes() {
        let mut a = RawResult { delivered_measured: 3, ..RawResult::default() };
        a.errors.insert("timeout".into(), 1);
        a.connect = Some(ConnectRaw { attempted: 5, connected: 4, rss_after: Some(100), ..ConnectRaw::default() });
        let mut b = RawResult { delivered_measured: 4, interrupted: true, ..RawResult::default() };
        b.errors.insert("timeout".into(), 2);
        b.connect = Some(ConnectRaw { attempted: 5, connected: 5, rss_after: Some(300), ..ConnectRaw::default() });
        a.merge(b).unwrap();
        assert_eq!(a.delivered_measured, 7);
        assert_eq!(a.errors["timeout"], 3);
        assert!(a.interrupted);
        let c = a.connect.unwrap();
        assert_eq!((c.attempted, c.connected, c.rss_after), (10, 9, Some(300)));
    }
}
