//! Parsing of the packets a broker sends, from raw bytes, independent of FleetMQ's codec.
//!
//! Invariant: parsers are strict — anything the broker sends that does not follow the spec makes
//! the parser return an [`Error`] naming what was wrong, so a test fails loudly on a broken encoder.

use crate::wire::prop;

/// Why a packet from the broker could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("packet truncated while reading {0}")]
    Truncated(&'static str),
    #[error("unexpected packet type: first byte {0:#04x}, wanted {1}")]
    Unexpected(u8, &'static str),
    #[error("invalid encoding: {0}")]
    Invalid(&'static str),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Control packet types (upper nibble of the first byte).
pub mod kind {
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBACK: u8 = 9;
    pub const UNSUBACK: u8 = 11;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// One packet as received: the fixed-header byte and the body after the remaining length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub first_byte: u8,
    pub body: Vec<u8>,
}

impl Packet {
    /// The control packet type.
    pub fn kind(&self) -> u8 {
        self.first_byte >> 4
    }
}

/// A property value as decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u32),
    Str(String),
    Bin(Vec<u8>),
    Pair(String, String),
}

/// Decoded 5.0 properties, in wire order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props(pub Vec<(u8, Value)>);

impl Props {
    /// The first integer-valued property with this id.
    pub fn int(&self, id: u8) -> Option<u32> {
        self.0.iter().find_map(|(i, v)| match v {
            Value::Int(n) if *i == id => Some(*n),
            _ => None,
        })
    }
    /// All integer values with this id (subscription identifiers repeat).
    pub fn ints(&self, id: u8) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(|(i, v)| match v {
                Value::Int(n) if *i == id => Some(*n),
                _ => None,
            })
            .collect()
    }
    /// The first string-valued property with this id.
    pub fn str(&self, id: u8) -> Option<&str> {
        self.0.iter().find_map(|(i, v)| match v {
            Value::Str(s) if *i == id => Some(s.as_str()),
            _ => None,
        })
    }
    /// The first binary property with this id.
    pub fn bin(&self, id: u8) -> Option<&[u8]> {
        self.0.iter().find_map(|(i, v)| match v {
            Value::Bin(b) if *i == id => Some(b.as_slice()),
            _ => None,
        })
    }
    /// All user properties in order.
    pub fn user(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter_map(|(_, v)| match v {
                Value::Pair(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }
    /// Whether a property with this id is present.
    pub fn has(&self, id: u8) -> bool {
        self.0.iter().any(|(i, _)| *i == id)
    }
}

/// A cursor over a packet body.
struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::Truncated(what));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn varint(&mut self, what: &'static str) -> Result<u32> {
        let mut v = 0u32;
        for i in 0..4 {
            let b = self.u8(what)?;
            v |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::Invalid("variable byte integer longer than 4 bytes"))
    }
    fn bin(&mut self, what: &'static str) -> Result<Vec<u8>> {
        let n = self.u16(what)?;
        Ok(self.take(n as usize, what)?.to_vec())
    }
    fn string(&mut self, what: &'static str) -> Result<String> {
        String::from_utf8(self.bin(what)?).map_err(|_| Error::Invalid("string is not UTF-8"))
    }
    fn props(&mut self) -> Result<Props> {
        let len = self.varint("property length")? as usize;
        let mut c = Cur { b: self.take(len, "properties")? };
        let mut out = Vec::new();
        while !c.b.is_empty() {
            let id = c.varint("property id")? as u8;
            let v = match id {
                prop::PAYLOAD_FORMAT
                | prop::REQUEST_PROBLEM_INFO
                | prop::REQUEST_RESPONSE_INFO
                | prop::MAXIMUM_QOS
                | prop::RETAIN_AVAILABLE
                | prop::WILDCARD_SUB_AVAILABLE
                | prop::SUB_ID_AVAILABLE
                | prop::SHARED_SUB_AVAILABLE => Value::Int(c.u8("byte property")?.into()),
                prop::SERVER_KEEP_ALIVE | prop::RECEIVE_MAXIMUM | prop::TOPIC_ALIAS_MAXIMUM | prop::TOPIC_ALIAS => {
                    Value::Int(c.u16("u16 property")?.into())
                }
                prop::MESSAGE_EXPIRY | prop::SESSION_EXPIRY | prop::WILL_DELAY | prop::MAXIMUM_PACKET_SIZE => {
                    Value::Int(c.u32("u32 property")?)
                }
                prop::SUBSCRIPTION_ID => Value::Int(c.varint("subscription id")?),
                prop::CONTENT_TYPE
                | prop::RESPONSE_TOPIC
                | prop::ASSIGNED_CLIENT_ID
                | prop::AUTH_METHOD
                | prop::RESPONSE_INFO
                | prop::SERVER_REFERENCE
                | prop::REASON_STRING => Value::Str(c.string("string property")?),
                prop::CORRELATION_DATA | prop::AUTH_DATA => Value::Bin(c.bin("binary property")?),
                prop::USER_PROPERTY => Value::Pair(c.string("user property")?, c.string("user property")?),
                _ => return Err(Error::Invalid("unknown property id")),
            };
            out.push((id, v));
        }
        Ok(Props(out))
    }
}

fn expect(p: &Packet, k: u8, name: &'static str) -> Result<()> {
    if p.kind() == k {
        Ok(())
    } else {
        Err(Error::Unexpected(p.first_byte, name))
    }
}

/// A CONNACK: for 3.1.1 `code` is the return code, for 5.0 the reason code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connack {
    pub session_present: bool,
    pub code: u8,
    pub props: Props,
}

/// Parses a CONNACK; properties are read when the body is longer than the 3.1.1 form.
pub fn connack(p: &Packet) -> Result<Connack> {
    expect(p, kind::CONNACK, "CONNACK")?;
    let mut c = Cur { b: &p.body };
    let flags = c.u8("connack flags")?;
    let code = c.u8("connack code")?;
    let props = if c.b.is_empty() { Props::default() } else { c.props()? };
    Ok(Connack { session_present: flags & 1 == 1, code, props })
}

/// The reason code of a DISCONNECT (0 when the body is empty, as the 5.0 spec allows).
pub fn disconnect_reason(p: &Packet) -> Result<u8> {
    expect(p, kind::DISCONNECT, "DISCONNECT")?;
    Ok(p.body.first().copied().unwrap_or(0))
}

/// The reason code and properties of a 5.0 DISCONNECT.
pub fn disconnect(p: &Packet) -> Result<(u8, Props)> {
    expect(p, kind::DISCONNECT, "DISCONNECT")?;
    let mut c = Cur { b: &p.body };
    let reason = if c.b.is_empty() { 0 } else { c.u8("disconnect reason")? };
    let props = if c.b.is_empty() { Props::default() } else { c.props()? };
    Ok((reason, props))
}

/// A received PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    pub pid: Option<u16>,
    pub props: Props,
    pub payload: Vec<u8>,
}

/// Parses a PUBLISH for the given protocol level.
pub fn publish(p: &Packet, v5: bool) -> Result<Publish> {
    expect(p, kind::PUBLISH, "PUBLISH")?;
    let qos = (p.first_byte >> 1) & 3;
    if qos == 3 {
        return Err(Error::Invalid("QoS 3"));
    }
    let mut c = Cur { b: &p.body };
    let topic = c.string("topic")?;
    let pid = if qos > 0 { Some(c.u16("packet id")?) } else { None };
    let props = if v5 { c.props()? } else { Props::default() };
    Ok(Publish {
        dup: p.first_byte & 0x08 != 0,
        qos,
        retain: p.first_byte & 0x01 != 0,
        topic,
        pid,
        props,
        payload: c.b.to_vec(),
    })
}

/// A PUBACK / PUBREC / PUBREL / PUBCOMP / UNSUBACK-like acknowledgement: packet id and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub pid: u16,
    pub reason: u8,
}

/// Parses a PUBACK, PUBREC, PUBREL or PUBCOMP (reason 0 when omitted).
pub fn ack(p: &Packet) -> Result<Ack> {
    if !(kind::PUBACK..=kind::PUBCOMP).contains(&p.kind()) {
        return Err(Error::Unexpected(p.first_byte, "PUBACK/PUBREC/PUBREL/PUBCOMP"));
    }
    let mut c = Cur { b: &p.body };
    let pid = c.u16("packet id")?;
    let reason = if c.b.is_empty() { 0 } else { c.u8("reason")? };
    Ok(Ack { pid, reason })
}

/// A SUBACK: packet id and one return/reason code per filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suback {
    pub pid: u16,
    pub codes: Vec<u8>,
}

/// Parses a SUBACK for the given protocol level.
pub fn suback(p: &Packet, v5: bool) -> Result<Suback> {
    expect(p, kind::SUBACK, "SUBACK")?;
    let mut c = Cur { b: &p.body };
    let pid = c.u16("packet id")?;
    if v5 {
        c.props()?;
    }
    Ok(Suback { pid, codes: c.b.to_vec() })
}
