//! Retained messages: set, replace, delete, delivery on subscribe (also through wildcards), the 5.0
//! retain handling options, and the `$SYS` topics that `#` must not match.

use fleetmq_tests::v4::v4_client;
use fleetmq_tests::v5::{self, v5_client};
use fleetmq_tests::{unique, Broker};
use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_set_replaced_and_deleted() {
    let b = Broker::start("");
    let topic = unique("retained");
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS::AtLeastOnce, true, "first").await;
    publ.publish(&topic, QoS::AtLeastOnce, true, "second").await;

    let mut early = v4_client(b.tcp_addr(), &unique("early"), true).await;
    early.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let got = early.wait_for_publishes(1, WAIT).await.remove(0);
    assert!(got.retain, "a retained message sent on subscribe has the retain flag");
    assert_eq!(got.payload, "second", "the retained message is replaced, not accumulated");
    early.expect_no_publish(QUIET).await;

    publ.publish(&topic, QoS::AtLeastOnce, true, "").await;
    let live = early.wait_for_publishes(1, WAIT).await.remove(0);
    assert!(live.payload.is_empty(), "the delete is forwarded to current subscribers");
    assert!(!live.retain, "live 3.1.1 delivery carries retain 0");

    let mut late = v4_client(b.tcp_addr(), &unique("late"), true).await;
    late.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    late.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscription_gets_every_matching_retained_message() {
    let b = Broker::start("");
    let base = unique("tree");
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&format!("{base}/a"), QoS::AtLeastOnce, true, "a").await;
    publ.publish(&format!("{base}/b/c"), QoS::AtLeastOnce, true, "bc").await;
    publ.publish(&format!("{base}x/y"), QoS::AtLeastOnce, true, "other").await;
    publ.publish(&format!("{base}/nope"), QoS::AtLeastOnce, false, "not retained").await;

    let mut sub = v4_client(b.tcp_addr(), &unique("sub"), true).await;
    sub.subscribe_ok(&format!("{base}/#"), QoS::AtLeastOnce).await;
    let mut got: Vec<(String, Vec<u8>)> = sub
        .wait_for_publishes(2, WAIT)
        .await
        .into_iter()
        .inspect(|p| assert!(p.retain))
        .map(|p| (p.topic, p.payload.to_vec()))
        .collect();
    got.sort();
    assert_eq!(got, vec![(format!("{base}/a"), b"a".to_vec()), (format!("{base}/b/c"), b"bc".to_vec())]);
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_delivered_at_the_lower_qos() {
    let b = Broker::start("");
    let topic = unique("rqos");
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS::AtLeastOnce, true, "q1").await;
    let mut hi = v4_client(b.tcp_addr(), &unique("hi"), true).await;
    hi.subscribe_ok(&topic, QoS::ExactlyOnce).await;
    assert_eq!(hi.wait_for_publishes(1, WAIT).await[0].qos, QoS::AtLeastOnce);
    let mut lo = v4_client(b.tcp_addr(), &unique("lo"), true).await;
    lo.subscribe_ok(&topic, QoS::AtMostOnce).await;
    assert_eq!(lo.wait_for_publishes(1, WAIT).await[0].qos, QoS::AtMostOnce);
}

fn with_rule(topic: &str, rule: RetainForwardRule) -> Filter {
    let mut f = Filter::new(topic, QoS5::AtLeastOnce);
    f.retain_forward_rule = rule;
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_options_are_honoured() {
    let b = Broker::start("");
    let topic = unique("handling");
    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS5::AtLeastOnce, true, "kept").await;

    let mut always = v5_client(b.tcp_addr(), &unique("rh0"), true).await;
    for round in 0..2 {
        always.subscribe_filter(with_rule(&topic, RetainForwardRule::OnEverySubscribe), None).await;
        let got = always.wait_for_publishes(1, WAIT).await.remove(0);
        assert!(got.retain && got.payload == "kept", "retain handling 0, round {round}");
    }

    let mut new_only = v5_client(b.tcp_addr(), &unique("rh1"), true).await;
    new_only.subscribe_filter(with_rule(&topic, RetainForwardRule::OnNewSubscribe), None).await;
    assert!(new_only.wait_for_publishes(1, WAIT).await[0].retain);
    new_only.subscribe_filter(with_rule(&topic, RetainForwardRule::OnNewSubscribe), None).await;
    new_only.expect_no_publish(QUIET).await;

    let mut never = v5_client(b.tcp_addr(), &unique("rh2"), true).await;
    never.subscribe_filter(with_rule(&topic, RetainForwardRule::Never), None).await;
    never.expect_no_publish(QUIET).await;
    publ.publish(&topic, QoS5::AtLeastOnce, false, "live").await;
    assert_eq!(never.wait_for_publishes(1, WAIT).await[0].payload, "live");
}

const SYS_CONFIG: &str = "[sys]\ninterval_ms = 200\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_are_not_matched_by_leading_wildcards() {
    let b = Broker::start(SYS_CONFIG);
    let mut all = v4_client(b.tcp_addr(), &unique("all"), true).await;
    all.subscribe_ok("#", QoS::AtMostOnce).await;
    all.subscribe_ok("+/broker/#", QoS::AtMostOnce).await;
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish("plain/topic", QoS::AtLeastOnce, false, "visible").await;
    let got = all.collect_for(Duration::from_millis(1200)).await;
    assert!(got.iter().any(|p| p.topic == "plain/topic"), "the # subscription works for ordinary topics");
    let sys: Vec<&String> = got.iter().map(|p| &p.topic).filter(|t| t.starts_with('$')).collect();
    assert!(sys.is_empty(), "wildcard-first filters matched $ topics: {sys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_subscription_reports_connected_clients() {
    let b = Broker::start(SYS_CONFIG);
    let mut sys = v5_client(b.tcp_addr(), &unique("sys"), true).await;
    sys.subscribe_ok("$SYS/#", QoS5::AtMostOnce).await;
    // The first value may be a retained one from before this client connected; wait for a
    // refresh that counts it.
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for p in sys.collect_for(Duration::from_millis(300)).await {
            if v5::topic(&p) == "$SYS/broker/clients/connected" {
                let text = String::from_utf8_lossy(&p.payload).into_owned();
                let n: u64 =
                    text.trim().parse().unwrap_or_else(|_| panic!("clients/connected is not a number: {text:?}"));
                if n >= 1 {
                    return;
                }
                seen.push(n);
            }
        }
    }
    panic!("$SYS/broker/clients/connected never counted this client; values seen: {seen:?}");
}
