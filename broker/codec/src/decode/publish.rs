//! PUBLISH and PUBACK/PUBREC/PUBREL/PUBCOMP decoding.
//!
//! Invariants: a decoded PUBLISH has a topic without wildcards that is non-empty unless a 5.0 Topic
//! Alias is present, a non-zero packet identifier exactly when QoS > 0, and a payload that is
//! valid UTF-8 when its Payload Format Indicator is 1. The payload shares the packet's allocation:
//! the topic String and the 5.0 properties are the only allocations of a PUBLISH decode.

use super::{packet_id, props, reason};
use crate::wire::Reader;
use crate::{Error, PubResp, Publish, QoS, Result};

pub(super) fn publish(r: &mut Reader, flags: u8, v5: bool) -> Result<Publish> {
    // QoS 3 and DUP with QoS 0 were rejected with the fixed header.
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(Error::Malformed("PUBLISH with QoS 3"))?;
    let topic = r.string()?;
    if topic.contains(['+', '#']) {
        return Err(Error::TopicName("wildcard in topic name"));
    }
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { packet_id(r)? };
    let properties = if v5 { props::publish(r)? } else { Default::default() };
    if topic.is_empty() {
        if !v5 {
            return Err(Error::TopicName("empty topic name"));
        }
        if properties.topic_alias.is_none() {
            return Err(Error::Protocol("empty topic name without topic alias"));
        }
    }
    let payload = r.rest();
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
        return Err(Error::PayloadFormat);
    }
    Ok(Publish { dup: flags & 0b1000 != 0, qos, retain: flags & 0b0001 != 0, topic, packet_id, payload, properties })
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: `valid` is the packet type's reason code set. In 5.0 a
/// Remaining Length of 2 means reason 0 without properties and 3 means a reason without
/// properties; in 3.x the packet identifier is all there is.
pub(super) fn pub_resp(r: &mut Reader, v5: bool, valid: fn(u8) -> bool) -> Result<PubResp> {
    let mut resp = PubResp::new(packet_id(r)?);
    if v5 && !r.is_empty() {
        resp.reason = reason(r, valid)?;
        if !r.is_empty() {
            resp.properties = props::ack(r)?;
        }
    }
    r.finish()?;
    Ok(resp)
}
