//! Byte encodings of stored records.
//!
//! A message record is `[version=2][expiry: u64 unix ms, 0 = none][publisher: u16 len + UTF-8]
//! [uid: u128]` followed by the message as an MQTT 5.0 PUBLISH packet, so every property survives and decoding
//! reuses the validated codec. Expiry is stored as wall-clock time because `Instant`s do not survive a
//! restart. Version 1 records (no uid) still decode; they get a fresh uid.

use super::Message;
use crate::ids::{ClientId, MessageUid};
use crate::store::{Cf, Error, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use fleetmq_codec::{self as codec, Packet, Protocol, Publish};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VERSION: u8 = 2;
const VERSION_NO_UID: u8 = 1;

/// Encodes a message for storage.
pub fn encode_message(m: &Message, now: Instant) -> Result<Bytes> {
    let expiry_ms = match m.expires_at {
        None => 0,
        Some(t) => {
            let wall = SystemTime::now() + t.saturating_duration_since(now);
            wall.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0).max(1)
        }
    };
    let publish = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.to_string(),
        packet_id: if m.qos == codec::QoS::AtMostOnce { 0 } else { 1 },
        payload: m.payload.clone(),
        properties: m.properties.clone(),
    };
    let packet = Packet::Publish(publish);
    let publisher = m.publisher.as_str().as_bytes();
    let mut buf = BytesMut::with_capacity(27 + publisher.len() + codec::encoded_len(&packet, Protocol::V5));
    buf.put_u8(VERSION);
    buf.put_u64(expiry_ms);
    buf.put_u16(u16::try_from(publisher.len()).map_err(|_| corrupt("publisher id too long"))?);
    buf.put_slice(publisher);
    buf.put_u128(m.uid.0);
    codec::encode(&packet, Protocol::V5, &mut buf).map_err(|e| corrupt(&e.to_string()))?;
    Ok(buf.freeze())
}

/// Decodes a stored message; `now` anchors the restored expiry. Takes a slice: the codec decodes
/// from its own buffer, which is the one copy made.
pub fn decode_message(mut b: &[u8], now: Instant) -> Result<Message> {
    if b.remaining() < 11 {
        return Err(corrupt("bad header"));
    }
    let version = b.get_u8();
    if version != VERSION && version != VERSION_NO_UID {
        return Err(corrupt("bad header"));
    }
    let expiry_ms = b.get_u64();
    let len = usize::from(b.get_u16());
    if b.remaining() < len {
        return Err(corrupt("truncated publisher"));
    }
    let (publisher, rest) = b.split_at(len);
    let publisher = std::str::from_utf8(publisher).map(ClientId::new).map_err(|_| corrupt("publisher not UTF-8"))?;
    let mut rest = rest;
    let uid = match version {
        VERSION if rest.len() >= 16 => MessageUid(rest.get_u128()),
        VERSION => return Err(corrupt("truncated uid")),
        _ => MessageUid::next(),
    };
    let mut buf = BytesMut::from(rest);
    let publish = match codec::decode(&mut buf, Some(Protocol::V5), usize::MAX) {
        Ok(Some(Packet::Publish(p))) if buf.is_empty() => p,
        _ => return Err(corrupt("bad PUBLISH")),
    };
    let expires_at = (expiry_ms != 0).then(|| {
        let wall = UNIX_EPOCH + Duration::from_millis(expiry_ms);
        now + wall.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
    });
    Ok(Message {
        topic: Arc::from(publish.topic),
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties,
        publisher,
        expires_at,
        uid,
    })
}

fn corrupt(reason: &str) -> Error {
    Error::Corrupt { cf: Cf::Retained, reason: reason.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetmq_codec::{PublishProperties, QoS};

    #[test]
    fn message_roundtrip_keeps_properties_and_expiry() {
        let now = Instant::now();
        let m = Message {
            topic: Arc::from("fleet/1/state"),
            payload: Bytes::from_static(b"on"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PublishProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                message_expiry_interval: Some(60),
                ..Default::default()
            },
            publisher: ClientId::new("dev-1"),
            expires_at: Some(now + Duration::from_secs(60)),
            uid: MessageUid::next(),
        };
        let back = decode_message(&encode_message(&m, now).unwrap(), now).unwrap();
        assert_eq!(back.uid, m.uid, "every copy keeps the message's identity");
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.qos, m.qos);
        assert_eq!(back.properties.content_type, m.properties.content_type);
        assert_eq!(back.properties.user_properties, m.properties.user_properties);
        assert_eq!(back.publisher, m.publisher);
        let left = back.expires_at.unwrap().saturating_duration_since(now);
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
    }

    #[test]
    fn version_1_records_still_decode() {
        let now = Instant::now();
        let m = Message::from_will(
            &fleetmq_codec::LastWill {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
            },
            ClientId::new("dev-2"),
            now,
        );
        let v2 = encode_message(&m, now).unwrap();
        // A version 1 record is the same without the uid.
        let header = 1 + 8 + 2 + "dev-2".len();
        let mut v1 = BytesMut::from(&v2[..header]);
        v1[0] = VERSION_NO_UID;
        v1.extend_from_slice(&v2[header + 16..]);
        let back = decode_message(&v1, now).unwrap();
        assert_eq!((&*back.topic, &back.payload[..], back.publisher.as_str()), ("a/b", &b"x"[..], "dev-2"));
        assert_ne!(back.uid, m.uid);
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        let now = Instant::now();
        for bad in [
            &b""[..],
            &b"\x01"[..],
            &b"\x03\0\0\0\0\0\0\0\0\0\0"[..],
            &b"\x01\0\0\0\0\0\0\0\0\0\x05ab"[..],
            &b"\x02\0\0\0\0\0\0\0\0\0\0\x01\x02"[..],
        ] {
            assert!(decode_message(bad, now).is_err());
        }
    }
}
