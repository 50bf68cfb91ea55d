//! Wire-level PUBLISH rules checked with raw clients: payload format validation, receive maximum,
//! inbound and outbound topic aliases, and maximum packet size in both directions.

use fleetmq_tests::parse::kind;
use fleetmq_tests::wire::{self, prop, Connect, Props, Publish};
use fleetmq_tests::{assert_roundtrip, unique, Broker, RawClient};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

async fn watcher(b: &Broker, filter: &str) -> RawClient {
    let mut w = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    assert_eq!(w.subscribe(1, &[(filter, 1)]).await, vec![1]);
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_with_payload_format_1_disconnects_0x99() {
    let b = Broker::start("");
    let topic = unique("pfi");
    let mut w = watcher(&b, &topic).await;
    let mut c = RawClient::v5(b.tcp_addr(), &unique("liar")).await;
    let props = Props::new().byte(prop::PAYLOAD_FORMAT, 1);
    c.send(&Publish::new(true, &topic, [0xC3, 0x28, 0xFF]).props(props).encode()).await;
    assert_eq!(c.expect_disconnect(WAIT).await, 0x99, "payload format invalid");
    w.expect_no_publish(QUIET).await;
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_utf8_with_payload_format_1_is_delivered() {
    let b = Broker::start("");
    let topic = unique("pfi-ok");
    let mut w = watcher(&b, &topic).await;
    let mut c = RawClient::v5(b.tcp_addr(), &unique("honest")).await;
    let props = Props::new().byte(prop::PAYLOAD_FORMAT, 1);
    let reason = c.publish(&Publish::new(true, &topic, "grüße").qos(1, 1).props(props)).await;
    assert!(reason < 0x80, "PUBACK reason {reason:#x}");
    assert_eq!(w.read_publish(WAIT).await.payload, "grüße".as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_receive_maximum_disconnects_0x93() {
    let b = Broker::start("[mqtt]\nreceive_maximum = 5\n");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send_connect(&Connect::v5(&unique("flood"))).await;
    let ack = c.expect_connack(WAIT).await;
    assert_eq!(ack.props.int(prop::RECEIVE_MAXIMUM), Some(5), "{ack:?}");
    let topic = unique("inflight");
    for pid in 1..=5u16 {
        c.send(&Publish::new(true, &topic, b"held").qos(2, pid).encode()).await;
        assert!(c.expect_ack(kind::PUBREC, pid).await < 0x80);
    }
    c.send(&Publish::new(true, &topic, b"one too many").qos(2, 6).encode()).await;
    assert_eq!(c.expect_disconnect(WAIT).await, 0x93, "receive maximum exceeded");
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_topic_alias_is_resolved_and_can_be_remapped() {
    let b = Broker::start("[mqtt]\ntopic_alias_maximum = 4\n");
    let base = unique("alias");
    let mut w = watcher(&b, &format!("{base}/#")).await;
    let mut c = RawClient::v5(b.tcp_addr(), &unique("aliaser")).await;
    let alias = |n| Props::new().u16(prop::TOPIC_ALIAS, n);
    let one = format!("{base}/one");
    let two = format!("{base}/two");
    c.publish(&Publish::new(true, &one, b"a").qos(1, 1).props(alias(1))).await;
    c.publish(&Publish::new(true, "", b"b").qos(1, 2).props(alias(1))).await;
    c.publish(&Publish::new(true, &two, b"c").qos(1, 3).props(alias(1))).await;
    c.publish(&Publish::new(true, "", b"d").qos(1, 4).props(alias(1))).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        let p = w.read_publish(WAIT).await;
        got.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
    }
    let want: Vec<(String, String)> = [(&one, "a"), (&one, "b"), (&two, "c"), (&two, "d")]
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
}

async fn bad_alias(extra_config: &str, publish: Publish, allowed: &[u8]) {
    let b = Broker::start(extra_config);
    let mut c = RawClient::v5(b.tcp_addr(), &unique("bad-alias")).await;
    c.send(&publish.encode()).await;
    let reason = c.expect_disconnect(WAIT).await;
    assert!(allowed.contains(&reason), "reason {reason:#x}, expected one of {allowed:x?}");
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_zero_is_refused() {
    let p = Publish::new(true, "alias/zero", b"x").props(Props::new().u16(prop::TOPIC_ALIAS, 0));
    bad_alias("[mqtt]\ntopic_alias_maximum = 4\n", p, &[0x94, 0x82]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_above_maximum_disconnects_0x94() {
    let p = Publish::new(true, "alias/big", b"x").props(Props::new().u16(prop::TOPIC_ALIAS, 5));
    bad_alias("[mqtt]\ntopic_alias_maximum = 4\n", p, &[0x94]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topic_alias_with_empty_topic_is_refused() {
    let p = Publish::new(true, "", b"x").props(Props::new().u16(prop::TOPIC_ALIAS, 2));
    bad_alias("[mqtt]\ntopic_alias_maximum = 4\n", p, &[0x82, 0x94]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_topic_without_alias_is_refused() {
    let p = Publish::new(true, "", b"x");
    bad_alias("", p, &[0x82, 0x90]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_topic_aliases_are_used_only_when_the_client_allows_them() {
    let b = Broker::start("");
    let topic = unique("outbound");
    let mut aliased_conn = Connect::v5(&unique("short-topics"));
    aliased_conn.props = Props::new().u16(prop::TOPIC_ALIAS_MAXIMUM, 10);
    let mut aliased = RawClient::connect_ok(b.tcp_addr(), &aliased_conn).await;
    aliased.subscribe(1, &[(&topic, 0)]).await;
    let mut plain = RawClient::v5(b.tcp_addr(), &unique("long-topics")).await;
    plain.subscribe(1, &[(&topic, 0)]).await;

    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    for n in 0..3u16 {
        publ.publish(&Publish::new(false, &topic, n.to_string()).qos(1, n + 1)).await;
    }
    let first = aliased.read_publish(WAIT).await;
    assert_eq!(first.topic, topic, "the first message must carry the topic name");
    let alias = first.props.int(prop::TOPIC_ALIAS);
    assert!(matches!(alias, Some(1..=10)), "first message sets an alias: {first:?}");
    for n in 1..3 {
        let p = aliased.read_publish(WAIT).await;
        assert_eq!(p.topic, "", "message {n} should use the alias only: {p:?}");
        assert_eq!(p.props.int(prop::TOPIC_ALIAS), alias);
        assert_eq!(p.payload, n.to_string().as_bytes());
    }
    for n in 0..3 {
        let p = plain.read_publish(WAIT).await;
        assert_eq!(p.topic, topic);
        assert!(!p.props.has(prop::TOPIC_ALIAS), "alias sent to a client that allows none");
        assert_eq!(p.payload, n.to_string().as_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_the_client_maximum_packet_size_are_skipped() {
    let b = Broker::start("");
    let topic = unique("mps");
    let mut conn = Connect::v5(&unique("tiny"));
    conn.props = Props::new().u32(prop::MAXIMUM_PACKET_SIZE, 128);
    let mut tiny = RawClient::connect_ok(b.tcp_addr(), &conn).await;
    tiny.subscribe(1, &[(&topic, 1)]).await;
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    publ.publish(&Publish::new(false, &topic, vec![b'x'; 500]).qos(1, 1)).await;
    publ.publish(&Publish::new(false, &topic, b"small").qos(1, 2)).await;
    let p = tiny.read_publish(WAIT).await;
    assert_eq!(p.payload, b"small", "the oversized message must be skipped, not truncated");
    tiny.send(&wire::puback(p.pid.unwrap_or(0))).await;
    tiny.expect_no_publish(QUIET).await;
}

/// Only the fixed header of a 10 MB PUBLISH is sent: the broker must refuse from the header.
fn huge_header() -> Vec<u8> {
    let mut h = vec![0x30];
    h.extend(wire::varint(10_000_000));
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_oversized_publish_is_refused_from_its_header_0x95() {
    let b = Broker::start("[mqtt]\nmax_packet_size = 1024\n");
    let mut c = RawClient::v5(b.tcp_addr(), &unique("huge")).await;
    c.send(&huge_header()).await;
    assert_eq!(c.expect_disconnect(WAIT).await, 0x95, "packet too large");
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_oversized_publish_is_refused_from_its_header() {
    let b = Broker::start("[mqtt]\nmax_packet_size = 1024\n");
    let mut c = RawClient::v4(b.tcp_addr(), &unique("huge")).await;
    c.send(&huge_header()).await;
    c.expect_closed_v4(WAIT).await;
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_just_under_the_limit_is_accepted() {
    let b = Broker::start("[mqtt]\nmax_packet_size = 1024\n");
    let topic = unique("fits");
    let mut w = watcher(&b, &topic).await;
    let mut c = RawClient::v5(b.tcp_addr(), &unique("fits")).await;
    let fixed = Publish::new(true, &topic, b"").qos(1, 1).encode().len();
    let payload = vec![b'y'; 1024 - fixed - 1];
    let msg = Publish::new(true, &topic, &payload).qos(1, 1);
    assert!(msg.encode().len() <= 1024);
    assert!(c.publish(&msg).await < 0x80);
    assert_eq!(w.read_publish(WAIT).await.payload.len(), payload.len());
}
