//! Stored forms of persistent session state, encoded with `postcard` (compact, versioned by a
//! leading field), plus conversions from and to the in-memory session values.
//!
//! Invariant: every record starts with `version`; a record of an unknown version is reported as
//! corrupt rather than misread.

use crate::ids::ClientId;
use crate::message::record;
use crate::message::Message;
use crate::store::{Cf, Error, Result};
use bytes::Bytes;
use fleetmq_codec::{LastWill, QoS, SubOptions, WillProperties};
use serde::{Deserialize, Serialize};
use std::time::Instant;

const VERSION: u8 = 1;

/// A persistent session as stored in `Cf::Sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub version: u8,
    /// Username of the connection that owns the session.
    pub owner: Option<String>,
    pub expiry_secs: u32,
    /// Wall-clock milliseconds when the client went offline; `None` while it is connected.
    pub offline_since_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionRecord>,
    pub will: Option<WillRecord>,
}

/// One subscription with its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Full filter, `$share/group/` prefix included.
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub sub_id: Option<u32>,
}

/// The will of an offline (or connected) persistent session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WillRecord {
    pub delay_secs: u32,
    /// The will as a message record (`message::record`).
    pub message: Vec<u8>,
}

/// One delivery queued for (or in flight to) a persistent session, in `Cf::Queue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub version: u8,
    pub msg_id: u64,
    pub qos: u8,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// QoS 2: PUBREC received and PUBREL sent (resume with PUBREL, not PUBLISH).
    pub released: bool,
}

fn corrupt(cf: Cf, reason: impl ToString) -> Error {
    Error::Corrupt { cf, reason: reason.to_string() }
}

impl SessionRecord {
    pub fn new(owner: Option<String>, expiry_secs: u32) -> SessionRecord {
        SessionRecord {
            version: VERSION,
            owner,
            expiry_secs,
            offline_since_ms: None,
            subscriptions: vec![],
            will: None,
        }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).unwrap_or_default())
    }

    pub fn decode(b: &[u8]) -> Result<SessionRecord> {
        let r: SessionRecord = postcard::from_bytes(b).map_err(|e| corrupt(Cf::Sessions, e))?;
        if r.version != VERSION {
            return Err(corrupt(Cf::Sessions, format!("unknown version {}", r.version)));
        }
        Ok(r)
    }
}

impl SubscriptionRecord {
    pub fn new(filter: &str, o: SubOptions, sub_id: Option<u32>) -> SubscriptionRecord {
        SubscriptionRecord {
            filter: filter.to_string(),
            qos: o.qos as u8,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: o.retain_handling,
            sub_id,
        }
    }

    pub fn options(&self) -> SubOptions {
        SubOptions {
            qos: QoS::from_u8(self.qos).unwrap_or(QoS::AtMostOnce),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling,
        }
    }
}

impl WillRecord {
    pub fn new(will: &LastWill, publisher: &ClientId, now: Instant) -> Result<WillRecord> {
        let msg = Message::from_will(will, publisher.clone(), now);
        Ok(WillRecord {
            delay_secs: will.properties.will_delay_interval.unwrap_or(0),
            message: record::encode_message(&msg, now)?.to_vec(),
        })
    }

    pub fn will(&self, now: Instant) -> Result<LastWill> {
        let m = record::decode_message(&self.message, now)?;
        let p = m.properties;
        Ok(LastWill {
            topic: m.topic.to_string(),
            payload: m.payload,
            qos: m.qos,
            retain: m.retain,
            properties: WillProperties {
                will_delay_interval: (self.delay_secs > 0).then_some(self.delay_secs),
                payload_format_indicator: p.payload_format_indicator,
                // The interval the client gave, not what was left when the record was written: a will's
                // expiry counts from its publication (which has not happened yet).
                message_expiry_interval: p.message_expiry_interval,
                content_type: p.content_type,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
            },
        })
    }
}

impl QueueEntry {
    pub fn new(msg_id: u64, qos: QoS, retain: bool, sub_ids: Vec<u32>) -> QueueEntry {
        QueueEntry { version: VERSION, msg_id, qos: qos as u8, retain, sub_ids, released: false }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(postcard::to_allocvec(self).unwrap_or_default())
    }

    pub fn decode(b: &[u8]) -> Result<QueueEntry> {
        let e: QueueEntry = postcard::from_bytes(b).map_err(|e| corrupt(Cf::Queue, e))?;
        if e.version != VERSION {
            return Err(corrupt(Cf::Queue, format!("unknown version {}", e.version)));
        }
        Ok(e)
    }

    pub fn qos(&self) -> QoS {
        QoS::from_u8(self.qos).unwrap_or(QoS::AtLeastOnce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_record_roundtrip() {
        let now = Instant::now();
        let will = LastWill {
            topic: "fleet/1/status".into(),
            payload: Bytes::from_static(b"offline"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                message_expiry_interval: Some(3600),
                ..Default::default()
            },
        };
        let mut r = SessionRecord::new(Some("alice".into()), 3600);
        r.offline_since_ms = Some(1_700_000_000_000);
        r.subscriptions.push(SubscriptionRecord::new(
            "$share/g/a/#",
            SubOptions { qos: QoS::ExactlyOnce, no_local: false, retain_as_published: true, retain_handling: 2 },
            Some(9),
        ));
        r.will = Some(WillRecord::new(&will, &ClientId::new("dev-1"), now).unwrap());
        let back = SessionRecord::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.subscriptions[0].options().retain_handling, 2);
        let w = back.will.unwrap().will(now).unwrap();
        assert_eq!((w.topic.as_str(), w.qos, w.retain), ("fleet/1/status", QoS::AtLeastOnce, true));
        assert_eq!(w.properties.will_delay_interval, Some(30));
        let later = back_after(&r, now + std::time::Duration::from_secs(7200));
        assert_eq!(later.properties.message_expiry_interval, Some(3600), "a will's expiry starts when it is sent");
    }

    fn back_after(r: &SessionRecord, now: Instant) -> LastWill {
        SessionRecord::decode(&r.encode()).unwrap().will.unwrap().will(now).unwrap()
    }

    #[test]
    fn queue_entry_roundtrip_and_garbage() {
        let e = QueueEntry::new(77, QoS::ExactlyOnce, true, vec![1, 2]);
        assert_eq!(QueueEntry::decode(&e.encode()).unwrap(), e);
        assert!(QueueEntry::decode(b"\x09\x01").is_err());
        assert!(SessionRecord::decode(b"").is_err());
    }
}
