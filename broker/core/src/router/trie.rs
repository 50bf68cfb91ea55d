//! A topic-level trie of subscriptions: finds every subscription whose filter matches a topic by
//! walking only the branches the topic can reach.
//!
//! Each node stands for one filter prefix. It holds literal children by level string, an optional
//! `+` child, an optional `#` leaf (a `#` is always the last level, so it needs no children), and the
//! subscriptions whose filter ends at this node: direct subscribers by key and shared groups by
//! share name.
//!
//! Invariants:
//! - a node with no subscriptions and no children never stays in the trie (removal prunes it), so
//!   memory tracks the live subscriptions, not the churn;
//! - each node is reached by at most one path during a walk, so every matching (filter, subscriber)
//!   pair is reported exactly once;
//! - filters are expected to be validated plain filters (share prefix stripped). Anything else is
//!   stored consistently and harmlessly: a `#` that is not the last level is kept as a literal level,
//!   which no valid topic name matches;
//! - recursion depth of every walk is bounded by the depth of the trie, i.e. by the level limit the
//!   caller validated filters against, never by the topic being matched.

use std::collections::HashMap;
use std::hash::Hash;

use super::shared::SharedGroup;

/// One matching subscription reported by a walk; callers dedupe when one key matches through
/// several filters.
#[derive(Debug)]
pub enum Match<'a, K, V> {
    /// An ordinary subscription of `key`.
    Direct { key: &'a K, value: &'a V },
    /// A shared subscription: the caller picks one member to deliver to.
    Shared { group: &'a str, members: &'a SharedGroup<K, V> },
}

impl<K, V> Clone for Match<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Match<'_, K, V> {}

/// The subscriptions whose filter ends at one node.
#[derive(Debug)]
struct Subscribers<K, V> {
    direct: HashMap<K, V>,
    shared: HashMap<String, SharedGroup<K, V>>,
}

impl<K, V> Default for Subscribers<K, V> {
    fn default() -> Self {
        Subscribers { direct: HashMap::new(), shared: HashMap::new() }
    }
}

impl<K: Eq + Hash, V> Subscribers<K, V> {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }

    fn insert(&mut self, filter: &str, group: Option<&str>, key: K, value: V) -> Option<V> {
        match group {
            None => self.direct.insert(key, value),
            Some(group) => self
                .shared
                .entry(group.to_owned())
                .or_insert_with(|| SharedGroup::for_filter(filter))
                .insert(key, value),
        }
    }

    fn remove(&mut self, group: Option<&str>, key: &K) -> Option<V> {
        match group {
            None => self.direct.remove(key),
            Some(name) => {
                let members = self.shared.get_mut(name)?;
                let removed = members.remove(key);
                if members.is_empty() {
                    self.shared.remove(name);
                }
                removed
            }
        }
    }

    fn report<'a>(&'a self, f: &mut impl FnMut(Match<'a, K, V>)) {
        for (key, value) in &self.direct {
            f(Match::Direct { key, value });
        }
        for (group, members) in &self.shared {
            f(Match::Shared { group, members });
        }
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.direct.len() + self.shared.values().map(SharedGroup::len).sum::<usize>()
    }
}

#[derive(Debug)]
struct Node<K, V> {
    subscribers: Subscribers<K, V>,
    children: HashMap<String, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    hash: Option<Box<Subscribers<K, V>>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node { subscribers: Subscribers::default(), children: HashMap::new(), plus: None, hash: None }
    }
}

impl<K: Eq + Hash, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.subscribers.is_empty() && self.children.is_empty() && self.plus.is_none() && self.hash.is_none()
    }

    /// Removes the subscription whose remaining filter levels are `levels`, pruning emptied nodes
    /// below this one.
    fn remove<'f>(
        &mut self,
        mut levels: std::iter::Peekable<std::str::Split<'f, char>>,
        group: Option<&str>,
        key: &K,
    ) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.subscribers.remove(group, key);
        };
        if level == "#" && levels.peek().is_none() {
            let hash = self.hash.as_mut()?;
            let removed = hash.remove(group, key);
            if hash.is_empty() {
                self.hash = None;
            }
            return removed;
        }
        if level == "+" {
            let child = self.plus.as_mut()?;
            let removed = child.remove(levels, group, key);
            if child.is_empty() {
                self.plus = None;
            }
            return removed;
        }
        let child = self.children.get_mut(level)?;
        let removed = child.remove(levels, group, key);
        if child.is_empty() {
            self.children.remove(level);
        }
        removed
    }

    /// Reports the subscriptions of this subtree matching the topic levels `rest` (`None` once all
    /// levels are consumed). `at_dollar_root` is set only at the root for a `$` topic, where
    /// wildcards must not match.
    fn walk<'a>(&'a self, rest: Option<&str>, at_dollar_root: bool, f: &mut impl FnMut(Match<'a, K, V>)) {
        if !at_dollar_root {
            // `#` matches the parent level too, so it applies whether or not levels remain.
            if let Some(hash) = &self.hash {
                hash.report(f);
            }
        }
        let Some(rest) = rest else {
            self.subscribers.report(f);
            return;
        };
        let (level, next) = match rest.split_once('/') {
            Some((level, next)) => (level, Some(next)),
            None => (rest, None),
        };
        if let Some(child) = self.children.get(level) {
            child.walk(next, false, f);
        }
        if !at_dollar_root {
            if let Some(plus) = &self.plus {
                plus.walk(next, false, f);
            }
        }
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        1 + usize::from(self.hash.is_some())
            + self.plus.as_ref().map_or(0, |p| p.node_count())
            + self.children.values().map(Node::node_count).sum::<usize>()
    }

    #[cfg(test)]
    fn subscription_count(&self) -> usize {
        self.subscribers.count()
            + self.hash.as_ref().map_or(0, |h| h.count())
            + self.plus.as_ref().map_or(0, |p| p.subscription_count())
            + self.children.values().map(Node::subscription_count).sum::<usize>()
    }
}

/// All subscriptions of one shard (or of a whole broker), indexed by filter level.
///
/// Not synchronised: [`super::SubscriptionTable`] wraps shards of it in locks.
#[derive(Debug)]
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        SubscriptionTrie { root: Node::default(), len: 0 }
    }
}

impl<K: Eq + Hash, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the subscription of `key` to the plain `filter` (in share group `group` when given).
    /// The same key subscribing again to the same filter and group replaces its subscription; the
    /// previous value is returned.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        let subscribers = loop {
            let Some(level) = levels.next() else {
                break &mut node.subscribers;
            };
            if level == "#" && levels.peek().is_none() {
                break &mut **node.hash.get_or_insert_with(Box::default);
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.to_owned()).or_default()
            };
        };
        let replaced = subscribers.insert(filter, group, key, value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes the subscription of `key` to `filter` in `group`, returning its value, and prunes
    /// the nodes that no longer lead to any subscription.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, key: &K) -> Option<V> {
        let removed = self.root.remove(filter.split('/').peekable(), group, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` once for every (filter, subscriber) pair matching the topic name `topic`, with the
    /// `$` rule applied: topics starting with `$` are not matched by filters starting with a
    /// wildcard. A key subscribed through several matching filters is reported once per filter.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(Match<'a, K, V>)) {
        self.root.walk(Some(topic), topic.starts_with('$'), &mut f);
    }

    /// Number of subscriptions, each shared-group member counted once.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the trie holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nodes currently allocated, the root included (a `#` leaf counts as one node).
    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.root.node_count()
    }
}

#[cfg(test)]
mod tests;
