//! `[node] role` and the `[cluster]` section: which part a node plays and who its peers are.
//!
//! Invariants: a standalone node needs no `[cluster]`; a front or shard node names itself
//! (`node.id`) in the member list of its role, every member id is unique and every address parses,
//! so two nodes given the same file agree on the ring and on who is who.

use super::Error;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The part a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Everything in one process, no network hop (the default).
    #[default]
    Standalone,
    /// Terminates client connections (TLS, PROXY, CONNECT, authentication, keepalive) and forwards
    /// each session to the shard that owns its client id.
    Front,
    /// Owns sessions, QoS state, subscriptions and the store; reached by fronts and other shards.
    Shard,
}

/// What a front does for a client whose owner shard is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShardLossPolicy {
    /// Refuse the CONNECT (0x88 Server unavailable) until the owner is back: the client keeps
    /// its stored session and gets it back unchanged.
    #[default]
    Refuse,
    /// Serve a fresh session on the next reachable shard of the ring; the stored session on the
    /// owner is untouched and is used again once the owner is back.
    NextShard,
}

/// One member of the cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: String,
    /// Shards: the internal address fronts and shards connect to. Fronts: the address clients use
    /// to reach this front; a draining front sends its clients to another front's `addr` (Server
    /// Reference), so behind a load balancer give every front the balancer's address.
    pub addr: String,
    /// Shards only: the shard is leaving the cluster. It stays a member (links, forwarding) but
    /// owns nothing on the ring, so it hands every stored session and retained message over to
    /// the others; remove it once it holds none (see README, "Changing the shard set").
    #[serde(default)]
    pub leaving: bool,
}

/// `[cluster.tls]`: mutual TLS on every internal link (front → shard, shard ↔ shard).
///
/// Every node presents a certificate signed by `ca` and accepts only peers that do; a node
/// refuses plain-TCP links once this is set, so enable it on all nodes in one restart of the whole cluster (TLS and plain nodes do not link).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTlsConfig {
    /// Certificate chain this node presents when a peer dials it (server authentication).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA certificates every peer's certificate must chain to (both directions).
    pub ca: PathBuf,
    /// Certificate this node presents when it dials a peer (client authentication); defaults to
    /// `cert`, which then needs both the server and the client extended key usage.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Name every peer's server certificate must carry; default: the peer's internal IP address
    /// (as an IP subject alternative name).
    pub server_name: Option<String>,
}

/// `[cluster]`: membership and internal links (used by front and shard nodes only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Where a shard listens for internal links; defaults to its own `addr` in the shard list.
    pub bind: Option<String>,
    /// Heartbeat interval on internal links.
    pub heartbeat_ms: u64,
    /// A link silent for this long is declared dead and its sessions are disconnected.
    pub heartbeat_timeout_ms: u64,
    /// Points per shard on the consistent-hash ring (more: a more even spread).
    pub vnodes: u32,
    pub on_shard_loss: ShardLossPolicy,
    /// Bytes a session may have in flight on an internal link in each direction before the
    /// receiver returns credit (per-session flow control).
    pub stream_window: u32,
    /// Bytes of forwarded publishes a shard keeps per peer shard until the peer acknowledges
    /// them; past it the oldest are dropped (counted) so a dead peer costs bounded memory.
    pub max_forward_bytes: usize,
    /// Mutual TLS on internal links; plain TCP when absent.
    pub tls: Option<LinkTlsConfig>,
    #[serde(rename = "shard")]
    pub shards: Vec<MemberConfig>,
    #[serde(rename = "front")]
    pub fronts: Vec<MemberConfig>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            bind: None,
            heartbeat_ms: 1_000,
            heartbeat_timeout_ms: 5_000,
            vnodes: 256,
            on_shard_loss: ShardLossPolicy::Refuse,
            stream_window: 256 * 1024,
            max_forward_bytes: 256 << 20,
            tls: None,
            shards: Vec::new(),
            fronts: Vec::new(),
        }
    }
}

impl ClusterConfig {
    /// The address a shard binds its internal listener to.
    pub fn internal_bind(&self, node_id: &str) -> Option<&str> {
        self.bind.as_deref().or_else(|| self.shards.iter().find(|s| s.id == node_id).map(|s| s.addr.as_str()))
    }

    /// Ids of the shards that own sessions and retained topics (those not leaving).
    pub fn ring_shards(&self) -> impl Iterator<Item = &str> {
        self.shards.iter().filter(|s| !s.leaving).map(|s| s.id.as_str())
    }

    /// Checks the section for a node of `role` named `node_id`.
    pub(super) fn validate(&self, role: NodeRole, node_id: &str) -> Result<(), Error> {
        let invalid = |key: String, message: String| Err(Error::Invalid { key, message });
        if role == NodeRole::Standalone {
            return Ok(());
        }
        if self.shards.is_empty() {
            return invalid(
                "cluster.shard".into(),
                "a front or shard node needs at least one [[cluster.shard]]".into(),
            );
        }
        let mut ids = HashSet::new();
        for (list, members) in [("shard", &self.shards), ("front", &self.fronts)] {
            for (i, m) in members.iter().enumerate() {
                if m.id.is_empty() {
                    return invalid(format!("cluster.{list}[{i}].id"), "must not be empty".into());
                }
                if !ids.insert(m.id.as_str()) {
                    return invalid(format!("cluster.{list}[{i}].id"), format!("`{}` is listed twice", m.id));
                }
                if m.addr.parse::<SocketAddr>().is_err() {
                    return invalid(
                        format!("cluster.{list}[{i}].addr"),
                        format!("`{}` is not an address:port", m.addr),
                    );
                }
            }
        }
        if let Some(i) = self.fronts.iter().position(|f| f.leaving) {
            return invalid(format!("cluster.front[{i}].leaving"), "only shards leave through a hand-over".into());
        }
        if self.shards.iter().all(|s| s.leaving) {
            return invalid("cluster.shard".into(), "at least one shard must not be leaving".into());
        }
        let (list, members) = match role {
            NodeRole::Shard => ("cluster.shard", &self.shards),
            _ => ("cluster.front", &self.fronts),
        };
        if !members.iter().any(|m| m.id == node_id) {
            return invalid("node.id".into(), format!("`{node_id}` is not listed in {list}"));
        }
        if let Some(bind) = &self.bind {
            if bind.parse::<SocketAddr>().is_err() {
                return invalid("cluster.bind".into(), format!("`{bind}` is not an address:port"));
            }
        }
        if self.heartbeat_ms == 0 {
            return invalid("cluster.heartbeat_ms".into(), "must be at least 1".into());
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_ms {
            return invalid("cluster.heartbeat_timeout_ms".into(), "must be greater than cluster.heartbeat_ms".into());
        }
        if !(1..=4096).contains(&self.vnodes) {
            return invalid("cluster.vnodes".into(), "must be between 1 and 4096".into());
        }
        if !(4096..=16 << 20).contains(&self.stream_window) {
            return invalid("cluster.stream_window".into(), "must be between 4096 and 16777216".into());
        }
        if self.max_forward_bytes < 1 << 20 {
            return invalid("cluster.max_forward_bytes".into(), "must be at least 1048576".into());
        }
        if let Some(tls) = &self.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                let key = if tls.client_cert.is_some() { "client_key" } else { "client_cert" };
                return invalid(format!("cluster.tls.{key}"), "client_cert and client_key go together".into());
            }
            if let Some(name) = &tls.server_name {
                if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                    return invalid(
                        "cluster.tls.server_name".into(),
                        format!("`{name}` is not a DNS name or IP address"),
                    );
                }
            }
        }
        Ok(())
    }
}
