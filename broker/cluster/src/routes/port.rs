//! The shard routing as the core sees it: `fleetmq_core::port::Routing`, each method the
//! routing's own (see the parent module for what they guarantee).

use super::ShardRouting;
use fleetmq_core::message::Message;
use fleetmq_core::metrics::Stats;
use fleetmq_core::port::{BoxFuture, Forwarded, Routing};
use fleetmq_core::store::Batch;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

impl Routing for ShardRouting {
    fn retained_elsewhere(&self, topic: &str) -> bool {
        self.retained_owner(topic).is_some()
    }

    fn forward(&self, stats: &Stats, msg: &Message, batch: &mut Batch) -> Forwarded {
        ShardRouting::forward(self, stats, msg, batch)
    }

    fn wait_for_room(self: Arc<Self>, peers: Vec<usize>, limit: Duration) -> BoxFuture<'static, ()> {
        Box::pin(ShardRouting::wait_for_room(self, peers, limit))
    }

    fn subscribed(&self, filter: &str, group: Option<&str>) -> Option<oneshot::Receiver<()>> {
        ShardRouting::subscribed(self, filter, group)
    }

    fn unsubscribed(&self, filter: &str, group: Option<&str>) {
        ShardRouting::unsubscribed(self, filter, group)
    }

    fn gather_retained<'a>(&'a self, filter: &'a str) -> BoxFuture<'a, Vec<Arc<Message>>> {
        Box::pin(ShardRouting::gather_retained(self, filter))
    }

    fn route_sync_timeout(&self) -> Duration {
        self.opts.heartbeat_timeout
    }
}
