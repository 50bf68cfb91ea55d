//! The shipper: moves buffered bridge records to the log, oldest first.
//!
//! Invariants: a shipment takes the oldest buffered records (about `batch_max_bytes`), appends
//! them as one batch per partition in buffer order, and only then deletes them from the buffer,
//! so nothing leaves the buffer before the log holds it and records of one key keep their order.
//! A shipment goes once `batch_max_bytes` are buffered or its oldest record waited
//! `batch_max_age_ms`. While the log refuses, the same shipment is retried with backoff (up to
//! 5 s) and the buffer grows up to its limit; shipping resumes by itself. Embedded-log calls are
//! blocking and run on the blocking pool. An external Kafka target has its topics checked (and
//! created) before the first shipment and again after every failure, since a cluster that came
//! back may have lost or changed them.

use super::record::Pending;
use super::Bridge;
use bytes::Bytes;
use fleetmq_bridge::producer::Group;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where shipped records go.
#[derive(Clone)]
pub enum Target {
    /// A log whose appends block: the embedded log (tests use a fake that fails on demand).
    Blocking(Arc<dyn Sink>),
    /// An external Kafka cluster (`target = "kafka"`).
    Kafka(Arc<fleetmq_bridge::producer::KafkaProducer>),
}

/// A log whose appends block (run on the blocking pool).
pub trait Sink: Send + Sync + 'static {
    /// Appends `records` to `partition` of `topic` as one batch, blocking until it is stored.
    fn append(&self, topic: &str, partition: u32, records: &[fleetmq_bridge::log::Record]) -> Result<(), String>;
}

impl Sink for fleetmq_bridge::log::Log {
    fn append(&self, topic: &str, partition: u32, records: &[fleetmq_bridge::log::Record]) -> Result<(), String> {
        fleetmq_bridge::log::Log::append(self, topic, partition, records, None).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// Records of one shipment grouped by (log topic, partition), each group in buffer order.
fn group(records: &[(Bytes, Pending)]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (_, p) in records.iter().filter(|(_, p)| !p.is_unreadable()) {
        match groups.iter_mut().find(|(t, part, _)| *t == p.log_topic && *part == p.partition) {
            Some(g) => g.2.push(p.record()),
            None => groups.push((p.log_topic.clone(), p.partition, vec![p.record()])),
        }
    }
    groups
}

/// Appends `groups[done..]` to `target`: how many groups from the start are stored, and the
/// first error. On an external target, checks its topics first unless `*ready`.
async fn append(
    target: &Target,
    groups: &Arc<Vec<Group>>,
    done: usize,
    topics: &[(String, u32)],
    ready: &mut bool,
) -> (usize, Result<(), String>) {
    match target {
        Target::Blocking(sink) => {
            let (sink, g) = (sink.clone(), groups.clone());
            tokio::task::spawn_blocking(move || {
                for (i, (topic, partition, recs)) in g.iter().enumerate().skip(done) {
                    if let Err(e) = sink.append(topic, *partition, recs) {
                        return (i, Err(e));
                    }
                }
                (g.len(), Ok(()))
            })
            .await
            .unwrap_or_else(|e| (done, Err(e.to_string())))
        }
        Target::Kafka(producer) => {
            if !*ready {
                if let Err(e) = producer.ensure_topics(topics).await {
                    return (done, Err(e.to_string()));
                }
                *ready = true;
            }
            let (n, result) = producer.append(groups, done).await;
            if result.is_err() {
                *ready = false;
            }
            (n, result.map_err(|e| e.to_string()))
        }
    }
}

/// Ships until shutdown.
pub async fn run(bridge: Arc<Bridge>, target: Target, shutdown: watch::Receiver<bool>) {
    ship(bridge, target, shutdown, false).await
}

/// At shutdown, once no client can publish any more: ships what is still buffered, without
/// waiting for shipments to fill, until the buffer is empty or `within` passed. On the memory
/// engine what is left is lost (counted in `fleetmq_bridge_lost_at_shutdown_total`); on a
/// durable engine it ships after the restart.
pub async fn drain(bridge: Arc<Bridge>, target: Target, within: Duration) {
    let (deadline, rx) = watch::channel(false);
    let timer = tokio::spawn(async move {
        tokio::time::sleep(within).await;
        let _ = deadline.send(true);
    });
    ship(bridge.clone(), target, rx, true).await;
    timer.abort();
    let left = bridge.records.load(std::sync::atomic::Ordering::Relaxed);
    if left > 0 {
        tracing::warn!(records = left, durable = bridge.durability.enabled(), "bridge records not shipped at shutdown");
        if !bridge.durability.enabled() {
            metrics::counter!("fleetmq_bridge_lost_at_shutdown_total").increment(left);
        }
    }
}

/// The shipping loop; with `draining`, it never waits for more records and ends once none are
/// buffered.
async fn ship(bridge: Arc<Bridge>, target: Target, mut shutdown: watch::Receiver<bool>, draining: bool) {
    let max_bytes = bridge.config.batch_max_bytes;
    let max_age = Duration::from_millis(bridge.config.batch_max_age_ms);
    let mut backoff = Duration::from_millis(100);
    let mut last_error_log: Option<Instant> = None;
    let mut topics: Vec<(String, u32)> =
        bridge.config.rules.iter().map(|r| (r.log_topic.clone(), r.partitions)).collect();
    topics.sort();
    topics.dedup();
    let mut ready = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if bridge.records.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            if draining {
                return;
            }
            tokio::select! {
                _ = bridge.wake.notified() => {}
                _ = crate::shutdown::shutting_down(&mut shutdown) => return,
            }
        }
        // Let a shipment fill up, unless a full one is waiting already.
        if !draining && (bridge.buffered_bytes() as usize) < max_bytes {
            tokio::select! {
                _ = tokio::time::sleep(max_age) => {}
                _ = crate::shutdown::shutting_down(&mut shutdown) => return,
            }
        }
        let b = bridge.clone();
        let records = match tokio::task::spawn_blocking(move || b.oldest(max_bytes)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "bridge buffer unreadable");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(_) => continue,
        };
        if records.is_empty() {
            // Counted but not committed yet (or a failed commit): look again shortly.
            tokio::time::sleep(max_age).await;
            continue;
        }
        // Lag: how long the oldest buffered record has waited, also while the log refuses.
        let oldest_ms = records.first().map_or(0, |(_, p)| p.timestamp_ms);
        let gauges = || {
            metrics::gauge!("fleetmq_bridge_lag_ms").set(super::now_ms().saturating_sub(oldest_ms) as f64);
            metrics::gauge!("fleetmq_bridge_buffer_bytes").set(bridge.buffered_bytes() as f64);
            metrics::gauge!("fleetmq_bridge_buffer_records")
                .set(bridge.records.load(std::sync::atomic::Ordering::Relaxed) as f64);
        };
        gauges();
        let groups = Arc::new(group(&records));
        // Groups already appended are not appended again when a later one fails.
        let mut done = 0;
        loop {
            let (appended, result) = append(&target, &groups, done, &topics, &mut ready).await;
            done = appended;
            match result {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    break;
                }
                Err(error) => {
                    metrics::counter!("fleetmq_bridge_errors_total").increment(1);
                    gauges();
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(%error, buffered_bytes = bridge.buffered_bytes(), "bridge log unavailable; buffering");
                        last_error_log = Some(Instant::now());
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = crate::shutdown::shutting_down(&mut shutdown) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::counter!("fleetmq_bridge_shipped_total").increment(records.len() as u64);
        if let Err(e) = bridge.shipped(&records).await {
            tracing::warn!(error = %e, "shipped bridge records could not be removed from the buffer");
        }
        gauges();
    }
}
