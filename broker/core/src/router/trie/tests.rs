//! Tests of the subscription trie against the MQTT §4.7 matching rules and the pruning invariant.

use super::*;
use crate::topic;

type Trie = SubscriptionTrie<String, u32>;

/// Matches as sorted strings: `key=value` for direct ones, `group:member,member` for shared ones.
fn matched(trie: &Trie, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |m| match m {
        Match::Direct { key, value } => out.push(format!("{key}={value}")),
        Match::Shared { group, members } => {
            let names: Vec<&str> = members.members().map(|(k, _)| k.as_str()).collect();
            out.push(format!("{group}:{}", names.join(",")));
        }
    });
    out.sort();
    out
}

fn trie_of(filters: &[&str]) -> Trie {
    let mut trie = Trie::new();
    for (i, filter) in filters.iter().enumerate() {
        assert_eq!(trie.insert(filter, None, (*filter).to_owned(), i as u32), None);
    }
    trie
}

/// Filters matched for `topic`, from a trie where each filter is subscribed by a key equal to it.
fn filters_matching(trie: &Trie, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    trie.for_each_match(topic, |m| {
        if let Match::Direct { key, .. } = m {
            out.push(key.clone());
        }
    });
    out.sort();
    out
}

#[test]
fn spec_examples() {
    let trie = trie_of(&[
        "sport/tennis/player1/#",
        "sport/#",
        "sport/tennis/+",
        "sport/+",
        "+",
        "+/+",
        "/+",
        "#",
        "/finance",
        "$SYS/#",
        "$SYS/monitor/+",
        "+/monitor/Clients",
    ]);
    assert_eq!(trie.len(), 12);
    let expect = |topic: &str, filters: &[&str]| {
        let mut want: Vec<String> = filters.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(filters_matching(&trie, topic), want, "topic {topic}");
    };
    expect("sport/tennis/player1", &["sport/tennis/player1/#", "sport/#", "sport/tennis/+", "#"]);
    expect("sport/tennis/player1/ranking", &["sport/tennis/player1/#", "sport/#", "#"]);
    expect("sport/tennis/player1/score/wimbledon", &["sport/tennis/player1/#", "sport/#", "#"]);
    expect("sport", &["sport/#", "+", "#"]);
    expect("sport/", &["sport/#", "sport/+", "+/+", "#"]);
    expect("/finance", &["+/+", "/+", "/finance", "#"]);
    expect("finance", &["+", "#"]);
    expect("$SYS/monitor/Clients", &["$SYS/#", "$SYS/monitor/+"]);
    expect("$SYS", &["$SYS/#"]);
    expect("$other", &[]);
    expect("a/monitor/Clients", &["+/monitor/Clients", "#"]);
}

#[test]
fn matches_agree_with_topic_matches_on_random_input() {
    let mut rng = Lcg(7);
    let words = ["a", "b", "", "$x", "+", "#"];
    let mut filters = Vec::new();
    for _ in 0..300 {
        let levels = 1 + rng.below(4);
        let mut parts: Vec<&str> = (0..levels).map(|_| words[rng.below(words.len())]).collect();
        // Make it a valid filter: `#` only last.
        for i in 0..parts.len().saturating_sub(1) {
            if parts[i] == "#" {
                parts[i] = "+";
            }
        }
        let filter = parts.join("/");
        if !filter.is_empty() && !filters.contains(&filter) {
            filters.push(filter);
        }
    }
    let refs: Vec<&str> = filters.iter().map(String::as_str).collect();
    let trie = trie_of(&refs);
    for _ in 0..300 {
        let levels = 1 + rng.below(5);
        let topic = (0..levels).map(|_| words[rng.below(4)]).collect::<Vec<_>>().join("/");
        if topic.is_empty() {
            continue;
        }
        let mut want: Vec<String> = filters.iter().filter(|f| topic::matches(f, &topic)).cloned().collect();
        want.sort();
        assert_eq!(filters_matching(&trie, &topic), want, "topic {topic:?}");
    }
}

#[test]
fn resubscribe_replaces_and_len_counts_subscriptions() {
    let mut trie = Trie::new();
    assert!(trie.is_empty());
    assert_eq!(trie.insert("a/+", None, "c1".into(), 1), None);
    assert_eq!(trie.insert("a/+", None, "c1".into(), 2), Some(1));
    assert_eq!(trie.insert("a/+", None, "c2".into(), 3), None);
    assert_eq!(trie.insert("a/+", Some("g"), "c1".into(), 4), None);
    assert_eq!(trie.insert("a/+", Some("g"), "c1".into(), 5), Some(4));
    assert_eq!(trie.insert("a/+", Some("g"), "c3".into(), 6), None);
    assert_eq!(trie.len(), 4);
    assert_eq!(matched(&trie, "a/x"), ["c1=2", "c2=3", "g:c1,c3"]);
    assert!(!trie.is_empty());
}

#[test]
fn overlapping_filters_report_the_same_key_once_per_filter() {
    let mut trie = Trie::new();
    trie.insert("a/#", None, "c1".into(), 1);
    trie.insert("a/+", None, "c1".into(), 2);
    trie.insert("a/b", None, "c1".into(), 3);
    trie.insert("a/c", None, "c1".into(), 4);
    assert_eq!(matched(&trie, "a/b"), ["c1=1", "c1=2", "c1=3"]);
}

#[test]
fn shared_groups_are_per_filter_and_name() {
    let mut trie = Trie::new();
    trie.insert("jobs/+", Some("workers"), "w1".into(), 1);
    trie.insert("jobs/+", Some("workers"), "w2".into(), 2);
    trie.insert("jobs/#", Some("workers"), "w3".into(), 3);
    trie.insert("jobs/+", Some("audit"), "a1".into(), 4);
    trie.insert("jobs/+", None, "w1".into(), 5);
    assert_eq!(matched(&trie, "jobs/1"), ["audit:a1", "w1=5", "workers:w1,w2", "workers:w3"]);
    assert_eq!(trie.remove("jobs/+", Some("workers"), &"w1".to_owned()), Some(1));
    assert_eq!(trie.remove("jobs/+", Some("workers"), &"w1".to_owned()), None);
    assert_eq!(matched(&trie, "jobs/1"), ["audit:a1", "w1=5", "workers:w2", "workers:w3"]);
    assert_eq!(trie.remove("jobs/+", Some("workers"), &"w2".to_owned()), Some(2));
    assert_eq!(matched(&trie, "jobs/1"), ["audit:a1", "w1=5", "workers:w3"]);
    assert_eq!(trie.len(), 3);
}

#[test]
fn shared_wildcards_honour_the_dollar_rule() {
    let mut trie = Trie::new();
    trie.insert("#", Some("g"), "c".into(), 1);
    trie.insert("+/x", Some("g"), "c".into(), 2);
    assert!(matched(&trie, "$SYS/x").is_empty());
    assert_eq!(matched(&trie, "a/x"), ["g:c", "g:c"]);
}

#[test]
fn remove_returns_the_value_and_ignores_missing_entries() {
    let mut trie = trie_of(&["a/b", "a/#"]);
    let nodes = trie.node_count();
    assert_eq!(trie.remove("a/b", None, &"other".to_owned()), None);
    assert_eq!(trie.remove("a/b/c", None, &"a/b".to_owned()), None);
    assert_eq!(trie.remove("x/+/#", None, &"a/b".to_owned()), None);
    assert_eq!(trie.remove("a/b", Some("g"), &"a/b".to_owned()), None);
    assert_eq!(trie.node_count(), nodes);
    assert_eq!(trie.remove("a/b", None, &"a/b".to_owned()), Some(0));
    assert_eq!(trie.remove("a/#", None, &"a/#".to_owned()), Some(1));
    assert_eq!(trie.node_count(), 1);
    assert!(trie.is_empty());
}

#[test]
fn misplaced_hash_is_a_literal_level() {
    let mut trie = Trie::new();
    trie.insert("a/#/b", None, "c".into(), 1);
    assert!(matched(&trie, "a/x/b").is_empty());
    assert!(matched(&trie, "a").is_empty());
    assert_eq!(trie.remove("a/#/b", None, &"c".to_owned()), Some(1));
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn churn_prunes_back_to_the_root() {
    let mut rng = Lcg(42);
    let words = ["a", "b", "c", "d", "", "+", "$s", "dev1", "dev2"];
    let mut trie = Trie::new();
    let mut subs = Vec::new();
    for i in 0..10_000u32 {
        let levels = 1 + rng.below(6);
        let mut filter = (0..levels).map(|_| words[rng.below(words.len())]).collect::<Vec<_>>().join("/");
        if rng.below(4) == 0 {
            filter.push_str("/#");
        }
        let group = match rng.below(5) {
            0 => Some("g1"),
            1 => Some("g2"),
            _ => None,
        };
        let key = format!("c{}", rng.below(50));
        trie.insert_tracked(&mut subs, filter, group, key, i);
    }
    assert_eq!(subs.len(), trie.len());
    assert_eq!(trie.root.subscription_count(), trie.len());
    assert!(trie.node_count() > 100);
    // Remove in a different order than inserted.
    while !subs.is_empty() {
        let (filter, group, key) = subs.swap_remove(rng.below(subs.len()));
        assert!(trie.remove(&filter, group, &key).is_some(), "{filter} {group:?} {key}");
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 1);
}

type Tracked = Vec<(String, Option<&'static str>, String)>;

impl Trie {
    /// Inserts and records the subscription unless it replaced an existing one.
    fn insert_tracked(&mut self, subs: &mut Tracked, filter: String, group: Option<&'static str>, key: String, v: u32) {
        if self.insert(&filter, group, key.clone(), v).is_none() {
            subs.push((filter, group, key));
        }
    }
}

/// A small deterministic generator so the tests need no extra dependency.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}
