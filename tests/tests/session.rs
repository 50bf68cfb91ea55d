//! Sessions: takeover, persistence across connections, clean start, session expiry and
//! redelivery of unacknowledged messages.

use fleetmq_tests::parse::kind;
use fleetmq_tests::v4::v4_client;
use fleetmq_tests::v5::{self, v5_client};
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::{unique, Broker, RawClient};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

fn persistent_v4(id: &str) -> Connect {
    let mut c = Connect::v4(id);
    c.clean = false;
    c
}

fn persistent_v5(id: &str, expiry: u32) -> Connect {
    let mut c = Connect::v5(id);
    c.clean = false;
    c.props = Props::new().u32(prop::SESSION_EXPIRY, expiry);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_takeover_disconnects_the_old_connection_with_0x8e() {
    let b = Broker::start("");
    let mut old = RawClient::v5(b.tcp_addr(), "twin-5").await;
    let (_new, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5("twin-5")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(old.expect_disconnect(WAIT).await, 0x8E, "session taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_takeover_closes_the_old_connection() {
    let b = Broker::start("");
    let mut old = RawClient::v4(b.tcp_addr(), "twin-4").await;
    let (mut new, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v4("twin-4")).await;
    assert_eq!(ack.code, 0);
    old.expect_closed_v4(WAIT).await;
    new.send(&wire::pingreq()).await;
    assert_eq!(new.read_packet(WAIT).await.first_byte, 0xD0, "new connection works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2() {
    let b = Broker::start("");
    let topic = unique("persist4");
    let mut sub = v4_client(b.tcp_addr(), "keeper-4", false).await;
    sub.subscribe_ok(&format!("{topic}/#"), QoS::ExactlyOnce).await;
    sub.disconnect().await;

    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&format!("{topic}/a"), QoS::AtLeastOnce, false, "one").await;
    publ.publish(&format!("{topic}/b"), QoS::ExactlyOnce, false, "two").await;

    let mut sub = v4_client(b.tcp_addr(), "keeper-4", false).await;
    assert!(sub.connack.session_present, "session was not kept");
    let got = sub.wait_for_publishes(2, WAIT).await;
    let got: Vec<(QoS, &[u8])> = got.iter().map(|p| (p.qos, &p.payload[..])).collect();
    assert_eq!(got, vec![(QoS::AtLeastOnce, &b"one"[..]), (QoS::ExactlyOnce, &b"two"[..])]);
    publ.publish(&format!("{topic}/c"), QoS::AtLeastOnce, false, "live").await;
    assert_eq!(sub.wait_for_publishes(1, WAIT).await[0].payload, "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_persistent_session_keeps_subscriptions_and_queues_qos1_and_qos2() {
    let b = Broker::start("");
    let topic = unique("persist5");
    let mut sub = v5_client(b.tcp_addr(), "keeper-5", false).await;
    sub.subscribe_ok(&format!("{topic}/#"), QoS5::ExactlyOnce).await;
    sub.disconnect().await;

    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&format!("{topic}/a"), QoS5::AtLeastOnce, false, "one").await;
    publ.publish(&format!("{topic}/b"), QoS5::ExactlyOnce, false, "two").await;

    let mut sub = v5_client(b.tcp_addr(), "keeper-5", false).await;
    assert!(sub.connack.session_present, "session was not kept");
    let got = sub.wait_for_publishes(2, WAIT).await;
    let got: Vec<(QoS5, &[u8])> = got.iter().map(|p| (p.qos, &p.payload[..])).collect();
    assert_eq!(got, vec![(QoS5::AtLeastOnce, &b"one"[..]), (QoS5::ExactlyOnce, &b"two"[..])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_discards_the_previous_session() {
    let b = Broker::start("");
    let topic = unique("clean");
    let mut sub = v4_client(b.tcp_addr(), "forgetful", false).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS::AtLeastOnce, false, "queued").await;

    let mut sub = v4_client(b.tcp_addr(), "forgetful", true).await;
    assert!(!sub.connack.session_present);
    publ.publish(&topic, QoS::AtLeastOnce, false, "after").await;
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_clean_start_discards_the_previous_session() {
    let b = Broker::start("");
    let topic = unique("clean5");
    let mut sub = v5_client(b.tcp_addr(), "forgetful-5", false).await;
    sub.subscribe_ok(&topic, QoS5::AtLeastOnce).await;
    sub.disconnect().await;

    let mut sub = v5_client(b.tcp_addr(), "forgetful-5", true).await;
    assert!(!sub.connack.session_present);
    let mut publ = v5_client(b.tcp_addr(), &unique("pub"), true).await;
    publ.publish(&topic, QoS5::AtLeastOnce, false, "after").await;
    sub.expect_no_publish(QUIET).await;
}

async fn short_lived_session(b: &Broker, id: &str, topic: &str) {
    let mut opts = v5::options(b.tcp_addr(), id, false);
    let mut props = opts.connect_properties().unwrap_or_default();
    props.session_expiry_interval = Some(1);
    opts.set_connect_properties(props);
    let mut c = v5::connect(opts).await.expect("connect");
    c.subscribe_ok(topic, QoS5::AtLeastOnce).await;
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expires_after_its_expiry_interval() {
    let b = Broker::start("");
    let topic = unique("expiry");
    short_lived_session(&b, "brief", &topic).await;
    let (c, ack) = RawClient::handshake(b.tcp_addr(), &persistent_v5("brief", 1)).await;
    assert!(ack.session_present, "session gone before its 1 s expiry");
    drop(c);

    short_lived_session(&b, "expired", &topic).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let mut publ = RawClient::v5(b.tcp_addr(), &unique("pub")).await;
    publ.publish(&wire::Publish::new(true, &topic, b"late").qos(1, 1)).await;
    let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &persistent_v5("expired", 1)).await;
    assert_eq!(ack.code, 0);
    assert!(!ack.session_present, "session outlived its expiry interval");
    c.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_session_expiry_set_to_zero_at_disconnect_ends_the_session() {
    let b = Broker::start("");
    let mut kept = RawClient::connect_ok(b.tcp_addr(), &persistent_v5("kept", 300)).await;
    kept.subscribe(1, &[("kept/t", 1)]).await;
    kept.send(&wire::disconnect_v5(0, &Props::new())).await;
    kept.expect_closed(WAIT).await;

    let mut ended = RawClient::connect_ok(b.tcp_addr(), &persistent_v5("ended", 300)).await;
    ended.subscribe(1, &[("ended/t", 1)]).await;
    let zero = Props::new().u32(prop::SESSION_EXPIRY, 0);
    ended.send(&wire::disconnect_v5(0, &zero)).await;
    ended.expect_closed(WAIT).await;

    let (_k, ack) = RawClient::handshake(b.tcp_addr(), &persistent_v5("kept", 300)).await;
    assert!(ack.session_present, "control session was not kept");
    let (_e, ack) = RawClient::handshake(b.tcp_addr(), &persistent_v5("ended", 300)).await;
    assert!(!ack.session_present, "session expiry 0 at DISCONNECT did not end the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_raising_session_expiry_from_zero_at_disconnect_is_refused() {
    let b = Broker::start("");
    let mut c = RawClient::connect_ok(b.tcp_addr(), &persistent_v5("sneaky", 0)).await;
    c.subscribe(1, &[("sneaky/t", 1)]).await;
    let raise = Props::new().u32(prop::SESSION_EXPIRY, 300);
    c.send(&wire::disconnect_v5(0, &raise)).await;
    for p in c.expect_closed(WAIT).await {
        assert_eq!(p.kind(), kind::DISCONNECT, "{p:?}");
        assert_eq!(fleetmq_tests::parse::disconnect_reason(&p).ok(), Some(0x82));
    }
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &persistent_v5("sneaky", 300)).await;
    assert!(!ack.session_present, "a session with expiry 0 survived");
}

/// A subscriber receives a QoS 1 message, vanishes without acking, reconnects to its session and
/// must get the same message again with DUP set and the same packet id.
async fn unacked_qos1_is_redelivered(b: &Broker, connect: Connect) {
    let topic = unique("redeliver");
    let mut sub = RawClient::connect_ok(b.tcp_addr(), &connect).await;
    sub.subscribe(1, &[(&topic, 1)]).await;
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    publ.publish(&wire::Publish::new(false, &topic, b"again").qos(1, 9)).await;
    let first = sub.read_publish(WAIT).await;
    assert_eq!((first.qos, first.dup, &first.payload[..]), (1, false, &b"again"[..]));
    drop(sub);

    let (mut sub, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert!(ack.session_present, "session lost on reconnect");
    let second = sub.read_publish(WAIT).await;
    assert!(second.dup, "redelivery must set DUP: {second:?}");
    assert_eq!(second.pid, first.pid, "redelivery must reuse the packet id");
    assert_eq!((second.qos, &second.payload[..]), (1, &b"again"[..]));
    sub.send(&wire::puback(second.pid.unwrap_or(0))).await;
    sub.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_unacked_qos1_is_redelivered_with_dup() {
    let b = Broker::start("");
    unacked_qos1_is_redelivered(&b, persistent_v4("flaky-4")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_unacked_qos1_is_redelivered_with_dup() {
    let b = Broker::start("");
    unacked_qos1_is_redelivered(&b, persistent_v5("flaky-5", 300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompleted_qos2_resends_pubrel_after_reconnect() {
    let b = Broker::start("");
    let topic = unique("pubrel");
    let connect = persistent_v4("half-done");
    let mut sub = RawClient::connect_ok(b.tcp_addr(), &connect).await;
    sub.subscribe(1, &[(&topic, 2)]).await;
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    publ.publish(&wire::Publish::new(false, &topic, b"once").qos(2, 3)).await;
    let got = sub.read_publish(WAIT).await;
    let pid = got.pid.expect("QoS 2 has a packet id");
    sub.send(&wire::pubrec(pid)).await;
    let rel = sub.next_of_kind(kind::PUBREL, WAIT).await;
    assert_eq!(rel.first_byte, 0x62, "PUBREL fixed header flags");
    drop(sub);

    let (mut sub, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert!(ack.session_present);
    let p = sub.read_packet(WAIT).await;
    assert_eq!(p.first_byte, 0x62, "expected the PUBREL again, got {p:?}");
    assert_eq!(p.body[..2], pid.to_be_bytes(), "PUBREL for the wrong packet id");
    sub.send(&wire::pubcomp(pid)).await;
    sub.expect_no_publish(QUIET).await;
}
