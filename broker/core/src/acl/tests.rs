//! Behaviour of ACL parsing and checks.

use super::*;

const EXAMPLE: &str = "\
# action  access     who            topic-filter
allow     publish    user:alice     sensors/%u/#
deny      subscribe  client:dev-7   #
allow     pubsub     all            devices/%c/#
allow     subscribe  all            $SYS/#
";

fn syntax_line(text: &str) -> usize {
    match Acl::parse(text) {
        Err(Error::Syntax { line, .. }) => line,
        other => panic!("expected a syntax error for {text:?}, got {other:?}"),
    }
}

#[test]
fn parses_the_documented_example() {
    let acl = Acl::parse(EXAMPLE).unwrap();
    assert_eq!(acl.len(), 4);
    assert!(acl.check_publish(Some("alice"), "c1", "sensors/alice/temp"));
    assert!(!acl.check_publish(Some("alice"), "c1", "sensors/bob/temp"));
    assert!(!acl.check_publish(Some("bob"), "c1", "sensors/bob/temp"));
    assert!(acl.check_subscribe(Some("bob"), "dev-8", "devices/dev-8/cmd/+"));
    assert!(!acl.check_subscribe(Some("bob"), "dev-7", "devices/dev-7/cmd/+"));
    assert!(acl.check_publish(Some("bob"), "dev-7", "devices/dev-7/state"));
    assert!(acl.check_subscribe(None, "x", "$SYS/broker/uptime"));
    assert!(!acl.check_subscribe(None, "x", "#"), "no rule covers `#`");
}

#[test]
fn syntax_errors_name_the_line() {
    assert_eq!(syntax_line("# c\n\nallow publish all a\npermit publish all a\n"), 4);
    assert_eq!(syntax_line("allow publish all a/#/b"), 1);
    assert_eq!(syntax_line("allow read all a"), 1);
    assert_eq!(syntax_line("allow\n"), 1);
    assert_eq!(syntax_line("allow publish\n"), 1);
    assert_eq!(syntax_line("\nallow publish all\n"), 2);
    assert_eq!(syntax_line("allow publish user: a"), 1);
    assert_eq!(syntax_line("allow publish group:x a"), 1);
    assert_eq!(syntax_line("allow publish everyone a"), 1);
    assert_eq!(syntax_line("allow subscribe all $share/g/a"), 1);
    assert_eq!(syntax_line("allow publish all a+"), 1);
    let err = Acl::parse("a\n").unwrap_err().to_string();
    assert!(err.starts_with("line 1: "), "{err}");
}

#[test]
fn filters_may_contain_spaces_and_literal_percent() {
    let acl = Acl::parse("allow publish all  room 1/50% / %u  \n").unwrap();
    assert!(acl.check_publish(Some("ann"), "c", "room 1/50% / ann"));
    assert!(!acl.check_publish(None, "c", "room 1/50% / "));
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleetmq.acl");
    std::fs::write(&path, "allow publish all a\n\ndeny sometimes all b\n").unwrap();
    let err = Acl::load(&path).unwrap_err();
    assert!(matches!(err, Error::File { line: 3, .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("{}:3: ", path.display())), "{err}");

    std::fs::write(&path, EXAMPLE).unwrap();
    assert_eq!(Acl::load(&path).unwrap().len(), 4);

    let missing = dir.path().join("absent.acl");
    let err = Acl::load(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("absent.acl"), "{err}");
}

#[test]
fn first_matching_rule_wins_and_default_is_deny() {
    let acl = Acl::parse(
        "deny publish user:mallory #\n\
         allow publish all public/#\n\
         deny publish all public/secret\n",
    )
    .unwrap();
    assert!(!acl.check_publish(Some("mallory"), "m", "public/x"));
    assert!(acl.check_publish(Some("bob"), "b", "public/x"));
    assert!(acl.check_publish(Some("bob"), "b", "public/secret"), "allow came first");
    assert!(!acl.check_publish(Some("bob"), "b", "private/x"), "no rule: deny");
    assert!(!acl.check_subscribe(Some("bob"), "b", "public/#"), "publish rules only");
    assert!(Acl::parse("").unwrap().is_empty());
    assert!(!Acl::parse("").unwrap().check_publish(None, "c", "a"));
}

#[test]
fn access_kinds_are_separate() {
    let acl = Acl::parse("allow publish all p\nallow subscribe all s\nallow pubsub all b\n").unwrap();
    assert!(acl.check_publish(None, "c", "p") && !acl.check_subscribe(None, "c", "p"));
    assert!(!acl.check_publish(None, "c", "s") && acl.check_subscribe(None, "c", "s"));
    assert!(acl.check_publish(None, "c", "b") && acl.check_subscribe(None, "c", "b"));
}

#[test]
fn username_and_client_id_substitution() {
    let acl = Acl::parse("allow pubsub all users/%u/%c/#\n").unwrap();
    assert!(acl.check_publish(Some("ann"), "phone", "users/ann/phone/x"));
    assert!(!acl.check_publish(Some("ann"), "phone", "users/ann/laptop/x"));
    assert!(!acl.check_publish(None, "phone", "users/%u/phone/x"));
    assert!(!acl.check_publish(None, "phone", "users//phone/x"));
    assert!(!acl.check_publish(Some(""), "phone", "users//phone/x"));
    assert!(acl.check_subscribe(Some("ann"), "phone", "users/ann/phone/+"));
    assert!(!acl.check_subscribe(Some("ann"), "phone", "users/+/phone/+"));
}

#[test]
fn wildcard_values_cannot_escalate() {
    let acl = Acl::parse("allow pubsub all devices/%c/#\nallow pubsub all home/%u\n").unwrap();
    for id in ["#", "+", "a/b", "x/#"] {
        assert!(!acl.check_subscribe(None, id, "devices/#"), "{id}");
        assert!(!acl.check_subscribe(None, id, &format!("devices/{id}")), "{id}");
        assert!(!acl.check_publish(None, id, "devices/a/b"), "{id}");
    }
    assert!(!acl.check_subscribe(Some("#"), "c", "home/#"));
    assert!(!acl.check_publish(Some("a/b"), "c", "home/a/b"));
    assert!(acl.check_subscribe(Some("ann"), "c", "home/ann"));
}

#[test]
fn anonymous_means_no_username() {
    let acl = Acl::parse("allow subscribe anonymous public/#\nallow subscribe user:ann #\n").unwrap();
    assert!(acl.check_subscribe(None, "c", "public/news"));
    assert!(!acl.check_subscribe(Some("bob"), "c", "public/news"));
    assert!(acl.check_subscribe(Some("ann"), "c", "public/news"));
    assert!(!acl.check_subscribe(None, "c", "private"));
}

#[test]
fn client_rules_match_the_client_id() {
    let acl = Acl::parse("deny pubsub client:dev-7 #\nallow pubsub all #\n").unwrap();
    assert!(!acl.check_publish(Some("ann"), "dev-7", "a"));
    assert!(!acl.check_subscribe(None, "dev-7", "a/+"));
    assert!(acl.check_publish(Some("ann"), "dev-8", "a"));
    assert!(acl.check_publish(Some("dev-7"), "x", "a"), "a username is not a client id");
}

#[test]
fn subscribe_allow_needs_cover_and_deny_needs_intersection() {
    let acl = Acl::parse(
        "deny subscribe all a/secret\n\
         allow subscribe all a/#\n",
    )
    .unwrap();
    assert!(acl.check_subscribe(None, "c", "a/+/b"), "a/# covers a/+/b");
    assert!(acl.check_subscribe(None, "c", "a/public/x"));
    assert!(acl.check_subscribe(None, "c", "a/secret/x"), "deeper than a/secret");
    assert!(!acl.check_subscribe(None, "c", "a/+"), "a/+ reaches a/secret");
    assert!(!acl.check_subscribe(None, "c", "a/#"));
    assert!(!acl.check_subscribe(None, "c", "a/secret"));
    assert!(!acl.check_subscribe(None, "c", "#"), "not covered by a/#");

    let deep = Acl::parse("deny subscribe all a/secret/#\nallow subscribe all a/#\n").unwrap();
    assert!(!deep.check_subscribe(None, "c", "a/+/b"), "a/+/b reaches a/secret/b");
    assert!(deep.check_subscribe(None, "c", "a/public/+"));

    let partial = Acl::parse("allow subscribe all a/b\nallow subscribe all a/+\n").unwrap();
    assert!(partial.check_subscribe(None, "c", "a/+"), "later covering rule applies");
}

#[test]
fn dollar_topics_are_not_reached_through_wildcards() {
    let acl = Acl::parse("deny subscribe all $SYS/#\nallow pubsub all #\n").unwrap();
    assert!(acl.check_subscribe(None, "c", "#"), "`#` does not include $SYS");
    assert!(!acl.check_subscribe(None, "c", "$SYS/broker"));
    let open = Acl::parse("allow pubsub all #\n").unwrap();
    assert!(!open.check_subscribe(None, "c", "$SYS/broker"));
    assert!(!open.check_publish(None, "c", "$SYS/broker"));
}

#[test]
fn shared_subscriptions_check_the_inner_filter() {
    let acl = Acl::parse("allow subscribe all jobs/#\n").unwrap();
    assert!(acl.check_subscribe(None, "c", "$share/workers/jobs/+"));
    assert!(!acl.check_subscribe(None, "c", "$share/workers/other/+"));
    assert!(!acl.check_subscribe(None, "c", "$share/workers"));
    assert!(!acl.check_subscribe(None, "c", "$share//jobs/a"));
    assert!(!acl.check_subscribe(None, "c", "$share/#/jobs/a"));
    let literal = Acl::parse("allow subscribe all $share/#\n");
    assert!(literal.is_err());
}

#[test]
fn invalid_requests_are_denied() {
    let acl = Acl::parse("allow pubsub all #\n").unwrap();
    assert!(!acl.check_publish(None, "c", ""));
    assert!(!acl.check_publish(None, "c", "a/+"));
    assert!(!acl.check_subscribe(None, "c", ""));
    assert!(!acl.check_subscribe(None, "c", "a/#/b"));
    assert!(acl.check_subscribe(None, "c", "a/+/b"));
}
