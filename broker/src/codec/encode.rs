//! Placeholder replaced by the encoder implementation.
use super::{Packet, Protocol, Result};
use bytes::BytesMut;

/// Appends the wire form of `packet` for `protocol` to `buf`.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<()> {
    let _ = (packet, protocol, buf);
    Ok(())
}

/// The number of bytes `encode` would write (fixed header included).
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> usize {
    let _ = (packet, protocol);
    0
}
