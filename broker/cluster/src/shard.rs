//! The shard role's internal listener: accepts links from fronts, attaching every session stream
//! they open to its session exactly as a direct client connection would be, and from other shards,
//! whose routes and forwards go to [`super::routes`].
//!
//! Invariants: only members named in `[cluster]` may open a link; a stream whose CONNECT does not
//! decode, or that arrives while the node shuts down, is closed without touching any session; each
//! attached stream holds a place in the node's shutdown drain like any client connection.

use super::mux::{Accepted, Incoming, Link, LinkOptions};
use super::routes::ShardRouting;
use super::secure::LinkTls;
use bytes::BytesMut;
use fleetmq_codec::{self as codec, ConnAck, Packet, ReasonCode};
use fleetmq_core::broker::Broker;
use fleetmq_core::connection::{ClientIo, ClientStream, ConnGuard, WriterOptions};
use fleetmq_core::session::{self, AttachRequest};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Accepts internal links until shutdown; `routing` is this shard's, `tls` secures the links.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    routing: Arc<ShardRouting>,
    tls: Option<Arc<LinkTls>>,
    tracker: TaskTracker,
) {
    let cluster = &broker.config.cluster;
    let opts = super::link_options(cluster, tls);
    let members: Arc<HashSet<String>> =
        Arc::new(cluster.shards.iter().chain(cluster.fronts.iter()).map(|m| m.id.clone()).collect());
    let mut shutdown = broker.shutdown_signal();
    loop {
        let (tcp, peer) = tokio::select! {
            _ = crate::shutting_down(&mut shutdown) => return,
            a = fleetmq_core::connection::accept(&listener) => a,
        };
        let _ = tcp.set_nodelay(true);
        let link = LinkContext {
            routing: routing.clone(),
            tracker: tracker.clone(),
            opts: opts.clone(),
            members: members.clone(),
        };
        tokio::spawn(serve_link(tcp, peer, broker.clone(), link));
    }
}

/// What every accepted link needs from the listener.
struct LinkContext {
    routing: Arc<ShardRouting>,
    tracker: TaskTracker,
    opts: LinkOptions,
    members: Arc<HashSet<String>>,
}

async fn serve_link(tcp: tokio::net::TcpStream, addr: std::net::SocketAddr, broker: Arc<Broker>, cx: LinkContext) {
    let LinkContext { routing, tracker, opts, members } = cx;
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
    if let Some(index) = routing.peer_index(link.peer()) {
        routing.serve_peer(&broker, index, link, messages).await;
        return;
    }
    let mut shutdown = broker.shutdown_signal();
    loop {
        let next = tokio::select! {
            next = incoming.recv() => next,
            _ = link.dead() => None,
            _ = crate::shutting_down(&mut shutdown) => None,
        };
        let Some(stream) = next else { break };
        attach(&broker, &routing, stream, &tracker);
    }
}

/// Attaches one forwarded client connection to its session.
fn attach(broker: &Arc<Broker>, routing: &ShardRouting, incoming: Incoming, tracker: &TaskTracker) {
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
    let refuse = routing.owner_of(&connect.client_id).filter(|o| *o != open.owner);
    let mut guard = ConnGuard::new(broker.stats.clone());
    guard.token = Some(tracker.token());
    guard.opened();
    let protocol = connect.protocol;
    let mut io = ClientIo::new(ClientStream::Remote(Box::new(stream)), max_packet, guard);
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
    let properties = fleetmq_core::handler::connect::connack_properties(
        &broker.config.mqtt,
        protocol,
        assigned,
        open.server_keep_alive,
    );
    let connack = ConnAck { properties, ..Default::default() };
    tracing::debug!(client_id = %connect.client_id, peer = %open.peer, "client connected through a front");
    // The front enforces the keepalive: it sees every byte the client sends.
    let req = AttachRequest { connect, username: open.username, peer: open.peer, io, connack, keepalive: 0 };
    session::attach(broker, req);
}
