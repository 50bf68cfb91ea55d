//! Starting the bridge's log side on a node: opening the embedded log (its topics created from the
//! rules) or the producer into an external Kafka cluster before anything listens, then running
//! the shipper (and the embedded log's retention) until shutdown.
//!
//! Invariant: a log that cannot be opened (bad directory, corrupt metadata, a rule's partition
//! count differing from an existing topic's) or producer settings librdkafka refuses fail the
//! node's start with an error naming them. An external cluster that is unreachable does not: the
//! bridge buffers until it is back.

use super::shipper::Target;
use super::Bridge;
use crate::config::{BridgeConfig, BridgeTarget, LogCompression};
use fleetmq_bridge::log::{Compression, Log, LogConfig};
use fleetmq_bridge::producer::KafkaProducer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often retention runs over the embedded log.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// The embedded log's settings from `[bridge.log]` (default directory under `data_dir`).
pub fn log_config(c: &BridgeConfig, data_dir: &Path) -> LogConfig {
    let mut l = LogConfig::new(c.log.dir.clone().unwrap_or_else(|| data_dir.join("bridge-log")));
    l.segment_bytes = c.log.segment_bytes;
    l.retention_ms = (c.log.retention_ms > 0).then_some(c.log.retention_ms);
    l.retention_bytes = (c.log.retention_bytes > 0).then_some(c.log.retention_bytes);
    l.compression = match c.log.compression {
        LogCompression::None => Compression::None,
        LogCompression::Lz4 => Compression::Lz4,
        LogCompression::Zstd => Compression::Zstd,
    };
    l.fsync = c.log.fsync;
    l
}

/// Where a node's bridge writes.
pub enum LogSide {
    Embedded(Log),
    Kafka(Arc<KafkaProducer>),
}

/// Opens the configured target (blocking): the embedded log, or the producer of node `node`.
pub fn open(c: &BridgeConfig, data_dir: &Path, node: &str) -> Result<LogSide, String> {
    match c.target {
        BridgeTarget::Embedded => open_log(c, data_dir).map(LogSide::Embedded),
        BridgeTarget::Kafka => KafkaProducer::new(c.producer.producer_config(node))
            .map(|p| LogSide::Kafka(Arc::new(p)))
            .map_err(|e| format!("bridge.producer: {e}")),
    }
}

/// Opens the embedded log and creates every rule's topic (blocking).
pub fn open_log(c: &BridgeConfig, data_dir: &Path) -> Result<Log, String> {
    let config = log_config(c, data_dir);
    let dir = config.dir.display().to_string();
    let log = Log::open(config).map_err(|e| format!("bridge.log {dir}: {e}"))?;
    for r in &c.rules {
        log.ensure_topic(&r.log_topic, r.partitions).map_err(|e| format!("bridge.rule {}: {e}", r.log_topic))?;
    }
    Ok(log)
}

/// Binds the Kafka-protocol listener of `[bridge.kafka]` (when `bind` is set) with its consumer
/// groups, whose committed offsets live in `<data_dir>/bridge-groups`. Must run inside the
/// runtime; opens files (call before anything listens, so a failure fails the start).
pub async fn kafka_listener(
    c: &BridgeConfig,
    data_dir: &Path,
    log: &Log,
) -> Result<Option<fleetmq_bridge::kafka::KafkaListener>, String> {
    let Some(bind) = &c.kafka.bind else { return Ok(None) };
    let bind = bind.parse().map_err(|_| format!("bridge.kafka.bind: `{bind}` is not an address:port"))?;
    let dir = data_dir.join("bridge-groups");
    let shown = dir.display().to_string();
    let store = tokio::task::spawn_blocking(move || {
        fleetmq_bridge::group::OffsetStore::open(&dir, Default::default()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("bridge consumer offsets {shown}: {e}"))?;
    let groups = fleetmq_bridge::group::GroupConfig {
        initial_rebalance_delay_ms: c.kafka.group_initial_rebalance_delay_ms,
        ..Default::default()
    };
    let groups = fleetmq_bridge::group::GroupService::start(groups, store).map_err(|e| e.to_string())?;
    let config = fleetmq_bridge::kafka::KafkaConfig {
        bind,
        advertised_host: c.kafka.advertised_host.clone(),
        max_connections: c.kafka.max_connections,
        max_request_bytes: c.kafka.max_request_bytes,
        idle_timeout_ms: c.kafka.idle_timeout_ms,
        max_fetch_bytes: c.kafka.max_fetch_bytes,
        ..Default::default()
    };
    let listener = fleetmq_bridge::kafka::KafkaListener::bind(config, log.clone(), groups)
        .map_err(|e| format!("bridge.kafka.bind: {e}"))?;
    Ok(Some(listener))
}

/// Ships `bridge`'s buffer to its target (and applies the embedded log's retention) until
/// shutdown. Returns the target, for the drain at shutdown ([`super::shipper::drain`]).
pub fn run(bridge: Arc<Bridge>, side: LogSide, shutdown: tokio::sync::watch::Receiver<bool>) -> Target {
    let target = match side {
        LogSide::Embedded(log) => {
            tokio::spawn(retention(log.clone(), shutdown.clone()));
            Target::Blocking(Arc::new(log))
        }
        LogSide::Kafka(producer) => Target::Kafka(producer),
    };
    tokio::spawn(super::shipper::run(bridge, target.clone(), shutdown));
    target
}

async fn retention(log: Log, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RETENTION_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::shutdown::shutting_down(&mut shutdown) => return,
            _ = tick.tick() => {}
        }
        let l = log.clone();
        let now_ms = super::now_ms();
        match tokio::task::spawn_blocking(move || l.enforce_retention(now_ms)).await {
            Ok(Ok(report)) if report.deleted_segments() > 0 => {
                tracing::info!(segments = report.deleted_segments(), bytes = report.deleted_bytes(), "log retention");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "log retention failed"),
            _ => {}
        }
    }
}
