//! Scenario configuration: the validated, fully defaulted description of one run ([`Scenario`]),
//! built from a partial [`spec::Spec`] that either CLI flags or a TOML file fill.
//!
//! Invariants: a [`Scenario`] only exists after [`spec::Spec::resolve`] checked every field, so
//! drivers never re-validate; every error names the offending key in the syntax the user wrote
//! (`scenario.qos` in a file, `--qos` on the command line). Topic names embed the run id so runs
//! never see each other's traffic.

pub mod duration;
pub mod resolve;
pub mod spec;

use crate::stats::Topology;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a scenario is invalid.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is out of range or inconsistent; the message names the key.
    #[error("{key}: {message}")]
    Invalid {
        /// Key as the user wrote it (`scenario.qos` or `--qos`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The scenario file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The scenario file is not valid TOML or has unknown / mistyped keys.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// File path.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// Parser message (names the key).
        message: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// MQTT protocol version spoken by every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[serde(rename = "5")]
    V5,
}

impl MqttVersion {
    /// Parses `3.1.1`/`4`/`311` or `5`/`5.0`.
    pub fn parse(s: &str) -> Option<MqttVersion> {
        match s {
            "3.1.1" | "311" | "4" => Some(MqttVersion::V311),
            "5" | "5.0" => Some(MqttVersion::V5),
            _ => None,
        }
    }

    /// Display name (`3.1.1` or `5`).
    pub fn name(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// How every client reaches the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    /// Broker host name or IP.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Use TLS.
    pub tls: bool,
    /// CA certificate (PEM) to verify the broker; system roots when absent.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub key: Option<PathBuf>,
    /// Skip broker certificate verification (development only).
    pub insecure: bool,
    /// MQTT username.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<String>,
    /// Protocol version.
    pub mqtt: MqttVersion,
    /// Keep-alive interval in seconds.
    pub keepalive_secs: u16,
    /// Bound on TCP connect + TLS handshake + CONNACK.
    #[serde(with = "duration::secs_f64")]
    pub connect_timeout: Duration,
    /// Local addresses to bind client sockets to, round-robin (connect scenario only).
    pub source_addrs: Vec<IpAddr>,
}

/// The pub/sub scenario shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PubSubKind {
    /// P publishers on distinct topics → S subscribers on a `+` wildcard.
    FanIn,
    /// P publishers → S subscribers, all on one topic.
    FanOut,
    /// N publisher/subscriber pairs, one topic per pair.
    P2p,
    /// P publishers → one `$share` group of S members.
    Shared,
}

impl PubSubKind {
    /// Name as used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            PubSubKind::FanIn => "fan-in",
            PubSubKind::FanOut => "fan-out",
            PubSubKind::P2p => "p2p",
            PubSubKind::Shared => "shared",
        }
    }
}

/// A publish/subscribe workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PubSubLoad {
    /// Shape.
    pub kind: PubSubKind,
    /// Number of publishers.
    pub publishers: u32,
    /// Number of subscribers (shared: group members).
    pub subscribers: u32,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload size in bytes (≥ 16).
    pub payload: usize,
    /// Messages per second per publisher; 0 = as fast as the client allows.
    pub rate: f64,
    /// Measured publishing time (after warm-up).
    #[serde(with = "duration::secs_f64")]
    pub duration: Duration,
    /// Publishing time before measurement starts.
    #[serde(with = "duration::secs_f64")]
    pub warmup: Duration,
    /// Longest wait after the last publish for in-flight deliveries.
    #[serde(with = "duration::secs_f64")]
    pub drain: Duration,
    /// Clean sessions (false: persistent sessions).
    pub clean: bool,
    /// Max unacknowledged QoS 1/2 publishes per publisher.
    pub inflight: u16,
    /// First topic level.
    pub topic_prefix: String,
    /// Shared-subscription group name.
    pub group: String,
}

impl PubSubLoad {
    /// Who should receive what.
    pub fn topology(&self) -> Topology {
        match self.kind {
            PubSubKind::FanIn | PubSubKind::FanOut => Topology::AllToAll { subscribers: self.subscribers },
            PubSubKind::P2p => Topology::Pairs,
            PubSubKind::Shared => Topology::Group,
        }
    }

    /// Topic publisher `i` publishes to.
    pub fn publish_topic(&self, run: &str, i: u32) -> String {
        let p = &self.topic_prefix;
        match self.kind {
            PubSubKind::FanIn => format!("{p}/{run}/in/{i}"),
            PubSubKind::FanOut => format!("{p}/{run}/out"),
            PubSubKind::P2p => format!("{p}/{run}/p2p/{i}"),
            PubSubKind::Shared => format!("{p}/{run}/shared/{i}"),
        }
    }

    /// Filter subscriber `j` subscribes to.
    pub fn subscribe_filter(&self, run: &str, j: u32) -> String {
        let p = &self.topic_prefix;
        match self.kind {
            PubSubKind::FanIn => format!("{p}/{run}/in/+"),
            PubSubKind::FanOut => format!("{p}/{run}/out"),
            PubSubKind::P2p => format!("{p}/{run}/p2p/{j}"),
            PubSubKind::Shared => format!("$share/{}/{p}/{run}/shared/+", self.group),
        }
    }

    /// Receptions a complete run produces per message sent.
    pub fn receivers_per_message(&self) -> u64 {
        match self.kind {
            PubSubKind::FanIn | PubSubKind::FanOut => u64::from(self.subscribers),
            PubSubKind::P2p | PubSubKind::Shared => 1,
        }
    }
}

/// A connection-storm workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectLoad {
    /// Connections to open.
    pub connections: u32,
    /// New connections per second over all processes; 0 = as fast as possible.
    pub rate: f64,
    /// How long to hold the connections once all are open.
    #[serde(with = "duration::secs_f64")]
    pub duration: Duration,
    /// Broker process whose RSS to sample (Linux /proc).
    pub broker_pid: Option<u32>,
}

/// What the run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Workload {
    /// Open, hold and close idle connections.
    Connect(ConnectLoad),
    /// Publish and subscribe.
    PubSub(PubSubLoad),
}

impl Workload {
    /// Scenario kind name.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Workload::Connect(_) => "connect",
            Workload::PubSub(p) => p.kind.name(),
        }
    }
}

/// One validated run description (also what worker processes receive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    /// Human name (file stem or kind).
    pub name: String,
    /// Unique id embedded in topics and client ids.
    pub run_id: String,
    /// Worker processes (1 = run in this process).
    pub processes: u32,
    /// Runtime worker threads per process.
    pub threads: usize,
    /// Broker connection settings.
    pub connection: Connection,
    /// The workload.
    pub workload: Workload,
}

impl Scenario {
    /// Client id for a role (`p`, `s`, `c`) and global index.
    pub fn client_id(&self, role: char, index: u32) -> String {
        format!("flt-{}-{role}{index}", self.run_id)
    }
}
