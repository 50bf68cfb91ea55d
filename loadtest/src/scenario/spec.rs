//! The partial scenario description that CLI flags and TOML files fill ([`Spec`]), and loading it
//! from a file.
//!
//! File layout:
//! ```toml
//! name = "fan-in-qos1"     # optional
//! processes = 1            # optional
//! [connection]             # optional; CLI connection flags override it
//! host = "127.0.0.1"
//! mqtt = "5"
//! [scenario]
//! kind = "fan-in"          # connect | fan-in | fan-out | p2p | shared
//! publishers = 10
//! qos = 1
//! ```
//! Invariants: every table rejects unknown keys (`deny_unknown_fields`); parse errors carry the
//! file, line and column and name the key; every field is optional here and defaulted in
//! [`super::resolve`].

use super::duration::Secs;
use super::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How keys are named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Values came from a TOML file: keys read `scenario.qos`.
    File,
    /// Values came from command-line flags: keys read `--qos`.
    Cli,
}

/// A whole scenario, every field optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Human name.
    pub name: Option<String>,
    /// Run id embedded in topics and client ids (default: generated).
    pub run_id: Option<String>,
    /// Worker processes.
    pub processes: Option<u32>,
    /// Runtime threads per process.
    pub threads: Option<usize>,
    /// Broker connection.
    #[serde(default)]
    pub connection: ConnectionSpec,
    /// The workload.
    pub scenario: WorkloadSpec,
}

/// Connection settings, every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// Broker host.
    pub host: Option<String>,
    /// Broker port (default 1883, or 8883 with TLS).
    pub port: Option<u16>,
    /// Use TLS.
    pub tls: Option<bool>,
    /// CA certificate PEM.
    pub ca: Option<PathBuf>,
    /// Client certificate PEM.
    pub cert: Option<PathBuf>,
    /// Client key PEM.
    pub key: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: Option<bool>,
    /// MQTT username.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<String>,
    /// `3.1.1` or `5`.
    pub mqtt: Option<String>,
    /// Keep-alive seconds.
    pub keepalive: Option<u16>,
    /// Connect timeout.
    pub connect_timeout: Option<Secs>,
    /// Local source addresses (connect scenario).
    pub source_addrs: Option<Vec<String>>,
}

impl ConnectionSpec {
    /// Fields set in `over` replace ours (CLI flags over a file's `[connection]`).
    pub fn overlay(&mut self, over: ConnectionSpec) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            host,
            port,
            tls,
            ca,
            cert,
            key,
            insecure,
            username,
            password,
            mqtt,
            keepalive,
            connect_timeout,
            source_addrs
        );
    }
}

/// The workload, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum WorkloadSpec {
    /// Connection storm.
    Connect(ConnectSpec),
    /// Fan-in.
    FanIn(PubSubSpec),
    /// Fan-out.
    FanOut(PubSubSpec),
    /// Point-to-point pairs.
    P2p(PubSubSpec),
    /// Shared subscription group.
    Shared(PubSubSpec),
}

/// Connection-storm fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSpec {
    /// Connections to open.
    pub connections: Option<u32>,
    /// Connections per second (0 = as fast as possible).
    pub rate: Option<f64>,
    /// Hold time.
    pub duration: Option<Secs>,
    /// Broker process id for RSS sampling.
    pub broker_pid: Option<u32>,
}

/// Publish/subscribe fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubSubSpec {
    /// Publishers.
    pub publishers: Option<u32>,
    /// Subscribers.
    pub subscribers: Option<u32>,
    /// Pairs (p2p only).
    pub pairs: Option<u32>,
    /// QoS 0, 1 or 2.
    pub qos: Option<u8>,
    /// Payload bytes.
    pub payload: Option<usize>,
    /// Messages per second per publisher (0 = max).
    pub rate: Option<f64>,
    /// Measured duration.
    pub duration: Option<Secs>,
    /// Warm-up.
    pub warmup: Option<Secs>,
    /// Drain.
    pub drain: Option<Secs>,
    /// Clean sessions.
    pub clean: Option<bool>,
    /// Max in-flight QoS 1/2 publishes per publisher.
    pub inflight: Option<u16>,
    /// First topic level.
    pub topic_prefix: Option<String>,
    /// Shared group name (shared only).
    pub group: Option<String>,
}

impl Spec {
    /// Parses a scenario file's text; `path` is only used in error messages.
    pub fn from_toml(path: &str, text: &str) -> Result<Spec> {
        toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            Error::Parse { path: path.to_string(), line, column, message: e.message().trim().to_string() }
        })
    }

    /// Reads and parses a scenario file; the name defaults to the file stem.
    pub fn load(path: &Path) -> Result<Spec> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: shown.clone(), source })?;
        let mut spec = Spec::from_toml(&shown, &text)?;
        if spec.name.is_none() {
            spec.name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        }
        Ok(spec)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_workload_with_connection_table() {
        let s = Spec::from_toml(
            "t.toml",
            "name = \"x\"\n[connection]\nhost = \"h\"\nmqtt = \"5\"\n[scenario]\nkind = \"fan-in\"\npublishers = 3\nduration = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(s.connection.host.as_deref(), Some("h"));
        let WorkloadSpec::FanIn(p) = s.scenario else { panic!("wrong kind") };
        assert_eq!(p.publishers, Some(3));
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name_and_position() {
        let e = Spec::from_toml("t.toml", "[scenario]\nkind = \"p2p\"\npairs = 2\nbogus = 1\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("bogus") && msg.starts_with("t.toml:"), "{msg}");
        let e = Spec::from_toml("t.toml", "[connection]\nhots = \"x\"\n[scenario]\nkind = \"p2p\"\n").unwrap_err();
        assert!(e.to_string().contains("t.toml:2:1") && e.to_string().contains("hots"), "{e}");
        let e = Spec::from_toml("t.toml", "colour = 1\n[scenario]\nkind = \"p2p\"\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    #[test]
    fn unknown_kind_and_missing_kind_are_errors() {
        let e = Spec::from_toml("t.toml", "[scenario]\nkind = \"fan_in\"\n").unwrap_err();
        assert!(e.to_string().contains("fan_in"), "{e}");
        let e = Spec::from_toml("t.toml", "[scenario]\npublishers = 1\n").unwrap_err();
        assert!(e.to_string().contains("kind"), "{e}");
        let e = Spec::from_toml("t.toml", "[scenario]\nkind = \"connect\"\nqos = 1\n").unwrap_err();
        assert!(e.to_string().contains("qos"), "{e}");
    }

    #[test]
    fn overlay_replaces_only_set_fields() {
        let mut base = ConnectionSpec { host: Some("a".into()), port: Some(1), ..Default::default() };
        base.overlay(ConnectionSpec { port: Some(2), tls: Some(true), ..Default::default() });
        assert_eq!((base.host.as_deref(), base.port, base.tls), (Some("a"), Some(2), Some(true)));
    }
}
