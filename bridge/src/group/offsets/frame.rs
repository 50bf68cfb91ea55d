//! On-disk format of the offset store. A file is the 8-byte [`MAGIC`] followed by frames
//! `len: u32 LE | crc32c(payload): u32 LE | payload`, each payload one postcard-encoded
//! [`Record`]. Invariant: [`decode`] accepts a frame only if it is complete, at most [`MAX_FRAME`]
//! bytes, checksummed correctly and decodable, and stops at the first frame that is not, so a torn
//! tail is detected instead of misread.

use serde::{Deserialize, Serialize};

/// File header: identifies a FleetMQ offset file and its format version.
pub(super) const MAGIC: &[u8; 8] = b"FMQOFS01";

/// Largest payload accepted, well above the largest record (two names of at most
/// [`MAX_NAME_BYTES`](super::super::MAX_NAME_BYTES) plus metadata bounded by the store config).
pub(super) const MAX_FRAME: usize = 1 << 20;

const FRAME_HEADER: usize = 8;

/// One durable fact. An enum so later formats can add kinds (e.g. deletions) compatibly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Record {
    /// `group` committed `offset` for (`topic`, `partition`); later records for the same key win.
    Commit { group: String, topic: String, partition: i32, offset: i64, leader_epoch: i32, metadata: String },
}

/// Appends `record` as one frame to `buf`.
pub(super) fn encode(record: &Record, buf: &mut Vec<u8>) -> postcard::Result<()> {
    let payload = postcard::to_allocvec(record)?;
    let len = u32::try_from(payload.len()).map_err(|_| postcard::Error::SerializeBufferFull)?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Decodes the frames of `body` (the file after [`MAGIC`]); returns the records and how many bytes
/// of `body` they span. Anything after that is a torn or corrupt tail.
pub(super) fn decode(body: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while let Some((record, next)) = decode_one(body, pos) {
        records.push(record);
        pos = next;
    }
    (records, pos)
}

fn decode_one(body: &[u8], pos: usize) -> Option<(Record, usize)> {
    let header = body.get(pos..pos.checked_add(FRAME_HEADER)?)?;
    let len = usize::try_from(u32::from_le_bytes(header.get(..4)?.try_into().ok()?)).ok()?;
    let crc = u32::from_le_bytes(header.get(4..8)?.try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let start = pos + FRAME_HEADER;
    let payload = body.get(start..start.checked_add(len)?)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let record = postcard::from_bytes(payload).ok()?;
    Some((record, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_stops_at_a_flipped_bit() {
        let rec = |o| Record::Commit {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            offset: o,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let mut buf = Vec::new();
        encode(&rec(1), &mut buf).unwrap();
        let first = buf.len();
        encode(&rec(2), &mut buf).unwrap();
        assert_eq!(decode(&buf), (vec![rec(1), rec(2)], buf.len()));
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(decode(&buf), (vec![rec(1)], first));
    }
}
