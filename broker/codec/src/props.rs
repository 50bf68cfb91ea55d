//! MQTT 5.0 properties: identifiers, which packet may carry which (table 2-4 of the 5.0
//! specification), the property-block reader and the writer helpers.
//!
//! Invariants enforced by [`read`]: an unknown identifier or one not allowed in the packet is a
//! Malformed Packet (5.0 section 2.2.2.2); a single-valued property given twice is a Protocol Error;
//! only User Property (everywhere) and Subscription Identifier (PUBLISH only) may repeat. Value
//! ranges are checked by the per-packet readers in `props/read.rs`.

mod read;
mod write;

pub(crate) use read::*;

use super::wire::{Counter, Reader, Sink};
use super::{Error, Result, UserProperty};

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
pub(crate) const CONTENT_TYPE: u8 = 0x03;
pub(crate) const RESPONSE_TOPIC: u8 = 0x08;
pub(crate) const CORRELATION_DATA: u8 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u8 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u8 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u8 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u8 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u8 = 0x1A;
pub(crate) const SERVER_REFERENCE: u8 = 0x1C;
pub(crate) const REASON_STRING: u8 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u8 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
pub(crate) const TOPIC_ALIAS: u8 = 0x23;
pub(crate) const MAXIMUM_QOS: u8 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u8 = 0x25;
pub(crate) const USER_PROPERTY: u8 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u8 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;

/// A set of property identifiers (all identifiers are below 64).
#[derive(Clone, Copy)]
pub(crate) struct IdSet(u64);

impl IdSet {
    const fn of(ids: &[u8]) -> IdSet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < ids.len() {
            bits |= 1 << ids[i];
            i += 1;
        }
        IdSet(bits)
    }

    fn contains(self, id: u8) -> bool {
        1u64.checked_shl(u32::from(id)).is_some_and(|bit| self.0 & bit != 0)
    }
}

const KNOWN: IdSet = IdSet::of(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    WILL_DELAY_INTERVAL,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    TOPIC_ALIAS,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);

/// Which properties a packet (or the will) may carry, and which of them may repeat.
#[derive(Clone, Copy)]
pub(crate) struct Allowed {
    ids: IdSet,
    repeatable: IdSet,
}

const ONLY_USER: IdSet = IdSet::of(&[USER_PROPERTY]);

pub(crate) const CONNECT: Allowed = Allowed {
    ids: IdSet::of(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_PACKET_SIZE,
        TOPIC_ALIAS_MAXIMUM,
        REQUEST_RESPONSE_INFORMATION,
        REQUEST_PROBLEM_INFORMATION,
        USER_PROPERTY,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]),
    repeatable: ONLY_USER,
};

pub(crate) const WILL: Allowed = Allowed {
    ids: IdSet::of(&[
        WILL_DELAY_INTERVAL,
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        CONTENT_TYPE,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
    ]),
    repeatable: ONLY_USER,
};

pub(crate) const CONNACK: Allowed = Allowed {
    ids: IdSet::of(&[
        SESSION_EXPIRY_INTERVAL,
        RECEIVE_MAXIMUM,
        MAXIMUM_QOS,
        RETAIN_AVAILABLE,
        MAXIMUM_PACKET_SIZE,
        ASSIGNED_CLIENT_IDENTIFIER,
        TOPIC_ALIAS_MAXIMUM,
        REASON_STRING,
        USER_PROPERTY,
        WILDCARD_SUBSCRIPTION_AVAILABLE,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        SHARED_SUBSCRIPTION_AVAILABLE,
        SERVER_KEEP_ALIVE,
        RESPONSE_INFORMATION,
        SERVER_REFERENCE,
        AUTHENTICATION_METHOD,
        AUTHENTICATION_DATA,
    ]),
    repeatable: ONLY_USER,
};

pub(crate) const PUBLISH: Allowed = Allowed {
    ids: IdSet::of(&[
        PAYLOAD_FORMAT_INDICATOR,
        MESSAGE_EXPIRY_INTERVAL,
        TOPIC_ALIAS,
        RESPONSE_TOPIC,
        CORRELATION_DATA,
        USER_PROPERTY,
        SUBSCRIPTION_IDENTIFIER,
        CONTENT_TYPE,
    ]),
    repeatable: IdSet::of(&[USER_PROPERTY, SUBSCRIPTION_IDENTIFIER]),
};

/// PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
pub(crate) const ACK: Allowed = Allowed { ids: IdSet::of(&[REASON_STRING, USER_PROPERTY]), repeatable: ONLY_USER };

pub(crate) const SUBSCRIBE: Allowed =
    Allowed { ids: IdSet::of(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]), repeatable: ONLY_USER };

pub(crate) const UNSUBSCRIBE: Allowed = Allowed { ids: ONLY_USER, repeatable: ONLY_USER };

pub(crate) const DISCONNECT: Allowed = Allowed {
    ids: IdSet::of(&[SESSION_EXPIRY_INTERVAL, REASON_STRING, USER_PROPERTY, SERVER_REFERENCE]),
    repeatable: ONLY_USER,
};

pub(crate) const AUTH: Allowed = Allowed {
    ids: IdSet::of(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY]),
    repeatable: ONLY_USER,
};

/// Reads a property block (Property Length then properties) and hands each property identifier,
/// after the identifier checks, to `each`, which reads the value from the given reader.
pub(crate) fn read_block(
    r: &mut Reader,
    allowed: Allowed,
    mut each: impl FnMut(u8, &mut Reader) -> Result<()>,
) -> Result<()> {
    let len = r.varint()?;
    let mut block = r.sub(len as usize)?;
    let mut seen = IdSet(0);
    while !block.is_empty() {
        // Identifiers are Variable Byte Integers, but all of them fit in one byte; a first byte with
        // the continuation bit can only start an unknown (or non-minimal) identifier.
        let id = block.u8()?;
        if !KNOWN.contains(id) {
            return Err(Error::Malformed("unknown property identifier"));
        }
        if !allowed.ids.contains(id) {
            return Err(Error::Malformed("property not allowed in this packet"));
        }
        if seen.contains(id) && !allowed.repeatable.contains(id) {
            return Err(Error::Protocol("property included more than once"));
        }
        seen.0 |= 1 << id;
        each(id, &mut block)?;
    }
    Ok(())
}

/// Property values written in one encoder run.
pub(crate) trait Emit {
    fn emit<S: Sink>(&self, s: &mut S);
}

/// Writes a property block: its length as a Variable Byte Integer, then the properties.
pub(crate) fn put<S: Sink, P: Emit + ?Sized>(s: &mut S, props: &P) {
    let mut c = Counter::default();
    props.emit(&mut c);
    match c.finish() {
        Ok(len) => {
            s.varint(len);
            props.emit(s);
        }
        Err(e) => s.fail(e),
    }
}

/// Whether a property block would be empty (so a 5.0 short form can be used).
pub(crate) fn is_empty<P: Emit + ?Sized>(props: &P) -> bool {
    let mut c = Counter::default();
    props.emit(&mut c);
    c.is_empty()
}

fn put_u8<S: Sink>(s: &mut S, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.byte(id);
        s.byte(v);
    }
}

fn put_bool<S: Sink>(s: &mut S, id: u8, v: Option<bool>) {
    put_u8(s, id, v.map(u8::from));
}

fn put_u16<S: Sink>(s: &mut S, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.byte(id);
        s.two(v);
    }
}

fn put_u32<S: Sink>(s: &mut S, id: u8, v: Option<u32>) {
    if let Some(v) = v {
        s.byte(id);
        s.four(v);
    }
}

fn put_str<S: Sink>(s: &mut S, id: u8, v: Option<&str>) {
    if let Some(v) = v {
        s.byte(id);
        s.string(v);
    }
}

fn put_bin<S: Sink>(s: &mut S, id: u8, v: Option<&[u8]>) {
    if let Some(v) = v {
        s.byte(id);
        s.binary(v);
    }
}

fn put_users<S: Sink>(s: &mut S, users: &[UserProperty]) {
    for (name, value) in users {
        s.byte(USER_PROPERTY);
        s.string(name);
        s.string(value);
    }
}
