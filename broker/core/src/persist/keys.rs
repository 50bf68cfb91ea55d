//! Key layout of persistent session data.
//!
//! A session key is `[client id length: u16 BE][client id bytes][incarnation: u64 BE]`. Queue keys
//! append the delivery sequence (u64 BE), inbound keys the packet id (u16 BE), so each session's
//! entries are one contiguous, ordered range and a later incarnation of a client id never shares a
//! prefix with an earlier one (purging the old one cannot touch the new one).

use bytes::{BufMut, Bytes, BytesMut};

/// The key prefix of one session incarnation.
pub fn session(client_id: &str, incarnation: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + client_id.len());
    put_session(&mut b, client_id, incarnation);
    b.freeze()
}

fn put_session(b: &mut BytesMut, client_id: &str, incarnation: u64) {
    let id = client_id.as_bytes();
    b.put_u16(id.len().min(u16::MAX as usize) as u16);
    b.put_slice(&id[..id.len().min(u16::MAX as usize)]);
    b.put_u64(incarnation);
}

/// Key of one queued delivery.
pub fn queue(client_id: &str, incarnation: u64, seq: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(18 + client_id.len());
    put_session(&mut b, client_id, incarnation);
    b.put_u64(seq);
    b.freeze()
}

/// Key of one inbound QoS 2 packet id awaiting PUBREL.
pub fn inbound(client_id: &str, incarnation: u64, packet_id: u16) -> Bytes {
    let mut b = BytesMut::with_capacity(12 + client_id.len());
    put_session(&mut b, client_id, incarnation);
    b.put_u16(packet_id);
    b.freeze()
}

/// Key of a stored message.
pub fn message(id: u64) -> Bytes {
    Bytes::copy_from_slice(&id.to_be_bytes())
}

/// Splits a session-prefixed key into (client id, incarnation, rest of the key).
pub fn parse(key: &[u8]) -> Option<(String, u64, &[u8])> {
    let len = usize::from(u16::from_be_bytes(key.get(..2)?.try_into().ok()?));
    let id = std::str::from_utf8(key.get(2..2 + len)?).ok()?;
    let inc = u64::from_be_bytes(key.get(2 + len..10 + len)?.try_into().ok()?);
    Some((id.to_string(), inc, key.get(10 + len..)?))
}

/// Reads a big-endian u64 suffix (queue sequence, message id).
pub fn parse_u64(rest: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(rest.try_into().ok()?))
}

/// Reads a big-endian u16 suffix (packet id).
pub fn parse_u16(rest: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(rest.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_roundtrip_and_sort_by_sequence() {
        let a = queue("dev-1", 7, 2);
        let b = queue("dev-1", 7, 10);
        assert!(a < b, "big-endian sequences sort numerically");
        let (id, inc, rest) = parse(&b).unwrap();
        assert_eq!((id.as_str(), inc, parse_u64(rest)), ("dev-1", 7, Some(10)));
        let key = inbound("dev-1", 7, 42);
        let (_, _, rest) = parse(&key).unwrap();
        assert_eq!(parse_u16(rest), Some(42));
    }

    #[test]
    fn prefixes_do_not_collide() {
        assert!(!queue("ab", 1, 0).starts_with(&session("a", 1)));
        assert!(!queue("a", 2, 0).starts_with(&session("a", 1)));
        assert!(queue("a", 1, 5).starts_with(&session("a", 1)));
    }

    #[test]
    fn garbage_keys_do_not_parse() {
        assert!(parse(b"").is_none());
        assert!(parse(&[0, 5, b'a']).is_none());
        assert!(parse_u64(&[1, 2, 3]).is_none());
    }
}
