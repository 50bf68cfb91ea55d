//! What a change of the shard set moves: the owners of a set of client ids on the ring of one
//! configuration and of another (`fleetmq plan-shards`), so an operator sees how many sessions
//! a membership change hands over before making it.
//!
//! Invariant: computed with the same ring the nodes use ([`ShardRing`], shards not leaving), so
//! what it reports is what the nodes will do.

use super::ring::ShardRing;
use fleetmq_core::config::ClusterConfig;
use std::collections::BTreeMap;
use std::fmt;

/// Owners of client ids before and after a membership change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub total: usize,
    /// Ids whose owner changes.
    pub moved: usize,
    /// Ids per shard before and after.
    pub before: BTreeMap<String, usize>,
    pub after: BTreeMap<String, usize>,
    /// Moves per (from, to) shard pair.
    pub flows: BTreeMap<(String, String), usize>,
}

/// Owners of `ids` under `from` and under `to`.
pub fn plan<I: AsRef<str>>(from: &ClusterConfig, to: &ClusterConfig, ids: impl IntoIterator<Item = I>) -> Plan {
    let old = ShardRing::new(from.ring_shards(), from.vnodes);
    let new = ShardRing::new(to.ring_shards(), to.vnodes);
    let mut p = Plan::default();
    for id in ids {
        let id = id.as_ref();
        let (Some(a), Some(b)) = (old.owner(id), new.owner(id)) else { continue };
        p.total += 1;
        *p.before.entry(a.to_string()).or_default() += 1;
        *p.after.entry(b.to_string()).or_default() += 1;
        if a != b {
            p.moved += 1;
            *p.flows.entry((a.to_string(), b.to_string())).or_default() += 1;
        }
    }
    p
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = if self.total == 0 { 0.0 } else { 100.0 * self.moved as f64 / self.total as f64 };
        writeln!(f, "moved {} of {} client ids ({pct:.1}%)", self.moved, self.total)?;
        let shards: std::collections::BTreeSet<&String> = self.before.keys().chain(self.after.keys()).collect();
        for s in shards {
            let (b, a) = (self.before.get(s).unwrap_or(&0), self.after.get(s).unwrap_or(&0));
            writeln!(f, "  {s}: {b} -> {a}")?;
        }
        for ((from, to), n) in &self.flows {
            writeln!(f, "  {from} => {to}: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetmq_core::config::Config;

    fn cluster(shards: &str) -> ClusterConfig {
        let mut text = String::from("[node]\nid = \"shard-1\"\nrole = \"shard\"\n[storage]\nengine = \"memory\"\n");
        for (i, s) in shards.split(',').enumerate() {
            let leaving = s.ends_with('-');
            let id = s.trim_end_matches('-');
            text.push_str(&format!("[[cluster.shard]]\nid = \"{id}\"\naddr = \"127.0.0.1:{}\"\n", 7000 + i));
            if leaving {
                text.push_str("leaving = true\n");
            }
        }
        Config::parse(&text).unwrap().cluster
    }

    #[test]
    fn adding_a_shard_moves_about_a_quarter_only_to_it() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("device-{i}")).collect();
        let p = plan(&cluster("shard-1,shard-2,shard-3"), &cluster("shard-1,shard-2,shard-3,shard-4"), &ids);
        assert_eq!(p.total, 10_000);
        assert!(p.moved > 1_500 && p.moved <= 3_000, "moved {}", p.moved);
        assert!(p.flows.keys().all(|(_, to)| to == "shard-4"), "{p}");
        assert_eq!(p.after["shard-4"], p.moved);
    }

    #[test]
    fn a_leaving_shard_gives_everything_away_and_nothing_else_moves() {
        let ids: Vec<String> = (0..5_000).map(|i| format!("sensor-{i}")).collect();
        let p = plan(&cluster("shard-1,shard-2,shard-3"), &cluster("shard-1,shard-2,shard-3-"), &ids);
        assert_eq!(p.moved, p.before["shard-3"]);
        assert!(p.flows.keys().all(|(from, _)| from == "shard-3"), "{p}");
        assert!(!p.after.contains_key("shard-3"));
        assert!(p.to_string().starts_with(&format!("moved {} of 5000 client ids", p.moved)));
    }
}
