//! Malformed packets and protocol violations sent as raw bytes after a successful CONNECT (or as
//! the CONNECT itself). A 5.0 connection must get a DISCONNECT (or CONNACK) with the reason the
//! specification prescribes and then be closed; a 3.1.1 connection must be closed. After every case
//! another client on the same broker must still complete a publish/subscribe roundtrip.
//!
//! Where the specification leaves the reason open, a case lists every reason it allows.

use fleetmq_tests::wire::{self, prop, Connect, Props, Publish};
use fleetmq_tests::{assert_roundtrip, unique, Broker, RawClient};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const CONFIG: &str = "[mqtt]\nmax_packet_size = 1024\n";

const MALFORMED: &[u8] = &[0x81];
const PROTOCOL: &[u8] = &[0x82];
const MALFORMED_OR_PROTOCOL: &[u8] = &[0x81, 0x82];
/// A wildcard in a topic name: FleetMQ answers "Topic Name invalid"; the specification only says
/// the name MUST NOT contain one, so a protocol error is accepted too.
const TOPIC_INVALID: &[u8] = &[0x90, 0x82];

/// Sends `bytes` on an accepted 5.0 connection and checks the DISCONNECT reason.
async fn v5_case(name: &str, bytes: Vec<u8>, allowed: &[u8]) {
    let b = Broker::start(CONFIG);
    let mut c = RawClient::v5(b.tcp_addr(), &unique("bad5")).await;
    c.send(&bytes).await;
    let reason = c.expect_disconnect(WAIT).await;
    assert!(allowed.contains(&reason), "case {name}: DISCONNECT reason {reason:#04x}, expected one of {allowed:02x?}");
    assert_roundtrip(b.tcp_addr()).await;
}

/// Sends `bytes` on an accepted 3.1.1 connection and checks the broker closes it (the test's
/// name identifies the case).
async fn v4_case(bytes: Vec<u8>) {
    let b = Broker::start(CONFIG);
    let mut c = RawClient::v4(b.tcp_addr(), &unique("bad4")).await;
    c.send(&bytes).await;
    c.expect_closed_v4(WAIT).await;
    assert_roundtrip(b.tcp_addr()).await;
}

macro_rules! v5_cases {
    ($($name:ident: $bytes:expr => $allowed:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            v5_case(stringify!($name), $bytes, $allowed).await;
        }
    )*};
}

macro_rules! v4_cases {
    ($($name:ident: $bytes:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            v4_case($bytes).await;
        }
    )*};
}

fn publish5(topic: &[u8], props: Props) -> Vec<u8> {
    Publish::new(true, topic, b"x").props(props).encode()
}

fn subscribe5(options: u8) -> Vec<u8> {
    wire::subscribe(true, 1, &[("ok/topic", options)], &Props::new())
}

/// A SUBSCRIBE whose fixed-header flags are 0 instead of the required 0b0010.
fn subscribe_bad_flags(v5: bool) -> Vec<u8> {
    let mut p = wire::subscribe(v5, 1, &[("ok/topic", 1)], &Props::new());
    p[0] = 0x80;
    p
}

/// A QoS 1 PUBLISH whose remaining length promises more than is sent.
fn truncated() -> Vec<u8> {
    let mut p = vec![0x32, 100];
    p.extend(wire::string("trunc"));
    p.extend([0x00, 0x01]);
    p
}

fn oversized(v5: bool) -> Vec<u8> {
    Publish::new(v5, "too/big", vec![b'z'; 2000]).encode()
}

/// Five remaining-length bytes: a Variable Byte Integer may have at most four.
const LONG_LENGTH: [u8; 6] = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];

v5_cases! {
    v5_remaining_length_of_five_bytes: LONG_LENGTH.to_vec() => MALFORMED;
    v5_subscribe_with_reserved_header_flags: subscribe_bad_flags(true) => MALFORMED;
    v5_publish_with_qos_3: vec![0x36, 0x06, 0x00, 0x01, b't', 0x00, 0x01, 0x00] => MALFORMED;
    v5_subscribe_with_packet_id_0: wire::subscribe(true, 0, &[("a", 1)], &Props::new())
        => MALFORMED_OR_PROTOCOL;
    v5_qos1_publish_with_packet_id_0: Publish::new(true, "a", b"x").qos(1, 0).encode()
        => MALFORMED_OR_PROTOCOL;
    v5_plus_wildcard_in_topic_name: publish5(b"a/+/b", Props::new()) => TOPIC_INVALID;
    v5_hash_wildcard_in_topic_name: publish5(b"a/#", Props::new()) => TOPIC_INVALID;
    v5_nul_character_in_topic_name: publish5(b"a\0b", Props::new()) => MALFORMED;
    v5_invalid_utf8_in_topic_name: publish5(b"a/\xC3\x28", Props::new()) => MALFORMED;
    v5_string_longer_than_the_packet: vec![0x30, 0x04, 0xFF, 0xFF, b'a', 0x00] => MALFORMED;
    v5_duplicate_property: publish5(
        b"dup/prop",
        Props::new().byte(prop::PAYLOAD_FORMAT, 0).byte(prop::PAYLOAD_FORMAT, 0),
    ) => PROTOCOL;
    v5_unknown_property_id: publish5(b"odd/prop", Props::new().raw(&[0x7F, 0x00])) => MALFORMED;
    v5_property_not_allowed_in_publish: publish5(
        b"odd/prop",
        Props::new().u32(prop::SESSION_EXPIRY, 10),
    ) => MALFORMED;
    v5_subscription_identifier_in_client_publish: publish5(
        b"sub/id",
        Props::new().varint(prop::SUBSCRIPTION_ID, 3),
    ) => MALFORMED_OR_PROTOCOL;
    v5_payload_format_indicator_7: publish5(
        b"pfi/seven",
        Props::new().byte(prop::PAYLOAD_FORMAT, 7),
    ) => &[0x81, 0x82, 0x99];
    v5_subscription_identifier_0: wire::subscribe(
        true,
        1,
        &[("sub/zero", 1)],
        &Props::new().varint(prop::SUBSCRIPTION_ID, 0),
    ) => PROTOCOL;
    v5_reserved_subscription_option_bits: subscribe5(0xC1) => MALFORMED;
    // MQTT 5.0 §3.8.3.1: "It is a Protocol Error if the Maximum QoS field has the value 3."
    v5_subscription_qos_3: subscribe5(0x03) => PROTOCOL;
    v5_retain_handling_3: subscribe5(0x31) => PROTOCOL;
    v5_no_local_on_shared_subscription: wire::subscribe(
        true,
        1,
        &[("$share/g/t", 0x05)],
        &Props::new(),
    ) => PROTOCOL;
    v5_subscribe_without_filters: wire::subscribe(true, 1, &[], &Props::new()) => PROTOCOL;
    v5_unsubscribe_without_filters: wire::unsubscribe(true, 1, &[]) => PROTOCOL;
    v5_pubrel_with_wrong_header_flags: vec![0x60, 0x02, 0x00, 0x01] => MALFORMED;
    v5_pingreq_with_a_body: vec![0xC0, 0x01, 0x00] => MALFORMED;
    v5_reserved_packet_type_0: vec![0x00, 0x00] => MALFORMED_OR_PROTOCOL;
    v5_auth_without_authentication_method: vec![0xF0, 0x02, 0x18, 0x00] => &[0x82, 0x8C];
    v5_complete_publish_over_max_packet_size: oversized(true) => &[0x95];
}

v4_cases! {
    v4_remaining_length_of_five_bytes: LONG_LENGTH.to_vec();
    v4_subscribe_with_reserved_header_flags: subscribe_bad_flags(false);
    v4_publish_with_qos_3: vec![0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01];
    v4_subscribe_with_packet_id_0: wire::subscribe(false, 0, &[("a", 1)], &Props::new());
    v4_qos1_publish_with_packet_id_0: Publish::new(false, "a", b"x").qos(1, 0).encode();
    v4_wildcard_in_topic_name: Publish::new(false, "a/+", b"x").encode();
    v4_nul_character_in_topic_name: Publish::new(false, b"a\0b", b"x").encode();
    v4_invalid_utf8_in_topic_name: Publish::new(false, b"\xFF\xFE", b"x").encode();
    v4_reserved_subscription_option_bits: wire::subscribe(false, 1, &[("a", 0x04)], &Props::new());
    v4_subscription_qos_3: wire::subscribe(false, 1, &[("a", 0x03)], &Props::new());
    v4_subscribe_without_filters: wire::subscribe(false, 1, &[], &Props::new());
    v4_unsubscribe_without_filters: wire::unsubscribe(false, 1, &[]);
    v4_auth_packet_does_not_exist: vec![0xF0, 0x00];
    v4_reserved_packet_type_0: vec![0x00, 0x00];
    v4_complete_publish_over_max_packet_size: oversized(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_packet_then_client_close_leaves_the_broker_healthy() {
    let b = Broker::start(CONFIG);
    for connect in [Connect::v4(&unique("trunc4")), Connect::v5(&unique("trunc5"))] {
        let mut c = RawClient::connect_ok(b.tcp_addr(), &connect).await;
        c.send(&truncated()).await;
        c.shutdown_write().await;
        c.expect_closed(WAIT).await;
    }
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_maximum_0_in_connect_is_refused() {
    let b = Broker::start(CONFIG);
    let mut connect = Connect::v5(&unique("rm0"));
    connect.props = Props::new().u16(prop::RECEIVE_MAXIMUM, 0);
    let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert_eq!(ack.code, 0x82, "receive maximum 0 is a protocol error: {ack:?}");
    c.expect_closed(WAIT).await;
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_property_in_connect_is_refused() {
    let b = Broker::start(CONFIG);
    let mut connect = Connect::v5(&unique("dupconn"));
    connect.props = Props::new().u32(prop::SESSION_EXPIRY, 1).u32(prop::SESSION_EXPIRY, 2);
    let (mut c, ack) = RawClient::handshake(b.tcp_addr(), &connect).await;
    assert_eq!(ack.code, 0x82, "duplicate property is a protocol error: {ack:?}");
    c.expect_closed(WAIT).await;
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_qos_3_in_connect_is_refused() {
    let b = Broker::start(CONFIG);
    let mut connect = Connect::v4(&unique("willq3"));
    connect.will =
        Some(wire::Will { topic: "w".into(), payload: b"x".to_vec(), qos: 3, retain: false, props: Props::new() });
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send(&connect.encode()).await;
    c.expect_closed_v4(WAIT).await;
    assert_roundtrip(b.tcp_addr()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_connect_is_closed() {
    let b = Broker::start(CONFIG);
    let mut c = RawClient::connect(b.tcp_addr()).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let got = c.expect_closed(WAIT).await;
    assert!(got.is_empty(), "answered garbage with {got:?}");
    assert_roundtrip(b.tcp_addr()).await;
}
