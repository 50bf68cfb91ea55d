//! Invalid input: each case asserts the exact error the decoder reports.

use super::*;

const V3: Option<Protocol> = Some(Protocol::V3_1_1);
const V5: Option<Protocol> = Some(Protocol::V5);

fn dec(bytes: &[u8], protocol: Option<Protocol>) -> Result<Option<Packet>> {
    decode(&mut BytesMut::from(bytes), protocol, BIG)
}

/// A packet from its first byte and body (minimal remaining length).
fn raw(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len & 0x7F) as u8;
        len >>= 7;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string field.
fn s(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// A 5.0 CONNECT body: flags, properties and payload fields given raw.
fn connect5(flags: u8, props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = s(b"MQTT");
    body.extend_from_slice(&[5, flags, 0, 60, props.len() as u8]);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    raw(0x10, &body)
}

/// A 3.1.1 CONNECT body.
fn connect3(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = s(b"MQTT");
    body.extend_from_slice(&[4, flags, 0, 60]);
    body.extend_from_slice(payload);
    raw(0x10, &body)
}

/// A 5.0 QoS 0 PUBLISH to `topic` with raw properties and payload.
fn publish5(topic: &[u8], props: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = s(topic);
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(payload);
    raw(0x30, &body)
}

fn malformed(r: Result<Option<Packet>>) {
    assert!(matches!(r, Err(Error::Malformed(_))), "{r:?}");
}

fn protocol_error(r: Result<Option<Packet>>) {
    assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
}

fn connect_error(r: Result<Option<Packet>>, protocol: Protocol, check: fn(&Error) -> bool) {
    match r {
        Err(Error::Connect { protocol: p, error }) if p == protocol && check(&error) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn remaining_length_of_five_bytes() {
    malformed(dec(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], V5));
    // Known from the fourth byte already.
    malformed(dec(&[0x30, 0x80, 0x80, 0x80, 0x80], V3));
}

#[test]
fn reserved_fixed_header_flags() {
    let sub = [0, 1, 0, 1, b'a', 0];
    malformed(dec(&raw(0x80, &sub), V3));
    assert!(dec(&raw(0x82, &sub), V3).is_ok());
    malformed(dec(&raw(0xA0, &[0, 1, 0, 1, b'a']), V3));
    malformed(dec(&raw(0xA3, &[0, 1, 0, 1, b'a']), V3));
    malformed(dec(&raw(0x60, &[0, 1]), V5));
    malformed(dec(&raw(0x41, &[0, 1]), V5));
    malformed(dec(&raw(0xC1, &[]), V5));
    malformed(dec(&raw(0xE2, &[]), V3));
    malformed(dec(&raw(0x11, &connect3(0x02, &s(b"c"))[2..]), None));
    malformed(dec(&[0x00, 0x00], V5));
}

#[test]
fn connect_reserved_flag_bit() {
    let r = dec(&connect3(0x03, &s(b"c")), None);
    connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::Malformed(_)));
}

#[test]
fn publish_qos_3_and_dup_on_qos_0() {
    malformed(dec(&raw(0x36, &[0, 1, b'a', 0, 1]), V3));
    malformed(dec(&raw(0x38, &[0, 1, b'a']), V3));
}

#[test]
fn packet_identifier_zero() {
    protocol_error(dec(&raw(0x32, &[0, 1, b'a', 0, 0]), V3));
    protocol_error(dec(&raw(0x34, &[0, 1, b'a', 0, 0, 0]), V5));
    protocol_error(dec(&raw(0x82, &[0, 0, 0, 1, b'a', 0]), V3));
    protocol_error(dec(&raw(0xA2, &[0, 0, 0, 1, b'a']), V3));
    protocol_error(dec(&raw(0x40, &[0, 0]), V3));
    protocol_error(dec(&raw(0x62, &[0, 0]), V5));
    protocol_error(dec(&raw(0x90, &[0, 0, 0]), V3));
}

#[test]
fn wildcards_and_empty_publish_topics() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+"] {
        let r = dec(&publish5(topic, &[], b""), V5);
        assert!(matches!(r, Err(Error::TopicName(_))), "{r:?}");
    }
    assert!(matches!(dec(&raw(0x30, &s(b"")), V3), Err(Error::TopicName(_))));
    protocol_error(dec(&publish5(b"", &[], b""), V5));
    assert!(dec(&publish5(b"", &[0x23, 0, 1], b""), V5).is_ok());
}

#[test]
fn invalid_strings() {
    malformed(dec(&raw(0x30, &s(b"a\0b")), V3));
    malformed(dec(&raw(0x30, &s(b"a\xffb")), V3));
    // An encoded surrogate (U+D800) is ill-formed UTF-8.
    malformed(dec(&raw(0x30, &s(b"\xed\xa0\x80")), V3));
    malformed(dec(&publish5(b"t", &[0x26, 0, 1, b'k', 0, 1, 0xC0], b""), V5));
}

#[test]
fn property_identifier_rules() {
    // Duplicate Message Expiry Interval.
    let dup = [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2];
    protocol_error(dec(&publish5(b"t", &dup, b""), V5));
    // User properties may repeat.
    let users = [0x26, 0, 1, b'k', 0, 0, 0x26, 0, 1, b'k', 0, 0];
    assert!(dec(&publish5(b"t", &users, b""), V5).is_ok());
    // Unknown identifiers, one- and two-byte.
    malformed(dec(&publish5(b"t", &[0x7F, 0], b""), V5));
    malformed(dec(&publish5(b"t", &[0x81, 0x00, 0], b""), V5));
    // Session Expiry Interval is not a PUBLISH property.
    malformed(dec(&publish5(b"t", &[0x11, 0, 0, 0, 1], b""), V5));
    // Subscription Identifier may repeat in PUBLISH but not in SUBSCRIBE.
    assert!(dec(&publish5(b"t", &[0x0B, 1, 0x0B, 2], b""), V5).is_ok());
    let mut sub = vec![0, 1, 4, 0x0B, 1, 0x0B, 2];
    sub.extend_from_slice(&[0, 1, b'a', 0]);
    protocol_error(dec(&raw(0x82, &sub), V5));
    // A property running past its block is malformed.
    malformed(dec(&publish5(b"t", &[0x02, 0, 0], b"\0\0"), V5));
}

#[test]
fn property_values() {
    // Subscription Identifier 0, in PUBLISH and SUBSCRIBE.
    protocol_error(dec(&publish5(b"t", &[0x0B, 0], b""), V5));
    protocol_error(dec(&raw(0x82, &[0, 1, 2, 0x0B, 0, 0, 1, b'a', 0]), V5));
    // Non-minimal Variable Byte Integer.
    malformed(dec(&publish5(b"t", &[0x0B, 0x81, 0x00], b""), V5));
    // Payload Format Indicator 7.
    protocol_error(dec(&publish5(b"t", &[0x01, 7], b""), V5));
    // Payload Format Indicator 1 with a payload that is not UTF-8.
    assert_eq!(dec(&publish5(b"t", &[0x01, 1], b"\xff"), V5), Err(Error::PayloadFormat));
    assert!(dec(&publish5(b"t", &[0x01, 0], b"\xff"), V5).is_ok());
    // Topic Alias 0.
    let r = dec(&publish5(b"t", &[0x23, 0, 0], b""), V5);
    assert_eq!(r, Err(Error::Protocol(props::TOPIC_ALIAS_ZERO)));
    // Response Topic with a wildcard.
    protocol_error(dec(&publish5(b"t", &[0x08, 0, 1, b'#'], b""), V5));
    // Receive Maximum 0 in CONNECT.
    let r = dec(&connect5(0x02, &[0x21, 0, 0], &s(b"c")), None);
    connect_error(r, Protocol::V5, |e| matches!(e, Error::Protocol(_)));
    // Maximum Packet Size 0, Request Problem Information 2.
    let r = dec(&connect5(0x02, &[0x27, 0, 0, 0, 0], &s(b"c")), None);
    connect_error(r, Protocol::V5, |e| matches!(e, Error::Protocol(_)));
    let r = dec(&connect5(0x02, &[0x17, 2], &s(b"c")), None);
    connect_error(r, Protocol::V5, |e| matches!(e, Error::Protocol(_)));
    // Authentication Data without Authentication Method.
    let r = dec(&connect5(0x02, &[0x16, 0, 0], &s(b"c")), None);
    connect_error(r, Protocol::V5, |e| matches!(e, Error::Protocol(_)));
}

#[test]
fn will_payload_format() {
    let mut payload = s(b"c");
    payload.extend_from_slice(&[2, 0x01, 1]);
    payload.extend_from_slice(&s(b"will/topic"));
    payload.extend_from_slice(&s(b"\xff"));
    let r = dec(&connect5(0x06, &[], &payload), None);
    connect_error(r, Protocol::V5, |e| *e == Error::PayloadFormat);
}

#[test]
fn subscription_options() {
    let sub = |v5: bool, options: u8, filter: &[u8]| {
        let mut body = vec![0, 1];
        if v5 {
            body.push(0);
        }
        body.extend_from_slice(&s(filter));
        body.push(options);
        dec(&raw(0x82, &body), if v5 { V5 } else { V3 })
    };
    malformed(sub(true, 0x40, b"a"));
    malformed(sub(true, 0x80, b"a"));
    malformed(sub(false, 0x04, b"a"));
    malformed(sub(false, 0x03, b"a"));
    protocol_error(sub(true, 0x03, b"a"));
    protocol_error(sub(true, 0x30, b"a"));
    protocol_error(sub(true, 0x04, b"$share/g/a"));
    assert!(sub(true, 0x2E, b"a").is_ok());
}

#[test]
fn empty_subscribe_and_unsubscribe() {
    protocol_error(dec(&raw(0x82, &[0, 1, 0]), V5));
    protocol_error(dec(&raw(0x82, &[0, 1]), V3));
    protocol_error(dec(&raw(0xA2, &[0, 1, 0]), V5));
    protocol_error(dec(&raw(0xA2, &[0, 1]), V3));
}

#[test]
fn truncated_and_trailing_bytes() {
    // The topic length claims more than the packet holds.
    malformed(dec(&raw(0x30, &[0, 5, b'a']), V3));
    malformed(dec(&raw(0x32, &[0, 1, b'a', 0]), V3));
    malformed(dec(&raw(0x40, &[0]), V3));
    // Trailing bytes.
    malformed(dec(&raw(0x40, &[0, 1, 0]), V3));
    malformed(dec(&raw(0xC0, &[0]), V3));
    malformed(dec(&raw(0xE0, &[0]), V3));
    malformed(dec(&raw(0xB0, &[0, 1, 0]), V3));
    malformed(dec(&raw(0x20, &[0, 0, 0]), V3));
    let mut connect = connect3(0x02, &s(b"c"));
    connect.push(0);
    connect[1] += 1;
    let r = dec(&connect, None);
    connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::Malformed(_)));
}

#[test]
fn oversize_from_the_fixed_header_alone() {
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let r = decode(&mut buf, V5, 1024);
    assert_eq!(r, Err(Error::TooLarge { size: 268_435_460, max: 1024 }));
    let mut buf = BytesMut::from(&[0x30, 0x7F][..]);
    assert_eq!(decode(&mut buf, V3, 128), Err(Error::TooLarge { size: 129, max: 128 }));
    let mut buf = BytesMut::from(&[0x30, 0x7E][..]);
    assert_eq!(decode(&mut buf, V3, 128), Ok(None));
}

#[test]
fn connection_state() {
    protocol_error(dec(&[0xC0, 0], None));
    protocol_error(dec(&[0x30], None));
    let connect = connect3(0x02, &s(b"c"));
    protocol_error(dec(&connect, V3));
    protocol_error(dec(&connect, V5));
    malformed(dec(&[0xF0, 0], V3));
    malformed(dec(&[0xF0, 0], Some(Protocol::V3_1)));
}

#[test]
fn protocol_name_and_level() {
    let connect = |name: &[u8], level: u8| {
        let mut body = s(name);
        body.extend_from_slice(&[level, 0x02, 0, 60]);
        body.extend_from_slice(&s(b"c"));
        dec(&raw(0x10, &body), None)
    };
    assert_eq!(connect(b"MQTT", 6), Err(Error::UnsupportedProtocol(6)));
    assert_eq!(connect(b"MQTT", 3), Err(Error::UnsupportedProtocol(3)));
    assert_eq!(connect(b"MQIsdp", 4), Err(Error::UnsupportedProtocol(4)));
    assert_eq!(connect(b"MQTX", 4), Err(Error::UnsupportedProtocol(4)));
    assert_eq!(connect(b"\xff\xfe", 4), Err(Error::UnsupportedProtocol(4)));
    assert!(matches!(connect(b"MQIsdp", 3), Ok(Some(Packet::Connect(c))) if c.protocol == Protocol::V3_1));
    malformed(dec(&raw(0x10, &s(b"MQTT")), None));
}

#[test]
fn connect_flag_consistency() {
    let mut payload = s(b"c");
    payload.extend_from_slice(&s(b"pw"));
    // Password without user name: malformed in 3.1.1, allowed in 5.0.
    let r = dec(&connect3(0x42, &payload), None);
    connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::Malformed(_)));
    assert!(dec(&connect5(0x42, &[], &payload), None).is_ok());
    // Will QoS or retain without the will flag, will QoS 3.
    for flags in [0x0A, 0x22, 0x1E] {
        let r = dec(&connect3(flags, &s(b"c")), None);
        connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::Malformed(_)));
    }
    // Will topic with a wildcard.
    let mut will = s(b"c");
    will.extend_from_slice(&s(b"a/#"));
    will.extend_from_slice(&s(b""));
    let r = dec(&connect3(0x06, &will), None);
    connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::TopicName(_)));
    // Missing payload fields announced by the flags.
    let r = dec(&connect3(0x82, &s(b"c")), None);
    connect_error(r, Protocol::V3_1_1, |e| matches!(e, Error::Malformed(_)));
}

#[test]
fn reason_codes_per_packet_type() {
    protocol_error(dec(&raw(0x62, &[0, 1, 0x10]), V5));
    assert!(dec(&raw(0x62, &[0, 1, 0x92]), V5).is_ok());
    protocol_error(dec(&raw(0x40, &[0, 1, 0x92]), V5));
    protocol_error(dec(&raw(0xE0, &[0x18]), V5));
    protocol_error(dec(&raw(0xF0, &[0x04, 0]), V5));
    protocol_error(dec(&raw(0x90, &[0, 1, 0, 0x11]), V5));
    protocol_error(dec(&raw(0x90, &[0, 1, 0x87]), V3));
    protocol_error(dec(&raw(0xB0, &[0, 1, 0, 0x01]), V5));
    protocol_error(dec(&raw(0x20, &[0, 0x8B, 0]), V5));
    protocol_error(dec(&raw(0x20, &[0, 6]), V3));
    // Empty reason lists.
    protocol_error(dec(&raw(0x90, &[0, 1, 0]), V5));
    protocol_error(dec(&raw(0xB0, &[0, 1, 0]), V5));
}

#[test]
fn connack_and_auth_rules() {
    protocol_error(dec(&raw(0x20, &[1, 0x87, 0]), V5));
    malformed(dec(&raw(0x20, &[2, 0, 0]), V5));
    // AUTH with properties but no Authentication Method.
    protocol_error(dec(&raw(0xF0, &[0x18, 0]), V5));
    // AUTH with a reason code needs the Property Length.
    malformed(dec(&raw(0xF0, &[0x18]), V5));
}

#[test]
fn remaining_length_must_be_minimal_in_v5_only() {
    let non_minimal = [0xC0, 0x80, 0x00];
    malformed(dec(&non_minimal, V5));
    assert_eq!(dec(&non_minimal, V3), Ok(Some(Packet::PingReq)));
    let mut connect = connect5(0x02, &[], &s(b"c"));
    let len = connect[1];
    connect.splice(1..2, [len | 0x80, 0]);
    let r = dec(&connect, None);
    connect_error(r, Protocol::V5, |e| matches!(e, Error::Malformed(_)));
}
