//! CONNECT / CONNACK handling: protocol levels, client identifiers, invalid CONNECTs, connect
//! timeout, keepalive enforcement and the 5.0 CONNACK properties.

use fleetmq_tests::parse::{self, kind};
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::{Broker, RawClient};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_connect_is_accepted() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send_connect(&Connect::v31("legacy-31")).await;
    let p = c.read_packet(WAIT).await;
    assert_eq!((p.first_byte, p.body.as_slice()), (0x20, &[0u8, 0][..]), "3.1 CONNACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_connect_is_accepted() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send_connect(&Connect::v4("plain-311")).await;
    let p = c.read_packet(WAIT).await;
    assert_eq!((p.first_byte, p.body.as_slice()), (0x20, &[0u8, 0][..]), "3.1.1 CONNACK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_connect_is_accepted() {
    let b = Broker::start("");
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5("plain-5")).await;
    assert_eq!(ack.code, 0);
    assert!(!ack.session_present, "a clean start never has a session present");
    assert!(!ack.props.has(prop::ASSIGNED_CLIENT_ID), "id was not empty: {ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_empty_client_id_is_assigned_a_unique_one() {
    let b = Broker::start("");
    let (_c1, a1) = RawClient::handshake(b.tcp_addr(), &Connect::v5("")).await;
    let (_c2, a2) = RawClient::handshake(b.tcp_addr(), &Connect::v5("")).await;
    assert_eq!((a1.code, a2.code), (0, 0));
    let id1 = a1.props.str(prop::ASSIGNED_CLIENT_ID).expect("no Assigned Client Identifier");
    let id2 = a2.props.str(prop::ASSIGNED_CLIENT_ID).expect("no Assigned Client Identifier");
    assert!(!id1.is_empty() && !id2.is_empty());
    assert_ne!(id1, id2, "two clients got the same assigned id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_with_clean_session_is_accepted() {
    let b = Broker::start("");
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v4("")).await;
    assert_eq!(ack.code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_without_clean_session_is_rejected() {
    let b = Broker::start("");
    let mut connect = Connect::v4("");
    connect.clean = false;
    let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert_eq!(ack.code, 2, "identifier rejected");
    c.expect_closed(WAIT).await;
}

/// A CONNACK refusing an unknown protocol: 3.1.1 return code 1 or 5.0 reason 0x84.
fn assert_protocol_refused(got: &[parse::Packet]) {
    let first = got.first().expect("no CONNACK before close");
    let ack = parse::connack(first).expect("first packet is not a CONNACK");
    assert!(
        (first.body.len() == 2 && ack.code == 0x01) || ack.code == 0x84,
        "expected return code 1 or reason 0x84, got {ack:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_level_is_refused_then_closed() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    let mut connect = Connect::v4("level-6");
    connect.level_override = Some(6);
    c.send(&connect.encode()).await;
    let got = c.expect_closed(WAIT).await;
    assert_protocol_refused(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqisdp_name_with_level_4_is_refused() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    let mut connect = Connect::v4("wrong-pair");
    connect.name_override = Some(b"MQIsdp".to_vec());
    c.send(&connect.encode()).await;
    assert_refused_and_closed(&mut c, "MQIsdp with level 4").await;
}

/// The connection is closed; a CONNACK before the close (the specification allows but does not
/// require one for a bad protocol name) must not be a success.
async fn assert_refused_and_closed(c: &mut RawClient, what: &str) {
    for p in c.expect_closed(WAIT).await {
        let ack = parse::connack(&p).expect("only a CONNACK may precede the close");
        assert_ne!(ack.code, 0, "{what} was accepted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_protocol_name_is_closed() {
    let b = Broker::start("");
    for level in [4u8, 5] {
        let mut c = RawClient::connect(b.tcp_addr()).await;
        let mut connect = Connect::v4("bad-name");
        connect.name_override = Some(b"MQTX".to_vec());
        connect.level_override = Some(level);
        c.send(&connect.encode()).await;
        for p in c.expect_closed(WAIT).await {
            let ack = parse::connack(&p).expect("only a CONNACK may precede the close");
            assert_ne!(ack.code, 0, "level {level}: a bad protocol name was accepted");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_reserved_connect_flag_closes() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    let mut connect = Connect::v4("reserved");
    connect.extra_flags = 0x01;
    c.send(&connect.encode()).await;
    c.expect_closed_v4(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_reserved_connect_flag_gets_connack_malformed() {
    let b = Broker::start("");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    let mut connect = Connect::v5("reserved");
    connect.extra_flags = 0x01;
    c.send_connect(&connect).await;
    let ack = c.expect_connack(WAIT).await;
    assert_eq!(ack.code, 0x81, "malformed packet");
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_before_connect_closes() {
    let b = Broker::start("");
    for (name, bytes) in [
        ("PINGREQ", wire::pingreq()),
        ("PUBLISH", wire::Publish::new(false, "early/t", b"x").encode()),
        ("SUBSCRIBE", wire::subscribe(false, 1, &[("early/#", 0)], &Props::new())),
    ] {
        let mut c = RawClient::connect(b.tcp_addr()).await;
        c.send(&bytes).await;
        let got = c.expect_closed(WAIT).await;
        assert!(got.is_empty(), "{name} before CONNECT was answered: {got:?}");
    }
    fleetmq_tests::assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_second_connect_closes() {
    let b = Broker::start("");
    let mut c = RawClient::v4(b.tcp_addr(), "twice-4").await;
    c.send(&Connect::v4("twice-4").encode()).await;
    c.expect_closed_v4(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_second_connect_is_a_protocol_error() {
    let b = Broker::start("");
    let mut c = RawClient::v5(b.tcp_addr(), "twice-5").await;
    c.send(&Connect::v5("twice-5").encode()).await;
    assert_eq!(c.expect_disconnect(WAIT).await, 0x82);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_connect_times_out() {
    let b = Broker::start("[mqtt]\nconnect_timeout_ms = 300\n");
    let start = Instant::now();
    let mut idle = RawClient::connect(b.tcp_addr()).await;
    let mut partial = RawClient::connect(b.tcp_addr()).await;
    let connect = Connect::v4("slow").encode();
    partial.send(&connect[..connect.len() / 2]).await;
    assert!(idle.expect_closed(Duration::from_secs(3)).await.is_empty());
    assert!(partial.expect_closed(Duration::from_secs(3)).await.is_empty());
    assert!(start.elapsed() >= Duration::from_millis(250), "closed before the timeout");
}

/// Connects with a 1 s keepalive; returns the client and the moment its CONNACK arrived.
async fn silent_client(b: &Broker, mut connect: Connect) -> (RawClient, Instant) {
    connect.keepalive = 1;
    let c = RawClient::connect_ok(b.tcp_addr(), &connect).await;
    (c, Instant::now())
}

fn assert_keepalive_window(since: Instant) {
    let took = since.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took <= Duration::from_millis(3500),
        "keepalive 1 s: connection closed after {took:?}, expected about 1.5 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_keepalive_is_enforced() {
    let b = Broker::start("");
    let (mut c, since) = silent_client(&b, Connect::v4("sleepy-4")).await;
    c.expect_closed_v4(Duration::from_secs(4)).await;
    assert_keepalive_window(since);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_keepalive_timeout_sends_disconnect_0x8d() {
    let b = Broker::start("");
    let (mut c, since) = silent_client(&b, Connect::v5("sleepy-5")).await;
    assert_eq!(c.expect_disconnect(Duration::from_secs(4)).await, 0x8D);
    assert_keepalive_window(since);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_connection_alive() {
    let b = Broker::start("");
    let mut connect = Connect::v4("pinger");
    connect.keepalive = 1;
    let mut c = RawClient::connect_ok(b.tcp_addr(), &connect).await;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.send(&wire::pingreq()).await;
        let p = c.read_packet(WAIT).await;
        assert_eq!((p.first_byte, p.body.len()), (0xD0, 0), "PINGRESP");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_caps_the_client_value() {
    let b = Broker::start("[mqtt]\nmax_keepalive = 5\n");
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5("greedy")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(ack.props.int(prop::SERVER_KEEP_ALIVE), Some(5), "{ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capped_keepalive_is_enforced_with_the_server_value() {
    let b = Broker::start("[mqtt]\nmax_keepalive = 1\n");
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send_connect(&Connect::v5("capped")).await;
    let ack = c.expect_connack(WAIT).await;
    let since = Instant::now();
    assert_eq!(ack.props.int(prop::SERVER_KEEP_ALIVE), Some(1), "{ack:?}");
    assert_eq!(c.expect_disconnect(Duration::from_secs(4)).await, 0x8D);
    assert_keepalive_window(since);
}

fn assert_flag_available(ack: &parse::Connack, id: u8, what: &str) {
    let v = ack.props.int(id);
    assert!(v.is_none() || v == Some(1), "{what} must be available: {ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_connack_announces_the_configured_limits() {
    let b = Broker::start("[mqtt]\nreceive_maximum = 20\nmax_packet_size = 4096\ntopic_alias_maximum = 7\n");
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5("limits")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(ack.props.int(prop::RECEIVE_MAXIMUM), Some(20), "{ack:?}");
    assert_eq!(ack.props.int(prop::MAXIMUM_PACKET_SIZE), Some(4096), "{ack:?}");
    assert_eq!(ack.props.int(prop::TOPIC_ALIAS_MAXIMUM), Some(7), "{ack:?}");
    assert_eq!(ack.props.int(prop::MAXIMUM_QOS), None, "Maximum QoS is only sent when < 2");
    assert_flag_available(&ack, prop::RETAIN_AVAILABLE, "retain");
    assert_flag_available(&ack, prop::WILDCARD_SUB_AVAILABLE, "wildcard subscriptions");
    assert_flag_available(&ack, prop::SUB_ID_AVAILABLE, "subscription identifiers");
    assert_flag_available(&ack, prop::SHARED_SUB_AVAILABLE, "shared subscriptions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_connack_announces_reduced_qos_and_no_retain() {
    let b = Broker::start("[mqtt]\nmax_qos = 1\nretain_available = false\n");
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5("reduced")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(ack.props.int(prop::MAXIMUM_QOS), Some(1), "{ack:?}");
    assert_eq!(ack.props.int(prop::RETAIN_AVAILABLE), Some(0), "{ack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_authentication_method_is_refused() {
    let b = Broker::start("");
    let mut connect = Connect::v5("enhanced");
    connect.props = Props::new().str(prop::AUTH_METHOD, "SCRAM-SHA-1");
    let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert_eq!(ack.code, 0x8C, "bad authentication method");
    let rest = c.expect_closed(WAIT).await;
    assert!(rest.iter().all(|p| p.kind() != kind::PUBLISH), "{rest:?}");
}
