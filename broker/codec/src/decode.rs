//! The MQTT decoder: fixed header, connection-state checks, size limit and dispatch to the
//! per-packet decoders.
//!
//! Invariants: `decode` never panics and never consumes bytes of an incomplete packet; an announced
//! packet larger than `max_packet_size` is rejected as soon as its fixed header is complete; a
//! complete packet is split off the buffer once (`split_to(..).freeze()`) and payloads, binary data
//! and nested readers share that allocation. Every packet returned satisfies the wire-level MUSTs of
//! its protocol level (see the module documentation of `codec`).

mod connect;
mod publish;
mod subscribe;

use super::props;
use super::wire::Reader;
use super::{Auth, Disconnect, Error, Packet, Protocol, ReasonCode, Result};
use bytes::BytesMut;

/// The fixed header of a packet whose remaining length is complete.
struct Header {
    kind: u8,
    flags: u8,
    /// Bytes of the fixed header (type byte plus remaining-length bytes).
    len: usize,
    remaining: usize,
    /// Whether the remaining length used the fewest bytes possible.
    minimal: bool,
}

/// Decodes one packet from the front of `buf`.
///
/// * `Ok(None)`: more bytes are needed; `buf` is untouched.
/// * `Ok(Some(p))`: the packet's bytes were split off `buf` (payloads share that allocation).
/// * `protocol == None` means no CONNECT was seen yet: only CONNECT is accepted, anything else is
///   `Error::Protocol`. With `Some(_)`, a CONNECT is `Error::Protocol` (second CONNECT).
/// * `max_packet_size` bounds the whole packet (fixed header included); an announced larger packet
///   is `Error::TooLarge` as soon as the fixed header is complete.
pub fn decode(buf: &mut BytesMut, protocol: Option<Protocol>, max_packet_size: usize) -> Result<Option<Packet>> {
    let Some(header) = fixed_header(buf, protocol)? else {
        return Ok(None);
    };
    if protocol == Some(Protocol::V5) && !header.minimal {
        return Err(Error::Malformed("remaining length is not minimally encoded"));
    }
    // Cannot overflow: the remaining length is below 2^28 and the header at most 5 bytes.
    let size = header.len.saturating_add(header.remaining);
    if size > max_packet_size {
        return Err(Error::TooLarge { size, max: max_packet_size });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let mut r = Reader::new(buf.split_to(size).freeze(), header.len);
    let Some(protocol) = protocol else {
        let connect = connect::connect(&mut r, header.minimal)?;
        return Ok(Some(Packet::Connect(Box::new(connect))));
    };
    let v5 = protocol.is_v5();
    let packet = match header.kind {
        2 => Packet::ConnAck(connect::connack(&mut r, protocol)?),
        3 => Packet::Publish(publish::publish(&mut r, header.flags, v5)?),
        4 => Packet::PubAck(publish::pub_resp(&mut r, v5, valid_puback)?),
        5 => Packet::PubRec(publish::pub_resp(&mut r, v5, valid_puback)?),
        6 => Packet::PubRel(publish::pub_resp(&mut r, v5, valid_pubrel)?),
        7 => Packet::PubComp(publish::pub_resp(&mut r, v5, valid_pubrel)?),
        8 => Packet::Subscribe(subscribe::subscribe(&mut r, v5)?),
        9 => Packet::SubAck(subscribe::suback(&mut r, v5)?),
        10 => Packet::Unsubscribe(subscribe::unsubscribe(&mut r, v5)?),
        11 => Packet::UnsubAck(subscribe::unsuback(&mut r, v5)?),
        12 => {
            r.finish()?;
            Packet::PingReq
        }
        13 => {
            r.finish()?;
            Packet::PingResp
        }
        14 => Packet::Disconnect(disconnect(&mut r, v5)?),
        15 => Packet::Auth(auth(&mut r)?),
        _ => return Err(Error::Malformed("unexpected packet type")),
    };
    Ok(Some(packet))
}

/// Parses the fixed header; `Ok(None)` while its remaining length is incomplete. Packet type,
/// connection state and flags are checked from the first byte alone.
fn fixed_header(buf: &[u8], protocol: Option<Protocol>) -> Result<Option<Header>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (kind, flags) = (first >> 4, first & 0x0F);
    check_type(kind, protocol)?;
    check_flags(kind, flags)?;
    let mut remaining = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some(Header { kind, flags, len: 2 + i, remaining, minimal: i == 0 || b != 0 }));
        }
    }
    Err(Error::Malformed("remaining length longer than four bytes"))
}

fn check_type(kind: u8, protocol: Option<Protocol>) -> Result<()> {
    match (kind, protocol) {
        (0, _) => Err(Error::Malformed("reserved packet type 0")),
        (1, Some(_)) => Err(Error::Protocol("second CONNECT")),
        (1, None) => Ok(()),
        (_, None) => Err(Error::Protocol("first packet must be CONNECT")),
        (15, Some(p)) if !p.is_v5() => Err(Error::Malformed("AUTH does not exist before MQTT 5.0")),
        _ => Ok(()),
    }
}

/// Fixed-header flags ([MQTT-2.1.3-1]): PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH its
/// DUP/QoS/RETAIN bits, every other type 0. Invalid flags are a Malformed Packet.
fn check_flags(kind: u8, flags: u8) -> Result<()> {
    let expected = match kind {
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(Error::Malformed("PUBLISH with QoS 3"));
            }
            // [MQTT-3.3.1-2]: DUP must be 0 for QoS 0; an invalid flag combination is malformed.
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(Error::Malformed("DUP set on a QoS 0 PUBLISH"));
            }
            return Ok(());
        }
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    if flags == expected {
        Ok(())
    } else {
        Err(Error::Malformed("invalid fixed header flags"))
    }
}

/// A Packet Identifier, which is never 0 where one is present ([MQTT-2.2.1-3], [MQTT-2.3.1-1]).
fn packet_id(r: &mut Reader) -> Result<u16> {
    match r.u16()? {
        0 => Err(Error::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

/// A 5.0 reason code from the set allowed for the packet type.
fn reason(r: &mut Reader, valid: fn(u8) -> bool) -> Result<ReasonCode> {
    let code = r.u8()?;
    if valid(code) {
        Ok(ReasonCode(code))
    } else {
        Err(Error::Protocol("reason code not valid for this packet type"))
    }
}

fn disconnect(r: &mut Reader, v5: bool) -> Result<Disconnect> {
    let mut d = Disconnect::default();
    if v5 && !r.is_empty() {
        d.reason = reason(r, valid_disconnect)?;
        // A Remaining Length below 2 means no Property Length (5.0 section 3.14.2.2.1).
        if !r.is_empty() {
            d.properties = props::disconnect(r)?;
        }
    }
    r.finish()?;
    Ok(d)
}

/// Only reached for 5.0 (`check_type` rejects AUTH before).
fn auth(r: &mut Reader) -> Result<Auth> {
    let mut a = Auth::default();
    if !r.is_empty() {
        a.reason = reason(r, valid_auth)?;
        // Unlike DISCONNECT, a present reason code is always followed by the Property Length.
        a.properties = props::auth(r)?;
    }
    r.finish()?;
    Ok(a)
}

/// Table 3-1 of the 5.0 specification.
fn valid_connack(c: u8) -> bool {
    matches!(
        c,
        0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
    )
}

/// Tables 3-4 and 3-5 (PUBACK, PUBREC).
fn valid_puback(c: u8) -> bool {
    matches!(c, 0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99)
}

/// Tables 3-6 and 3-7 (PUBREL, PUBCOMP).
fn valid_pubrel(c: u8) -> bool {
    matches!(c, 0x00 | 0x92)
}

/// Table 3-8 (SUBACK).
fn valid_suback(c: u8) -> bool {
    matches!(c, 0x00 | 0x01 | 0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2)
}

/// 3.1.1 SUBACK return codes ([MQTT-3.9.3-2]).
fn valid_suback_v3(c: u8) -> bool {
    matches!(c, 0x00 | 0x01 | 0x02 | 0x80)
}

/// Table 3-9 (UNSUBACK).
fn valid_unsuback(c: u8) -> bool {
    matches!(c, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91)
}

/// Table 3-10 (DISCONNECT).
fn valid_disconnect(c: u8) -> bool {
    matches!(
        c,
        0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
    )
}

/// Table 3-11 (AUTH).
fn valid_auth(c: u8) -> bool {
    matches!(c, 0x00 | 0x18 | 0x19)
}
