//! Will messages: published when a connection ends without a normal DISCONNECT (or with reason
//! 0x04), suppressed by a normal DISCONNECT, delayed by the 5.0 Will Delay Interval and cancelled
//! by a reconnect within it, with the will's QoS, retain flag and properties honoured.

use fleetmq_tests::v4::{v4_client, V4};
use fleetmq_tests::v5::v5_client;
use fleetmq_tests::wire::{self, prop, Connect, Props, Will};
use fleetmq_tests::{unique, Broker, RawClient};
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::QoS;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(1000);

fn will(topic: &str, payload: &str, qos: u8, retain: bool, props: Props) -> Option<Will> {
    Some(Will { topic: topic.into(), payload: payload.as_bytes().to_vec(), qos, retain, props })
}

async fn watcher(b: &Broker, topic: &str) -> V4 {
    let mut w = v4_client(b.tcp_addr(), &unique("watcher"), true).await;
    w.subscribe_ok(topic, QoS::ExactlyOnce).await;
    w
}

async fn willing_v4(b: &Broker, topic: &str) -> RawClient {
    let mut c = Connect::v4(&unique("mortal"));
    c.will = will(topic, "gone", 1, false, Props::new());
    RawClient::connect_ok(b.tcp_addr(), &c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_connection_drops() {
    let b = Broker::start("");
    let topic = unique("will");
    let mut w = watcher(&b, &topic).await;
    drop(willing_v4(&b, &topic).await);
    let got = w.wait_for_publishes(1, WAIT).await.remove(0);
    assert_eq!((got.topic.as_str(), &got.payload[..]), (topic.as_str(), &b"gone"[..]));
    assert_eq!(got.qos, QoS::AtLeastOnce, "will QoS 1 under a QoS 2 subscription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_a_normal_disconnect() {
    let b = Broker::start("");
    let topic = unique("nowill");
    let mut w = watcher(&b, &topic).await;
    let mut c = willing_v4(&b, &topic).await;
    c.send(&wire::disconnect()).await;
    c.expect_closed(WAIT).await;

    let mut c5 = Connect::v5(&unique("polite"));
    c5.will = will(&topic, "gone", 1, false, Props::new());
    let mut c5 = RawClient::connect_ok(b.tcp_addr(), &c5).await;
    c5.send(&wire::disconnect_v5(0x00, &Props::new())).await;
    c5.expect_closed(WAIT).await;
    w.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_with_will_message_publishes_the_will() {
    let b = Broker::start("");
    let topic = unique("willdisc");
    let mut w = watcher(&b, &topic).await;
    let mut c = Connect::v5(&unique("leaver"));
    c.will = will(&topic, "bye", 0, false, Props::new());
    let mut c = RawClient::connect_ok(b.tcp_addr(), &c).await;
    c.send(&wire::disconnect_v5(0x04, &Props::new())).await;
    c.expect_closed(WAIT).await;
    assert_eq!(w.wait_for_publishes(1, WAIT).await[0].payload, "bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_broker_closes_for_a_protocol_violation() {
    let b = Broker::start("");
    let topic = unique("willbad");
    let mut w = watcher(&b, &topic).await;
    let mut c = willing_v4(&b, &topic).await;
    c.send(&[0x36, 0x05, 0x00, 0x01, b'x', 0x00, 0x01]).await;
    c.expect_closed_v4(WAIT).await;
    assert_eq!(w.wait_for_publishes(1, WAIT).await[0].payload, "gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_keepalive_timeout() {
    let b = Broker::start("");
    let topic = unique("willka");
    let mut w = watcher(&b, &topic).await;
    let mut c = Connect::v4(&unique("silent"));
    c.keepalive = 1;
    c.will = will(&topic, "timed out", 1, false, Props::new());
    let _c = RawClient::connect_ok(b.tcp_addr(), &c).await;
    assert_eq!(w.wait_for_publishes(1, WAIT).await[0].payload, "timed out");
}

fn delayed(id: &str, topic: &str, delay: u32, session_expiry: u32) -> Connect {
    let mut c = Connect::v5(id);
    c.clean = false;
    c.props = Props::new().u32(prop::SESSION_EXPIRY, session_expiry);
    c.will = will(topic, "late", 1, false, Props::new().u32(prop::WILL_DELAY, delay));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_is_published_after_the_delay() {
    let b = Broker::start("");
    let topic = unique("delay");
    let mut w = watcher(&b, &topic).await;
    drop(RawClient::connect_ok(b.tcp_addr(), &delayed("slowpoke", &topic, 1, 60)).await);
    let since = Instant::now();
    w.expect_no_publish(Duration::from_millis(600)).await;
    assert_eq!(w.wait_for_publishes(1, WAIT).await[0].payload, "late");
    let took = since.elapsed();
    assert!(took >= Duration::from_millis(900), "will sent after {took:?}, before its 1 s delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let b = Broker::start("");
    let topic = unique("cancel");
    let mut w = watcher(&b, &topic).await;
    let connect = delayed("comeback", &topic, 1, 60);
    drop(RawClient::connect_ok(b.tcp_addr(), &connect).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut plain = Connect::v5("comeback");
    plain.clean = false;
    plain.props = Props::new().u32(prop::SESSION_EXPIRY, 60);
    let (_back, ack) = RawClient::handshake(b.tcp_addr(), &plain).await;
    assert_eq!(ack.code, 0);
    assert!(ack.session_present);
    w.expect_no_publish(Duration::from_millis(2000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_end_publishes_a_will_whose_delay_is_longer() {
    let b = Broker::start("");
    let topic = unique("sessionend");
    let mut w = watcher(&b, &topic).await;
    drop(RawClient::connect_ok(b.tcp_addr(), &delayed("short-session", &topic, 30, 1)).await);
    let got = w.wait_for_publishes(1, WAIT).await;
    assert_eq!(got[0].payload, "late", "the will is due when the 1 s session ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_retain_flag_makes_the_will_retained() {
    let b = Broker::start("");
    let topic = unique("willretain");
    let mut w = watcher(&b, &topic).await;
    let mut c = Connect::v4(&unique("monument"));
    c.will = will(&topic, "epitaph", 2, true, Props::new());
    drop(RawClient::connect_ok(b.tcp_addr(), &c).await);
    let live = w.wait_for_publishes(1, WAIT).await.remove(0);
    assert_eq!(live.qos, QoS::ExactlyOnce, "will QoS 2");
    let mut late = v4_client(b.tcp_addr(), &unique("late"), true).await;
    late.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    let kept = late.wait_for_publishes(1, WAIT).await.remove(0);
    assert!(kept.retain, "the will was not retained");
    assert_eq!(kept.payload, "epitaph");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_properties_are_forwarded() {
    let b = Broker::start("");
    let topic = unique("willprops");
    let mut w = v5_client(b.tcp_addr(), &unique("watch5"), true).await;
    w.subscribe_ok(&topic, QoS5::AtLeastOnce).await;
    let mut c = Connect::v5(&unique("annotated"));
    let props = Props::new().str(prop::CONTENT_TYPE, "text/plain").pair(prop::USER_PROPERTY, "reason", "power-loss");
    c.will = will(&topic, "x", 1, false, props);
    drop(RawClient::connect_ok(b.tcp_addr(), &c).await);
    let got = w.wait_for_publishes(1, WAIT).await.remove(0);
    let p = got.properties.expect("will properties dropped");
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.user_properties, vec![("reason".into(), "power-loss".into())]);
}
