//! Hand-built MQTT packets as raw bytes, written from the specifications and deliberately
//! independent of FleetMQ's codec, so tests can send exactly what a spec clause talks about —
//! including packets that are wrong on purpose.
//!
//! Invariant: the builders never validate; they encode whatever they are given.

/// MQTT 5.0 property identifiers used by the tests.
pub mod prop {
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    pub const MESSAGE_EXPIRY: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_ID: u8 = 0x0B;
    pub const SESSION_EXPIRY: u8 = 0x11;
    pub const ASSIGNED_CLIENT_ID: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTH_METHOD: u8 = 0x15;
    pub const AUTH_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFO: u8 = 0x17;
    pub const WILL_DELAY: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFO: u8 = 0x19;
    pub const RESPONSE_INFO: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUB_AVAILABLE: u8 = 0x28;
    pub const SUB_ID_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUB_AVAILABLE: u8 = 0x2A;
}

/// Protocol level of a hand-built CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V31,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V311,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl Proto {
    /// Whether packets of this level carry properties.
    pub fn is_v5(self) -> bool {
        self == Proto::V5
    }
}

/// Variable Byte Integer encoding (may produce the over-long forms on purpose via `raw` bytes).
pub fn varint(mut n: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A UTF-8 string field: two-byte length then the bytes (which need not be valid UTF-8).
pub fn string(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A whole packet: fixed-header byte, remaining length, body.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    out.extend(varint(body.len() as u32));
    out.extend_from_slice(body);
    out
}

/// MQTT 5.0 properties in the order added (duplicates allowed, for negative tests).
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<u8>);

impl Props {
    pub fn new() -> Props {
        Props::default()
    }
    pub fn byte(mut self, id: u8, v: u8) -> Props {
        self.0.extend([id, v]);
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Props {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn varint(mut self, id: u8, v: u32) -> Props {
        self.0.push(id);
        self.0.extend(varint(v));
        self
    }
    pub fn str(mut self, id: u8, v: impl AsRef<[u8]>) -> Props {
        self.0.push(id);
        self.0.extend(string(v));
        self
    }
    pub fn pair(mut self, id: u8, k: &str, v: &str) -> Props {
        self.0.push(id);
        self.0.extend(string(k));
        self.0.extend(string(v));
        self
    }
    /// Appends arbitrary bytes (for unknown property ids and broken encodings).
    pub fn raw(mut self, bytes: &[u8]) -> Props {
        self.0.extend_from_slice(bytes);
        self
    }
    /// Length prefix followed by the properties.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = varint(self.0.len() as u32);
        out.extend_from_slice(&self.0);
        out
    }
}

/// A Will Message in a hand-built CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

/// A CONNECT packet; `Connect::v5("id")` etc. give sensible defaults to adjust field by field.
#[derive(Debug, Clone)]
pub struct Connect {
    pub proto: Proto,
    pub client_id: String,
    pub clean: bool,
    pub keepalive: u16,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub will: Option<Will>,
    pub props: Props,
    /// ORed into the connect flags (to set the reserved bit).
    pub extra_flags: u8,
    /// Replaces the protocol name when set.
    pub name_override: Option<Vec<u8>>,
    /// Replaces the protocol level byte when set.
    pub level_override: Option<u8>,
}

impl Connect {
    pub fn new(proto: Proto, client_id: &str) -> Connect {
        Connect {
            proto,
            client_id: client_id.into(),
            clean: true,
            keepalive: 60,
            username: None,
            password: None,
            will: None,
            props: Props::new(),
            extra_flags: 0,
            name_override: None,
            level_override: None,
        }
    }
    pub fn v31(client_id: &str) -> Connect {
        Connect::new(Proto::V31, client_id)
    }
    pub fn v4(client_id: &str) -> Connect {
        Connect::new(Proto::V311, client_id)
    }
    pub fn v5(client_id: &str) -> Connect {
        Connect::new(Proto::V5, client_id)
    }

    pub fn encode(&self) -> Vec<u8> {
        let (name, level): (&[u8], u8) = match self.proto {
            Proto::V31 => (b"MQIsdp", 3),
            Proto::V311 => (b"MQTT", 4),
            Proto::V5 => (b"MQTT", 5),
        };
        let mut body = string(self.name_override.as_deref().unwrap_or(name));
        body.push(self.level_override.unwrap_or(level));
        let mut flags = self.extra_flags;
        if self.clean {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.push(flags);
        body.extend(self.keepalive.to_be_bytes());
        if self.proto.is_v5() {
            body.extend(self.props.encode());
        }
        body.extend(string(&self.client_id));
        if let Some(w) = &self.will {
            if self.proto.is_v5() {
                body.extend(w.props.encode());
            }
            body.extend(string(&w.topic));
            body.extend(string(&w.payload));
        }
        if let Some(u) = &self.username {
            body.extend(string(u));
        }
        if let Some(p) = &self.password {
            body.extend(string(p));
        }
        packet(0x10, &body)
    }
}

/// A PUBLISH packet.
#[derive(Debug, Clone)]
pub struct Publish {
    pub v5: bool,
    pub topic: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub pid: u16,
    pub props: Props,
    pub payload: Vec<u8>,
}

impl Publish {
    /// QoS 0, no flags, packet id 1 (used only when QoS > 0).
    pub fn new(v5: bool, topic: impl AsRef<[u8]>, payload: impl AsRef<[u8]>) -> Publish {
        Publish {
            v5,
            topic: topic.as_ref().to_vec(),
            qos: 0,
            retain: false,
            dup: false,
            pid: 1,
            props: Props::new(),
            payload: payload.as_ref().to_vec(),
        }
    }
    pub fn qos(mut self, qos: u8, pid: u16) -> Publish {
        self.qos = qos;
        self.pid = pid;
        self
    }
    pub fn retain(mut self) -> Publish {
        self.retain = true;
        self
    }
    pub fn dup(mut self) -> Publish {
        self.dup = true;
        self
    }
    pub fn props(mut self, props: Props) -> Publish {
        self.props = props;
        self
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut first = 0x30 | (self.qos << 1);
        if self.retain {
            first |= 0x01;
        }
        if self.dup {
            first |= 0x08;
        }
        let mut body = string(&self.topic);
        if self.qos > 0 {
            body.extend(self.pid.to_be_bytes());
        }
        if self.v5 {
            body.extend(self.props.encode());
        }
        body.extend_from_slice(&self.payload);
        packet(first, &body)
    }
}

/// SUBSCRIBE with (filter, options byte) pairs; for 3.1.1 the options byte is the requested QoS.
pub fn subscribe(v5: bool, pid: u16, filters: &[(&str, u8)], props: &Props) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.extend(props.encode());
    }
    for (f, o) in filters {
        body.extend(string(f));
        body.push(*o);
    }
    packet(0x82, &body)
}

/// UNSUBSCRIBE for the given filters.
pub fn unsubscribe(v5: bool, pid: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    if v5 {
        body.extend(Props::new().encode());
    }
    for f in filters {
        body.extend(string(f));
    }
    packet(0xA2, &body)
}

/// PUBACK with success (the short form valid for both levels).
pub fn puback(pid: u16) -> Vec<u8> {
    packet(0x40, &pid.to_be_bytes())
}

/// PUBREC with success.
pub fn pubrec(pid: u16) -> Vec<u8> {
    packet(0x50, &pid.to_be_bytes())
}

/// PUBREL with success (fixed-header flags 0b0010).
pub fn pubrel(pid: u16) -> Vec<u8> {
    packet(0x62, &pid.to_be_bytes())
}

/// PUBCOMP with success.
pub fn pubcomp(pid: u16) -> Vec<u8> {
    packet(0x70, &pid.to_be_bytes())
}

/// PINGREQ.
pub fn pingreq() -> Vec<u8> {
    vec![0xC0, 0x00]
}

/// 3.1.1 DISCONNECT (also a valid 5.0 normal disconnection).
pub fn disconnect() -> Vec<u8> {
    vec![0xE0, 0x00]
}

/// 5.0 DISCONNECT with a reason code and properties.
pub fn disconnect_v5(reason: u8, props: &Props) -> Vec<u8> {
    let mut body = vec![reason];
    body.extend(props.encode());
    packet(0xE0, &body)
}
