//! The retained-message index: one value per exact topic name, stored in a topic-level trie so a
//! wildcard subscription visits only the branches its filter can match instead of every retained
//! topic.
//!
//! Invariants:
//! - a node holds a value only for the exact topic spelled by its path; the root never holds one
//!   (a topic name has at least one level, possibly empty);
//! - a node with no value and no children never stays in the trie (removal prunes it);
//! - not synchronised: the owner wraps the index in its own lock;
//! - recursion depth of a walk is bounded by the trie depth, i.e. by the level limit the caller
//!   validated retained topic names against.

mod children;

use children::Children;

#[derive(Debug)]
struct Node<V> {
    value: Option<V>,
    children: Children<Node<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node { value: None, children: Children::default() }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.children.is_empty()
    }

    fn remove<'t>(&mut self, mut levels: std::str::Split<'t, char>) -> Option<V> {
        let Some(level) = levels.next() else {
            return self.value.take();
        };
        let child = self.children.get_mut(level)?;
        let removed = child.remove(levels);
        if child.is_empty() {
            self.children.remove(level);
        }
        removed
    }

    /// Reports the values below this node (whose topic is `path`, at `depth` levels) matching the
    /// remaining filter levels `rest` (`None` once all are consumed).
    fn walk(&self, rest: Option<&str>, depth: usize, path: &mut String, f: &mut impl FnMut(&str, &V)) {
        let Some(rest) = rest else {
            if let Some(value) = &self.value {
                f(path, value);
            }
            return;
        };
        let (level, next) = match rest.split_once('/') {
            Some((level, next)) => (level, Some(next)),
            None => (rest, None),
        };
        match level {
            "#" if next.is_none() => {
                // `#` matches the parent level (this node) and everything below it.
                if let Some(value) = &self.value {
                    f(path, value);
                }
                self.each_child(depth, path, |child, path| child.walk_all(depth + 1, path, f));
            }
            "+" => self.each_child(depth, path, |child, path| child.walk(next, depth + 1, path, f)),
            literal => {
                if let Some(child) = self.children.get(literal) {
                    let len = path.len();
                    push_level(path, depth, literal);
                    child.walk(next, depth + 1, path, f);
                    path.truncate(len);
                }
            }
        }
    }

    /// Reports every value in this subtree.
    fn walk_all(&self, depth: usize, path: &mut String, f: &mut impl FnMut(&str, &V)) {
        if let Some(value) = &self.value {
            f(path, value);
        }
        self.each_child(depth, path, |child, path| child.walk_all(depth + 1, path, f));
    }

    /// Calls `visit` on each child a wildcard at this depth may enter, with `path` extended by the
    /// child's level. At the root, `$` levels are skipped: wildcards never match `$` topics there.
    fn each_child(&self, depth: usize, path: &mut String, mut visit: impl FnMut(&Node<V>, &mut String)) {
        for (level, child) in self.children.iter() {
            if depth == 0 && level.starts_with('$') {
                continue;
            }
            let len = path.len();
            push_level(path, depth, level);
            visit(child, path);
            path.truncate(len);
        }
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        1 + self.children.iter().map(|(_, n)| n.node_count()).sum::<usize>()
    }
}

fn push_level(path: &mut String, depth: usize, level: &str) {
    if depth > 0 {
        path.push('/');
    }
    path.push_str(level);
}

/// Retained messages by exact topic name.
#[derive(Debug)]
pub struct RetainedIndex<V> {
    root: Node<V>,
    len: usize,
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        RetainedIndex { root: Node::default(), len: 0 }
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the value retained on `topic`, returning the one it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_or_insert(level);
        }
        let replaced = node.value.replace(value);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes the value retained on `topic` and prunes the nodes left without values.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let removed = self.root.remove(topic.split('/'));
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// The value retained on exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Calls `f(topic, value)` for every retained topic matched by the plain filter `filter`
    /// (share prefix stripped), honouring the `$` rule: a first-level `+` or `#` does not match
    /// `$` topics. Only branches the filter can reach are visited.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let mut path = String::new();
        self.root.walk(Some(filter), 0, &mut path, &mut f);
    }

    /// Number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every retained (topic, value), in no particular order, for persistence and expiry sweeps.
    pub fn iter(&self) -> Iter<'_, V> {
        Iter { stack: self.root.children.iter().map(|(level, child)| (level.to_owned(), child)).collect() }
    }

    #[cfg(test)]
    pub(crate) fn node_count(&self) -> usize {
        self.root.node_count()
    }
}

/// Iterator over all retained values with their topic names; see [`RetainedIndex::iter`].
#[derive(Debug)]
pub struct Iter<'a, V> {
    /// Nodes still to visit (never the root), with their topic names.
    stack: Vec<(String, &'a Node<V>)>,
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (String, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((path, node)) = self.stack.pop() {
            for (level, child) in node.children.iter() {
                self.stack.push((format!("{path}/{level}"), child));
            }
            if let Some(value) = &node.value {
                return Some((path, value));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
