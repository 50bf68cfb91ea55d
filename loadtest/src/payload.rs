//! The load payload: a fixed 16-byte header followed by padding.
//!
//! Layout (big-endian): publisher index `u32`, sequence number `u32`, send time `u64` in
//! nanoseconds since the Unix epoch, then zero padding up to the requested payload size.
//!
//! Invariants: every payload the tool sends is at least [`HEADER_LEN`] bytes; decoding never panics
//! and rejects anything shorter than the header. The send time is wall-clock (`CLOCK_REALTIME`) so
//! that publishers and subscribers in different worker processes on one host share one clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes taken by the header; the smallest payload the tool can send.
pub const HEADER_LEN: usize = 16;

/// Why a payload could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The requested payload size cannot hold the header.
    #[error("payload size {0} is smaller than the {HEADER_LEN}-byte header")]
    TooSmall(usize),
    /// A received payload is too short to carry a header (not sent by this tool).
    #[error("received payload of {0} bytes is shorter than the {HEADER_LEN}-byte header")]
    Truncated(usize),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What a payload tells the receiver: who sent it, which message it is, and when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Global publisher index (unique across worker processes).
    pub publisher: u32,
    /// Per-publisher sequence number, starting at 0 and increasing by one per message.
    pub seq: u32,
    /// Send time in nanoseconds since the Unix epoch.
    pub sent_ns: u64,
}

/// Builds a payload of exactly `size` bytes carrying `header`.
pub fn encode(header: &Header, size: usize) -> Result<Vec<u8>> {
    if size < HEADER_LEN {
        return Err(Error::TooSmall(size));
    }
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(&header.publisher.to_be_bytes());
    buf.extend_from_slice(&header.seq.to_be_bytes());
    buf.extend_from_slice(&header.sent_ns.to_be_bytes());
    buf.resize(size, 0);
    Ok(buf)
}

/// Reads the header from the front of a received payload.
pub fn decode(bytes: &[u8]) -> Result<Header> {
    let (Some(p), Some(s), Some(t)) = (bytes.get(0..4), bytes.get(4..8), bytes.get(8..16)) else {
        return Err(Error::Truncated(bytes.len()));
    };
    let mut p4 = [0u8; 4];
    p4.copy_from_slice(p);
    let mut s4 = [0u8; 4];
    s4.copy_from_slice(s);
    let mut t8 = [0u8; 8];
    t8.copy_from_slice(t);
    Ok(Header { publisher: u32::from_be_bytes(p4), seq: u32::from_be_bytes(s4), sent_ns: u64::from_be_bytes(t8) })
}

/// Wall-clock now in nanoseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_keeps_every_field_and_size() {
        let h = Header { publisher: 0xDEAD_BEEF, seq: 4_000_000_001, sent_ns: 1_700_000_000_123_456_789 };
        for size in [16, 17, 64, 1024] {
            let bytes = encode(&h, size).unwrap();
            assert_eq!(bytes.len(), size);
            assert_eq!(decode(&bytes).unwrap(), h);
            assert!(bytes[16..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn layout_is_big_endian_fixed_offsets() {
        let h = Header { publisher: 1, seq: 2, sent_ns: 3 };
        let bytes = encode(&h, 16).unwrap();
        assert_eq!(bytes, vec![0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn too_small_sizes_and_short_payloads_are_errors() {
        let h = Header { publisher: 0, seq: 0, sent_ns: 0 };
        assert_eq!(encode(&h, 15), Err(Error::TooSmall(15)));
        assert_eq!(decode(&[0u8; 15]), Err(Error::Truncated(15)));
        assert_eq!(decode(&[]), Err(Error::Truncated(0)));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_ns() > 1_577_836_800_000_000_000);
    }
}
