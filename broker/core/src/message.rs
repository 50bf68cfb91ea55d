//! Application messages as they travel through the broker, and deliveries to one subscriber.
//!
//! A [`Message`] is created once per accepted PUBLISH (or will, or `$SYS` update) and shared by
//! `Arc` between every subscriber queue, the retained store and in-flight windows; its payload is a
//! `Bytes` slice of the connection's read buffer, so fan-out never copies payload bytes.
//! Invariant: `properties.topic_alias` is always `None` and `properties.subscription_identifiers`
//! empty in a stored message; both are per-delivery concerns.

use crate::ids::{ClientId, MessageUid};
use bytes::Bytes;
use fleetmq_codec::{LastWill, Publish, PublishProperties, QoS};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod record;

/// Payloads up to this size are copied out of the read buffer instead of sharing it.
const SMALL_PAYLOAD: usize = 1024;

/// Where a durable delivery lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableRef {
    pub incarnation: u64,
    pub seq: u64,
    pub msg_id: u64,
    /// Loaded from storage after a restart: it may have gone out before the crash, so it is sent
    /// with DUP set (MQTT-3.3.1-1: "might be re-delivery").
    pub recovered: bool,
}

/// One application message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: PublishProperties,
    /// Client that published it (for no-local); empty for broker-originated messages.
    pub publisher: ClientId,
    /// When the Message Expiry Interval runs out, if one was given.
    pub expires_at: Option<Instant>,
    /// The same in every copy of this message anywhere in the cluster.
    pub uid: MessageUid,
}

impl Message {
    /// Builds a message from an inbound PUBLISH whose topic alias was already resolved.
    pub fn from_publish(p: Publish, publisher: ClientId, now: Instant) -> Message {
        // A decoded payload is a slice of its packet's read buffer; a small one is copied out so a
        // queued message does not pin a buffer sized for much larger packets.
        let payload = if p.payload.len() <= SMALL_PAYLOAD { Bytes::copy_from_slice(&p.payload) } else { p.payload };
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expires_at = properties.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s)));
        Message {
            topic: Arc::from(p.topic),
            payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher,
            expires_at,
            uid: MessageUid::next(),
        }
    }

    /// Builds the message a will turns into when it is published.
    pub fn from_will(will: &LastWill, publisher: ClientId, now: Instant) -> Message {
        let w = &will.properties;
        let properties = PublishProperties {
            payload_format_indicator: w.payload_format_indicator,
            message_expiry_interval: w.message_expiry_interval,
            response_topic: w.response_topic.clone(),
            correlation_data: w.correlation_data.clone(),
            user_properties: w.user_properties.clone(),
            content_type: w.content_type.clone(),
            ..Default::default()
        };
        let expires_at = w.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s)));
        Message {
            topic: Arc::from(will.topic.as_str()),
            payload: will.payload.clone(),
            qos: will.qos,
            retain: will.retain,
            properties,
            publisher,
            expires_at,
            uid: MessageUid::next(),
        }
    }

    /// Whether the message expiry interval has run out.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Seconds of expiry left, rounded up, for forwarding as Message Expiry Interval.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
        })
    }

    /// Memory a queued copy keeps alive, used for per-session queue byte limits: payload, topic
    /// and every variable-size property.
    pub fn cost(&self) -> usize {
        let p = &self.properties;
        let props = p.user_properties.iter().map(|(k, v)| k.len() + v.len() + 48).sum::<usize>()
            + p.correlation_data.as_ref().map_or(0, |d| d.len())
            + p.response_topic.as_ref().map_or(0, |t| t.len())
            + p.content_type.as_ref().map_or(0, |t| t.len());
        self.payload.len() + self.topic.len() + props + 128
    }
}

/// A message on its way to one subscriber, with the per-subscription delivery options applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// min(message QoS, granted QoS).
    pub qos: QoS,
    /// Retain flag as it goes out (retain-as-published, or a retained message sent on subscribe).
    pub retain: bool,
    /// Identifiers of every matching subscription of this subscriber (5.0).
    pub sub_ids: Vec<u32>,
    /// Where this delivery is stored, for persistent sessions (`None`: memory only).
    pub durable: Option<DurableRef>,
}

impl Delivery {
    /// The PUBLISH that carries this delivery (packet id 0 and DUP clear; the caller sets them).
    pub fn to_publish(&self, now: Instant) -> Publish {
        let mut properties = self.msg.properties.clone();
        properties.message_expiry_interval = self.msg.remaining_expiry(now);
        properties.subscription_identifiers = self.sub_ids.clone();
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.msg.topic.to_string(),
            packet_id: 0,
            payload: self.msg.payload.clone(),
            properties,
        }
    }
}
