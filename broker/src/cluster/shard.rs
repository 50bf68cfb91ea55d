//! The shard role's internal listener: accepts links from fronts, attaching every session stream
//! they open to its session exactly as a direct client connection would be, and from other shards,
//! whose routes and forwards go to [`super::routes`].
//!
//! Invariants: only members named in `[cluster]` may open a link; a stream whose CONNECT does not
//! decode, or that arrives while the node shuts down, is closed without touching any session; each
//! attached stream holds a place in the node's shutdown drain like any client connection.

use super::mux::{Accepted, Incoming, Link, LinkOptions};
use crate::broker::Broker;
use crate::codec::{self, ConnAck, Packet, ReasonCode};
use crate::connection::{ClientIo, ClientStream, ConnGuard, WriterOptions};
use crate::session::{self, AttachRequest};
use bytes::BytesMut;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Accepts internal links until shutdown.
pub async fn run(listener: TcpListener, broker: Arc<Broker>, tracker: TaskTracker) {
    let cluster = &broker.config.cluster;
    let opts = super::link_options(cluster, broker.link_tls.clone());
    let members: Arc<HashSet<String>> =
        Arc::new(cluster.shards.iter().chain(cluster.fronts.iter()).map(|m| m.id.clone()).collect());
    let mut shutdown = broker.shutdown_signal();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = crate::cluster::shutting_down(&mut shutdown) => return,
            a = crate::listener::accept(&listener) => a,
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_link(tcp, peer, broker.clone(), tracker.clone(), opts.clone(), members.clone()));
    }
}

async fn serve_link(
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    broker: Arc<Broker>,
    tracker: TaskTracker,
    opts: LinkOptions,
    members: Arc<HashSet<String>>,
) {
    let me = broker.config.node.id.clone();
    let admit = |n: &str| members.contains(n);
    let accepted = match opts.tls.clone() {
        // The handshake is bounded like the hello: a silent peer cannot hold the task.
        Some(tls) => match tokio::time::timeout(opts.heartbeat_timeout, tls.accept(tcp)).await {
            Ok(Ok(stream)) => Link::accept(stream, &me, opts, admit).await,
            Ok(Err(e)) => Err(super::mux::Error::Handshake(format!("TLS: {e}"))),
            Err(_) => Err(super::mux::Error::Timeout),
        },
        None => Link::accept(tcp, &me, opts, admit).await,
    };
    let Accepted { link, mut incoming, messages } = match accepted {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "internal link refused");
            return;
        }
    };
    tracing::info!(peer = link.peer(), %addr, "internal link accepted");
    // A shard's link carries routes and forwards; a front's carries session streams.
    if let Some((routing, index)) = broker.routing.as_ref().and_then(|r| Some((r.clone(), r.peer_index(link.peer())?)))
    {
        routing.serve_peer(&broker, index, link, messages).await;
        return;
    }
    let mut shutdown = broker.shutdown_signal();
    loop {
        let next = tokio::select! {
            next = incoming.recv() => next,
            _ = link.dead() => None,
            _ = crate::cluster::shutting_down(&mut shutdown) => None,
        };
        let Some(stream) = next else { break };
        attach(&broker, stream, &tracker);
    }
}

/// Attaches one forwarded client connection to its session.
fn attach(broker: &Arc<Broker>, incoming: Incoming, tracker: &TaskTracker) {
    let Incoming { stream, open, connect } = incoming;
    let max_packet = broker.config.mqtt.max_packet_size as usize;
    let mut buf = BytesMut::from(&connect[..]);
    let connect = match codec::decode(&mut buf, None, max_packet) {
        Ok(Some(Packet::Connect(c))) if !c.client_id.is_empty() => c,
        other => {
            tracing::warn!(front = stream.peer(), result = ?other.map(|p| p.map(|p| p.name())), "bad forwarded CONNECT");
            return;
        }
    };
    if broker.is_shutting_down() {
        return;
    }
    let refuse = broker.routing.as_ref().and_then(|r| r.owner_of(&connect.client_id)).filter(|o| *o != open.owner);
    let mut guard = ConnGuard::new(broker.clone());
    guard.token = Some(tracker.token());
    guard.opened();
    let protocol = connect.protocol;
    let mut io = ClientIo::new(ClientStream::Remote(stream), max_packet, guard);
    if let Some(owner) = refuse {
        // The front's ring and ours disagree (a membership change is rolling out): serving the
        // session here could split it in two, so the client retries until the configurations agree.
        broker.stats.limit_rejection("membership_mismatch");
        tracing::debug!(client_id = %connect.client_id, front_owner = %open.owner, %owner, "CONNECT for another shard refused");
        let refusal = Packet::ConnAck(ConnAck { reason: ReasonCode::USE_ANOTHER_SERVER, ..Default::default() });
        tokio::spawn(async move { io.write_now(&refusal, protocol).await });
        return;
    }
    io.set_options(WriterOptions::of(&connect));
    let assigned = open.assigned_client_id.then(|| connect.client_id.clone());
    let properties =
        crate::handler::connect::connack_properties(&broker.config.mqtt, protocol, assigned, open.server_keep_alive);
    let connack = ConnAck { properties, ..Default::default() };
    tracing::debug!(client_id = %connect.client_id, peer = %open.peer, "client connected through a front");
    // The front enforces the keepalive: it sees every byte the client sends.
    let req = AttachRequest { connect, username: open.username, peer: open.peer, io, connack, keepalive: 0 };
    session::attach(broker, req);
}
