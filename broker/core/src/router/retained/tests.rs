//! Tests of the retained-message index: exact lookups, wildcard walks, the `$` rule and pruning.

use super::*;
use crate::topic;

const TOPICS: &[&str] = &[
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player2",
    "sport/chess/player1",
    "/",
    "/finance",
    "finance",
    "$SYS",
    "$SYS/broker/load",
    "$SYS/monitor/Clients",
    "a//b",
];

fn index() -> RetainedIndex<usize> {
    let mut index = RetainedIndex::new();
    for (i, topic) in TOPICS.iter().enumerate() {
        assert_eq!(index.insert(topic, i), None);
    }
    index
}

fn matched(index: &RetainedIndex<usize>, filter: &str) -> Vec<String> {
    let mut out = Vec::new();
    index.for_each_match(filter, |topic, value| {
        assert_eq!(TOPICS.get(*value), Some(&topic), "reconstructed topic of value {value}");
        out.push(topic.to_owned());
    });
    out.sort();
    out
}

fn sorted(topics: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn exact_lookup_and_replace() {
    let mut index = index();
    assert_eq!(index.len(), TOPICS.len());
    assert_eq!(index.get("sport/tennis"), Some(&2));
    assert_eq!(index.get("/"), Some(&7));
    assert_eq!(index.get("sport/tennis/player3"), None);
    assert_eq!(index.get("sport/chess"), None);
    assert_eq!(index.insert("sport/tennis", 99), Some(2));
    assert_eq!(index.get("sport/tennis"), Some(&99));
    assert_eq!(index.len(), TOPICS.len());
}

#[test]
fn multi_level_wildcard_matches_the_parent_level() {
    let index = index();
    assert_eq!(
        matched(&index, "sport/tennis/#"),
        sorted(&["sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player2"])
    );
    assert_eq!(
        matched(&index, "sport/#"),
        sorted(&[
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player2",
            "sport/chess/player1",
        ])
    );
}

#[test]
fn single_level_wildcard_matches_empty_levels() {
    let index = index();
    assert_eq!(matched(&index, "sport/+"), sorted(&["sport/", "sport/tennis"]));
    assert_eq!(matched(&index, "+/+"), sorted(&["sport/", "sport/tennis", "/", "/finance"]));
    assert_eq!(matched(&index, "/+"), sorted(&["/", "/finance"]));
    assert_eq!(matched(&index, "a/+/b"), sorted(&["a//b"]));
    assert_eq!(matched(&index, "sport/+/player1"), sorted(&["sport/tennis/player1", "sport/chess/player1"]));
    assert_eq!(matched(&index, "+"), sorted(&["sport", "finance"]));
}

#[test]
fn wildcards_at_the_first_level_skip_dollar_topics() {
    let index = index();
    let all: Vec<&str> = TOPICS.iter().copied().filter(|t| !t.starts_with('$')).collect();
    assert_eq!(matched(&index, "#"), sorted(&all));
    assert!(matched(&index, "+/monitor/Clients").is_empty());
    assert!(matched(&index, "+/broker/+").is_empty());
    assert_eq!(matched(&index, "$SYS/#"), sorted(&["$SYS", "$SYS/broker/load", "$SYS/monitor/Clients"]));
    assert_eq!(matched(&index, "$SYS/+/+"), sorted(&["$SYS/broker/load", "$SYS/monitor/Clients"]));
}

#[test]
fn exact_filters_and_misses() {
    let index = index();
    assert_eq!(matched(&index, "sport/tennis"), sorted(&["sport/tennis"]));
    assert!(matched(&index, "sport/tennis/player3").is_empty());
    assert!(matched(&index, "nothing/#").is_empty());
    assert!(matched(&index, "sport/chess").is_empty());
}

#[test]
fn wildcard_walks_agree_with_topic_matches() {
    let index = index();
    for filter in ["#", "+", "+/+", "+/#", "sport/+/#", "/#", "+/+/+", "$SYS/#", "+/tennis/+", "a/#", "//#"] {
        let want: Vec<&str> = TOPICS.iter().copied().filter(|t| topic::matches(filter, t)).collect();
        assert_eq!(matched(&index, filter), sorted(&want), "filter {filter}");
    }
}

#[test]
fn iter_yields_every_topic() {
    let index = index();
    let mut all: Vec<(String, usize)> = index.iter().map(|(t, v)| (t, *v)).collect();
    all.sort_by_key(|(_, v)| *v);
    let want: Vec<(String, usize)> = TOPICS.iter().enumerate().map(|(i, t)| (t.to_string(), i)).collect();
    assert_eq!(all, want);
    assert_eq!(RetainedIndex::<u8>::new().iter().count(), 0);
}

#[test]
fn remove_prunes_back_to_the_root() {
    let mut index = index();
    assert_eq!(index.remove("sport/tennis/player3"), None);
    assert_eq!(index.remove("sport/chess"), None);
    assert_eq!(index.len(), TOPICS.len());
    assert_eq!(index.remove("sport/tennis"), Some(2));
    assert_eq!(index.get("sport/tennis"), None);
    assert_eq!(index.get("sport/tennis/player1"), Some(&3), "children survive their parent's removal");
    for (i, topic) in TOPICS.iter().enumerate().rev() {
        if i != 2 {
            assert_eq!(index.remove(topic), Some(i), "{topic}");
        }
    }
    assert!(index.is_empty());
    assert_eq!(index.node_count(), 1);
    assert!(matched(&index, "#").is_empty());
}

#[test]
fn churn_does_not_leak_nodes() {
    let mut index = RetainedIndex::new();
    for i in 0..2_000u32 {
        let topic = format!("fleet/{}/dev{}/{}", i % 7, i, i % 3);
        index.insert(&topic, i);
        if i >= 10 {
            let old = i - 10;
            assert_eq!(index.remove(&format!("fleet/{}/dev{}/{}", old % 7, old, old % 3)), Some(old));
        }
    }
    assert_eq!(index.len(), 10);
    // Root, "fleet", its 7 branches, and 10 live devices with one leaf each.
    assert_eq!(index.node_count(), 1 + 1 + 7 + 10 * 2);
}
