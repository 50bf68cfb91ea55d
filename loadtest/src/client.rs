//! MQTT clients used by the drivers: rumqttc (3.1.1 via its v4 API, 5.0 via `rumqttc::v5`) behind
//! one interface ([`mqtt`]), a minimal raw CONNECT/CONNACK/PINGREQ client for idle connections that
//! must bind a source address ([`raw`]), and the shared TLS setup ([`tls`]).
//!
//! Invariants: every connection failure is classified into a [`Failure`] whose text is a stable
//! bucket key (`refused: CONNACK …`, `timeout`, `tls: …`, `io: …`, `protocol: …`, `closed by
//! broker`); clients never reconnect on their own.

pub mod mqtt;
pub mod raw;
pub mod tls;

use crate::scenario::{Connection, MqttVersion};
use rumqttc::tokio_rustls::rustls::ClientConfig;
use std::sync::Arc;
use std::time::Duration;

/// Setup errors (bad TLS material, unusable host).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS configuration could not be built.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a connection failed or ended; `to_string()` is the bucket key in reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The broker answered CONNACK with a non-zero code.
    #[error("refused: CONNACK {0}")]
    Refused(String),
    /// No CONNACK (or TCP/TLS completion) within the connect timeout.
    #[error("timeout")]
    Timeout,
    /// TLS handshake or certificate failure.
    #[error("tls: {0}")]
    Tls(String),
    /// Socket error.
    #[error("io: {0}")]
    Io(String),
    /// The broker sent something invalid or unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The broker closed the connection.
    #[error("closed by broker")]
    Closed,
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    #[error("disconnected by broker: {0}")]
    Disconnected(String),
    /// The broker rejected a subscription.
    #[error("subscription refused: {0}")]
    SubscribeRefused(String),
}

impl Failure {
    /// Classifies a socket error, folding peer closes into [`Failure::Closed`] (rustls reports TLS
    /// alerts and certificate errors as `InvalidData`, the only source of that kind on a socket).
    pub fn from_io(e: &std::io::Error) -> Failure {
        use std::io::ErrorKind::*;
        match e.kind() {
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Closed,
            TimedOut => Failure::Timeout,
            InvalidData => Failure::Tls(e.to_string()),
            _ => Failure::Io(e.to_string()),
        }
    }

    /// True for failures that mean the broker could not be reached or talked to at all (worth
    /// aborting the run over), as opposed to load-induced refusals and timeouts.
    pub fn is_fatal_at_start(&self) -> bool {
        !matches!(self, Failure::Timeout)
    }
}

/// Where and how to connect; built once per run and shared by every client.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Protocol version.
    pub mqtt: MqttVersion,
    /// TLS configuration when TLS is on.
    pub tls: Option<Arc<ClientConfig>>,
    /// Credentials.
    pub credentials: Option<(String, String)>,
    /// Keep-alive.
    pub keepalive: Duration,
    /// Bound on TCP + TLS + CONNACK.
    pub connect_timeout: Duration,
}

impl Endpoint {
    /// Builds the endpoint (loading TLS material) from the scenario's connection settings.
    pub fn new(conn: &Connection) -> Result<Endpoint> {
        Ok(Endpoint {
            host: conn.host.clone(),
            port: conn.port,
            mqtt: conn.mqtt,
            tls: tls::client_config(conn)?,
            credentials: conn.username.clone().map(|u| (u, conn.password.clone().unwrap_or_default())),
            keepalive: Duration::from_secs(u64::from(conn.keepalive_secs)),
            connect_timeout: conn.connect_timeout,
        })
    }

    /// `host:port` for messages.
    pub fn addr_text(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}
