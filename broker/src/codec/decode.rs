//! Placeholder replaced by the decoder implementation.
use super::{Packet, Protocol, Result};
use bytes::BytesMut;

/// Decodes one packet from the front of `buf`.
///
/// * `Ok(None)`: more bytes are needed; `buf` is untouched.
/// * `Ok(Some(p))`: the packet's bytes were split off `buf` (payloads share that allocation).
/// * `protocol == None` means no CONNECT was seen yet: only CONNECT is accepted, anything else is
///   `Error::Protocol`. With `Some(_)`, a CONNECT is `Error::Protocol` (second CONNECT).
/// * `max_packet_size` bounds the whole packet (fixed header included); an announced larger packet
///   is `Error::TooLarge` as soon as the fixed header is complete.
pub fn decode(buf: &mut BytesMut, protocol: Option<Protocol>, max_packet_size: usize) -> Result<Option<Packet>> {
    let _ = (buf, protocol, max_packet_size);
    Ok(None)
}
