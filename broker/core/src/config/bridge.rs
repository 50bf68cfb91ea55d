//! `[bridge]`: which MQTT topics are copied into the partitioned log, and how the log and its
//! buffer are run.
//!
//! Invariants: the bridge is on exactly when at least one `[[bridge.rule]]` exists; every rule's
//! filter is a valid, non-shared MQTT filter and its log topic a valid Kafka topic name; rules
//! that name the same log topic agree on its partition count; keys are one of the documented
//! forms. Every error names its key (`bridge.rule[1].key`).

use super::Error;

mod producer;
pub use producer::{BridgeProducerConfig, ProducerCompression, SecurityProtocol};
use serde::Deserialize;
use std::path::PathBuf;

/// Where bridged records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BridgeTarget {
    /// The log under `data_dir`, served to consumers over the Kafka protocol (`[bridge.kafka]`).
    #[default]
    Embedded,
    /// An external Kafka cluster (`[bridge.producer]`), written through librdkafka.
    Kafka,
}

/// What happens to a bridged publish when the buffer of unshipped records is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BufferFullPolicy {
    /// QoS 1/2 publishes on bridged topics are refused (5.0: reason 0x97 Quota exceeded), so
    /// publishers retry later and nothing acknowledged is missing from the log; QoS 0 copies are
    /// dropped (counted).
    #[default]
    Refuse,
    /// The bridge copy is dropped (counted); the publish itself is delivered as usual.
    Drop,
}

/// Compression of record batches in the embedded log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogCompression {
    #[default]
    None,
    Lz4,
    Zstd,
}

/// `[bridge.log]`: the embedded log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeLogConfig {
    /// Where the log lives; default `<node.data_dir>/bridge-log`.
    pub dir: Option<PathBuf>,
    /// A partition's active segment rolls past this size.
    pub segment_bytes: u64,
    /// Segments whose newest record is older than this are deleted (0: kept by age forever).
    pub retention_ms: u64,
    /// A partition's oldest segments are deleted while it is larger than this (0: no limit).
    pub retention_bytes: u64,
    pub compression: LogCompression,
    /// fsync every appended batch (off: the OS decides; a power loss may lose shipped records).
    pub fsync: bool,
}

impl Default for BridgeLogConfig {
    fn default() -> Self {
        BridgeLogConfig {
            dir: None,
            segment_bytes: 64 << 20,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: 0,
            compression: LogCompression::None,
            fsync: true,
        }
    }
}

/// `[bridge.kafka]`: the Kafka-protocol listener consumers of the embedded log connect to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeKafkaConfig {
    /// Listener address; no listener when absent (the log is then read with `fleetmq log`).
    pub bind: Option<String>,
    /// Host name consumers are told to reconnect to (Metadata); default: the bound address.
    pub advertised_host: Option<String>,
    /// Consumer connections served at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Largest request accepted (consumers send small ones); a bigger one closes the connection.
    pub max_request_bytes: usize,
    /// A connection silent this long is closed.
    pub idle_timeout_ms: u64,
    /// Most bytes one Fetch response carries, whatever the consumer asks (at least one batch).
    pub max_fetch_bytes: usize,
    /// How long the first member of an empty consumer group waits for others before the first
    /// assignment (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
}

impl Default for BridgeKafkaConfig {
    fn default() -> Self {
        BridgeKafkaConfig {
            bind: None,
            advertised_host: None,
            max_connections: 1024,
            max_request_bytes: 1 << 20,
            idle_timeout_ms: 600_000,
            max_fetch_bytes: 50 << 20,
            group_initial_rebalance_delay_ms: 3000,
        }
    }
}

/// One `[[bridge.rule]]`: publishes matching `filter` become records of `log_topic`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeRuleConfig {
    pub filter: String,
    pub log_topic: String,
    #[serde(default = "one")]
    pub partitions: u32,
    /// The record key, which picks the partition: `client_id`, `topic`, `topic_level:N` (the
    /// N-th level, from 0) or `none` (round robin).
    #[serde(default = "client_id")]
    pub key: String,
}

fn one() -> u32 {
    1
}

fn client_id() -> String {
    "client_id".into()
}

/// `[bridge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    pub target: BridgeTarget,
    /// Bytes of records accepted but not yet shipped to the log; past it `on_buffer_full` applies.
    pub max_buffer_bytes: u64,
    pub on_buffer_full: BufferFullPolicy,
    /// A shipment (one batch per partition) closes at this many bytes...
    pub batch_max_bytes: usize,
    /// ...or once its oldest record waited this long.
    pub batch_max_age_ms: u64,
    /// At shutdown, once clients are gone, how long the bridge may keep shipping what it buffers.
    pub shutdown_drain_ms: u64,
    pub log: BridgeLogConfig,
    pub kafka: BridgeKafkaConfig,
    pub producer: BridgeProducerConfig,
    #[serde(rename = "rule")]
    pub rules: Vec<BridgeRuleConfig>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            target: BridgeTarget::Embedded,
            max_buffer_bytes: 256 << 20,
            on_buffer_full: BufferFullPolicy::Refuse,
            batch_max_bytes: 1 << 20,
            batch_max_age_ms: 20,
            shutdown_drain_ms: 5000,
            log: BridgeLogConfig::default(),
            kafka: BridgeKafkaConfig::default(),
            producer: BridgeProducerConfig::default(),
            rules: Vec::new(),
        }
    }
}

/// How a rule keys its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKey {
    ClientId,
    Topic,
    TopicLevel(usize),
    None,
}

impl RecordKey {
    /// Parses a `key = ...` value.
    pub fn parse(s: &str) -> Option<RecordKey> {
        match s {
            "client_id" => Some(RecordKey::ClientId),
            "topic" => Some(RecordKey::Topic),
            "none" => Some(RecordKey::None),
            _ => s.strip_prefix("topic_level:")?.parse().ok().map(RecordKey::TopicLevel),
        }
    }
}

impl BridgeConfig {
    /// Whether any topic is bridged.
    pub fn enabled(&self) -> bool {
        !self.rules.is_empty()
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
        let invalid = |key: String, message: String| Err(Error::Invalid { key, message });
        if !self.enabled() {
            return Ok(());
        }
        match self.target {
            BridgeTarget::Kafka => {
                self.producer.validate()?;
                if self.kafka.bind.is_some() {
                    return invalid(
                        "bridge.kafka.bind".into(),
                        "serves the embedded log; with target = \"kafka\" consumers read the external cluster".into(),
                    );
                }
            }
            BridgeTarget::Embedded if !self.producer.brokers.is_empty() => {
                return invalid("bridge.producer.brokers".into(), "set, but bridge.target is \"embedded\"".into());
            }
            BridgeTarget::Embedded => {}
        }
        if self.max_buffer_bytes < 1 << 20 {
            return invalid("bridge.max_buffer_bytes".into(), "must be at least 1048576".into());
        }
        if !(1024..=64 << 20).contains(&self.batch_max_bytes) {
            return invalid("bridge.batch_max_bytes".into(), "must be between 1024 and 67108864".into());
        }
        if self.batch_max_age_ms == 0 || self.batch_max_age_ms > 60_000 {
            return invalid("bridge.batch_max_age_ms".into(), "must be between 1 and 60000".into());
        }
        if self.shutdown_drain_ms > 300_000 {
            return invalid("bridge.shutdown_drain_ms".into(), "must be at most 300000".into());
        }
        if self.log.segment_bytes < 4096 {
            return invalid("bridge.log.segment_bytes".into(), "must be at least 4096".into());
        }
        if let Some(bind) = &self.kafka.bind {
            if bind.parse::<std::net::SocketAddr>().is_err() {
                return invalid("bridge.kafka.bind".into(), format!("`{bind}` is not an address:port"));
            }
        }
        if self.kafka.max_connections == 0 {
            return invalid("bridge.kafka.max_connections".into(), "must be at least 1".into());
        }
        if !(1024..=100 << 20).contains(&self.kafka.max_request_bytes) {
            return invalid("bridge.kafka.max_request_bytes".into(), "must be between 1024 and 104857600".into());
        }
        if self.kafka.max_fetch_bytes < 1024 {
            return invalid("bridge.kafka.max_fetch_bytes".into(), "must be at least 1024".into());
        }
        if self.kafka.idle_timeout_ms < 1000 {
            return invalid("bridge.kafka.idle_timeout_ms".into(), "must be at least 1000".into());
        }
        if self.kafka.group_initial_rebalance_delay_ms > 300_000 {
            return invalid("bridge.kafka.group_initial_rebalance_delay_ms".into(), "must be at most 300000".into());
        }
        let limits = crate::topic::TopicLimits { max_length: 65535, max_levels: 1024 };
        let mut partitions = std::collections::HashMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("bridge.rule[{i}].{k}");
            if crate::topic::validate_topic_filter(&r.filter, &limits).is_err() || r.filter.starts_with("$share/") {
                return invalid(key("filter"), format!("`{}` is not a plain MQTT topic filter", r.filter));
            }
            if let Err(e) = fleetmq_bridge::log::validate_topic_name(&r.log_topic) {
                return invalid(key("log_topic"), e.to_string());
            }
            if !(1..=1024).contains(&r.partitions) {
                return invalid(key("partitions"), "must be between 1 and 1024".into());
            }
            if *partitions.entry(r.log_topic.as_str()).or_insert(r.partitions) != r.partitions {
                return invalid(key("partitions"), format!("another rule gives `{}` a different count", r.log_topic));
            }
            if RecordKey::parse(&r.key).is_none() {
                return invalid(key("key"), format!("`{}`: client_id, topic, topic_level:N or none", r.key));
            }
        }
        Ok(())
    }
}
