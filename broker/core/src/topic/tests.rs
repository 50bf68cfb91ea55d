//! Tests of topic validation and matching, including the examples of MQTT 3.1.1 / 5.0 §4.7.

use super::*;

const LIMITS: TopicLimits = TopicLimits { max_length: 64, max_levels: 6 };

#[test]
fn valid_topic_names() {
    for name in ["a", "sport/tennis/player1", "/", "//", "/finance", "sport/", "$SYS/broker", " ", "a b/ü"] {
        assert_eq!(validate_topic_name(name, &LIMITS), Ok(()), "{name}");
    }
}

#[test]
fn invalid_topic_names() {
    assert_eq!(validate_topic_name("", &LIMITS), Err(Error::Empty));
    assert_eq!(validate_topic_name("a/+", &LIMITS), Err(Error::WildcardInName));
    assert_eq!(validate_topic_name("#", &LIMITS), Err(Error::WildcardInName));
    assert_eq!(validate_topic_name("sport+", &LIMITS), Err(Error::WildcardInName));
    assert_eq!(validate_topic_name("a\0b", &LIMITS), Err(Error::NullChar));
    let long = "x".repeat(65);
    assert_eq!(validate_topic_name(&long, &LIMITS), Err(Error::TooLong { len: 65, max: 64 }));
    assert_eq!(validate_topic_name(&"x".repeat(64), &LIMITS), Ok(()));
    assert_eq!(validate_topic_name("a/b/c/d/e/f", &LIMITS), Ok(()));
    assert_eq!(validate_topic_name("a/b/c/d/e/f/g", &LIMITS), Err(Error::TooManyLevels { levels: 7, max: 6 }));
    assert_eq!(validate_topic_name("//////", &LIMITS), Err(Error::TooManyLevels { levels: 7, max: 6 }));
}

#[test]
fn valid_topic_filters() {
    for filter in [
        "sport/tennis/player1/#",
        "sport/#",
        "#",
        "sport/tennis/+",
        "+",
        "+/tennis/#",
        "sport/+/player1",
        "+/+",
        "/+",
        "/",
        "$SYS/#",
        "$share/group/a/+/#",
        "$share/g/#",
        "$share/g//",
        "$shared/a",
        "a/$share",
    ] {
        assert_eq!(validate_topic_filter(filter, &LIMITS), Ok(()), "{filter}");
    }
}

#[test]
fn invalid_topic_filters() {
    let plus = Err(Error::BadWildcard("'+' must occupy a whole level"));
    let hash = Err(Error::BadWildcard("'#' must stand alone in the last level"));
    let cases: &[(&str, Result<()>)] = &[
        ("", Err(Error::Empty)),
        ("sport/tennis#", hash.clone()),
        ("sport/tennis/#/ranking", hash.clone()),
        ("#/", hash.clone()),
        ("##", hash.clone()),
        ("sport+", plus.clone()),
        ("sport/+tennis", plus.clone()),
        ("++", plus.clone()),
        ("a\0/#", Err(Error::NullChar)),
        ("a/b/c/d/e/f/#", Err(Error::TooManyLevels { levels: 7, max: 6 })),
        ("$share", Err(Error::BadShareName("missing"))),
        ("$share/", Err(Error::BadShareName("empty"))),
        ("$share//a", Err(Error::BadShareName("empty"))),
        ("$share/g+/a", Err(Error::BadShareName("contains a wildcard character"))),
        ("$share/#/a", Err(Error::BadShareName("contains a wildcard character"))),
        ("$share/+/a", Err(Error::BadShareName("contains a wildcard character"))),
        ("$share/g", Err(Error::EmptySharedFilter)),
        ("$share/g/", Err(Error::EmptySharedFilter)),
        ("$share/g/a#", hash.clone()),
        ("$share/g/a+/b", plus.clone()),
    ];
    for (filter, expected) in cases {
        assert_eq!(&validate_topic_filter(filter, &LIMITS), expected, "{filter}");
    }
}

#[test]
fn shared_filter_levels_are_counted_after_the_share_name() {
    assert_eq!(validate_topic_filter("$share/g/a/b/c/d/e/f", &LIMITS), Ok(()));
    assert_eq!(
        validate_topic_filter("$share/g/a/b/c/d/e/f/g", &LIMITS),
        Err(Error::TooManyLevels { levels: 7, max: 6 })
    );
    let long = format!("$share/g/{}", "x".repeat(60));
    assert_eq!(validate_topic_filter(&long, &LIMITS), Err(Error::TooLong { len: 69, max: 64 }));
}

#[test]
fn parse_filter_splits_shared_subscriptions() {
    assert_eq!(parse_filter("a/b"), Filter::Normal("a/b"));
    assert_eq!(parse_filter("$shared/a"), Filter::Normal("$shared/a"));
    let shared = parse_filter("$share/workers/jobs/+/#");
    assert_eq!(shared, Filter::Shared { group: "workers", filter: "jobs/+/#" });
    assert_eq!(shared.filter(), "jobs/+/#");
    assert_eq!(shared.group(), Some("workers"));
    assert_eq!(parse_filter("$share/g//"), Filter::Shared { group: "g", filter: "/" });
    assert_eq!(Filter::Normal("x").group(), None);
}

#[test]
fn spec_matching_examples() {
    let yes = [
        ("sport/tennis/player1/#", "sport/tennis/player1"),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
        ("sport/#", "sport"),
        ("sport/#", "sport/"),
        ("#", "sport/tennis"),
        ("#", "/"),
        ("sport/tennis/+", "sport/tennis/player1"),
        ("sport/tennis/+", "sport/tennis/player2"),
        ("sport/+", "sport/"),
        ("sport/+/player1", "sport/tennis/player1"),
        ("+", "sport"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("+/tennis/#", "sport/tennis/player1/ranking"),
        ("+/+/+", "//"),
        ("/", "/"),
        ("$SYS/#", "$SYS/broker/clients"),
        ("$SYS/#", "$SYS"),
        ("$SYS/monitor/+", "$SYS/monitor/Clients"),
        ("a/b", "a/b"),
    ];
    for (filter, topic) in yes {
        assert!(matches(filter, topic), "{filter} should match {topic}");
    }
    let no = [
        ("sport/tennis/+", "sport/tennis/player1/ranking"),
        ("sport/+", "sport"),
        ("+", "/finance"),
        ("+", "a/b"),
        ("sport/tennis/player1/#", "sport/tennis"),
        ("#", "$SYS/broker"),
        ("#", "$SYS"),
        ("+/monitor/Clients", "$SYS/monitor/Clients"),
        ("+", "$SYS"),
        ("a/b", "a/b/c"),
        ("a/b/c", "a/b"),
        ("ACCOUNTS", "Accounts"),
        ("a/b", "a/b/"),
        ("a", "b"),
    ];
    for (filter, topic) in no {
        assert!(!matches(filter, topic), "{filter} should not match {topic}");
    }
}

#[test]
fn filter_covers_table() {
    let cases = [
        ("#", "a/b", true),
        ("#", "#", true),
        ("#", "+/+", true),
        ("a/#", "a", true),
        ("a/#", "a/+/b", true),
        ("a/#", "a/#", true),
        ("a/#", "a/+/#", true),
        ("a/+", "a/b", true),
        ("a/+", "a/+", true),
        ("a/+", "a/", true),
        ("+/+", "a/+", true),
        ("a/b", "a/b", true),
        ("$SYS/#", "$SYS/+", true),
        ("+/b", "$SYS/b", false),
        ("#", "$SYS/#", false),
        ("#", "$SYS", false),
        ("a/+", "a/#", false),
        ("a/+", "a/b/c", false),
        ("a/+", "a", false),
        ("a/+/#", "a/#", false),
        ("a/b", "a/+", false),
        ("a/b", "a/#", false),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
        ("a", "a/#", false),
        ("$SYS/#", "#", false),
        ("a/#", "b/#", false),
    ];
    for (outer, inner, expected) in cases {
        assert_eq!(filter_covers(outer, inner), expected, "{outer} covers {inner}");
    }
}

#[test]
fn filters_intersect_table() {
    let cases = [
        ("#", "a/b", true),
        ("#", "+", true),
        ("a/#", "a", true),
        ("a/+", "+/b", true),
        ("a/+/c", "a/b/+", true),
        ("a/+", "a/#", true),
        ("+/+", "/", true),
        ("a/b", "a/b", true),
        ("$SYS/#", "$SYS/+/x", true),
        ("a/b/#", "+/+/c/d", true),
        ("a/+", "a/b/c", false),
        ("a/+", "a", false),
        ("a/b", "a/c", false),
        ("a/b", "a/b/c", false),
        ("a/+/c", "a/b/d", false),
        ("#", "$SYS/#", false),
        ("$SYS/+", "+/x", false),
        ("+", "$SYS", false),
        ("a/#", "b/#", false),
    ];
    for (a, b, expected) in cases {
        assert_eq!(filters_intersect(a, b), expected, "{a} intersects {b}");
        assert_eq!(filters_intersect(b, a), expected, "{b} intersects {a}");
    }
}

#[test]
fn relations_agree_with_matches_on_sample_topics() {
    let filters = ["#", "+", "a/#", "a/+", "+/b", "a/b", "a/+/c", "+/+/+", "$SYS/#", "$SYS/+", "a", "/", "/+"];
    let topics = ["a", "b", "a/b", "a/c", "b/b", "a/b/c", "a/x/c", "a/", "/", "/b", "//", "$SYS", "$SYS/x", "$SYS/b"];
    for outer in filters {
        for inner in filters {
            let any_shared = topics.iter().any(|t| matches(outer, t) && matches(inner, t));
            if any_shared {
                assert!(filters_intersect(outer, inner), "{outer} / {inner}");
            }
            if filter_covers(outer, inner) {
                for t in topics {
                    assert!(!matches(inner, t) || matches(outer, t), "{outer} covers {inner} but not {t}");
                }
            }
        }
    }
}
