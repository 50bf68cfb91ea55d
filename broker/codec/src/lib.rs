//! MQTT wire codec: turns bytes into [`Packet`]s and back, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! This is FleetMQ's security boundary and the innermost crate of the broker: it owns the packet
//! types, their decoding, validation and encoding, and nothing else. It may import only `bytes`
//! and `thiserror` — no tokio, no storage, no other FleetMQ crate — so the fuzz targets
//! (`broker/codec/fuzz`) build it alone, and every other crate speaks MQTT through it.
//!
//! The decoder enforces every wire-level MUST of both specifications (reserved flags, QoS 3,
//! packet id 0, UTF-8 rules, property ids allowed per packet, duplicate properties, value ranges,
//! remaining-length form) and never panics on any input. An announced packet larger than the
//! configured maximum is rejected from its fixed header alone, before the body is buffered.
//! Payloads are split off the read buffer without copying.
#![forbid(unsafe_code)]

mod decode;
mod encode;
pub mod packet;
mod props;
#[cfg(test)]
mod tests;
mod wire;

pub use decode::decode;
pub use encode::{encode, encoded_len};
pub use packet::*;

/// Why bytes could not be decoded or a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The bytes do not form a packet of the protocol (5.0 reason 0x81).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet is well-formed but breaks a protocol rule (5.0 reason 0x82).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// The announced packet size exceeds the limit (5.0 reason 0x95).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge { size: usize, max: usize },
    /// CONNECT carried an unknown protocol name or level (CONNACK 0x84 / 3.1.1 return code 1).
    #[error("unsupported protocol name or level {0}")]
    UnsupportedProtocol(u8),
    /// A PUBLISH topic name contains wildcards or is otherwise invalid (5.0 reason 0x90).
    #[error("invalid topic name: {0}")]
    TopicName(&'static str),
    /// Payload format indicator 1 with a payload that is not UTF-8 (5.0 reason 0x99).
    #[error("payload is not valid UTF-8 although its format indicator says so")]
    PayloadFormat,
    /// A CONNECT whose protocol level was understood failed to decode; the CONNACK can be sent in
    /// that protocol's form.
    #[error("invalid CONNECT ({protocol:?}): {error}")]
    Connect { protocol: Protocol, error: Box<Error> },
    /// A packet cannot be encoded (a string over 65535 bytes, remaining length over 268435455, or a
    /// packet type that does not exist in the target protocol level).
    #[error("cannot encode packet: {0}")]
    Encode(&'static str),
}

impl Error {
    /// The MQTT 5.0 reason code to send (CONNACK or DISCONNECT) before closing the connection.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Error::Malformed(_) => ReasonCode::MALFORMED_PACKET,
            // 5.0 section 3.3.4: a Topic Alias of 0 is answered with 0x94 (Topic Alias invalid).
            Error::Protocol(msg) if *msg == props::TOPIC_ALIAS_ZERO => ReasonCode::TOPIC_ALIAS_INVALID,
            Error::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            Error::TooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            Error::UnsupportedProtocol(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Error::TopicName(_) => ReasonCode::TOPIC_NAME_INVALID,
            Error::PayloadFormat => ReasonCode::PAYLOAD_FORMAT_INVALID,
            Error::Connect { error, .. } => error.reason_code(),
            Error::Encode(_) => ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;
