//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK decoding.
//!
//! Invariants: SUBSCRIBE and UNSUBSCRIBE carry a non-zero packet identifier and at least one topic
//! filter (Protocol Error otherwise); subscription options have no reserved bits set (Malformed),
//! no QoS 3 (Malformed in 3.1.1, Protocol Error in 5.0 as the specifications say), no Retain
//! Handling 3 and no No Local on a shared subscription (Protocol Errors). SUBACK and UNSUBACK carry
//! at least one reason code, each valid for the packet type. Filter syntax is left to the session
//! layer (see `SubscribeFilter`).

use super::{packet_id, props, valid_suback, valid_suback_v3, valid_unsuback};
use crate::wire::Reader;
use crate::{Error, QoS, ReasonCode, Result, SubAck, SubOptions, Subscribe, SubscribeFilter, UnsubAck, Unsubscribe};

pub(super) fn subscribe(r: &mut Reader, v5: bool) -> Result<Subscribe> {
    let packet_id = packet_id(r)?;
    let properties = if v5 { props::subscribe(r)? } else { Default::default() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = options(r.u8()?, v5, &filter)?;
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        return Err(Error::Protocol("SUBSCRIBE without topic filters"));
    }
    Ok(Subscribe { packet_id, filters, properties })
}

/// Parses a Subscription Options byte (5.0) or Requested QoS byte (3.x).
fn options(byte: u8, v5: bool, filter: &str) -> Result<SubOptions> {
    if !v5 {
        // [MQTT-3-8.3-4]: reserved bits or QoS 3 make the packet malformed.
        if byte & 0xFC != 0 {
            return Err(Error::Malformed("reserved subscription option bits set"));
        }
        let qos = QoS::from_u8(byte).ok_or(Error::Malformed("subscription QoS 3"))?;
        return Ok(SubOptions { qos, ..Default::default() });
    }
    if byte & 0xC0 != 0 {
        // [MQTT-3.8.3-5]
        return Err(Error::Malformed("reserved subscription option bits set"));
    }
    // 5.0 section 3.8.3.1: Maximum QoS 3 is a Protocol Error.
    let qos = QoS::from_u8(byte & 0b11).ok_or(Error::Protocol("subscription QoS 3"))?;
    let no_local = byte & 0x04 != 0;
    let retain_handling = (byte >> 4) & 0b11;
    if retain_handling == 3 {
        return Err(Error::Protocol("retain handling 3"));
    }
    // [MQTT-3.8.3-4]
    if no_local && filter.starts_with("$share/") {
        return Err(Error::Protocol("no local on a shared subscription"));
    }
    Ok(SubOptions { qos, no_local, retain_as_published: byte & 0x08 != 0, retain_handling })
}

pub(super) fn suback(r: &mut Reader, v5: bool) -> Result<SubAck> {
    let packet_id = packet_id(r)?;
    let properties = if v5 { props::ack(r)? } else { Default::default() };
    let valid = if v5 { valid_suback } else { valid_suback_v3 };
    let reasons = reason_list(r, valid)?;
    Ok(SubAck { packet_id, reasons, properties })
}

pub(super) fn unsubscribe(r: &mut Reader, v5: bool) -> Result<Unsubscribe> {
    let packet_id = packet_id(r)?;
    let user_properties = if v5 { props::unsubscribe(r)? } else { Vec::new() };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        return Err(Error::Protocol("UNSUBSCRIBE without topic filters"));
    }
    Ok(Unsubscribe { packet_id, filters, user_properties })
}

/// In 3.x an UNSUBACK is only the packet identifier.
pub(super) fn unsuback(r: &mut Reader, v5: bool) -> Result<UnsubAck> {
    let packet_id = packet_id(r)?;
    if !v5 {
        r.finish()?;
        return Ok(UnsubAck { packet_id, ..Default::default() });
    }
    let properties = props::ack(r)?;
    let reasons = reason_list(r, valid_unsuback)?;
    Ok(UnsubAck { packet_id, reasons, properties })
}

/// The rest of the packet as a non-empty list of reason codes from `valid`.
fn reason_list(r: &mut Reader, valid: fn(u8) -> bool) -> Result<Vec<ReasonCode>> {
    let codes = r.rest();
    if codes.is_empty() {
        return Err(Error::Protocol("acknowledgement without reason codes"));
    }
    codes
        .iter()
        .map(|&c| {
            if valid(c) {
                Ok(ReasonCode(c))
            } else {
                Err(Error::Protocol("reason code not valid for this packet type"))
            }
        })
        .collect()
}
