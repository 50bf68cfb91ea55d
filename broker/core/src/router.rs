//! Routing data structures: the concurrent subscription table used on the publish path, the
//! per-filter shared-subscription groups, and the retained-message index.
//!
//! # Sharding
//!
//! Every PUBLISH has to find its subscribers, and SUBSCRIBE/UNSUBSCRIBE/disconnect churn keeps
//! changing them. A single lock around one trie would make every subscribe stall every publish and
//! serialise writers fleet-wide. [`SubscriptionTable`] instead splits the subscriptions into `N`
//! literal shards plus one wildcard shard, each a [`SubscriptionTrie`] behind its own
//! `parking_lot::RwLock`:
//!
//! - a filter whose first level is a literal (`devices/+/state`, `$SYS/#`, and the routed part of
//!   `$share/g/devices/#`) lives in the shard chosen by the hash of that first level;
//! - a filter whose first level is `+` or `#` lives in the wildcard shard.
//!
//! A filter with literal first level `L` can only match topics whose first level is `L`, so a
//! publish to topic `T` reads exactly two shards: the one of `T`'s first level and the wildcard
//! shard. Publishes only take read locks and run in parallel; a subscribe write-locks one shard,
//! blocking only publishes that hash to it. The two read locks are taken one after the other,
//! never together, so no lock order exists to violate.
//!
//! Invariants: the shard of a filter depends only on the filter, so subscribe and unsubscribe of
//! the same filter always meet in the same shard; `len` is maintained by atomic updates after each
//! successful change, so it may briefly lag a concurrent change but never drifts.

mod retained;
mod shared;
mod trie;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

pub use retained::{Iter as RetainedIter, RetainedIndex};
pub use shared::SharedGroup;
pub use trie::{Match, SubscriptionTrie};

/// All subscriptions of the broker, sharded by the first filter level for concurrent access.
#[derive(Debug)]
pub struct SubscriptionTable<K, V> {
    /// Literal shards followed by the wildcard shard (always the last; there is at least one
    /// literal shard).
    shards: Vec<RwLock<SubscriptionTrie<K, V>>>,
    hasher: RandomState,
    len: AtomicUsize,
}

impl<K: Eq + Hash, V> SubscriptionTable<K, V> {
    /// A table with `shards` literal shards (at least one is used) plus the wildcard shard. A few
    /// times the number of cores keeps write contention low without costing publishes anything.
    pub fn new(shards: usize) -> Self {
        let literal = shards.max(1);
        SubscriptionTable {
            shards: (0..=literal).map(|_| RwLock::new(SubscriptionTrie::new())).collect(),
            hasher: RandomState::new(),
            len: AtomicUsize::new(0),
        }
    }

    fn literal_shards(&self) -> usize {
        self.shards.len().saturating_sub(1).max(1)
    }

    fn wildcard_shard(&self) -> Option<&RwLock<SubscriptionTrie<K, V>>> {
        self.shards.last()
    }

    fn literal_shard(&self, first_level: &str) -> Option<&RwLock<SubscriptionTrie<K, V>>> {
        let index = self.hasher.hash_one(first_level) % self.literal_shards() as u64;
        self.shards.get(usize::try_from(index).unwrap_or(0))
    }

    /// The shard that holds the plain `filter`.
    fn shard_of_filter(&self, filter: &str) -> Option<&RwLock<SubscriptionTrie<K, V>>> {
        match first_level(filter) {
            "+" | "#" => self.wildcard_shard(),
            level => self.literal_shard(level),
        }
    }

    /// Adds the subscription of `key` to the plain `filter` (the share prefix stripped, see
    /// [`crate::topic::parse_filter`]) in share group `group` when given. Re-subscribing replaces
    /// the previous value, which is returned.
    pub fn subscribe(&self, filter: &str, group: Option<&str>, key: K, value: V) -> Option<V> {
        let shard = self.shard_of_filter(filter)?;
        let replaced = shard.write().insert(filter, group, key, value);
        if replaced.is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        replaced
    }

    /// Removes the subscription of `key` to the plain `filter` in `group`, returning its value.
    pub fn unsubscribe(&self, filter: &str, group: Option<&str>, key: &K) -> Option<V> {
        let shard = self.shard_of_filter(filter)?;
        let removed = shard.write().remove(filter, group, key);
        if removed.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Calls `f` for every subscription matching the topic name `topic` (see
    /// [`SubscriptionTrie::for_each_match`]).
    ///
    /// `f` runs while a shard read lock is held: it must not block, await, or call back into this
    /// table (a queued writer would deadlock it). Copy out what delivery needs and act afterwards.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(Match<'_, K, V>)) {
        if let Some(shard) = self.literal_shard(first_level(topic)) {
            shard.read().for_each_match(topic, &mut f);
        }
        if let Some(shard) = self.wildcard_shard() {
            shard.read().for_each_match(topic, &mut f);
        }
    }

    /// Number of subscriptions, shared-group members included.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether the table holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn first_level(topic: &str) -> &str {
    topic.split_once('/').map_or(topic, |(first, _)| first)
}

#[cfg(test)]
mod tests;
