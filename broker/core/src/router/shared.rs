//! The members of one shared subscription (`$share/{group}/{filter}`) and the round-robin choice
//! of the member that receives each message.
//!
//! Invariants: members are kept in insertion order with unique keys (a member re-subscribing keeps
//! its place and gets its new value); the cursor is a free-running counter taken modulo the member
//! count, so it never needs to be fixed up when members leave except to keep the rotation fair.
//! `pick` only needs `&self`, so concurrent publishers can pick under a shared read lock.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Members of one shared subscription group on one filter, with a round-robin cursor.
///
/// Membership changes take `&mut self` (done under the owner's write lock); delivery picks a member
/// through `&self`. Member lookups are linear: groups are expected to hold a handful of consumers.
#[derive(Debug)]
pub struct SharedGroup<K, V> {
    members: Vec<(K, V)>,
    cursor: AtomicUsize,
    /// The plain filter the group shares (a group is named by group name and filter).
    filter: Box<str>,
}

impl<K, V> Default for SharedGroup<K, V> {
    fn default() -> Self {
        SharedGroup { members: Vec::new(), cursor: AtomicUsize::new(0), filter: Box::from("") }
    }
}

impl<K: Eq, V> SharedGroup<K, V> {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty group sharing `filter`.
    pub fn for_filter(filter: &str) -> Self {
        SharedGroup { filter: Box::from(filter), ..Self::default() }
    }

    /// The plain filter this group shares.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// Adds a member, or replaces the value of an existing one in place (returning the old value).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.members.push((key, value));
                None
            }
        }
    }

    /// Removes a member, keeping the rotation order of the others.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let index = self.members.iter().position(|(k, _)| k == key)?;
        let old_len = self.members.len();
        let (_, value) = self.members.remove(index);
        let cursor = self.cursor.get_mut();
        let next = *cursor % old_len;
        // Members after the removed one shift down by one; keep pointing at the same next member.
        *cursor = if index < next { next - 1 } else { next };
        Some(value)
    }

    /// The value of one member.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Chooses the member that receives the next message: starting at the cursor, each member is
    /// offered to `accept` at most once (it returns false for a member that is disconnected or
    /// whose queue is full, so delivery falls over to the next one). The cursor moves past the
    /// chosen member. Returns `None` when no member accepts.
    pub fn pick(&self, mut accept: impl FnMut(&K, &V) -> bool) -> Option<(&K, &V)> {
        let len = self.members.len();
        if len == 0 {
            return None;
        }
        // Claiming the start slot with fetch_add gives concurrent publishers different members.
        let start = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
        for skipped in 0..len {
            let Some((key, value)) = self.members.get((start + skipped) % len) else {
                continue;
            };
            if accept(key, value) {
                if skipped > 0 {
                    self.cursor.fetch_add(skipped, Ordering::Relaxed);
                }
                return Some((key, value));
            }
        }
        None
    }

    /// Members in insertion order.
    pub fn members(&self) -> impl ExactSizeIterator<Item = (&K, &V)> + '_ {
        self.members.iter().map(|(k, v)| (k, v))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the group has no members (the owner drops empty groups).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(keys: &[&'static str]) -> SharedGroup<&'static str, u32> {
        let mut g = SharedGroup::new();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(g.insert(*k, i as u32), None);
        }
        g
    }

    fn picks(g: &SharedGroup<&'static str, u32>, n: usize, down: &[&str]) -> Vec<&'static str> {
        (0..n).filter_map(|_| g.pick(|k, _| !down.contains(k)).map(|(k, _)| *k)).collect()
    }

    #[test]
    fn round_robin_in_insertion_order() {
        let g = group(&["a", "b", "c"]);
        assert_eq!(picks(&g, 7, &[]), ["a", "b", "c", "a", "b", "c", "a"]);
        let members: Vec<_> = g.members().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(members, [("a", 0), ("b", 1), ("c", 2)]);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn falls_over_to_the_next_accepting_member() {
        let g = group(&["a", "b", "c"]);
        assert_eq!(picks(&g, 1, &[]), ["a"]);
        // b is refused; c gets it and the cursor moves past c, not past b.
        assert_eq!(picks(&g, 3, &["b"]), ["c", "a", "c"]);
        assert_eq!(picks(&g, 3, &[]), ["a", "b", "c"]);
    }

    #[test]
    fn each_member_is_offered_once_when_none_accepts() {
        let g = group(&["a", "b", "c"]);
        let mut offered = Vec::new();
        assert_eq!(
            g.pick(|k, _| {
                offered.push(*k);
                false
            }),
            None
        );
        assert_eq!(offered, ["a", "b", "c"]);
        assert_eq!(SharedGroup::<u8, u8>::new().pick(|_, _| true), None);
    }

    #[test]
    fn resubscribe_replaces_value_and_keeps_position() {
        let mut g = group(&["a", "b"]);
        assert_eq!(g.insert("a", 10), Some(0));
        assert_eq!(g.len(), 2);
        assert_eq!(g.get(&"a"), Some(&10));
        assert_eq!(picks(&g, 2, &[]), ["a", "b"]);
    }

    #[test]
    fn removal_keeps_the_rotation_fair() {
        let mut g = group(&["a", "b", "c", "d"]);
        assert_eq!(picks(&g, 2, &[]), ["a", "b"]);
        // The next member is c; removing a (before it) must not skip c.
        assert_eq!(g.remove(&"a"), Some(0));
        assert_eq!(picks(&g, 3, &[]), ["c", "d", "b"]);
        // The next member is c again; removing it hands the turn to d.
        assert_eq!(g.remove(&"c"), Some(2));
        assert_eq!(picks(&g, 2, &[]), ["d", "b"]);
        assert_eq!(g.remove(&"zz"), None);
        assert_eq!(g.remove(&"b"), Some(1));
        assert_eq!(g.remove(&"d"), Some(3));
        assert!(g.is_empty());
        assert_eq!(g.pick(|_, _| true), None);
    }
}
