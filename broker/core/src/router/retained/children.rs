//! The children of one retained-trie node, kept compact: most topic levels have one child or a
//! handful (`fleet/17/device/42/state` has one child per level below the device id), and a hash
//! map per node cost ~500 bytes each, so a million retained topics cost the trie more than the
//! messages. Up to [`FEW`] children live in a vector searched linearly; wider levels (device ids)
//! switch to a boxed hash map and back when they shrink.
//!
//! Invariants: a level appears at most once; the vector form never holds more than [`FEW`]
//! entries; level names are stored once, as `Box<str>`.

use std::collections::HashMap;

/// Children searched linearly at most.
pub const FEW: usize = 8;

/// A node's children by level name.
#[derive(Debug)]
pub enum Children<N> {
    Few(Vec<(Box<str>, N)>),
    /// Boxed so every node (most of them leaves) carries a 24-byte vector, not a 48-byte map.
    #[allow(clippy::box_collection)]
    Many(Box<HashMap<Box<str>, N>>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl<N: Default> Children<N> {
    /// The child for `level`, created empty if missing.
    pub fn get_or_insert(&mut self, level: &str) -> &mut N {
        if let Children::Few(v) = self {
            if v.len() >= FEW && !v.iter().any(|(l, _)| &**l == level) {
                let map: HashMap<Box<str>, N> = v.drain(..).collect();
                *self = Children::Many(Box::new(map));
            }
        }
        match self {
            Children::Few(v) => {
                let i = match v.iter().position(|(l, _)| &**l == level) {
                    Some(i) => i,
                    None => {
                        if v.capacity() == 0 {
                            v.reserve_exact(1);
                        }
                        v.push((level.into(), N::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            Children::Many(m) => m.entry(level.into()).or_default(),
        }
    }
}

impl<N> Children<N> {
    pub fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Few(v) => v.iter().find(|(l, _)| &**l == level).map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    pub fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(l, _)| &**l == level).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    /// Removes the child for `level`; a map that shrank to a few children becomes a vector again.
    pub fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => {
                if let Some(i) = v.iter().position(|(l, _)| &**l == level) {
                    v.swap_remove(i);
                    if v.is_empty() {
                        *v = Vec::new();
                    }
                }
            }
            Children::Many(m) => {
                m.remove(level);
                if m.len() <= FEW / 2 {
                    let v: Vec<(Box<str>, N)> = m.drain().collect();
                    *self = Children::Few(v);
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    /// Every (level, child), in no particular order.
    /// Not boxed: wildcard walks and sweeps call this for every node they visit.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &N)> + '_ {
        let (few, many) = match self {
            Children::Few(v) => (Some(v), None),
            Children::Many(m) => (None, Some(m)),
        };
        let few = few.into_iter().flatten().map(|(l, n)| (&**l, n));
        few.chain(many.into_iter().flat_map(|m| m.iter()).map(|(l, n)| (&**l, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_into_a_map_and_shrinks_back_keeping_every_child() {
        let mut c: Children<u32> = Children::default();
        for i in 0..20u32 {
            *c.get_or_insert(&i.to_string()) = i;
        }
        assert!(matches!(c, Children::Many(_)));
        assert_eq!(c.len(), 20);
        *c.get_or_insert("3") += 100;
        assert_eq!(c.len(), 20, "an existing level is not added twice");
        assert_eq!(c.get("3"), Some(&103));
        for i in 4..20u32 {
            c.remove(&i.to_string());
        }
        assert!(matches!(c, Children::Few(_)));
        let mut left: Vec<(String, u32)> = c.iter().map(|(l, n)| (l.to_string(), *n)).collect();
        left.sort();
        assert_eq!(left, [("0".into(), 0), ("1".into(), 1), ("2".into(), 2), ("3".into(), 103)]);
        for i in 0..4u32 {
            c.remove(&i.to_string());
        }
        assert!(c.is_empty());
        assert_eq!(c.get("0"), None);
    }

    #[test]
    fn the_vector_form_holds_at_most_few_children() {
        let mut c: Children<()> = Children::default();
        for i in 0..FEW {
            c.get_or_insert(&i.to_string());
        }
        assert!(matches!(&c, Children::Few(v) if v.len() == FEW));
        c.get_or_insert("0");
        assert!(matches!(c, Children::Few(_)), "existing level: no switch");
        c.get_or_insert("new");
        assert!(matches!(c, Children::Many(_)));
    }
}
