//! The final report: every figure derived from the merged [`RawResult`] ([`build`]), printed as a
//! human table ([`table`]), one JSON object, or an SVG plot ([`plot`]).
//!
//! Invariants: rates divide by the measurement window only (warm-up and drain excluded); the
//! verdict is PASS only when no expected delivery was lost, QoS 2 saw no duplicate, nothing
//! unexpected arrived, and no client failed; every warning is also in the JSON.

pub mod plot;
pub mod table;

use crate::run::RawResult;
use crate::scenario::{Scenario, Workload};
use crate::stats::latency::{self, Latency, Summary};
use crate::stats::series::Series;
use crate::stats::{exactness, verdict, Exactness, Verdict};
use crate::sys::ProcessUsage;
use serde::Serialize;
use std::collections::BTreeMap;

/// Why a report could not be produced or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Histogram rebuild failed.
    #[error(transparent)]
    Latency(#[from] latency::Error),
    /// The plot could not be drawn or written.
    #[error("plot {path}: {message}")]
    Plot {
        /// Output path.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Publish/subscribe figures.
#[derive(Debug, Clone, Serialize)]
pub struct PubSubReport {
    /// QoS used.
    pub qos: u8,
    /// Seconds in the measurement window.
    pub measured_secs: f64,
    /// Messages handed to clients (whole run).
    pub sent: u64,
    /// Messages written (QoS 0) or acknowledged (QoS 1/2), whole run.
    pub completed: u64,
    /// Publishes refused by the broker (MQTT 5 reason codes).
    pub rejected: u64,
    /// Completions per second inside the window (acked rate for QoS 1/2).
    pub publish_rate: f64,
    /// Receptions over the whole run, duplicates included.
    pub delivered: u64,
    /// Receptions per second inside the window.
    pub deliver_rate: f64,
    /// Requested publish rate over all publishers (0 = max speed).
    pub target_rate: f64,
    /// Delivery exactness.
    pub exactness: Exactness,
    /// End-to-end latency of messages sent after warm-up (µs).
    pub latency: Summary,
    /// PUBLISH written → PUBACK (QoS 1) / PUBCOMP (QoS 2) received, for messages written after
    /// warm-up (µs); empty for QoS 0.
    pub ack_latency: Summary,
    /// Completions per second since t0.
    pub published_per_second: Vec<u64>,
    /// Receptions per second since t0.
    pub delivered_per_second: Vec<u64>,
    /// Payloads without this tool's header.
    pub undecodable: u64,
}

/// Connection-storm figures.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    /// Attempts made.
    pub attempted: u64,
    /// Attempts accepted.
    pub connected: u64,
    /// Attempts that failed.
    pub failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Established connections lost before the hold ended, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Connections open when the hold ended.
    pub held: u64,
    /// Seconds from the first attempt to the last attempt's outcome.
    pub ramp_secs: f64,
    /// Accepted connections per second over the ramp.
    pub connect_rate: f64,
    /// TCP connect → CONNACK latency (µs).
    pub latency: Summary,
    /// Broker RSS before connecting (bytes).
    pub broker_rss_before: Option<u64>,
    /// Broker RSS when the hold ended (bytes).
    pub broker_rss_after: Option<u64>,
    /// (after − before) / held connections.
    pub broker_bytes_per_connection: Option<f64>,
    /// Accepted connections per second since t0.
    pub connected_per_second: Vec<u64>,
}

/// Everything the tool reports about one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario as run (password redacted).
    pub scenario: Scenario,
    /// Stopped by Ctrl-C.
    pub interrupted: bool,
    /// PASS / FAIL / INCOMPLETE with reason.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Pub/sub figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pubsub: Option<PubSubReport>,
    /// Connect figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectReport>,
    /// Errors by reason.
    pub errors: BTreeMap<String, u64>,
    /// CPU use of each process of this tool.
    pub processes: Vec<ProcessUsage>,
    /// Load-tool CPU seconds over all processes.
    pub tool_cpu_secs: f64,
    /// Warnings (also printed on stderr).
    pub warnings: Vec<String>,
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

fn summary(data: &latency::LatencyData) -> Result<Summary> {
    let mut l = Latency::new()?;
    l.merge_data(data);
    Ok(l.summary())
}

/// Derives the report from the scenario and the merged result.
pub fn build(scn: &Scenario, raw: &RawResult) -> Result<Report> {
    let mut warnings = Vec::new();
    for p in &raw.processes {
        if p.saturated() {
            warnings.push(format!(
                "load tool process {} used {:.0}% CPU with {} worker thread(s): the tool may be the bottleneck; use --processes or --threads",
                p.pid,
                p.cores_used() * 100.0,
                p.threads
            ));
        }
    }
    let errors_total: u64 = raw.errors.values().sum();
    let (pubsub, connect, mut verdict) = match &scn.workload {
        Workload::PubSub(load) => {
            let mut sent = vec![0u64; load.publishers as usize];
            for s in &raw.senders {
                if let Some(slot) = sent.get_mut(s.publisher as usize) {
                    *slot += s.sent;
                }
            }
            let ex = exactness(load.topology(), &sent, &raw.streams);
            let secs = raw.measured_secs();
            let mut published = Series::default();
            for s in &raw.senders {
                published.merge(&s.series);
            }
            let completed_measured: u64 = raw.senders.iter().map(|s| s.completed_measured).sum();
            let target_rate = load.rate * f64::from(load.publishers);
            let r = PubSubReport {
                qos: load.qos,
                measured_secs: secs,
                sent: sent.iter().sum(),
                completed: raw.senders.iter().map(|s| s.completed).sum(),
                rejected: raw.senders.iter().map(|s| s.rejected).sum(),
                publish_rate: rate(completed_measured, secs),
                delivered: raw.delivered.total(),
                deliver_rate: rate(raw.delivered_measured, secs),
                target_rate,
                exactness: ex,
                latency: summary(&raw.latency)?,
                ack_latency: summary(&raw.ack_latency)?,
                published_per_second: published.per_second,
                delivered_per_second: raw.delivered.per_second.clone(),
                undecodable: raw.undecodable,
            };
            if target_rate > 0.0 && !raw.interrupted && r.publish_rate < 0.9 * target_rate {
                warnings.push(format!(
                    "publishers completed {:.1} msg/s of the {:.1} msg/s requested (broker or tool backpressure)",
                    r.publish_rate, target_rate
                ));
            }
            if r.undecodable > 0 {
                warnings.push(format!("{} received payloads did not carry this tool's header", r.undecodable));
            }
            let v = verdict(load.qos, &ex, raw.interrupted);
            (Some(r), None, v)
        }
        Workload::Connect(load) => {
            let c = raw.connect.clone().unwrap_or_default();
            let failed: u64 = c.failures.values().sum();
            let bytes_per_connection = match (c.rss_before, c.rss_after) {
                (Some(b), Some(a)) if c.held > 0 => Some((a as f64 - b as f64) / c.held as f64),
                _ => None,
            };
            if load.broker_pid.is_some() && bytes_per_connection.is_none() {
                warnings.push("broker RSS could not be sampled (is --broker-pid a live local process?)".into());
            }
            let r = ConnectReport {
                attempted: c.attempted,
                connected: c.connected,
                failed,
                failures: c.failures.clone(),
                dropped: c.dropped.clone(),
                held: c.held,
                ramp_secs: c.ramp_secs,
                connect_rate: rate(c.connected, c.ramp_secs),
                latency: summary(&c.latency)?,
                broker_rss_before: c.rss_before,
                broker_rss_after: c.rss_after,
                broker_bytes_per_connection: bytes_per_connection,
                connected_per_second: c.series.per_second.clone(),
            };
            let dropped: u64 = c.dropped.values().sum();
            let v = if raw.interrupted {
                Verdict::Incomplete(format!("interrupted after {} of {} connections", c.connected, load.connections))
            } else if c.connected < u64::from(load.connections) {
                Verdict::Fail(format!(
                    "{} of {} connections failed",
                    u64::from(load.connections) - c.connected,
                    load.connections
                ))
            } else if dropped > 0 {
                Verdict::Fail(format!("{dropped} connections dropped while held"))
            } else {
                Verdict::Pass
            };
            (None, Some(r), v)
        }
    };
    if verdict.passed() && errors_total > 0 {
        let (top, n) = raw.errors.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.clone(), *n)).unwrap_or_default();
        verdict = Verdict::Fail(format!("{errors_total} client errors (most common: {top} ×{n})"));
    }
    let mut scenario = scn.clone();
    if scenario.connection.password.is_some() {
        scenario.connection.password = Some("<redacted>".into());
    }
    Ok(Report {
        scenario,
        interrupted: raw.interrupted,
        verdict,
        pubsub,
        connect,
        errors: raw.errors.clone(),
        processes: raw.processes.clone(),
        tool_cpu_secs: raw.processes.iter().map(|p| p.cpu_secs).sum(),
        warnings,
    })
}
