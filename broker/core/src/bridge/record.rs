//! Turning an accepted MQTT publish into log records: which rules match, which partition each
//! record goes to, and what the record carries.
//!
//! Invariants: a record's key (client id, topic, a topic level or none) alone decides its
//! partition (Kafka's murmur2 partitioner, as a Kafka producer would), so records of one key keep
//! their order; unkeyed records go round robin. A record carries the payload as its value, the
//! publish's broker timestamp, and as headers the MQTT topic, publisher client id, QoS, retain flag,
//! 5.0 content type and user properties (in order, repeats kept), plus this node's id and the
//! bridge sequence (`fleetmq.node`, `fleetmq.seq`) that marks repeats after a crash.

use crate::config::{BridgeRuleConfig, RecordKey};
use crate::message::Message;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};

/// Header names of the MQTT fields.
pub const HEADER_TOPIC: &str = "mqtt.topic";
pub const HEADER_CLIENT_ID: &str = "mqtt.client_id";
pub const HEADER_QOS: &str = "mqtt.qos";
pub const HEADER_RETAIN: &str = "mqtt.retain";
pub const HEADER_CONTENT_TYPE: &str = "mqtt.content_type";
/// The node that accepted the publish and its bridge sequence: together unique per record.
pub const HEADER_NODE: &str = "fleetmq.node";
pub const HEADER_SEQ: &str = "fleetmq.seq";

/// One compiled `[[bridge.rule]]`.
#[derive(Debug)]
pub struct Rule {
    pub filter: String,
    pub log_topic: String,
    pub partitions: u32,
    key: RecordKey,
    next: AtomicU32,
}

impl Rule {
    /// A rule of a validated config.
    pub fn new(c: &BridgeRuleConfig) -> Rule {
        Rule {
            filter: c.filter.clone(),
            log_topic: c.log_topic.clone(),
            partitions: c.partitions,
            key: RecordKey::parse(&c.key).unwrap_or(RecordKey::ClientId),
            next: AtomicU32::new(0),
        }
    }

    /// The key of `msg`'s record under this rule (`None`: unkeyed).
    fn key(&self, msg: &Message, fields: &Fields) -> Option<Bytes> {
        match self.key {
            RecordKey::ClientId => Some(fields.client_id.clone()),
            RecordKey::Topic => Some(fields.topic.clone()),
            RecordKey::TopicLevel(n) => msg.topic.split('/').nth(n).map(|l| Bytes::copy_from_slice(l.as_bytes())),
            RecordKey::None => None,
        }
    }

    fn partition(&self, key: Option<&[u8]>) -> u32 {
        match key {
            Some(k) => fleetmq_bridge::log::partition_for_key(k, self.partitions),
            None => self.next.fetch_add(1, Ordering::Relaxed) % self.partitions,
        }
    }
}

/// A record waiting in the bridge buffer: where it goes and what it says. The value shares the
/// publish's payload and header names are static where they can be, so buffering and shipping
/// copy little; the stored form (postcard) is the same as with owned byte vectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub log_topic: String,
    pub partition: u32,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub headers: Vec<(Cow<'static, str>, Bytes)>,
}

impl Pending {
    /// Bytes this record counts against the buffer limit.
    pub fn cost(&self) -> u64 {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        (self.log_topic.len() + self.key.as_ref().map_or(0, Bytes::len) + self.value.len() + headers + 32) as u64
    }

    /// The log record.
    pub fn record(&self) -> fleetmq_bridge::log::Record {
        fleetmq_bridge::log::Record {
            timestamp_ms: self.timestamp_ms,
            key: self.key.clone(),
            value: Some(self.value.clone()),
            headers: self.headers.iter().map(|(k, v)| (k.to_string(), Some(v.clone()))).collect(),
        }
    }

    /// Stands in for a stored record that does not decode: shipped as nothing, then deleted.
    pub fn unreadable() -> Pending {
        Pending::default()
    }

    /// Whether this is [`Pending::unreadable`].
    pub fn is_unreadable(&self) -> bool {
        self.log_topic.is_empty()
    }

    /// Stored form (the buffer's column family).
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads a stored record; `None` if it does not decode.
    pub fn decode(bytes: &[u8]) -> Option<Pending> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The records `msg` makes under `matching` (the rules whose filter matches its topic), stamped
/// with `node` and `seq`.
pub fn records(matching: &[&Rule], msg: &Message, node: &str, seq: u64, now_ms: i64) -> Vec<Pending> {
    let fields = Fields {
        topic: Bytes::copy_from_slice(msg.topic.as_bytes()),
        client_id: Bytes::copy_from_slice(msg.publisher.as_str().as_bytes()),
    };
    const QOS: [&[u8]; 3] = [b"0", b"1", b"2"];
    let mut out = Vec::with_capacity(matching.len());
    for rule in matching {
        let key = rule.key(msg, &fields);
        let partition = rule.partition(key.as_deref());
        let mut headers = Vec::with_capacity(7 + msg.properties.user_properties.len());
        headers.extend([
            (Cow::Borrowed(HEADER_TOPIC), fields.topic.clone()),
            (Cow::Borrowed(HEADER_CLIENT_ID), fields.client_id.clone()),
            (Cow::Borrowed(HEADER_QOS), Bytes::from_static(QOS[msg.qos as usize])),
            (Cow::Borrowed(HEADER_RETAIN), Bytes::from_static(if msg.retain { b"true" } else { b"false" })),
        ]);
        if let Some(ct) = &msg.properties.content_type {
            headers.push((Cow::Borrowed(HEADER_CONTENT_TYPE), Bytes::copy_from_slice(ct.as_bytes())));
        }
        headers.extend(
            msg.properties
                .user_properties
                .iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Bytes::copy_from_slice(v.as_bytes()))),
        );
        headers.push((Cow::Borrowed(HEADER_NODE), Bytes::copy_from_slice(node.as_bytes())));
        headers.push((Cow::Borrowed(HEADER_SEQ), Bytes::from(seq.to_string())));
        out.push(Pending {
            log_topic: rule.log_topic.clone(),
            partition,
            timestamp_ms: now_ms,
            key,
            value: msg.payload.clone(),
            headers,
        });
    }
    out
}

/// The publish's fields a record uses more than once (as key and as header), copied once.
struct Fields {
    topic: Bytes,
    client_id: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ClientId;
    use fleetmq_codec::{Publish, QoS};

    fn rule(filter: &str, partitions: u32, key: &str) -> Rule {
        Rule::new(&BridgeRuleConfig {
            filter: filter.into(),
            log_topic: "telemetry".into(),
            partitions,
            key: key.into(),
        })
    }

    /// The records of `msg` under those of `rules` that match it, as the bridge makes them.
    fn made(rules: &[Rule], msg: &Message, node: &str, seq: u64) -> Vec<Pending> {
        let matching: Vec<&Rule> = rules.iter().filter(|r| crate::topic::matches(&r.filter, &msg.topic)).collect();
        records(&matching, msg, node, seq, 0)
    }

    fn msg(topic: &str, client: &str) -> Message {
        let mut p = Publish { topic: topic.into(), payload: Bytes::from_static(b"21.5"), ..Default::default() };
        p.qos = QoS::AtLeastOnce;
        p.properties.content_type = Some("text/plain".into());
        p.properties.user_properties = vec![("unit".into(), "C".into()), ("unit".into(), "K".into())];
        Message::from_publish(p, ClientId::new(client), std::time::Instant::now())
    }

    #[test]
    fn a_record_per_matching_rule_carrying_the_mqtt_fields() {
        let rules =
            [rule("fleet/+/telemetry", 12, "client_id"), rule("fleet/#", 1, "none"), rule("other/#", 1, "none")];
        let got = made(&rules, &msg("fleet/d1/telemetry", "d1"), "shard-1", 7);
        assert_eq!(got.len(), 2, "two rules match");
        let r = &got[0];
        assert_eq!(r.key.as_deref(), Some(&b"d1"[..]));
        assert_eq!(r.partition, fleetmq_bridge::log::partition_for_key(b"d1", 12));
        assert_eq!(r.value, &b"21.5"[..]);
        let h: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(
            h,
            [
                (HEADER_TOPIC, &b"fleet/d1/telemetry"[..]),
                (HEADER_CLIENT_ID, b"d1"),
                (HEADER_QOS, b"1"),
                (HEADER_RETAIN, b"false"),
                (HEADER_CONTENT_TYPE, b"text/plain"),
                ("unit", b"C"),
                ("unit", b"K"),
                (HEADER_NODE, b"shard-1"),
                (HEADER_SEQ, b"7"),
            ]
        );
        assert_eq!(Pending::decode(&r.encode()).as_ref(), Some(r));
    }

    #[test]
    fn records_buffered_by_earlier_versions_still_decode() {
        // The stored form of earlier versions, which held owned vectors and strings.
        #[derive(Serialize)]
        struct Owned {
            log_topic: String,
            partition: u32,
            timestamp_ms: i64,
            key: Option<Vec<u8>>,
            value: Vec<u8>,
            headers: Vec<(String, Vec<u8>)>,
        }
        let old = Owned {
            log_topic: "telemetry".into(),
            partition: 3,
            timestamp_ms: 1_700_000_000_000,
            key: Some(b"d1".to_vec()),
            value: b"21.5".to_vec(),
            headers: vec![(HEADER_QOS.into(), b"1".to_vec()), ("unit".into(), b"C".to_vec())],
        };
        let p = Pending::decode(&postcard::to_allocvec(&old).unwrap()).expect("decodes");
        assert_eq!((p.log_topic.as_str(), p.partition, p.timestamp_ms), ("telemetry", 3, 1_700_000_000_000));
        assert_eq!((p.key.as_deref(), p.value.as_ref()), (Some(&b"d1"[..]), &b"21.5"[..]));
        let h: Vec<(&str, &[u8])> = p.headers.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(h, [(HEADER_QOS, &b"1"[..]), ("unit", b"C")]);
        assert_eq!(p.encode(), postcard::to_allocvec(&old).unwrap(), "and are stored the same way");
    }

    #[test]
    fn keys_pick_partitions_and_unkeyed_records_rotate() {
        let by_level = rule("fleet/#", 8, "topic_level:1");
        let a = made(std::slice::from_ref(&by_level), &msg("fleet/a/x", "c1"), "n", 1);
        let b = made(std::slice::from_ref(&by_level), &msg("fleet/a/y", "c2"), "n", 2);
        assert_eq!(a[0].key.as_deref(), Some(&b"a"[..]));
        assert_eq!(a[0].partition, b[0].partition, "same level, same partition");
        let by_topic = made(&[rule("fleet/#", 8, "topic")], &msg("fleet/a/x", "c1"), "n", 3);
        assert_eq!(by_topic[0].key.as_deref(), Some(&b"fleet/a/x"[..]));
        let none = rule("fleet/#", 3, "none");
        let parts: Vec<u32> =
            (0..6).map(|i| made(std::slice::from_ref(&none), &msg("fleet/a", "c"), "n", i)[0].partition).collect();
        assert_eq!(parts, [0, 1, 2, 0, 1, 2]);
        assert!(made(std::slice::from_ref(&none), &msg("fleet/a", "c"), "n", 9)[0].key.is_none());
    }
}
