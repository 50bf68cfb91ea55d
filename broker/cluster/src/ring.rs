//! The consistent-hash ring that maps a client id to the shard owning its session.
//!
//! Invariant: the owner depends only on the shard ids, `vnodes` and the client id's bytes — never
//! on Rust's `Hash` impls, the std hasher, the process or the build. Keys and ring points are
//! SipHash-1-3 (fixed keys) of explicit bytes; [`hashring`] sees only those `u64`s, fed through a
//! hasher that passes them on unchanged. The test vectors below pin the result.

use siphasher::sip::SipHasher13;
use std::hash::{BuildHasher, Hash, Hasher};

/// Fixed SipHash keys: changing them moves every session, so they never change.
const K0: u64 = 0x666c_6565_746d_7121; // "fleetmq!"
const K1: u64 = 0x7368_6172_6472_696e; // "shardrin"

/// SipHash-1-3 of `bytes` with FleetMQ's fixed keys: the one hash the cluster agrees on.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_keys(K0, K1);
    h.write(bytes);
    h.finish()
}

/// A position on the ring, already hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point(u64);

impl Hash for Point {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// One of a shard's points on the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VNode {
    point: u64,
    /// Index into [`ShardRing::shards`].
    shard: usize,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.point);
    }
}

/// Hands the ring the `u64` a [`Point`] or [`VNode`] carries, unchanged.
#[derive(Debug, Clone, Copy, Default)]
struct PassThrough;

#[derive(Debug, Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by the types above; anything else still hashes stably.
        self.0 = stable_hash(bytes) ^ self.0.rotate_left(17);
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// The shards on the ring, each with `vnodes` points at `stable_hash("<shard id>#<n>")`.
pub struct ShardRing {
    ring: hashring::HashRing<VNode, PassThrough>,
    shards: Vec<String>,
}

impl ShardRing {
    /// Builds the ring; the order of `shards` does not matter.
    pub fn new<'a>(shards: impl IntoIterator<Item = &'a str>, vnodes: u32) -> ShardRing {
        let mut shards: Vec<String> = shards.into_iter().map(str::to_string).collect();
        shards.sort();
        shards.dedup();
        let mut ring = hashring::HashRing::with_hasher(PassThrough);
        let mut points = Vec::with_capacity(shards.len() * vnodes as usize);
        for (index, id) in shards.iter().enumerate() {
            for n in 0..vnodes {
                points.push(VNode { point: stable_hash(format!("{id}#{n}").as_bytes()), shard: index });
            }
        }
        ring.batch_add(points);
        ShardRing { ring, shards }
    }

    /// The shard owning `client_id`.
    pub fn owner(&self, client_id: &str) -> Option<&str> {
        let v = self.ring.get(&Point(stable_hash(client_id.as_bytes())))?;
        Some(&self.shards[v.shard])
    }

    /// Every shard in ring order starting at the owner of `client_id`, each once: the candidates
    /// when the owner is unreachable (`on_shard_loss = "next_shard"`).
    pub fn successors(&self, client_id: &str) -> Vec<&str> {
        let all = self.ring.get_with_replicas(&Point(stable_hash(client_id.as_bytes())), self.ring.len());
        let mut seen = vec![false; self.shards.len()];
        let mut out = Vec::with_capacity(self.shards.len());
        for v in all.unwrap_or_default() {
            if !std::mem::replace(&mut seen[v.shard], true) {
                out.push(self.shards[v.shard].as_str());
            }
        }
        out
    }

    /// The shard ids on the ring, sorted.
    pub fn shards(&self) -> &[String] {
        &self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_test_vectors() {
        // Pinned: a change here moves sessions between shards on upgrade. Cross-checked with an
        // independent SipHash-1-3 (itself checked against CPython's `hash` with a zero key).
        assert_eq!(stable_hash(b""), 0xa1fd_fee5_0654_d31a);
        assert_eq!(stable_hash(b"device-1"), 0x6c94_affb_2bc2_c95c);
        assert_eq!(stable_hash(b"shard-1#0"), 0x83dd_e687_d1f1_03aa);
    }

    #[test]
    fn owner_test_vectors() {
        let ring = ShardRing::new(["shard-1", "shard-2", "shard-3"], 256);
        let owners: Vec<&str> = ["device-1", "device-2", "device-3", "sensor/42", "", "ünïcode"]
            .iter()
            .map(|c| ring.owner(c).unwrap())
            .collect();
        assert_eq!(owners, ["shard-2", "shard-1", "shard-3", "shard-1", "shard-1", "shard-1"]);
    }

    #[test]
    fn member_order_does_not_matter() {
        let a = ShardRing::new(["s1", "s2", "s3"], 64);
        let b = ShardRing::new(["s3", "s1", "s2"], 64);
        for i in 0..1000 {
            let id = format!("client-{i}");
            assert_eq!(a.owner(&id), b.owner(&id));
        }
    }

    #[test]
    fn spread_is_even_and_adding_a_shard_moves_about_a_quarter() {
        let three = ShardRing::new(["shard-1", "shard-2", "shard-3"], 256);
        let four = ShardRing::new(["shard-1", "shard-2", "shard-3", "shard-4"], 256);
        let n = 10_000;
        let mut per_shard = std::collections::HashMap::new();
        let mut moved = 0;
        for i in 0..n {
            let id = format!("device-{i:06}");
            let before = three.owner(&id).unwrap();
            let after = four.owner(&id).unwrap();
            *per_shard.entry(before).or_insert(0) += 1;
            if before != after {
                // Only sessions that move to the new shard move at all.
                assert_eq!(after, "shard-4", "{id} moved between old shards");
                moved += 1;
            }
        }
        for (shard, count) in per_shard {
            assert!((2_800..=3_900).contains(&count), "{shard} owns {count} of {n}");
        }
        assert!(moved <= n / 4 + n / 20, "{moved} of {n} moved");
        assert!(moved >= n / 4 - n / 20, "{moved} of {n} moved");
    }

    #[test]
    fn successors_start_at_the_owner_and_list_each_shard_once() {
        let ring = ShardRing::new(["a", "b", "c"], 16);
        for i in 0..100 {
            let id = format!("c{i}");
            let s = ring.successors(&id);
            assert_eq!(s.len(), 3);
            assert_eq!(Some(s[0]), ring.owner(&id));
            let mut sorted = s.clone();
            sorted.sort();
            assert_eq!(sorted, vec!["a", "b", "c"]);
        }
    }
}
