//! Tests of the sharded subscription table, including concurrent use from several threads.

use super::*;
use crate::topic;

fn direct_keys(table: &SubscriptionTable<String, u32>, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    table.for_each_match(topic, |m| match m {
        Match::Direct { key, .. } => out.push(key.clone()),
        Match::Shared { group, members } => {
            for (key, _) in members.members() {
                out.push(format!("{group}:{key}"));
            }
        }
    });
    out.sort();
    out
}

#[test]
fn publishes_find_literal_wildcard_and_shared_subscriptions() {
    let table = SubscriptionTable::new(8);
    let filters = ["devices/+/state", "devices/#", "devices/d1/state", "#", "+/d1/+", "$SYS/#", "alerts", "/+", "+"];
    for filter in filters {
        assert_eq!(table.subscribe(filter, None, filter.to_owned(), 0), None);
    }
    assert_eq!(table.subscribe("devices/+/state", Some("workers"), "w1".to_owned(), 0), None);
    assert_eq!(table.subscribe("#", Some("all"), "w2".to_owned(), 0), None);
    assert_eq!(table.len(), filters.len() + 2);

    for topic in ["devices/d1/state", "devices/d2/state", "devices", "alerts", "$SYS/load", "/x", "other/d1/y", "$SYS"]
    {
        let mut want: Vec<String> =
            filters.iter().filter(|f| topic::matches(f, topic)).map(|f| f.to_string()).collect();
        if topic::matches("devices/+/state", topic) {
            want.push("workers:w1".to_owned());
        }
        if topic::matches("#", topic) {
            want.push("all:w2".to_owned());
        }
        want.sort();
        assert_eq!(direct_keys(&table, topic), want, "topic {topic}");
    }
}

#[test]
fn every_shard_count_routes_like_a_single_trie() {
    for shards in [0, 1, 2, 5, 16] {
        let table = SubscriptionTable::new(shards);
        let mut trie = SubscriptionTrie::new();
        for first in ["a", "b", "c", "d", "e", "f", "", "$x", "+", "#"] {
            for rest in ["", "/+", "/x", "/#"] {
                let filter = format!("{first}{rest}");
                if filter.is_empty() || (filter.starts_with('#') && !rest.is_empty()) {
                    continue;
                }
                table.subscribe(&filter, None, filter.clone(), 1u32);
                trie.insert(&filter, None, filter.clone(), 1u32);
            }
        }
        assert_eq!(table.len(), trie.len());
        for topic in ["a", "a/x", "b/y", "f", "/x", "$x", "$x/x", "z/x", "a/x/y"] {
            let mut want = Vec::new();
            trie.for_each_match(topic, |m| {
                if let Match::Direct { key, .. } = m {
                    want.push(key.clone());
                }
            });
            want.sort();
            assert_eq!(direct_keys(&table, topic), want, "{shards} shards, topic {topic}");
        }
    }
}

#[test]
fn len_follows_replace_and_unsubscribe() {
    let table = SubscriptionTable::new(4);
    assert!(table.is_empty());
    assert_eq!(table.subscribe("a/b", None, 1u8, "x"), None);
    assert_eq!(table.subscribe("a/b", None, 1u8, "y"), Some("x"));
    assert_eq!(table.subscribe("+/b", Some("g"), 1u8, "z"), None);
    assert_eq!(table.len(), 2);
    assert_eq!(table.unsubscribe("a/b", None, &2), None);
    assert_eq!(table.unsubscribe("+/b", None, &1), None);
    assert_eq!(table.unsubscribe("a/b", None, &1), Some("y"));
    assert_eq!(table.unsubscribe("+/b", Some("g"), &1), Some("z"));
    assert!(table.is_empty());
    let mut calls = 0;
    table.for_each_match("a/b", |_| calls += 1);
    assert_eq!(calls, 0);
}

#[test]
fn concurrent_subscribe_and_publish() {
    const ROUNDS: u32 = 2_000;
    let table = SubscriptionTable::new(4);
    table.subscribe("fleet/#", None, u32::MAX, 0u32);
    table.subscribe("+/status", None, u32::MAX - 1, 0u32);
    std::thread::scope(|scope| {
        for writer in 0..2u32 {
            let table = &table;
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let key = writer * ROUNDS + i;
                    let filter = format!("fleet/dev{}/status", i % 37);
                    assert_eq!(table.subscribe(&filter, None, key, i), None);
                    table.subscribe("+/status", Some("svc"), key, i);
                    if i % 2 == 0 {
                        assert_eq!(table.unsubscribe(&filter, None, &key), Some(i));
                        assert_eq!(table.unsubscribe("+/status", Some("svc"), &key), Some(i));
                    }
                }
            });
        }
        for reader in 0..2u32 {
            let table = &table;
            scope.spawn(move || {
                for i in 0..ROUNDS {
                    let topic = format!("fleet/dev{}/status", (i + reader) % 37);
                    let mut permanent = 0;
                    table.for_each_match(&topic, |m| {
                        if let Match::Direct { key, .. } = m {
                            if *key >= u32::MAX - 1 {
                                permanent += 1;
                            }
                        }
                    });
                    assert_eq!(permanent, 1, "fleet/# always matches; +/status never does");
                    let mut shared = 0;
                    table.for_each_match("node/status", |m| {
                        if let Match::Shared { members, .. } = m {
                            shared += usize::from(members.pick(|_, _| true).is_some());
                        }
                    });
                    assert!(shared <= 1);
                }
            });
        }
    });
    // Each writer keeps its odd rounds: one direct and one shared subscription each.
    let kept = 2 * (ROUNDS as usize / 2) * 2;
    assert_eq!(table.len(), kept + 2);
    let mut direct = 0;
    let mut members = 0;
    table.for_each_match("fleet/dev1/status", |m| match m {
        Match::Direct { .. } => direct += 1,
        Match::Shared { members: g, .. } => members += g.len(),
    });
    // fleet/# plus the kept writers' subscriptions to dev1; the shared group does not match
    // (`+/status` has two levels).
    let dev1 = (0..ROUNDS).filter(|i| i % 2 == 1 && i % 37 == 1).count() * 2;
    assert_eq!(direct, 1 + dev1);
    assert_eq!(members, 0);
}
