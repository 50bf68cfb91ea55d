//! Shared subscriptions (`$share/GROUP/FILTER`): messages are split between the group's members
//! without duplicates or loss, each group gets its own copy, and a member leaving hands its share to
//! the others.

use fleetmq_tests::v4::v4_client;
use fleetmq_tests::v5::{v5_client, V5};
use fleetmq_tests::{unique, Broker};
use rumqttc::v5::mqttbytes::QoS;
use std::collections::BTreeSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const DRAIN: Duration = Duration::from_millis(1500);

fn numbers(c: &[rumqttc::v5::mqttbytes::v5::Publish]) -> Vec<u32> {
    c.iter()
        .map(|p| {
            String::from_utf8_lossy(&p.payload).parse().unwrap_or_else(|_| panic!("unexpected payload {:?}", p.payload))
        })
        .collect()
}

async fn member(b: &Broker, group: &str, topic: &str) -> V5 {
    let mut c = v5_client(b.tcp_addr(), &unique("member"), true).await;
    c.subscribe_ok(&format!("$share/{group}/{topic}"), QoS::AtLeastOnce).await;
    c
}

async fn publish_numbers(b: &Broker, topic: &str, n: u32) {
    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    for i in 0..n {
        publ.publish(topic, QoS::AtLeastOnce, false, i.to_string()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_splits_messages_between_members() {
    let b = Broker::start("");
    let topic = unique("work");
    let mut a = member(&b, "g", &topic).await;
    let mut c = member(&b, "g", &topic).await;
    let mut plain = v4_client(b.tcp_addr(), &unique("plain"), true).await;
    plain.subscribe_ok(&topic, rumqttc::QoS::AtLeastOnce).await;

    publish_numbers(&b, &topic, 20).await;
    let got_a = numbers(&a.collect_for(DRAIN).await);
    let got_c = numbers(&c.collect_for(DRAIN).await);
    assert!(!got_a.is_empty() && !got_c.is_empty(), "one member got nothing: {got_a:?} / {got_c:?}");
    assert_eq!(got_a.len() + got_c.len(), 20, "lost or duplicated: {got_a:?} / {got_c:?}");
    let all: BTreeSet<u32> = got_a.iter().chain(&got_c).copied().collect();
    assert_eq!(all, (0..20).collect(), "every message exactly once across the group");
    for got in [&got_a, &got_c] {
        assert!(got.windows(2).all(|w| w[0] < w[1]), "member saw messages out of order: {got:?}");
    }
    assert_eq!(plain.wait_for_publishes(20, WAIT).await.len(), 20, "ordinary subscriber gets all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_gets_its_own_copy() {
    let b = Broker::start("");
    let topic = unique("fanout");
    let mut g1 = member(&b, "g1", &topic).await;
    let mut g2 = member(&b, "g2", &topic).await;
    publish_numbers(&b, &topic, 5).await;
    assert_eq!(numbers(&g1.wait_for_publishes(5, WAIT).await), vec![0, 1, 2, 3, 4]);
    assert_eq!(numbers(&g2.wait_for_publishes(5, WAIT).await), vec![0, 1, 2, 3, 4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_member_gets_everything_after_the_other_leaves() {
    let b = Broker::start("");
    let topic = unique("handover");
    let a = member(&b, "g", &topic).await;
    let mut c = member(&b, "g", &topic).await;
    a.disconnect().await;
    publish_numbers(&b, &topic, 10).await;
    let got = numbers(&c.wait_for_publishes(10, WAIT).await);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    c.expect_no_publish(Duration::from_millis(500)).await;
}
