//! Ports: the traits through which a cluster plugs into the core, and the plain data crossing
//! them. The core calls them; the cluster crate implements them; the server wires an
//! implementation in by role (a standalone node has none, so every call site works without).
//!
//! Invariants: nothing here names a cluster type; a port method never blocks (waits are returned
//! as futures), and the futures it returns are `Send`, so callers can hold them in a commit.

use crate::broker::Broker;
use crate::connection::ClientIo;
use crate::message::Message;
use crate::metrics::Stats;
use crate::store::Batch;
use fleetmq_codec::Connect;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// A boxed `Send` future: what a port returns where it has to wait.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A subscription as routing between shards sees it: a plain filter, and the share group for a
/// `$share/{group}/{filter}` subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    pub filter: String,
    pub group: Option<String>,
}

impl RouteKey {
    pub fn new(filter: &str, group: Option<&str>) -> RouteKey {
        RouteKey { filter: filter.into(), group: group.map(str::to_string) }
    }
}

/// What forwarding one publish to the other shards did.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Shards the message went to.
    pub shards: usize,
    /// Shared groups another shard serves: this shard's members of them must not get it.
    pub served_elsewhere: Vec<RouteKey>,
    /// Peers whose outbox is past the high-water mark: the publisher's ack waits for them
    /// ([`Routing::wait_for_room`]).
    pub congested: Vec<usize>,
}

/// How a shard's publish and subscribe paths reach the other shards (implemented by the
/// cluster's shard routing). Without one, the node is alone: everything is local.
pub trait Routing: Send + Sync {
    /// Whether another shard stores the retained message of `topic` (it owns the topic).
    fn retained_elsewhere(&self, topic: &str) -> bool;

    /// Forwards `msg` to every other shard with a matching subscriber; on a durable engine the
    /// forwards are written into `batch`, the publish's own commit. Drops are counted in `stats`.
    fn forward(&self, stats: &Stats, msg: &Message, batch: &mut Batch) -> Forwarded;

    /// Resolves (at most after `limit`) once the outboxes of `peers` are back under their
    /// low-water mark: a publisher's acknowledgement waits on it.
    fn wait_for_room(self: Arc<Self>, peers: Vec<usize>, limit: Duration) -> BoxFuture<'static, ()>;

    /// A local session subscribed to the plain `filter` in `group`. When the route is new, what
    /// resolves once every reachable shard knows it (the SUBACK waits for it).
    fn subscribed(&self, filter: &str, group: Option<&str>) -> Option<oneshot::Receiver<()>>;

    /// The last local subscriber of `filter` in `group` is gone.
    fn unsubscribed(&self, filter: &str, group: Option<&str>);

    /// Retained messages matching the plain `filter` that other shards own.
    fn gather_retained<'a>(&'a self, filter: &'a str) -> BoxFuture<'a, Vec<Arc<Message>>>;

    /// Longest a SUBACK waits for the other shards to acknowledge a new route.
    fn route_sync_timeout(&self) -> Duration;
}

/// A client a front node admitted (CONNECT valid, authenticated, within limits), on its way to
/// the shard that owns its session.
pub struct Admitted {
    pub connect: Box<Connect>,
    pub username: Option<String>,
    pub peer: SocketAddr,
    /// Keepalive the front enforces, in seconds (0: none).
    pub keepalive: u16,
    pub assigned_client_id: bool,
    pub server_keep_alive: Option<u16>,
}

/// Where a front node sends its admitted clients instead of attaching them to a local session
/// (implemented by the cluster's front).
pub trait Forward: Send + Sync {
    /// Serves `admitted` by forwarding its connection until either side ends it.
    fn forward(self: Arc<Self>, broker: Arc<Broker>, io: ClientIo, admitted: Admitted) -> BoxFuture<'static, ()>;
}
