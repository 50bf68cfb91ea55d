//! Route announcements: which filters this shard's sessions subscribe to, told to every other
//! shard when a route key gains its first local subscriber or loses its last, and the routes the
//! other shards told this one. A SUBACK that creates a route waits until every shard with a live
//! link acknowledged it (see [`ShardRouting::subscribed`]).

use super::{ShardRouting, HERE};
use crate::wire::{RouteKey, ShardMsg};
use bytes::Bytes;
use fleetmq_core::router::SubscriptionTable;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// The routes a shard keeps: its own subscriptions by key (announced when a key's count goes
/// 0 ↔ 1), the other shards' (by peer index: what each announced, and a table to match topics
/// against), and announcements not yet acknowledged.
pub(super) struct Routes {
    /// Local subscriptions per route key.
    pub(super) local: Mutex<HashMap<RouteKey, usize>>,
    /// Remote routes: key = peer index.
    pub(super) remote: SubscriptionTable<usize, ()>,
    /// What each peer announced, by peer index.
    pub(super) known: Mutex<Vec<HashSet<RouteKey>>>,
    /// Route announcements not yet acknowledged by every shard they went to.
    pub(super) syncs: Mutex<HashMap<RouteKey, RouteSync>>,
}

/// A route announcement waiting for acks.
pub(super) struct RouteSync {
    id: u64,
    /// Peers (by index) that have not acknowledged it; a peer whose link drops is taken off.
    waiting: HashSet<usize>,
    /// SUBACKs waiting for it.
    done: Vec<oneshot::Sender<()>>,
}

impl ShardRouting {
    /// A local session subscribed to `filter` (plain) in `group`. Returns what resolves once every
    /// shard with a live link knows the route, when it is new (or still being announced): the
    /// SUBACK waits for it, so a publish on any shard after the SUBACK reaches this subscriber.
    pub fn subscribed(&self, filter: &str, group: Option<&str>) -> Option<oneshot::Receiver<()>> {
        let key = RouteKey::new(filter, group);
        let mut local = self.routes.local.lock();
        let n = local.entry(key.clone()).or_insert(0);
        *n += 1;
        let mut syncs = self.routes.syncs.lock();
        if *n == 1 {
            if group.is_some() {
                self.routes.remote.subscribe(filter, group, HERE, ());
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let waiting = self.announce(ShardMsg::RouteAdd { key: key.clone(), id });
            if waiting.is_empty() {
                return None;
            }
            let (tx, rx) = oneshot::channel();
            syncs.insert(key, RouteSync { id, waiting, done: vec![tx] });
            return Some(rx);
        }
        let sync = syncs.get_mut(&key)?;
        let (tx, rx) = oneshot::channel();
        sync.done.push(tx);
        Some(rx)
    }

    /// Peer `peer` acknowledged route announcement `id` (`None`: its link dropped, so it acknowledges
    /// nothing more; it gets the routes from the snapshot on its next link).
    pub(super) fn route_acked(&self, peer: usize, id: Option<u64>) {
        self.routes.syncs.lock().retain(|_, sync| {
            if id.is_none_or(|id| id == sync.id) {
                sync.waiting.remove(&peer);
            }
            if !sync.waiting.is_empty() {
                return true;
            }
            for tx in sync.done.drain(..) {
                let _ = tx.send(());
            }
            false
        });
    }

    /// A local session's subscription to `filter` in `group` ended.
    pub fn unsubscribed(&self, filter: &str, group: Option<&str>) {
        let key = RouteKey::new(filter, group);
        let mut local = self.routes.local.lock();
        let Some(n) = local.get_mut(&key) else { return };
        *n -= 1;
        if *n == 0 {
            local.remove(&key);
            if group.is_some() {
                self.routes.remote.unsubscribe(filter, group, &HERE);
            }
            // A pending announcement of the same route no longer matters.
            self.routes.syncs.lock().remove(&key);
            self.announce(ShardMsg::RouteDel(key));
        }
    }

    /// Sends a route change to every live peer link (called under the `local` lock, so changes
    /// and snapshots never cross); returns the peers it went to.
    pub(super) fn announce(&self, msg: ShardMsg) -> HashSet<usize> {
        let mut sent = HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            if p.link.lock().as_ref().is_some_and(|link| link.send(msg.clone(), Bytes::new())) {
                sent.insert(i);
            }
        }
        sent
    }

    pub(super) fn replace_routes(&self, index: usize, routes: Vec<RouteKey>) {
        let new: HashSet<RouteKey> = routes.into_iter().collect();
        let mut known = self.routes.known.lock();
        for gone in known[index].difference(&new) {
            self.routes.remote.unsubscribe(&gone.filter, gone.group.as_deref(), &index);
        }
        for added in new.difference(&known[index]) {
            self.routes.remote.subscribe(&added.filter, added.group.as_deref(), index, ());
        }
        known[index] = new;
    }
}
