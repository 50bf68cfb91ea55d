//! Node configuration: the TOML schema, its defaults and its validation.
//!
//! Invariants: every struct rejects unknown keys (`deny_unknown_fields`), every field has a default so
//! an empty file (or no file) yields the embedded single-node setup, and [`Config::validate`] names the
//! offending key (`section.key`) in every error so a bad config fails at startup, not at first use.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod bridge;
mod cluster;
mod sections;

pub use bridge::*;
pub use cluster::*;
pub use sections::*;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config: {key}: {message}")]
    Invalid { key: String, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The whole node configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub log: LogConfig,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    pub auth: AuthConfig,
    pub mqtt: MqttConfig,
    pub limits: LimitsConfig,
    pub sys: SysConfig,
    pub metrics: MetricsConfig,
    pub storage: StorageConfig,
    pub cluster: ClusterConfig,
    pub bridge: BridgeConfig,
}

impl Config {
    /// Reads, parses and validates a TOML file. Relative paths inside it stay relative to the
    /// process working directory, as operators expect from Mosquitto-style configs.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text).map_err(|e| match e {
            Error::Parse { message, .. } => Error::Parse { path: path.to_path_buf(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config> {
        let mut config: Config = toml::from_str(text)
            .map_err(|e| Error::Parse { path: PathBuf::new(), message: e.to_string().trim_end().to_string() })?;
        // A front stores nothing, so its engine defaults to memory instead of RocksDB.
        if config.node.role == NodeRole::Front && !storage_engine_set(text) {
            config.storage.engine = StorageEngine::Memory;
        }
        // A shard serves clients only through fronts, so it gets no default listener.
        if config.listeners.is_empty() && config.node.role != NodeRole::Shard {
            config.listeners.push(ListenerConfig::default());
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks value ranges and cross-field rules, naming the key on failure.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, message: &str| Err(Error::Invalid { key: key.into(), message: message.into() });
        if self.node.id.is_empty() {
            return invalid("node.id", "must not be empty");
        }
        self.cluster.validate(self.node.role, &self.node.id)?;
        self.bridge.validate()?;
        if self.bridge.enabled() && self.node.role == NodeRole::Front {
            return invalid("bridge", "a front accepts no publishes itself: configure the bridge on the shards");
        }
        if self.node.role == NodeRole::Shard && !self.listeners.is_empty() {
            return invalid("listener", "a shard serves clients through fronts: remove its [[listener]] sections");
        }
        if self.node.role == NodeRole::Front && self.storage.engine != StorageEngine::Memory {
            return invalid("storage.engine", "a front stores nothing (sessions live on shards): remove it");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listener[{i}].{k}");
            if l.bind.parse::<SocketAddr>().is_err() {
                return Err(Error::Invalid {
                    key: key("bind"),
                    message: format!("`{}` is not an address:port", l.bind),
                });
            }
            match l.kind {
                ListenerKind::Tls => {
                    if l.cert.is_none() {
                        return Err(Error::Invalid { key: key("cert"), message: "required for a tls listener".into() });
                    }
                    if l.key.is_none() {
                        return Err(Error::Invalid { key: key("key"), message: "required for a tls listener".into() });
                    }
                }
                ListenerKind::Tcp => {
                    for (name, set) in
                        [("cert", l.cert.is_some()), ("key", l.key.is_some()), ("client_ca", l.client_ca.is_some())]
                    {
                        if set {
                            return Err(Error::Invalid {
                                key: key(name),
                                message: "only valid for a tls listener".into(),
                            });
                        }
                    }
                    if l.cn_as_username {
                        return Err(Error::Invalid {
                            key: key("cn_as_username"),
                            message: "only valid for a tls listener".into(),
                        });
                    }
                }
            }
            if l.cn_as_username && l.client_ca.is_none() {
                return Err(Error::Invalid {
                    key: key("cn_as_username"),
                    message: "requires client_ca (client certificates)".into(),
                });
            }
        }
        let m = &self.mqtt;
        if m.receive_maximum == 0 {
            return invalid("mqtt.receive_maximum", "must be at least 1");
        }
        if m.max_packet_size < 64 || m.max_packet_size > MAX_PACKET_SIZE_LIMIT {
            return invalid("mqtt.max_packet_size", "must be between 64 and 268435460");
        }
        if m.max_qos > 2 {
            return invalid("mqtt.max_qos", "must be 0, 1 or 2");
        }
        if m.connect_timeout_ms == 0 {
            return invalid("mqtt.connect_timeout_ms", "must be at least 1");
        }
        let l = &self.limits;
        if l.backpressure_wait_ms > 60_000 {
            return invalid("limits.backpressure_wait_ms", "must be at most 60000");
        }
        if l.idle_park_ms > 3_600_000 {
            return invalid("limits.idle_park_ms", "must be at most 3600000 (one hour)");
        }
        if l.max_inflight == 0 {
            return invalid("limits.max_inflight", "must be at least 1");
        }
        if l.max_queued_messages == 0 {
            return invalid("limits.max_queued_messages", "must be at least 1");
        }
        if l.max_topic_levels == 0 {
            return invalid("limits.max_topic_levels", "must be at least 1");
        }
        if l.max_topic_length == 0 || l.max_topic_length > 65535 {
            return invalid("limits.max_topic_length", "must be between 1 and 65535");
        }
        if self.storage.sync_interval_ms == 0 {
            return invalid("storage.sync_interval_ms", "must be at least 1");
        }
        if !(1..=65_536).contains(&self.storage.max_group_writes) {
            return invalid("storage.max_group_writes", "must be between 1 and 65536");
        }
        if let Some(bind) = &self.metrics.bind {
            if bind.parse::<SocketAddr>().is_err() {
                return invalid("metrics.bind", "is not an address:port");
            }
        }
        if self.log.level.parse::<tracing_subscriber::filter::EnvFilter>().is_err() {
            return invalid("log.level", "is not a valid log filter (e.g. info, debug, fleetmq=trace)");
        }
        Ok(())
    }
}

/// The largest packet MQTT can express: 268435455 bytes of body plus a 5-byte fixed header.
pub const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;

#[cfg(test)]
mod tests;

/// Whether the TOML text names `storage.engine` (text that parsed as a `Config` parses as a table).
fn storage_engine_set(text: &str) -> bool {
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    table.get("storage").and_then(|s| s.get("engine")).is_some()
}
