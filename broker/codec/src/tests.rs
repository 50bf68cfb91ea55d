//! Codec tests: roundtrips of every packet type at every protocol level, the encoder's level
//! mappings and short forms, and (in submodules) invalid input and random mutations.

mod invalid;
mod robust;
mod samples;

use super::*;
use bytes::{Bytes, BytesMut};
use samples::{ack_props, connect_v5, publish_v5, samples, state_for};

const LEVELS: [Protocol; 3] = [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5];
const BIG: usize = 1 << 20;

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
