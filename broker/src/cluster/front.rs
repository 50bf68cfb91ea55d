//! The front role: one internal link per shard (dialed on demand, kept up in the background) and
//! the forwarding of each admitted client connection to the shard owning its session.
//!
//! Invariants: a client whose owner shard is unreachable is refused (CONNACK 0x88) or, with
//! `on_shard_loss = "next_shard"`, served by the next reachable shard of the ring — never left
//! waiting; a dial to a shard that just failed is not retried before one heartbeat interval, so a
//! down shard costs each CONNECT nothing but a map lookup.

use super::mux::{Link, LinkOptions, MuxStream};
use super::ring::ShardRing;
use super::wire::SessionOpen;
use crate::broker::Broker;
use crate::codec::{self, ConnAck, Connect, Packet, ReasonCode};
use crate::config::{Config, ShardLossPolicy};
use crate::connection::ClientIo;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod pump;

/// A front's view of the shards.
pub struct Front {
    node: String,
    ring: ShardRing,
    shards: HashMap<String, ShardSlot>,
    opts: LinkOptions,
    policy: ShardLossPolicy,
    /// Where clients go while this front drains (another front's client address).
    server_reference: Option<String>,
}

struct ShardSlot {
    addr: SocketAddr,
    /// Held while dialing, so concurrent CONNECTs share one dial.
    link: tokio::sync::Mutex<Option<Link>>,
    /// No new dial before this (the last one failed).
    retry_at: Mutex<Option<Instant>>,
}

impl Front {
    /// The front of a validated cluster config.
    pub fn new(config: &Config) -> Front {
        let c = &config.cluster;
        let shards = c
            .shards
            .iter()
            .filter_map(|s| {
                let addr = s.addr.parse().ok()?;
                Some((s.id.clone(), ShardSlot { addr, link: Default::default(), retry_at: Mutex::new(None) }))
            })
            .collect();
        Front {
            node: config.node.id.clone(),
            ring: ShardRing::new(c.shards.iter().map(|s| s.id.as_str()), c.vnodes),
            shards,
            opts: super::link_options(c),
            policy: c.on_shard_loss,
            server_reference: c.fronts.iter().find(|f| f.id != config.node.id).map(|f| f.addr.clone()),
        }
    }

    /// A live link to `shard`, dialing if needed; `None` while it is unreachable.
    async fn link(&self, shard: &str) -> Option<Link> {
        let slot = self.shards.get(shard)?;
        let mut current = slot.link.lock().await;
        if let Some(link) = current.as_ref().filter(|l| !l.is_dead()) {
            return Some(link.clone());
        }
        if slot.retry_at.lock().is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(slot.addr).await?;
            tcp.set_nodelay(true)?;
            Link::dial(tcp, &self.node, self.opts).await.map(|(link, _)| link).map_err(std::io::Error::other)
        };
        match tokio::time::timeout(self.opts.heartbeat_timeout, dial).await {
            Ok(Ok(link)) => {
                tracing::info!(%shard, addr = %slot.addr, "internal link up");
                *slot.retry_at.lock() = None;
                *current = Some(link.clone());
                Some(link)
            }
            failed => {
                let was_up = current.take().is_some() || slot.retry_at.lock().is_none();
                if was_up {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "timed out".into(),
                    };
                    tracing::warn!(%shard, addr = %slot.addr, %error, "shard unreachable");
                }
                *slot.retry_at.lock() = Some(Instant::now() + self.opts.heartbeat);
                None
            }
        }
    }

    /// Opens a session stream on the owner of `client_id` (or, by policy, a successor).
    async fn open(&self, client_id: &str, open: SessionOpen, connect: Bytes) -> Option<MuxStream> {
        let candidates = match self.policy {
            ShardLossPolicy::Refuse => self.ring.owner(client_id).into_iter().collect(),
            ShardLossPolicy::NextShard => self.ring.successors(client_id),
        };
        for shard in candidates {
            if let Some(stream) = self.link(shard).await.and_then(|l| l.open(open.clone(), connect.clone())) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps a link to every shard up until shutdown, so the first client does not wait for a dial
    /// and a lost shard is noticed (and logged) promptly. The links stay open while the front
    /// drains: its clients' sessions end through them.
    pub async fn keep_links(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.opts.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            for shard in self.ring.shards() {
                self.link(shard).await;
            }
        }
    }
}

/// What the front knows about an admitted client.
pub struct Admitted {
    pub connect: Box<Connect>,
    pub username: Option<String>,
    pub peer: SocketAddr,
    /// Keepalive the front enforces, in seconds (0: none).
    pub keepalive: u16,
    pub assigned_client_id: bool,
    pub server_keep_alive: Option<u16>,
}

/// Forwards an admitted client connection to its shard until either side ends it.
pub async fn serve(broker: &Arc<Broker>, front: &Front, mut io: ClientIo, mut admitted: Admitted) {
    let protocol = admitted.connect.protocol;
    // The front authenticated the client: the shard needs no password.
    admitted.connect.password = None;
    let mut body = BytesMut::new();
    if codec::encode(&Packet::Connect(admitted.connect.clone()), protocol, &mut body).is_err() {
        return;
    }
    let open = SessionOpen {
        peer: admitted.peer,
        username: admitted.username,
        assigned_client_id: admitted.assigned_client_id,
        server_keep_alive: admitted.server_keep_alive,
    };
    let client_id = admitted.connect.client_id.as_str();
    let Some(stream) = front.open(client_id, open, body.freeze()).await else {
        broker.stats.limit_rejection("shard_unavailable");
        tracing::debug!(%client_id, "owner shard unreachable: CONNECT refused");
        let refusal = Packet::ConnAck(ConnAck { reason: ReasonCode::SERVER_UNAVAILABLE, ..Default::default() });
        io.write_now(&refusal, protocol).await;
        return;
    };
    tracing::debug!(%client_id, shard = stream.peer(), peer = %admitted.peer, "forwarding session");
    let keepalive = Duration::from_millis(u64::from(admitted.keepalive) * 1500);
    let server_reference = front.server_reference.clone();
    pump::run(broker, io, stream, protocol, keepalive, server_reference).await;
}
