//! PUBLISH delivery: QoS 0/1/2 in both directions for 3.1.1 and 5.0 (with downgrade to the
//! subscription's QoS), exactly-once delivery of QoS 2 despite a retransmission, and ordering.

use fleetmq_tests::parse::kind;
use fleetmq_tests::v4::v4_client;
use fleetmq_tests::v5::v5_client;
use fleetmq_tests::wire;
use fleetmq_tests::{unique, Broker, RawClient};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

fn q4(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn q5(n: u8) -> QoS5 {
    match n {
        0 => QoS5::AtMostOnce,
        1 => QoS5::AtLeastOnce,
        _ => QoS5::ExactlyOnce,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_every_qos_pair_delivers_at_the_lower_qos() {
    let b = Broker::start("");
    let base = unique("qos4");
    let mut sub = v4_client(b.tcp_addr(), &unique("sub"), true).await;
    for s in 0..=2u8 {
        sub.subscribe_ok(&format!("{base}/{s}/+"), q4(s)).await;
    }
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    for s in 0..=2u8 {
        for p in 0..=2u8 {
            let topic = format!("{base}/{s}/{p}");
            publ.publish(&topic, q4(p), false, format!("s{s}p{p}")).await;
            let got = sub.wait_for_publishes(1, WAIT).await.remove(0);
            assert_eq!(got.topic, topic);
            assert_eq!(got.payload, format!("s{s}p{p}"));
            assert_eq!(got.qos, q4(s.min(p)), "sub QoS {s}, pub QoS {p}");
        }
    }
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_every_qos_pair_delivers_at_the_lower_qos() {
    let b = Broker::start("");
    let base = unique("qos5");
    let mut sub = v5_client(b.tcp_addr(), &unique("sub"), true).await;
    for s in 0..=2u8 {
        sub.subscribe_ok(&format!("{base}/{s}/+"), q5(s)).await;
    }
    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    for s in 0..=2u8 {
        for p in 0..=2u8 {
            let topic = format!("{base}/{s}/{p}");
            publ.publish(&topic, q5(p), false, format!("s{s}p{p}")).await;
            let got = sub.wait_for_publishes(1, WAIT).await.remove(0);
            assert_eq!(got.topic, topic.as_bytes());
            assert_eq!(got.payload, format!("s{s}p{p}").as_bytes());
            assert_eq!(got.qos, q5(s.min(p)), "sub QoS {s}, pub QoS {p}");
        }
    }
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_between_protocol_levels() {
    let b = Broker::start("");
    let topic = unique("cross");
    let mut s4 = v4_client(b.tcp_addr(), &unique("s4"), true).await;
    let mut s5 = v5_client(b.tcp_addr(), &unique("s5"), true).await;
    s4.subscribe_ok(&topic, QoS::ExactlyOnce).await;
    s5.subscribe_ok(&topic, QoS5::ExactlyOnce).await;
    let mut p4 = v4_client(b.tcp_addr(), &unique("p4"), true).await;
    let mut p5 = v5_client(b.tcp_addr(), &unique("p5"), true).await;
    p4.publish(&topic, QoS::ExactlyOnce, false, "from-311").await;
    p5.publish(&topic, QoS5::ExactlyOnce, false, "from-5").await;
    let got4: Vec<_> = s4.wait_for_publishes(2, WAIT).await;
    let got5: Vec<_> = s5.wait_for_publishes(2, WAIT).await;
    assert_eq!(got4.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(), [&b"from-311"[..], b"from-5"]);
    assert_eq!(got5.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(), [&b"from-311"[..], b"from-5"]);
    assert!(got4.iter().all(|p| p.qos == QoS::ExactlyOnce));
    assert!(got5.iter().all(|p| p.qos == QoS5::ExactlyOnce));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_retransmission_before_pubrel_is_delivered_once() {
    let b = Broker::start("");
    let topic = unique("once");
    let mut sub = v4_client(b.tcp_addr(), &unique("sub"), true).await;
    sub.subscribe_ok(&topic, QoS::ExactlyOnce).await;

    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    let msg = wire::Publish::new(false, &topic, b"exactly-once").qos(2, 7);
    publ.send(&msg.encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBREC, 7).await, 0);
    publ.send(&msg.clone().dup().encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBREC, 7).await, 0);
    publ.send(&wire::pubrel(7)).await;
    publ.expect_ack(kind::PUBCOMP, 7).await;

    let got = sub.wait_for_publishes(1, WAIT).await;
    assert_eq!(got[0].payload, "exactly-once");
    sub.expect_no_publish(QUIET).await;

    // The packet id is free again: the same id now carries a new message.
    publ.publish(&wire::Publish::new(false, &topic, b"next").qos(2, 7)).await;
    assert_eq!(sub.wait_for_publishes(1, WAIT).await[0].payload, "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_retransmission_is_acked_again() {
    let b = Broker::start("");
    let topic = unique("atleast");
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    let msg = wire::Publish::new(false, &topic, b"x").qos(1, 11);
    publ.send(&msg.encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBACK, 11).await, 0);
    publ.send(&msg.dup().encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBACK, 11).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_qos1_messages_arrive_in_order() {
    let b = Broker::start("");
    let topic = unique("order");
    let mut sub = v4_client(b.tcp_addr(), &unique("sub"), true).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    for i in 0..1000u32 {
        publ.client.publish(&topic, QoS::AtLeastOnce, false, i.to_string()).await.expect("publish request");
    }
    let got = sub.wait_for_publishes(1000, Duration::from_secs(30)).await;
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.payload, i.to_string(), "message {i} out of order");
        assert_eq!(p.qos, QoS::AtLeastOnce);
    }
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let b = Broker::start("");
    let topic = unique("unsub");
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    sub.subscribe(1, &[(&topic, 1)]).await;
    sub.send(&wire::unsubscribe(false, 2, &[&topic])).await;
    let ack = sub.next_of_kind(kind::UNSUBACK, WAIT).await;
    assert_eq!(ack.body, 2u16.to_be_bytes(), "UNSUBACK packet id");
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    publ.publish(&wire::Publish::new(false, &topic, b"gone").qos(1, 1)).await;
    sub.expect_no_publish(QUIET).await;
}
