//! CONNECT and CONNACK decoding.
//!
//! Invariants: a CONNECT whose protocol name and level are not ("MQIsdp", 3), ("MQTT", 4) or
//! ("MQTT", 5) is `Error::UnsupportedProtocol`; once the level is known every further error is
//! wrapped in `Error::Connect` so the caller can answer in that protocol's CONNACK form. The
//! connect flags are consistent (reserved bit 0, no will QoS/retain without a will, will QoS not 3,
//! no 3.x password without user name) and the payload fields appear exactly in flag order.

use super::{props, reason, valid_connack};
use crate::wire::{check_topic_name, Reader};
use crate::{ConnAck, ConnAckProperties, Connect, Error, LastWill, Protocol, QoS, ReasonCode, Result};

pub(super) fn connect(r: &mut Reader, minimal_length: bool) -> Result<Connect> {
    let name_len = usize::from(r.u16()?);
    let name = r.slice(name_len)?;
    let (mqtt, mqisdp) = (name == b"MQTT", name == b"MQIsdp");
    let level = r.u8()?;
    let protocol = match level {
        3 if mqisdp => Protocol::V3_1,
        4 if mqtt => Protocol::V3_1_1,
        5 if mqtt => Protocol::V5,
        _ => return Err(Error::UnsupportedProtocol(level)),
    };
    connect_body(r, protocol, minimal_length).map_err(|error| Error::Connect { protocol, error: Box::new(error) })
}

/// Everything after the protocol level.
fn connect_body(r: &mut Reader, protocol: Protocol, minimal_length: bool) -> Result<Connect> {
    let v5 = protocol.is_v5();
    if v5 && !minimal_length {
        return Err(Error::Malformed("remaining length is not minimally encoded"));
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(Error::Malformed("CONNECT reserved flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(Error::Malformed("will QoS or will retain set without a will"));
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(Error::Malformed("will QoS 3"))?;
    if password_flag && !username_flag && !v5 {
        return Err(Error::Malformed("password without user name"));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 { props::connect(r)? } else { Default::default() };
    let client_id = r.string()?;
    let will = if will_flag { Some(last_will(r, v5, will_qos, will_retain)?) } else { None };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect { protocol, clean_start, keep_alive, client_id, will, username, password, properties })
}

fn last_will(r: &mut Reader, v5: bool, qos: QoS, retain: bool) -> Result<LastWill> {
    let properties = if v5 { props::will(r)? } else { Default::default() };
    let topic = r.string()?;
    check_topic_name(&topic)?;
    let payload = r.binary()?;
    if properties.payload_format_indicator == Some(1) && std::str::from_utf8(&payload).is_err() {
        return Err(Error::PayloadFormat);
    }
    Ok(LastWill { topic, payload, qos, retain, properties })
}

pub(super) fn connack(r: &mut Reader, protocol: Protocol) -> Result<ConnAck> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(Error::Malformed("CONNACK reserved flags set"));
    }
    // MQTT 3.1 has no Session Present flag (the byte is reserved there); bit 0 is ignored.
    let session_present = flags & 0x01 != 0 && protocol != Protocol::V3_1;
    let (reason, properties) = if protocol.is_v5() {
        let code = reason(r, valid_connack)?;
        (code, props::connack(r)?)
    } else {
        (return_code(r.u8()?)?, ConnAckProperties::default())
    };
    r.finish()?;
    // [MQTT-3.2.2-4] (3.1.1) / [MQTT-3.2.2-6] (5.0).
    if session_present && reason != ReasonCode::SUCCESS {
        return Err(Error::Protocol("session present with a non-zero reason code"));
    }
    Ok(ConnAck { session_present, reason, properties })
}

/// Maps a 3.1/3.1.1 CONNACK return code to the equivalent 5.0 reason code.
fn return_code(code: u8) -> Result<ReasonCode> {
    Ok(match code {
        0 => ReasonCode::SUCCESS,
        1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        3 => ReasonCode::SERVER_UNAVAILABLE,
        4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        5 => ReasonCode::NOT_AUTHORIZED,
        _ => return Err(Error::Protocol("reserved CONNACK return code")),
    })
}
