//! Codec tests: roundtrips of every packet type at every protocol level, the encoder's level
//! mappings and short forms, and (in submodules) invalid input and random mutations.

mod invalid;
mod robust;

use super::*;
use bytes::{Bytes, BytesMut};

const LEVELS: [Protocol; 3] = [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5];
const BIG: usize = 1 << 20;

fn users() -> Vec<UserProperty> {
    vec![("k".into(), "v".into()), ("k".into(), "second ✓".into())]
}

fn ack_props() -> AckProperties {
    AckProperties { reason_string: Some("why".into()), user_properties: users() }
}

fn connect_v5() -> Connect {
    Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: "device-17".into(),
        will: Some(LastWill {
            topic: "fleet/17/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(5),
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(60),
                content_type: Some("text/plain".into()),
                response_topic: Some("fleet/17/reply".into()),
                correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
                user_properties: users(),
            },
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret\0\xff")),
        properties: ConnectProperties {
            session_expiry_interval: Some(3600),
            receive_maximum: Some(20),
            maximum_packet_size: Some(65_536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: users(),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
        },
    }
}

fn connack_v5() -> ConnAck {
    ConnAck {
        session_present: true,
        reason: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            session_expiry_interval: Some(7200),
            receive_maximum: Some(100),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_maximum: Some(16),
            reason_string: Some("welcome".into()),
            user_properties: users(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(45),
            response_information: Some("resp/".into()),
            server_reference: Some("other:1883".into()),
            authentication_method: Some("SCRAM-SHA-256".into()),
            authentication_data: Some(Bytes::from_static(b"server-final")),
        },
    }
}

fn publish_v5() -> Publish {
    Publish {
        dup: true,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "fleet/17/telemetry".into(),
        packet_id: 7,
        payload: Bytes::from_static("{\"t\":21.5,\"µ\":1}".as_bytes()),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(300),
            topic_alias: Some(3),
            response_topic: Some("fleet/17/reply".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: users(),
            subscription_identifiers: vec![1, 268_435_455, 1],
            content_type: Some("application/json".into()),
        },
    }
}

/// Every packet type with every 5.0 field set, plus the short forms.
fn samples_v5() -> Vec<Packet> {
    vec![
        Packet::Connect(Box::new(connect_v5())),
        Packet::ConnAck(connack_v5()),
        Packet::ConnAck(ConnAck { reason: ReasonCode::NOT_AUTHORIZED, ..Default::default() }),
        Packet::Publish(publish_v5()),
        Packet::Publish(Publish {
            qos: QoS::ExactlyOnce,
            topic: "".into(),
            packet_id: 65_535,
            properties: PublishProperties { topic_alias: Some(3), ..Default::default() },
            ..Default::default()
        }),
        Packet::Publish(Publish { topic: "a".into(), ..Default::default() }),
        Packet::PubAck(PubResp { packet_id: 7, reason: ReasonCode::NO_MATCHING_SUBSCRIBERS, properties: ack_props() }),
        Packet::PubAck(PubResp::new(8)),
        Packet::PubAck(PubResp::with_reason(9, ReasonCode::QUOTA_EXCEEDED)),
        Packet::PubRec(PubResp { packet_id: 10, reason: ReasonCode::PAYLOAD_FORMAT_INVALID, properties: ack_props() }),
        Packet::PubRel(PubResp {
            packet_id: 11,
            reason: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: ack_props(),
        }),
        Packet::PubComp(PubResp { packet_id: 12, reason: ReasonCode::SUCCESS, properties: ack_props() }),
        Packet::Subscribe(Subscribe {
            packet_id: 13,
            filters: vec![
                SubscribeFilter {
                    filter: "fleet/+/telemetry".into(),
                    options: SubOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 2,
                    },
                },
                SubscribeFilter {
                    filter: "$share/g/fleet/#".into(),
                    options: SubOptions { qos: QoS::AtLeastOnce, retain_handling: 1, ..Default::default() },
                },
            ],
            properties: SubscribeProperties { subscription_identifier: Some(268_435_455), user_properties: users() },
        }),
        Packet::SubAck(SubAck {
            packet_id: 13,
            reasons: vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::UNSPECIFIED_ERROR,
                ReasonCode::NOT_AUTHORIZED,
            ],
            properties: ack_props(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 14,
            filters: vec!["fleet/#".into(), "a/b".into()],
            user_properties: users(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 14,
            reasons: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: ack_props(),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::DISCONNECT_WITH_WILL,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: users(),
                server_reference: Some("other:1883".into()),
            },
        }),
        Packet::Disconnect(Disconnect::default()),
        Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)),
        Packet::Auth(Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM-SHA-256".into()),
                authentication_data: Some(Bytes::from_static(b"server-first")),
                reason_string: Some("more".into()),
                user_properties: users(),
            },
        }),
        Packet::Auth(Auth::default()),
    ]
}

/// The form `p` takes at a 3.x level: no properties, reasons that level can express; `None` for
/// AUTH, which does not exist there.
fn at_level(p: Packet, protocol: Protocol) -> Option<Packet> {
    if protocol.is_v5() {
        return Some(p);
    }
    let resp = |r: PubResp| PubResp::new(r.packet_id);
    Some(match p {
        Packet::Connect(mut c) => {
            c.protocol = protocol;
            c.properties = Default::default();
            if let Some(w) = &mut c.will {
                w.properties = Default::default();
            }
            Packet::Connect(c)
        }
        Packet::ConnAck(c) => Packet::ConnAck(ConnAck {
            session_present: c.session_present && protocol != Protocol::V3_1,
            reason: c.reason,
            properties: Default::default(),
        }),
        Packet::Publish(mut p) => {
            p.properties = Default::default();
            if p.topic.is_empty() {
                p.topic = "x".into();
            }
            Packet::Publish(p)
        }
        Packet::PubAck(r) => Packet::PubAck(resp(r)),
        Packet::PubRec(r) => Packet::PubRec(resp(r)),
        Packet::PubRel(r) => Packet::PubRel(resp(r)),
        Packet::PubComp(r) => Packet::PubComp(resp(r)),
        Packet::Subscribe(mut s) => {
            s.properties = Default::default();
            for f in &mut s.filters {
                f.options = SubOptions { qos: f.options.qos, ..Default::default() };
            }
            Packet::Subscribe(s)
        }
        Packet::SubAck(mut s) => {
            s.properties = Default::default();
            s.reasons.retain(|r| r.0 <= 2 || r.0 == 0x80);
            Packet::SubAck(s)
        }
        Packet::Unsubscribe(mut u) => {
            u.user_properties.clear();
            Packet::Unsubscribe(u)
        }
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck { packet_id: u.packet_id, ..Default::default() }),
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::default()),
        Packet::Auth(_) => return None,
        other => other,
    })
}

/// Samples for one level.
pub(super) fn samples(protocol: Protocol) -> Vec<Packet> {
    samples_v5().into_iter().filter_map(|p| at_level(p, protocol)).collect()
}

/// The connection state in which `p` is decoded.
pub(super) fn state_for(p: &Packet, protocol: Protocol) -> Option<Protocol> {
    match p {
        Packet::Connect(_) => None,
        _ => Some(protocol),
    }
}

pub(super) fn encode_vec(p: &Packet, protocol: Protocol) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(p, protocol, &mut buf).expect("sample encodes");
    buf
}

#[test]
fn roundtrip_every_packet_type_at_every_level() {
    for protocol in LEVELS {
        let samples = samples(protocol);
        let kinds: std::collections::HashSet<_> = samples.iter().map(Packet::name).collect();
        assert_eq!(kinds.len(), if protocol.is_v5() { 15 } else { 14 });
        for p in samples {
            let mut buf = encode_vec(&p, protocol);
            assert_eq!(buf.len(), encoded_len(&p, protocol), "{} {protocol:?}", p.name());
            let decoded = decode(&mut buf, state_for(&p, protocol), BIG);
            assert_eq!(decoded, Ok(Some(p.clone())), "{protocol:?}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn incomplete_input_is_not_consumed() {
    for protocol in LEVELS {
        for p in samples(protocol) {
            let full = encode_vec(&p, protocol);
            let mut buf = BytesMut::new();
            for (i, &b) in full.iter().enumerate() {
                buf.extend_from_slice(&[b]);
                let out = decode(&mut buf, state_for(&p, protocol), BIG).expect("valid prefix");
                if i + 1 < full.len() {
                    assert_eq!(out, None);
                    assert_eq!(&buf[..], &full[..=i]);
                } else {
                    assert_eq!(out, Some(p.clone()));
                }
            }
        }
    }
}

#[test]
fn back_to_back_packets_decode_in_order() {
    let samples = samples(Protocol::V5);
    let mut buf = BytesMut::new();
    for p in samples.iter().skip(1) {
        encode(p, Protocol::V5, &mut buf).expect("encodes");
    }
    for p in samples.iter().skip(1) {
        assert_eq!(decode(&mut buf, Some(Protocol::V5), BIG), Ok(Some(p.clone())));
    }
    assert_eq!(decode(&mut buf, Some(Protocol::V5), BIG), Ok(None));
}

#[test]
fn publish_payload_shares_the_read_buffer() {
    let p = Packet::Publish(publish_v5());
    let mut buf = encode_vec(&p, Protocol::V5);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Ok(Some(Packet::Publish(decoded))) = decode(&mut buf, Some(Protocol::V5), BIG) else {
        panic!("PUBLISH expected");
    };
    assert!(range.contains(&(decoded.payload.as_ptr() as usize)));
    let corr = decoded.properties.correlation_data.expect("correlation data");
    assert!(range.contains(&(corr.as_ptr() as usize)));
}

#[test]
fn v5_short_forms() {
    let len = |p: &Packet| encoded_len(p, Protocol::V5);
    assert_eq!(len(&Packet::PubAck(PubResp::new(1))), 4);
    assert_eq!(len(&Packet::PubRel(PubResp::with_reason(1, ReasonCode(0x92)))), 5);
    assert_eq!(len(&Packet::Disconnect(Disconnect::default())), 2);
    assert_eq!(len(&Packet::Disconnect(Disconnect::new(ReasonCode(0x8E)))), 3);
    assert_eq!(len(&Packet::Auth(Auth::default())), 2);
    let bytes = encode_vec(&Packet::PubComp(PubResp::new(0x0102)), Protocol::V5);
    assert_eq!(&bytes[..], &[0x70, 2, 1, 2]);
}

#[test]
fn v3_connack_return_codes() {
    let cases = [
        (0x00, 0),
        (0x84, 1),
        (0x85, 2),
        (0x88, 3),
        (0x89, 3),
        (0x80, 3),
        (0x9F, 3),
        (0x86, 4),
        (0x87, 5),
        (0x8A, 5),
        (0x8C, 5),
    ];
    for (reason, code) in cases {
        let p = Packet::ConnAck(ConnAck { reason: ReasonCode(reason), ..Default::default() });
        assert_eq!(&encode_vec(&p, Protocol::V3_1_1)[..], &[0x20, 2, 0, code]);
    }
}

#[test]
fn v3_level_mappings() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 1,
        reasons: vec![ReasonCode(1), ReasonCode(0x87), ReasonCode(0xA2)],
        properties: ack_props(),
    });
    assert_eq!(&encode_vec(&suback, Protocol::V3_1_1)[..], &[0x90, 5, 0, 1, 1, 0x80, 0x80]);
    let unsuback =
        Packet::UnsubAck(UnsubAck { packet_id: 2, reasons: vec![ReasonCode(0x11)], properties: ack_props() });
    assert_eq!(&encode_vec(&unsuback, Protocol::V3_1_1)[..], &[0xB0, 2, 0, 2]);
    let disconnect = Packet::Disconnect(Disconnect::new(ReasonCode(0x8B)));
    assert_eq!(&encode_vec(&disconnect, Protocol::V3_1_1)[..], &[0xE0, 0]);
    let puback = Packet::PubAck(PubResp::with_reason(3, ReasonCode(0x80)));
    assert_eq!(&encode_vec(&puback, Protocol::V3_1)[..], &[0x40, 2, 0, 3]);
    let mut connect = connect_v5();
    connect.protocol = Protocol::V3_1;
    let bytes = encode_vec(&Packet::Connect(Box::new(connect)), Protocol::V3_1);
    assert_eq!(&bytes[2..11], b"\0\x06MQIsdp\x03");
}

#[test]
fn encode_rejects_what_cannot_be_represented() {
    let mut buf = BytesMut::from(&b"kept"[..]);
    let auth = Packet::Auth(Auth::default());
    assert!(matches!(encode(&auth, Protocol::V3_1_1, &mut buf), Err(Error::Encode(_))));
    assert_eq!(encoded_len(&auth, Protocol::V3_1_1), 0);

    let long = Packet::Publish(Publish { topic: "t".repeat(65_536), ..Default::default() });
    assert!(matches!(encode(&long, Protocol::V5, &mut buf), Err(Error::Encode(_))));
    assert_eq!(encoded_len(&long, Protocol::V5), 0);
    let max = Packet::Publish(Publish { topic: "t".repeat(65_535), ..Default::default() });
    assert_eq!(encoded_len(&max, Protocol::V5), 1 + 3 + 2 + 65_535 + 1);

    let mut sub_id = publish_v5();
    sub_id.properties.subscription_identifiers = vec![268_435_456];
    let sub_id = Packet::Publish(sub_id);
    assert!(matches!(encode(&sub_id, Protocol::V5, &mut buf), Err(Error::Encode(_))));

    let mismatch = Packet::Connect(Box::new(connect_v5()));
    assert!(matches!(encode(&mismatch, Protocol::V3_1_1, &mut buf), Err(Error::Encode(_))));
    assert_eq!(&buf[..], b"kept", "a failed encode appends nothing");
}

#[test]
fn remaining_length_boundaries() {
    for len in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let p =
            Packet::Publish(Publish { topic: "t".into(), payload: Bytes::from(vec![b'x'; len]), ..Default::default() });
        let mut buf = encode_vec(&p, Protocol::V5);
        assert_eq!(buf.len(), encoded_len(&p, Protocol::V5));
        assert_eq!(decode(&mut buf, Some(Protocol::V5), usize::MAX), Ok(Some(p)));
    }
}

#[test]
fn dup_is_not_written_for_qos_0() {
    let p = Packet::Publish(Publish { dup: true, topic: "t".into(), ..Default::default() });
    assert_eq!(encode_vec(&p, Protocol::V3_1_1)[0], 0x30);
}

#[test]
fn topic_alias_zero_maps_to_0x94() {
    let err = Error::Protocol(props::TOPIC_ALIAS_ZERO);
    assert_eq!(err.reason_code(), ReasonCode::TOPIC_ALIAS_INVALID);
    assert_eq!(Error::Protocol("x").reason_code(), ReasonCode::PROTOCOL_ERROR);
}
