//! Broker statistics: Prometheus metrics (through the `metrics` facade) and the atomic counters the
//! `$SYS` publisher reads back.
//!
//! Handles are registered once at startup and cloned into the hot path, so counting a message is an
//! atomic add, not a registry lookup. Invariant: every limit rejection, drop, auth failure and
//! malformed packet goes through one of the methods here, so metrics and `$SYS` never disagree.

use fleetmq_codec::QoS;
use metrics::{counter, gauge, Counter, Gauge};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Rejections of one kind are logged at most once per this interval, with the count since.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a message was not delivered to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    Expired,
    TooLarge,
    OfflineQos0,
    NotAuthorized,
    RetainedEvicted,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "packet_too_large",
            DropReason::OfflineQos0 => "offline_qos0",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::RetainedEvicted => "retained_evicted",
        }
    }
    const ALL: [DropReason; 6] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::TooLarge,
        DropReason::OfflineQos0,
        DropReason::NotAuthorized,
        DropReason::RetainedEvicted,
    ];
}

/// All counters of one broker.
pub struct Stats {
    received: [Counter; 3],
    sent: [Counter; 3],
    bytes_received: Counter,
    bytes_sent: Counter,
    dropped: [Counter; 6],
    auth_failures: Counter,
    pub connections: Gauge,
    pub sessions: Gauge,
    /// Connections whose idle session is parked (no task, socket out of the reactor).
    pub parked: Gauge,
    pub subscriptions: Gauge,
    pub retained: Gauge,
    pub sys_received: AtomicU64,
    pub sys_sent: AtomicU64,
    pub sys_bytes_received: AtomicU64,
    pub sys_bytes_sent: AtomicU64,
    pub sys_connections: AtomicU64,
    pub sys_dropped: AtomicU64,
    throttle: Mutex<HashMap<&'static str, (Option<Instant>, u64)>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Registers every metric (call after the recorder is installed).
    pub fn new() -> Stats {
        let by_qos = |name: &'static str| {
            [counter!(name, "qos" => "0"), counter!(name, "qos" => "1"), counter!(name, "qos" => "2")]
        };
        Stats {
            received: by_qos("fleetmq_messages_received_total"),
            sent: by_qos("fleetmq_messages_sent_total"),
            bytes_received: counter!("fleetmq_bytes_received_total"),
            bytes_sent: counter!("fleetmq_bytes_sent_total"),
            dropped: DropReason::ALL.map(|r| counter!("fleetmq_messages_dropped_total", "reason" => r.label())),
            auth_failures: counter!("fleetmq_auth_failures_total"),
            connections: gauge!("fleetmq_connections"),
            sessions: gauge!("fleetmq_sessions"),
            parked: gauge!("fleetmq_connections_parked"),
            subscriptions: gauge!("fleetmq_subscriptions"),
            retained: gauge!("fleetmq_retained_messages"),
            sys_received: AtomicU64::new(0),
            sys_sent: AtomicU64::new(0),
            sys_bytes_received: AtomicU64::new(0),
            sys_bytes_sent: AtomicU64::new(0),
            sys_connections: AtomicU64::new(0),
            sys_dropped: AtomicU64::new(0),
            throttle: Mutex::new(HashMap::new()),
        }
    }

    /// A PUBLISH accepted from a client.
    pub fn message_received(&self, qos: QoS) {
        self.received[qos as usize].increment(1);
        self.sys_received.fetch_add(1, Ordering::Relaxed);
    }

    /// A PUBLISH sent to a client.
    pub fn message_sent(&self, qos: QoS) {
        self.sent[qos as usize].increment(1);
        self.sys_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bytes_received(&self, n: usize) {
        self.bytes_received.increment(n as u64);
        self.sys_bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn bytes_sent(&self, n: usize) {
        self.bytes_sent.increment(n as u64);
        self.sys_bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn dropped(&self, reason: DropReason, n: usize) {
        if n > 0 {
            self.dropped[reason as usize].increment(n as u64);
            self.sys_dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub fn auth_failure(&self) {
        self.auth_failures.increment(1);
        self.log_throttled("authentication failed", "auth");
    }

    /// A malformed packet or protocol violation, by the reason it was rejected for.
    pub fn malformed(&self, reason: &'static str) {
        counter!("fleetmq_malformed_packets_total", "reason" => reason).increment(1);
        self.log_throttled("malformed packet or protocol violation", reason);
    }

    /// A limit refused something (connection, subscription, topic, ...).
    pub fn limit_rejection(&self, limit: &'static str) {
        counter!("fleetmq_limit_rejections_total", "limit" => limit).increment(1);
        self.log_throttled("limit reached", limit);
    }

    /// Sessions handed over to their new owner shard (cluster membership changed).
    pub fn sessions_handed_over(&self, n: usize) {
        counter!("fleetmq_sessions_handed_over_total").increment(n as u64);
    }

    /// A packet was refused (5.0: reason 0x80; 3.1.1: connection closed) because the write it needed
    /// failed; the storage error itself is logged by the commit thread.
    pub fn storage_refusal(&self) {
        counter!("fleetmq_store_refusals_total").increment(1);
        self.log_throttled("not acknowledged: the storage write failed", "storage_refusal");
    }

    /// A publisher paused because a subscriber's queue was past half full.
    pub fn backpressure_pause(&self) {
        counter!("fleetmq_backpressure_pauses_total").increment(1);
    }

    /// A pause ran out on a subscriber that hardly drained: it is marked slow for a while and its
    /// queue applies the overflow policy instead of pausing publishers.
    pub fn backpressure_slow_mark(&self) {
        counter!("fleetmq_backpressure_slow_marks_total").increment(1);
        self.log_throttled(
            "subscriber queue did not drain within backpressure_wait_ms; it drops instead",
            "backpressure",
        );
    }

    /// A stored record could not be read back (I/O error or corruption); it is skipped.
    pub fn storage_read_error(&self) {
        counter!("fleetmq_store_read_errors_total").increment(1);
        self.log_throttled("a stored record could not be read and was skipped", "storage_read");
    }

    /// Logs a warning for `kind` at most once per [`LOG_INTERVAL`], reporting how many occurred, so
    /// an attack or a misbehaving fleet cannot flood the log.
    fn log_throttled(&self, what: &'static str, kind: &'static str) {
        let now = Instant::now();
        let mut map = self.throttle.lock();
        let entry = map.entry(kind).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL) {
            tracing::warn!(kind, count = entry.1, "{what} (count since the last report)");
            *entry = (Some(now), 0);
        }
    }

    pub fn connection_opened(&self) {
        self.connections.increment(1.0);
        self.sys_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.decrement(1.0);
        self.sys_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Clients currently connected (after CONNACK).
    pub fn connected(&self) -> u64 {
        self.sys_connections.load(Ordering::Relaxed)
    }
}
