//! The individual `[section]`s of the node configuration with their documented defaults.
//!
//! Defaults here are the embedded single-node setup a newcomer gets from `fleetmq` with no config;
//! `config/fleetmq.toml` documents every key with these same values.

use serde::Deserialize;
use std::path::PathBuf;

/// `[node]`: identity and data location.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub id: String,
    pub role: super::NodeRole,
    pub data_dir: PathBuf,
    /// Bound on graceful shutdown (DISCONNECT 0x8B to clients, flush) before the process exits.
    pub shutdown_timeout_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            id: "node-1".into(),
            role: super::NodeRole::Standalone,
            data_dir: PathBuf::from("./fleetmq-data"),
            shutdown_timeout_ms: 5_000,
        }
    }
}

/// `[log]`: tracing filter; `RUST_LOG` overrides it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into() }
    }
}

/// Transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    #[default]
    Tcp,
    Tls,
}

impl ListenerKind {
    /// The name used in startup lines, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
        }
    }
}

/// `[[listener]]`: one accepting socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    pub bind: String,
    /// Per-listener connection cap; 0 means only the node-wide `limits.max_connections` applies.
    pub max_connections: usize,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// When set, clients must present a certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Use the client certificate's subject CN as the MQTT username.
    pub cn_as_username: bool,
    /// PROXY protocol header expected from a load balancer before anything else (before TLS).
    pub proxy_protocol: ProxyProtocol,
}

/// Which PROXY protocol header a listener requires (`off`: none; connections come directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    Off,
    V1,
    V2,
    /// Either version, told apart by the v2 signature.
    Any,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            kind: ListenerKind::Tcp,
            bind: "127.0.0.1:1883".into(),
            max_connections: 0,
            cert: None,
            key: None,
            client_ca: None,
            cn_as_username: false,
            proxy_protocol: ProxyProtocol::Off,
        }
    }
}

/// `[auth]`: who may connect and what they may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub allow_anonymous: bool,
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { allow_anonymous: true, password_file: None, acl_file: None }
    }
}

/// `[mqtt]`: protocol parameters advertised to and enforced on clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Client keepalives above this are answered with Server Keep Alive (5.0) and enforced at it.
    pub max_keepalive: u16,
    /// Inbound QoS 1/2 window advertised to 5.0 clients; exceeding it is DISCONNECT 0x93.
    pub receive_maximum: u16,
    /// Largest packet accepted; a larger announced length closes the connection before the body.
    pub max_packet_size: u32,
    /// Inbound topic aliases accepted from 5.0 clients (0 disables aliases).
    pub topic_alias_maximum: u16,
    /// CONNECT must arrive within this many milliseconds of accept (TLS handshake included).
    pub connect_timeout_ms: u64,
    /// Upper bound on the session expiry a client may ask for.
    pub max_session_expiry_secs: u32,
    pub retain_available: bool,
    /// Highest QoS granted and accepted (advertised as Maximum QoS when below 2).
    pub max_qos: u8,
    /// Queue QoS 0 messages for offline persistent sessions (Mosquitto's default is off).
    pub queue_qos0_offline: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_keepalive: 65535,
            receive_maximum: 65535,
            max_packet_size: 1_048_576,
            topic_alias_maximum: 65535,
            connect_timeout_ms: 10_000,
            max_session_expiry_secs: u32::MAX,
            retain_available: true,
            max_qos: 2,
            queue_qos0_offline: false,
        }
    }
}

/// What to do when a session's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum QueueOverflow {
    #[default]
    DropOldest,
    RejectNewest,
}

/// What to do when a new retained message would exceed `max_retained_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RetainedOverflow {
    /// Evict the oldest retained messages until the new one fits.
    #[default]
    EvictOldest,
    /// Keep the existing ones; the new message is delivered but not retained.
    RejectNew,
}

/// `[limits]`: resource bounds; every rejection is counted in `fleetmq_limit_rejections_total` or
/// `fleetmq_messages_dropped_total`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_connections: usize,
    /// New connections accepted per second per node; 0 means unlimited.
    pub connect_rate: u32,
    /// Outbound QoS 1/2 window per session (further bounded by the client's Receive Maximum).
    pub max_inflight: u16,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    pub queue_overflow: QueueOverflow,
    /// Longest a publisher is paused while an online subscriber's queue is past half full; 0 never
    /// pauses (the overflow policy alone applies).
    pub backpressure_wait_ms: u64,
    pub max_topic_levels: usize,
    pub max_topic_length: usize,
    pub max_subscriptions_per_client: usize,
    /// Budget for all retained messages (payload, topic and properties); 0 means unlimited.
    pub max_retained_bytes: usize,
    pub retained_overflow: RetainedOverflow,
    /// A plain-TCP connection with nothing in flight that stayed quiet this long (up to twice it)
    /// is parked: its session leaves its task and its socket the reactor until traffic, a delivery
    /// or its keep-alive deadline resumes it (memory per idle connection); 0 never parks.
    pub idle_park_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 1_000_000,
            connect_rate: 0,
            max_inflight: 128,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            queue_overflow: QueueOverflow::DropOldest,
            backpressure_wait_ms: 500,
            max_topic_levels: 128,
            max_topic_length: 65535,
            max_subscriptions_per_client: 10_000,
            max_retained_bytes: 1 << 30,
            retained_overflow: RetainedOverflow::EvictOldest,
            idle_park_ms: 5_000,
        }
    }
}

/// `[sys]`: the `$SYS/broker/...` statistics topics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SysConfig {
    /// Refresh interval; 0 disables `$SYS` publishing.
    pub interval_ms: u64,
}

impl Default for SysConfig {
    fn default() -> Self {
        SysConfig { interval_ms: 10_000 }
    }
}

/// `[metrics]`: Prometheus exporter.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub bind: Option<String>,
}

/// Storage engine selection. The default keeps what it acknowledges: a newcomer who kills the
/// broker loses no persistent session and no retained message (fronts, which store nothing,
/// default to memory; see `Config::parse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageEngine {
    /// Everything in RAM only: for tests and benchmarks, and for fronts.
    Memory,
    /// RocksDB in `node.data_dir`: sessions and retained messages survive restarts.
    #[default]
    Rocksdb,
}

/// When acknowledged writes reach stable storage (disk engines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncSetting {
    /// Sync before acknowledging: no acknowledged write is lost on power loss.
    Always,
    /// Sync every `sync_interval_ms`: a process crash loses nothing, a power cut may lose that
    /// much. The default, as for HiveMQ and VerneMQ.
    #[default]
    Interval,
}

/// `[storage]`: where sessions and retained messages are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub engine: StorageEngine,
    pub sync: SyncSetting,
    pub sync_interval_ms: u64,
    /// Most publish writes that share one group commit (1: every write is synced on its own).
    pub max_group_writes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            engine: StorageEngine::Rocksdb,
            sync: SyncSetting::Interval,
            sync_interval_ms: 100,
            max_group_writes: 1024,
        }
    }
}
