//! The MQTT encoder.
//!
//! One layout description per packet type (`body`) runs twice: over a `Counter`, which yields the
//! remaining length and every reason the packet cannot be encoded, then, only if that succeeded,
//! over the output buffer. So `encoded_len` always equals what `encode` appends, `encode` reserves
//! that exact amount once, and a failing `encode` appends nothing.
//!
//! 5.0 packets carry properties and reason codes (with the short forms when the reason is 0 and
//! there are no properties); for 3.1/3.1.1 both are omitted, CONNACK reason codes are mapped to
//! return codes and SUBACK failures to 0x80. The encoder only rejects what cannot be represented:
//! strings or binary data over 65535 bytes, a remaining length over 268435455, a CONNECT whose
//! protocol differs from the target protocol, and AUTH before 5.0.

use super::props::{self, Emit};
use super::wire::{varint_len, Counter, Sink, VARINT_MAX};
use super::{
    Auth, ConnAck, Connect, Disconnect, Error, Packet, Protocol, PubResp, Publish, QoS, ReasonCode, Result, SubAck,
    SubOptions, Subscribe, UnsubAck, Unsubscribe,
};
use bytes::{BufMut, BytesMut};

/// Appends the wire form of `packet` for `protocol` to `buf`.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<()> {
    let remaining = remaining_len(packet, protocol)?;
    buf.reserve(1 + varint_len(remaining) + remaining);
    buf.put_u8(first_byte(packet));
    Sink::varint(buf, remaining);
    body(packet, protocol, buf);
    Ok(())
}

/// The number of bytes `encode` would write (fixed header included); 0 when `encode` would fail.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    remaining_len(packet, protocol).map_or(0, |n| 1 + varint_len(n) + n)
}

fn remaining_len(packet: &Packet, protocol: Protocol) -> Result<usize> {
    let mut counter = Counter::default();
    body(packet, protocol, &mut counter);
    let len = counter.finish()?;
    if len > VARINT_MAX as usize {
        return Err(Error::Encode("remaining length exceeds 268435455"));
    }
    Ok(len)
}

/// Packet type and flags. DUP is only written for QoS > 0 ([MQTT-3.3.1-2]).
fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => {
            let dup = p.dup && p.qos != QoS::AtMostOnce;
            0x30 | (u8::from(dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
        }
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

/// Everything after the fixed header.
fn body<S: Sink>(packet: &Packet, protocol: Protocol, s: &mut S) {
    let v5 = protocol.is_v5();
    match packet {
        Packet::Connect(c) => connect(c, protocol, s),
        Packet::ConnAck(c) => connack(c, protocol, s),
        Packet::Publish(p) => publish(p, v5, s),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => pub_resp(r, v5, s),
        Packet::Subscribe(x) => subscribe(x, v5, s),
        Packet::SubAck(x) => suback(x, v5, s),
        Packet::Unsubscribe(x) => unsubscribe(x, v5, s),
        Packet::UnsubAck(x) => unsuback(x, v5, s),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 {
                disconnect(d, s);
            }
        }
        Packet::Auth(a) => {
            if v5 {
                auth(a, s);
            } else {
                s.fail(Error::Encode("AUTH does not exist before MQTT 5.0"));
            }
        }
    }
}

fn connect<S: Sink>(c: &Connect, protocol: Protocol, s: &mut S) {
    if c.protocol != protocol {
        s.fail(Error::Encode("CONNECT protocol differs from the target protocol"));
        return;
    }
    let v5 = protocol.is_v5();
    s.string(if protocol == Protocol::V3_1 { "MQIsdp" } else { "MQTT" });
    s.byte(protocol.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3) | (u8::from(w.retain) << 5);
    }
    flags |= u8::from(c.password.is_some()) << 6;
    flags |= u8::from(c.username.is_some()) << 7;
    s.byte(flags);
    s.two(c.keep_alive);
    if v5 {
        props::put(s, &c.properties);
    }
    s.string(&c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            props::put(s, &w.properties);
        }
        s.string(&w.topic);
        s.binary(&w.payload);
    }
    if let Some(username) = &c.username {
        s.string(username);
    }
    if let Some(password) = &c.password {
        s.binary(password);
    }
}

fn connack<S: Sink>(c: &ConnAck, protocol: Protocol, s: &mut S) {
    // MQTT 3.1 has no Session Present flag; the byte is reserved.
    s.byte(u8::from(c.session_present && protocol != Protocol::V3_1));
    if protocol.is_v5() {
        s.byte(c.reason.0);
        props::put(s, &c.properties);
    } else {
        s.byte(return_code(c.reason));
    }
}

/// The 3.1/3.1.1 CONNACK return code for a 5.0 reason code.
fn return_code(reason: ReasonCode) -> u8 {
    match reason.0 {
        0x00 => 0,
        0x84 => 1,
        0x85 => 2,
        0x86 => 4,
        0x87 | 0x8A | 0x8C => 5,
        _ => 3,
    }
}

fn publish<S: Sink>(p: &Publish, v5: bool, s: &mut S) {
    s.string(&p.topic);
    if p.qos != QoS::AtMostOnce {
        s.two(p.packet_id);
    }
    if v5 {
        props::put(s, &p.properties);
    }
    s.raw(&p.payload);
}

fn pub_resp<S: Sink>(r: &PubResp, v5: bool, s: &mut S) {
    s.two(r.packet_id);
    if v5 {
        reason_and_props(r.reason, &r.properties, s, true);
    }
}

/// A 5.0 reason code and property block, in the shortest form the packet type allows: nothing
/// for reason 0 without properties, and (where `reason_alone` says the type allows it) the reason
/// without a Property Length when there are no properties.
fn reason_and_props<S: Sink, P: Emit>(reason: ReasonCode, p: &P, s: &mut S, reason_alone: bool) {
    if props::is_empty(p) {
        if reason.0 != 0 {
            s.byte(reason.0);
            if !reason_alone {
                s.varint(0);
            }
        }
    } else {
        s.byte(reason.0);
        props::put(s, p);
    }
}

fn sub_options(o: SubOptions, v5: bool) -> u8 {
    let qos = o.qos as u8;
    if !v5 {
        return qos;
    }
    qos | (u8::from(o.no_local) << 2) | (u8::from(o.retain_as_published) << 3) | ((o.retain_handling & 0b11) << 4)
}

fn subscribe<S: Sink>(x: &Subscribe, v5: bool, s: &mut S) {
    s.two(x.packet_id);
    if v5 {
        props::put(s, &x.properties);
    }
    for f in &x.filters {
        s.string(&f.filter);
        s.byte(sub_options(f.options, v5));
    }
}

fn suback<S: Sink>(x: &SubAck, v5: bool, s: &mut S) {
    s.two(x.packet_id);
    if v5 {
        props::put(s, &x.properties);
    }
    for &r in &x.reasons {
        let code = match r.0 {
            // 3.1.1 only knows the granted QoS and 0x80 (failure).
            c @ 0x00..=0x02 => c,
            c if v5 => c,
            _ => 0x80,
        };
        s.byte(code);
    }
}

fn unsubscribe<S: Sink>(x: &Unsubscribe, v5: bool, s: &mut S) {
    s.two(x.packet_id);
    if v5 {
        props::put(s, x.user_properties.as_slice());
    }
    for f in &x.filters {
        s.string(f);
    }
}

fn unsuback<S: Sink>(x: &UnsubAck, v5: bool, s: &mut S) {
    s.two(x.packet_id);
    if v5 {
        props::put(s, &x.properties);
        for r in &x.reasons {
            s.byte(r.0);
        }
    }
}

fn disconnect<S: Sink>(d: &Disconnect, s: &mut S) {
    reason_and_props(d.reason, &d.properties, s, true);
}

fn auth<S: Sink>(a: &Auth, s: &mut S) {
    reason_and_props(a.reason, &a.properties, s, false);
}
