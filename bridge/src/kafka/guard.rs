//! Array-length guard run on every request body before `kafka-protocol` decodes it.
//!
//! The decoder reserves `count` elements as soon as it reads an array's length, so a 20-byte
//! request claiming two billion topics would make it ask the allocator for hundreds of gigabytes,
//! which aborts the whole process. This module walks the body with a minimal schema of each
//! request FleetMQ decodes (field types and the versions they exist in, mirroring Kafka's message
//! definitions) and rejects it if any array, string or byte field claims more than the rest of
//! the body holds.
//!
//! Invariant: a body accepted here has every array element physically present in the frame, so
//! the decoder's allocations are bounded by a small multiple of the frame size. Only APIs listed
//! in [`schema`] are decoded by the listener; any other API is refused before decoding.

use kafka_protocol::messages::ApiKey;

/// A wire type, as far as the walk needs to know it. Strings and byte arrays include their
/// nullable forms (same length prefix, -1 or 0 for null).
#[derive(Debug, Clone, Copy)]
enum Ty {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    Str,
    Bytes,
    /// Array of `i32`.
    Ints,
    /// Array of strings.
    Strs,
    /// Array of structs.
    Arr(&'static [Field]),
}

/// A field present in versions `min..=max`.
#[derive(Debug, Clone, Copy)]
struct Field(Ty, i16, i16);

const ALL: i16 = i16::MAX;

/// A request body: its fields and the first flexible (compact, tagged) version.
struct Schema {
    flexible_from: i16,
    fields: &'static [Field],
}

use Ty::*;

const METADATA: &[Field] = &[
    Field(Arr(&[Field(Uuid, 10, ALL), Field(Str, 0, ALL)]), 0, ALL),
    Field(I8, 4, ALL),
    Field(I8, 8, 10),
    Field(I8, 8, ALL),
];

const LIST_OFFSETS: &[Field] = &[
    Field(I32, 0, ALL),
    Field(I8, 2, ALL),
    Field(
        Arr(&[Field(Str, 0, ALL), Field(Arr(&[Field(I32, 0, ALL), Field(I32, 4, ALL), Field(I64, 0, ALL)]), 0, ALL)]),
        0,
        ALL,
    ),
    Field(I32, 10, ALL),
];

const FETCH_PARTITION: &[Field] = &[
    Field(I32, 0, ALL),
    Field(I32, 9, ALL),
    Field(I64, 0, ALL),
    Field(I32, 12, ALL),
    Field(I64, 5, ALL),
    Field(I32, 0, ALL),
];

const FETCH: &[Field] = &[
    Field(I32, 0, 14),
    Field(I32, 0, ALL),
    Field(I32, 0, ALL),
    Field(I32, 0, ALL),
    Field(I8, 0, ALL),
    Field(I32, 7, ALL),
    Field(I32, 7, ALL),
    Field(Arr(&[Field(Str, 0, 12), Field(Uuid, 13, ALL), Field(Arr(FETCH_PARTITION), 0, ALL)]), 0, ALL),
    Field(Arr(&[Field(Str, 7, 12), Field(Uuid, 13, ALL), Field(Ints, 7, ALL)]), 7, ALL),
    Field(Str, 11, ALL),
];

const FIND_COORDINATOR: &[Field] = &[Field(Str, 0, 3), Field(I8, 1, ALL), Field(Strs, 4, ALL)];

const JOIN_GROUP: &[Field] = &[
    Field(Str, 0, ALL),
    Field(I32, 0, ALL),
    Field(I32, 1, ALL),
    Field(Str, 0, ALL),
    Field(Str, 5, ALL),
    Field(Str, 0, ALL),
    Field(Arr(&[Field(Str, 0, ALL), Field(Bytes, 0, ALL)]), 0, ALL),
    Field(Str, 8, ALL),
];

const SYNC_GROUP: &[Field] = &[
    Field(Str, 0, ALL),
    Field(I32, 0, ALL),
    Field(Str, 0, ALL),
    Field(Str, 3, ALL),
    Field(Str, 5, ALL),
    Field(Str, 5, ALL),
    Field(Arr(&[Field(Str, 0, ALL), Field(Bytes, 0, ALL)]), 0, ALL),
];

const HEARTBEAT: &[Field] = &[Field(Str, 0, ALL), Field(I32, 0, ALL), Field(Str, 0, ALL), Field(Str, 3, ALL)];

const LEAVE_GROUP: &[Field] = &[
    Field(Str, 0, ALL),
    Field(Str, 0, 2),
    Field(Arr(&[Field(Str, 3, ALL), Field(Str, 3, ALL), Field(Str, 5, ALL)]), 3, ALL),
];

const OFFSET_COMMIT: &[Field] = &[
    Field(Str, 0, ALL),
    Field(I32, 0, ALL),
    Field(Str, 0, ALL),
    Field(Str, 7, ALL),
    Field(I64, 2, 4),
    Field(
        Arr(&[
            Field(Str, 0, ALL),
            Field(Arr(&[Field(I32, 0, ALL), Field(I64, 0, ALL), Field(I32, 6, ALL), Field(Str, 0, ALL)]), 0, ALL),
        ]),
        0,
        ALL,
    ),
];

const OFFSET_FETCH_TOPICS: &[Field] = &[Field(Str, 0, ALL), Field(Ints, 0, ALL)];

const OFFSET_FETCH: &[Field] = &[
    Field(Str, 0, 7),
    Field(Arr(OFFSET_FETCH_TOPICS), 0, 7),
    Field(
        Arr(&[Field(Str, 8, ALL), Field(Str, 9, ALL), Field(I32, 9, ALL), Field(Arr(OFFSET_FETCH_TOPICS), 8, ALL)]),
        8,
        ALL,
    ),
    Field(I8, 7, ALL),
];

const PRODUCE: &[Field] = &[
    Field(Str, 0, ALL),
    Field(I16, 0, ALL),
    Field(I32, 0, ALL),
    Field(
        Arr(&[
            Field(Str, 0, 12),
            Field(Uuid, 13, ALL),
            Field(Arr(&[Field(I32, 0, ALL), Field(Bytes, 0, ALL)]), 0, ALL),
        ]),
        0,
        ALL,
    ),
];

const CREATE_TOPICS: &[Field] = &[
    Field(
        Arr(&[
            Field(Str, 0, ALL),
            Field(I32, 0, ALL),
            Field(I16, 0, ALL),
            Field(Arr(&[Field(I32, 0, ALL), Field(Ints, 0, ALL)]), 0, ALL),
            Field(Arr(&[Field(Str, 0, ALL), Field(Str, 0, ALL)]), 0, ALL),
        ]),
        0,
        ALL,
    ),
    Field(I32, 0, ALL),
    Field(I8, 1, ALL),
];

const API_VERSIONS: &[Field] = &[Field(Str, 3, ALL), Field(Str, 3, ALL)];

/// The schema of `api`'s request, for the APIs the listener decodes.
fn schema(api: ApiKey) -> Option<Schema> {
    let (flexible_from, fields) = match api {
        ApiKey::ApiVersions => (3, API_VERSIONS),
        ApiKey::Metadata => (9, METADATA),
        ApiKey::ListOffsets => (6, LIST_OFFSETS),
        ApiKey::Fetch => (12, FETCH),
        ApiKey::FindCoordinator => (3, FIND_COORDINATOR),
        ApiKey::JoinGroup => (6, JOIN_GROUP),
        ApiKey::SyncGroup => (4, SYNC_GROUP),
        ApiKey::Heartbeat => (4, HEARTBEAT),
        ApiKey::LeaveGroup => (4, LEAVE_GROUP),
        ApiKey::OffsetCommit => (8, OFFSET_COMMIT),
        ApiKey::OffsetFetch => (6, OFFSET_FETCH),
        ApiKey::Produce => (9, PRODUCE),
        ApiKey::CreateTopics => (5, CREATE_TOPICS),
        _ => return None,
    };
    Some(Schema { flexible_from, fields })
}

/// Why a body was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
    /// The body ends inside a field.
    #[error("body truncated at byte {0}")]
    Truncated(usize),
    /// An array, string, byte or tag-section length is negative or exceeds the remaining bytes.
    #[error("length {len} at byte {at} exceeds the {remaining} bytes left")]
    Length {
        /// Where the length was read.
        at: usize,
        /// The claimed length.
        len: i64,
        /// Bytes left after it.
        remaining: usize,
    },
    /// A varint longer than five bytes.
    #[error("bad varint at byte {0}")]
    Varint(usize),
    /// The listener has no schema for this API, so it must not decode it.
    #[error("no schema for this API")]
    NoSchema,
}

/// Checks that every length in `body` (a request of `api` at `version`) fits the body.
pub(crate) fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), Rejected> {
    consumed(api, version, body).map(drop)
}

/// Walks `body` and returns how many bytes the request occupies (trailing bytes are ignored,
/// as Kafka ignores them).
pub(crate) fn consumed(api: ApiKey, version: i16, body: &[u8]) -> Result<usize, Rejected> {
    let schema = schema(api).ok_or(Rejected::NoSchema)?;
    let mut walk = Walk { buf: body, pos: 0, version, flexible: version >= schema.flexible_from };
    walk.fields(schema.fields)?;
    Ok(walk.pos)
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    flexible: bool,
}

impl Walk<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Rejected> {
        if n > self.remaining() {
            return Err(Rejected::Truncated(self.pos));
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    /// Skips `len` bytes announced at `at`, rejecting lengths beyond the body.
    fn skip(&mut self, at: usize, len: i64) -> Result<(), Rejected> {
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => {
                self.pos += n;
                Ok(())
            }
            _ => Err(Rejected::Length { at, len, remaining }),
        }
    }

    fn int(&mut self, n: usize) -> Result<i64, Rejected> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) as i64)
    }

    fn varint(&mut self) -> Result<i64, Rejected> {
        let at = self.pos;
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value as i64);
            }
        }
        Err(Rejected::Varint(at))
    }

    /// A length prefix: compact (varint, 0 = null) or classic (`width` bytes, signed, -1 = null).
    /// Returns where it was read and the element or byte count, 0 for null.
    fn length(&mut self, width: usize) -> Result<(usize, i64), Rejected> {
        let at = self.pos;
        let len = if self.flexible {
            self.varint()? - 1
        } else if width == 2 {
            i64::from(self.int(2)? as u16 as i16)
        } else {
            i64::from(self.int(4)? as u32 as i32)
        };
        match len {
            -1 => Ok((at, 0)),
            n if n >= 0 => Ok((at, n)),
            n => Err(Rejected::Length { at, len: n, remaining: self.remaining() }),
        }
    }

    fn fields(&mut self, fields: &[Field]) -> Result<(), Rejected> {
        for Field(ty, min, max) in fields {
            if (*min..=*max).contains(&self.version) {
                self.value(*ty)?;
            }
        }
        if self.flexible {
            self.tags()?;
        }
        Ok(())
    }

    fn value(&mut self, ty: Ty) -> Result<(), Rejected> {
        match ty {
            I8 => self.take(1).map(drop),
            I16 => self.take(2).map(drop),
            I32 => self.take(4).map(drop),
            I64 => self.take(8).map(drop),
            Uuid => self.take(16).map(drop),
            Str => {
                let (at, len) = self.length(2)?;
                self.skip(at, len)
            }
            Bytes => {
                let (at, len) = self.length(4)?;
                self.skip(at, len)
            }
            Ints => {
                let (at, count) = self.array()?;
                self.skip(at, count.saturating_mul(4))
            }
            Strs => {
                let (_, count) = self.array()?;
                (0..count).try_for_each(|_| self.value(Str))
            }
            Arr(fields) => {
                let (_, count) = self.array()?;
                (0..count).try_for_each(|_| self.fields(fields))
            }
        }
    }

    /// An array length, which may not exceed the remaining bytes (every element takes at least
    /// one byte in every schema here).
    fn array(&mut self) -> Result<(usize, i64), Rejected> {
        let (at, count) = self.length(4)?;
        let remaining = self.remaining();
        if count as u64 > remaining as u64 {
            return Err(Rejected::Length { at, len: count, remaining });
        }
        Ok((at, count))
    }

    /// A tagged-field section: count, then (tag, size, bytes) per field.
    fn tags(&mut self) -> Result<(), Rejected> {
        let at = self.pos;
        let count = self.varint()?;
        let remaining = self.remaining();
        if count as u64 > remaining as u64 {
            return Err(Rejected::Length { at, len: count, remaining });
        }
        for _ in 0..count {
            self.varint()?;
            let at = self.pos;
            let size = self.varint()?;
            self.skip(at, size)?;
        }
        Ok(())
    }
}
