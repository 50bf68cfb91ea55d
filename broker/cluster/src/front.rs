//! The front role: one internal link per shard, kept up by a task per shard, and the forwarding of
//! each admitted client connection to the shard owning its session.
//!
//! Invariants: a CONNECT never dials — it uses the shard's current link — so a down or
//! unreachable shard costs it nothing but a lookup; a client whose owner shard has no link is
//! refused (CONNACK 0x88) or, with `on_shard_loss = "next_shard"`, served by the next shard of the
//! ring that has one — never left waiting. A front tries every shard once before it serves.

use super::mux::{Link, LinkOptions, MuxStream};
use super::ring::ShardRing;
use super::wire::SessionOpen;
use bytes::{Bytes, BytesMut};
use fleetmq_codec::{self as codec, ConnAck, Packet, ReasonCode};
use fleetmq_core::broker::Broker;
use fleetmq_core::config::{Config, ShardLossPolicy};
use fleetmq_core::connection::ClientIo;
use fleetmq_core::port::{Admitted, BoxFuture, Forward};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    /// The live link, while there is one (set by the shard's keeper task).
    link: Mutex<Option<Link>>,
}

impl Front {
    /// The front of a validated cluster config, dialing shards with `opts`.
    pub fn new(config: &Config, opts: LinkOptions) -> Front {
        let c = &config.cluster;
        let shards = c
            .shards
            .iter()
            .filter_map(|s| {
                let addr = s.addr.parse().ok()?;
                Some((s.id.clone(), ShardSlot { addr, link: Mutex::new(None) }))
            })
            .collect();
        Front {
            node: config.node.id.clone(),
            ring: ShardRing::new(c.ring_shards(), c.vnodes),
            shards,
            opts,
            policy: c.on_shard_loss,
            server_reference: c.fronts.iter().find(|f| f.id != config.node.id).map(|f| f.addr.clone()),
        }
    }

    /// The live link to `shard`, if there is one.
    fn link(&self, shard: &str) -> Option<Link> {
        self.shards.get(shard)?.link.lock().clone().filter(|l| !l.is_dead())
    }

    /// Dials `shard` once; true when a link is up.
    async fn dial(&self, shard: &str, logged_down: &mut bool) -> bool {
        let Some(slot) = self.shards.get(shard) else { return false };
        match super::mux::connect(slot.addr, &self.node, &self.opts).await {
            Ok((link, _)) => {
                tracing::info!(%shard, addr = %slot.addr, "internal link up");
                *slot.link.lock() = Some(link);
                *logged_down = false;
                true
            }
            Err(error) => {
                if !std::mem::replace(logged_down, true) {
                    tracing::warn!(%shard, addr = %slot.addr, %error, "shard unreachable");
                }
                false
            }
        }
    }

    /// Tries every shard once (a front starting: clients arriving right after find their links).
    pub async fn connect_all(&self) {
        let dials = self.ring.shards().iter().map(|shard| async move { self.dial(shard, &mut false).await });
        futures_util::future::join_all(dials).await;
    }

    /// Opens a session stream on the owner of `client_id` (or, by policy, a successor).
    fn open(&self, client_id: &str, open: SessionOpen, connect: Bytes) -> Option<MuxStream> {
        let candidates = match self.policy {
            ShardLossPolicy::Refuse => self.ring.owner(client_id).into_iter().collect(),
            ShardLossPolicy::NextShard => self.ring.successors(client_id),
        };
        for shard in candidates {
            if let Some(stream) = self.link(shard).and_then(|l| l.open(open.clone(), connect.clone())) {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps the link to every shard up until shutdown (one task per shard, so an unreachable shard
    /// never delays the others); a lost shard is noticed by its link's heartbeats. The links stay
    /// open while the front drains: its clients' sessions end through them.
    pub fn keep_links(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        for shard in self.ring.shards() {
            let (front, shard, mut shutdown) = (self.clone(), shard.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut logged_down = false;
                loop {
                    match front.link(&shard) {
                        Some(link) => tokio::select! {
                            _ = super::shutting_down(&mut shutdown) => return,
                            _ = link.dead() => {}
                        },
                        None => {
                            if !front.dial(&shard, &mut logged_down).await {
                                tokio::select! {
                                    _ = super::shutting_down(&mut shutdown) => return,
                                    _ = tokio::time::sleep(front.opts.heartbeat) => {}
                                }
                            }
                        }
                    }
                }
            });
        }
    }
}

impl Forward for Front {
    fn forward(self: Arc<Self>, broker: Arc<Broker>, io: ClientIo, admitted: Admitted) -> BoxFuture<'static, ()> {
        Box::pin(async move { serve(&broker, &self, io, admitted).await })
    }
}

/// Forwards an admitted client connection to its shard until either side ends it.
pub async fn serve(broker: &Arc<Broker>, front: &Front, mut io: ClientIo, mut admitted: Admitted) {
    let protocol = admitted.connect.protocol;
    // The front authenticated the client: the shard needs no password.
    admitted.connect.password = None;
    let client_id = admitted.connect.client_id.clone();
    let mut body = BytesMut::new();
    if codec::encode(&Packet::Connect(admitted.connect), protocol, &mut body).is_err() {
        return;
    }
    let client_id = client_id.as_str();
    let open = SessionOpen {
        peer: admitted.peer,
        username: admitted.username,
        assigned_client_id: admitted.assigned_client_id,
        server_keep_alive: admitted.server_keep_alive,
        owner: front.ring.owner(client_id).unwrap_or_default().to_string(),
    };
    let Some(stream) = front.open(client_id, open, body.freeze()) else {
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
