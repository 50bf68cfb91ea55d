//! Scale-out: front nodes terminate client connections and forward each session to the shard
//! that owns its client id on a consistent-hash [`ring`]; shards run the session layer, and route
//! publishes, shared groups and retained messages between themselves ([`routes`]).
//!
//! A front admits a client exactly as a standalone node does (TLS, PROXY header, CONNECT checks,
//! authentication), then opens a stream to the owner shard over one multiplexed internal link per
//! shard ([`mux`], frames in [`wire`]) and moves the session's MQTT bytes both ways, enforcing the
//! keepalive ([`front`]). A shard accepts internal links and attaches each stream to its session
//! as if the client had connected directly ([`shard`]).
//!
//! Invariants: the owner of a client id is the same on every node given the same member list;
//! fencing of takeovers is the shard's session registry (one owner per client id), so two fronts
//! connecting the same client at once still leave exactly one live connection.
//!
//! Plugs into the core through `fleetmq_core::port` (the shard routing implements
//! `port::Routing`, the front `port::Forward`, hand-over `session::handover::HandoverLink`); the
//! server builds these by role and hands them to the core. May import the core, the codec and
//! the certificates; may not import the server (`fleetmq`).

pub mod front;
pub mod mux;
pub mod plan;
pub mod ring;
pub mod routes;
pub mod secure;
pub mod shard;
pub mod wire;

use fleetmq_core::config::ClusterConfig;
use std::sync::Arc;
use std::time::Duration;

/// Link tunables from `[cluster]`, with the node's internal-link TLS (built from `[cluster.tls]`
/// at start-up) if it has one.
pub fn link_options(c: &ClusterConfig, tls: Option<Arc<secure::LinkTls>>) -> mux::LinkOptions {
    mux::LinkOptions {
        heartbeat: Duration::from_millis(c.heartbeat_ms),
        heartbeat_timeout: Duration::from_millis(c.heartbeat_timeout_ms),
        window: c.stream_window,
        tls,
    }
}

pub(crate) use fleetmq_core::shutdown::shutting_down;
