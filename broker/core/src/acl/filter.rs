//! MQTT topic filter relations needed by ACL checks: matching, covering and intersecting.
//!
//! All functions expect syntactically valid filters (see [`valid_filter`]) and topic names (see
//! [`valid_topic`]); callers validate first. They follow the MQTT rule that `+` and `#` in the
//! first level do not match topic names starting with `$`. They walk levels iteratively, so very
//! deep topics cannot exhaust the stack.

/// Whether `filter` is a valid MQTT topic filter: non-empty, `#` only as a whole last level,
/// `+` only as a whole level, no NUL.
pub(super) fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "#" => last,
            "+" => true,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `topic` is a valid MQTT topic name: non-empty, no wildcards, no NUL.
pub(super) fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0'])
}

fn levels(s: &str) -> Vec<&str> {
    s.split('/').collect()
}

fn is_wildcard(level: Option<&&str>) -> bool {
    matches!(level, Some(&"+") | Some(&"#"))
}

fn is_dollar_literal(level: Option<&&str>) -> bool {
    level.is_some_and(|l| l.starts_with('$'))
}

/// Whether the topic name `topic` is matched by `filter`.
pub(super) fn matches(filter: &str, topic: &str) -> bool {
    let (f, t) = (levels(filter), levels(topic));
    if is_wildcard(f.first()) && is_dollar_literal(t.first()) {
        return false;
    }
    let (mut f, mut t) = (f.as_slice(), t.as_slice());
    loop {
        match (f, t) {
            (["#"], _) => return true,
            ([], []) => return true,
            ([fl, f_rest @ ..], [tl, t_rest @ ..]) if *fl == "+" || fl == tl => {
                f = f_rest;
                t = t_rest;
            }
            _ => return false,
        }
    }
}

/// Whether every topic name matched by `inner` is also matched by `outer`.
pub(super) fn covers(outer: &str, inner: &str) -> bool {
    let (o, i) = (levels(outer), levels(inner));
    if is_wildcard(o.first()) && is_dollar_literal(i.first()) {
        return false;
    }
    let (mut o, mut i) = (o.as_slice(), i.as_slice());
    loop {
        match (o, i) {
            (["#"], _) => return true,
            ([], []) => return true,
            ([ol, o_rest @ ..], [il, i_rest @ ..]) if *il != "#" && (*ol == "+" || ol == il) => {
                o = o_rest;
                i = i_rest;
            }
            _ => return false,
        }
    }
}

/// Whether some topic name is matched by both `a` and `b`.
pub(super) fn intersect(a: &str, b: &str) -> bool {
    let (a, b) = (levels(a), levels(b));
    if (is_wildcard(a.first()) && is_dollar_literal(b.first()))
        || (is_wildcard(b.first()) && is_dollar_literal(a.first()))
    {
        return false;
    }
    let (mut a, mut b) = (a.as_slice(), b.as_slice());
    loop {
        match (a, b) {
            (["#"], _) | (_, ["#"]) => return true,
            ([], []) => return true,
            ([al, a_rest @ ..], [bl, b_rest @ ..]) if *al == "+" || *bl == "+" || al == bl => {
                a = a_rest;
                b = b_rest;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_topic_syntax() {
        for ok in ["#", "+", "a/#", "+/+", "a//b", "/", "a/+/c", "$SYS/#", "a b/c"] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "#/a", "a+/b", "a/b+", "a\0b", "##"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(valid_topic("a/b") && valid_topic("/") && valid_topic("$SYS/x"));
        for bad in ["", "a/+", "#", "a\0"] {
            assert!(!valid_topic(bad), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let table = [
            ("a/b", "a/b", true),
            ("a/b", "a/c", false),
            ("a/+", "a/b", true),
            ("a/+", "a", false),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/x", true),
            ("+", "/", false),
            ("a//b", "a//b", true),
            ("a/+/b", "a//b", true),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("$SYS/+", "$SYS/x", true),
            ("a/$x", "a/$x", true),
            ("a/+", "a/$x", true),
        ];
        for (filter, topic, expected) in table {
            assert_eq!(matches(filter, topic), expected, "{filter} vs {topic}");
        }
    }

    #[test]
    fn covering() {
        let table = [
            ("a/#", "a/+/b", true),
            ("a/#", "a/#", true),
            ("a/#", "a", true),
            ("a/#", "a/b/#", true),
            ("#", "a/+/#", true),
            ("#", "#", true),
            ("a/+", "a/b", true),
            ("a/+", "a/+", true),
            ("a/+", "a/#", false),
            ("a/+/#", "a/#", false),
            ("a/b", "a/+", false),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
            ("a/+", "a", false),
            ("a", "a/#", false),
            ("+/b", "a/b", true),
            ("+/b", "+/c", false),
            ("#", "$SYS/#", false),
            ("+/#", "$SYS/x", false),
            ("$SYS/#", "$SYS/broker/+", true),
            ("$SYS/#", "#", false),
            ("#", "+/x", true),
        ];
        for (outer, inner, expected) in table {
            assert_eq!(covers(outer, inner), expected, "{outer} covers {inner}");
        }
    }

    #[test]
    fn intersecting() {
        let table = [
            ("a/#", "a", true),
            ("a/#", "b/#", false),
            ("#", "a/b", true),
            ("+/b", "a/+", true),
            ("+/b", "a/c", false),
            ("a/+", "a/b/c", false),
            ("a/+/#", "a", false),
            ("a/b", "a/b", true),
            ("a", "a/b", false),
            ("#", "$SYS/#", false),
            ("$SYS/#", "+/+", false),
            ("$SYS/#", "$SYS/x", true),
            ("+", "#", true),
            ("a/+/c", "+/b/+", true),
        ];
        for (a, b, expected) in table {
            assert_eq!(intersect(a, b), expected, "{a} ∩ {b}");
            assert_eq!(intersect(b, a), expected, "{b} ∩ {a}");
        }
    }

    #[test]
    fn relations_agree_with_matching() {
        let filters = ["#", "+", "a/#", "a/+", "+/b", "a/b", "a", "$SYS/#", "+/+/c"];
        let topics = ["a", "a/b", "x/b", "a/b/c", "a/x/c", "$SYS/a", "b", "/", "a/"];
        for a in filters {
            for b in filters {
                let both = topics.iter().any(|t| matches(a, t) && matches(b, t));
                if both {
                    assert!(intersect(a, b), "{a} ∩ {b} share a topic");
                }
                if covers(a, b) {
                    for t in topics {
                        assert!(!matches(b, t) || matches(a, t), "{a} ⊇ {b} but {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn deep_topics_do_not_recurse() {
        let deep = "a/".repeat(100_000) + "b";
        let deep_filter = "+/".repeat(100_000) + "#";
        assert!(matches(&deep_filter, &deep));
        assert!(covers("#", &deep_filter));
        assert!(intersect(&deep_filter, &deep));
    }
}
