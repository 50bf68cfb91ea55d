//! `[bridge.producer]`: how the bridge reaches an external Kafka cluster (`target = "kafka"`).
//!
//! Invariants: with `target = "kafka"` there is at least one `host:port` broker; TLS files are
//! only given with a TLS protocol and exist; SASL protocols name a supported mechanism and both
//! credentials; `properties` never touches the settings that carry the bridge's delivery
//! guarantees. Every error names its key (`bridge.producer.sasl_mechanism`).

use super::super::Error;
use serde::Deserialize;
use std::path::PathBuf;

/// Compression of batches the producer sends to an external cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProducerCompression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// How the producer reaches the cluster (Kafka's `security.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

/// `[bridge.producer]`: the producer into an external Kafka cluster (`target = "kafka"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeProducerConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Default `fleetmq-<node.id>`.
    pub client_id: Option<String>,
    pub compression: ProducerCompression,
    /// How long the producer waits to fill a batch.
    pub linger_ms: u64,
    /// A record not acknowledged (acks=all) within this fails its shipment, which is retried;
    /// the records stay buffered meanwhile.
    pub message_timeout_ms: u64,
    /// Create missing topics with the rule's partition count (else they must exist).
    pub create_topics: bool,
    /// Replicas of created topics (-1: the cluster's default).
    pub replication_factor: i32,
    pub security_protocol: SecurityProtocol,
    /// CA bundle that signs the brokers' certificates (default: the system's).
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Check the brokers' certificates and names (turn off only for development).
    pub tls_verify: bool,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// Further librdkafka settings (tuning); the delivery guarantees (acks, idempotence,
    /// timeouts, partitioner) cannot be changed here.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl Default for BridgeProducerConfig {
    fn default() -> Self {
        BridgeProducerConfig {
            brokers: Vec::new(),
            client_id: None,
            compression: ProducerCompression::None,
            linger_ms: 5,
            message_timeout_ms: 30_000,
            create_topics: true,
            replication_factor: -1,
            security_protocol: SecurityProtocol::Plaintext,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_verify: true,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            properties: Default::default(),
        }
    }
}

impl BridgeProducerConfig {
    pub(super) fn validate(&self) -> Result<(), Error> {
        let invalid =
            |key: &str, message: String| Err(Error::Invalid { key: format!("bridge.producer.{key}"), message });
        if self.brokers.is_empty() {
            return invalid("brokers", "target = \"kafka\" needs at least one broker (host:port)".into());
        }
        for b in &self.brokers {
            match b.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
                _ => return invalid("brokers", format!("`{b}` is not host:port")),
            }
        }
        if self.linger_ms > 60_000 {
            return invalid("linger_ms", "must be at most 60000".into());
        }
        if !(1000..=3_600_000).contains(&self.message_timeout_ms) {
            return invalid("message_timeout_ms", "must be between 1000 and 3600000".into());
        }
        if self.replication_factor == 0 || self.replication_factor < -1 {
            return invalid("replication_factor", "must be -1 (cluster default) or at least 1".into());
        }
        let tls = matches!(self.security_protocol, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl);
        let sasl = matches!(self.security_protocol, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl);
        let files = [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_cert_file", &self.tls_cert_file),
            ("tls_key_file", &self.tls_key_file),
        ];
        for (key, file) in files {
            if let Some(f) = file {
                if !tls {
                    return invalid(key, "needs security_protocol = \"ssl\" or \"sasl_ssl\"".into());
                }
                if let Err(e) = std::fs::metadata(f) {
                    return invalid(key, format!("{}: {e}", f.display()));
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return invalid("tls_key_file", "tls_cert_file and tls_key_file go together".into());
        }
        match (&self.sasl_mechanism, sasl) {
            (Some(m), true) if ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&m.as_str()) => {}
            (Some(m), true) => {
                return invalid("sasl_mechanism", format!("`{m}`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
            }
            (None, true) => return invalid("sasl_mechanism", "security_protocol uses SASL: name the mechanism".into()),
            (Some(_), false) => {
                return invalid("sasl_mechanism", "needs security_protocol = \"sasl_plaintext\" or \"sasl_ssl\"".into())
            }
            (None, false) => {}
        }
        if sasl && (self.sasl_username.is_none() || self.sasl_password.is_none()) {
            return invalid("sasl_username", "SASL needs sasl_username and sasl_password".into());
        }
        if let Some(k) = self.properties.keys().find(|k| fleetmq_bridge::producer::RESERVED.contains(&k.as_str())) {
            return invalid(
                &format!("properties.{k}"),
                "set by the bridge (its delivery guarantees); cannot be changed".into(),
            );
        }
        Ok(())
    }

    /// The producer's settings for node `node`: these options as librdkafka properties.
    pub fn producer_config(&self, node: &str) -> fleetmq_bridge::producer::ProducerConfig {
        let mut properties: Vec<(String, String)> =
            self.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut set = |k: &str, v: String| properties.push((k.into(), v));
        let protocol = match self.security_protocol {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        };
        set("security.protocol", protocol.into());
        if let Some(f) = &self.tls_ca_file {
            set("ssl.ca.location", f.display().to_string());
        }
        if let Some(f) = &self.tls_cert_file {
            set("ssl.certificate.location", f.display().to_string());
        }
        if let Some(f) = &self.tls_key_file {
            set("ssl.key.location", f.display().to_string());
        }
        if !self.tls_verify {
            set("enable.ssl.certificate.verification", "false".into());
            set("ssl.endpoint.identification.algorithm", "none".into());
        }
        if let Some(m) = &self.sasl_mechanism {
            set("sasl.mechanism", m.clone());
        }
        if let Some(u) = &self.sasl_username {
            set("sasl.username", u.clone());
        }
        if let Some(p) = &self.sasl_password {
            set("sasl.password", p.clone());
        }
        let compression = match self.compression {
            ProducerCompression::None => "none",
            ProducerCompression::Gzip => "gzip",
            ProducerCompression::Snappy => "snappy",
            ProducerCompression::Lz4 => "lz4",
            ProducerCompression::Zstd => "zstd",
        };
        fleetmq_bridge::producer::ProducerConfig {
            brokers: self.brokers.clone(),
            client_id: self.client_id.clone().unwrap_or_else(|| format!("fleetmq-{node}")),
            compression: compression.into(),
            linger_ms: self.linger_ms,
            message_timeout_ms: self.message_timeout_ms,
            create_topics: self.create_topics,
            replication_factor: self.replication_factor,
            properties,
        }
    }
}
