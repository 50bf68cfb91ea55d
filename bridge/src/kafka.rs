//! The Kafka-protocol listener: serves the embedded [`log`](crate::log) and the consumer groups of
//! [`group`](crate::group) to ordinary Kafka consumers (librdkafka / kcat, kafka-python, Java).
//!
//! Layers, outermost first:
//! - [`KafkaListener`] (`listener.rs`): binds, accepts up to [`KafkaConfig::max_connections`]
//!   connections, backs off on accept errors, and on shutdown stops accepting, closes every
//!   connection and waits for their tasks to end.
//! - `connection.rs`: one task per connection reads length-prefixed frames, hands each to the
//!   [`Dispatcher`] and writes the answer before reading the next, so responses leave in request
//!   order (a long-poll Fetch delays later responses on its connection, as in Kafka).
//! - [`Dispatcher`] (`dispatch.rs`): one frame in, one encoded response out; no sockets, so it is
//!   unit-testable with in-memory requests. `codec.rs` decodes headers and bodies (after
//!   `guard.rs` has checked the array lengths) and encodes responses; `metadata.rs`, `fetch.rs` and
//!   `groups.rs` implement the APIs.
//!
//! Invariants:
//! - Only the APIs and versions in [`SUPPORTED_APIS`] are served; FleetMQ advertises exactly those.
//! - Log calls (blocking file I/O) run on Tokio's blocking pool, never on reactor threads.
//! - Bad input never panics: a frame that cannot be answered closes its connection with a warning
//!   and leaves every other connection alone.
//! - The listener is read-only: topics come from the MQTT bridge, never from Kafka clients
//!   (no Produce, no topic auto-creation).

mod codec;
mod connection;
mod dispatch;
mod fetch;
mod groups;
mod guard;
mod listener;
mod metadata;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use kafka_protocol::messages::ApiKey;

pub use dispatch::{Dispatcher, Node, SUPPORTED_APIS};
pub use listener::KafkaListener;

/// Settings of the Kafka listener (`[bridge.kafka]` in the broker's TOML).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Address to listen on; port 0 picks a free port (see [`KafkaListener::local_addr`]).
    pub bind: SocketAddr,
    /// Host name clients are told to connect to (Metadata, FindCoordinator). `None` means the
    /// bound IP, or, when bound to an unspecified address, the local IP each client reached.
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to; `None` means the bound port.
    pub advertised_port: Option<u16>,
    /// This node's broker id in Metadata and FindCoordinator responses.
    pub node_id: i32,
    /// Connections served at once; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Largest request frame accepted (Kafka's `socket.request.max.bytes`); a bigger one closes
    /// the connection, so a client cannot make the listener buffer unbounded input.
    pub max_request_bytes: usize,
    /// A connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`), so half-sent frames cannot hold a connection slot forever.
    pub idle_timeout_ms: u64,
    /// Most bytes one Fetch response carries, whatever the client asks for (Kafka's
    /// `fetch.max.bytes`; at least one batch still goes out): bounds the memory a response takes.
    pub max_fetch_bytes: usize,
}

impl Default for KafkaConfig {
    /// Kafka's conventional port on loopback, node 0, 1024 connections, 1 MiB requests (consumers
    /// send small ones; each decoded request may take many times its wire size), a 10 minute idle
    /// timeout and 50 MiB fetch responses (Kafka's defaults for the last two).
    fn default() -> Self {
        KafkaConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            advertised_port: None,
            node_id: 0,
            max_connections: 1024,
            max_request_bytes: 1024 * 1024,
            idle_timeout_ms: 600_000,
            max_fetch_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Everything that stops the listener or closes one connection. Errors Kafka can express (unknown
/// topic, offset out of range, ...) are error codes inside responses, never this type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot bind the Kafka listener to {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Socket I/O failed on a connection.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A request's length prefix is not in `1..=`[`KafkaConfig::max_request_bytes`], or a
    /// response would not fit Kafka's `i32` length prefix.
    #[error("frame of {size} bytes (limit {max})")]
    FrameSize {
        /// The announced length.
        size: i64,
        /// The configured limit.
        max: usize,
    },
    /// The request's API key is not one Kafka defines.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// The API is known but FleetMQ neither serves it nor can answer it with an error.
    #[error("unsupported API {api:?} v{version}")]
    UnsupportedApi {
        /// The API.
        api: ApiKey,
        /// The requested version.
        version: i16,
    },
    /// The API is served, but not at this version (and it is not ApiVersions, which answers).
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// The requested version.
        version: i16,
    },
    /// The frame's header or body does not decode; `request` names what was being decoded.
    #[error("malformed {request}: {reason}")]
    Malformed {
        /// "request header", or the API and version, e.g. "Fetch v12 request".
        request: String,
        /// What is wrong.
        reason: String,
    },
    /// A response could not be encoded (a value the response version cannot carry).
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Encode {
        /// The API.
        api: ApiKey,
        /// The response version.
        version: i16,
        /// What went wrong.
        reason: String,
    },
    /// A blocking log task failed to complete (it panicked or the runtime is shutting down).
    #[error("log task failed: {0}")]
    Task(String),
}

/// Result of the listener's fallible operations.
pub type Result<T> = std::result::Result<T, Error>;
