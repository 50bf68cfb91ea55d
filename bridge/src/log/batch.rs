//! Kafka RecordBatch v2 (magic 2): the fixed 61-byte header, the CRC and the encoder.
//!
//! Layout (big endian), as Kafka stores it and Fetch returns it:
//!
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 = 2
//! 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 firstTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records (compressed as a whole if codec != 0)
//! ```
//!
//! Records are encoded here rather than through `kafka_protocol`'s encoder because that one keys
//! headers by name and would silently drop duplicate headers, which Kafka and MQTT 5 user
//! properties both allow. Compression uses `kafka_protocol::compression`, so codec framing is the
//! one Kafka clients expect; tests decode our batches with `kafka_protocol`'s decoder.

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Lz4, Zstd};

use super::{Compression, ProducerStamp, Record};

/// Bytes before `batchLength`'s coverage starts: baseOffset + batchLength.
pub(crate) const LOG_OVERHEAD: u64 = 12;
/// Size of the fixed batch header, including [`LOG_OVERHEAD`].
pub(crate) const HEADER_LEN: usize = 61;
/// Where the CRC-covered part of a batch starts (the attributes field).
pub(crate) const CRC_START: usize = 21;
/// The only batch format FleetMQ stores.
pub(crate) const MAGIC_V2: i8 = 2;

/// Partition leader epoch written into every batch. FleetMQ is the single, permanent leader of
/// its partitions, so the listener should report this epoch in Metadata to match the batches.
pub const PARTITION_LEADER_EPOCH: i32 = 0;

const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;
const NO_SEQUENCE: i32 = -1;

/// The fixed header of one stored batch, parsed without touching the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after this field (partition leader epoch to the end).
    pub batch_length: i32,
    /// Format version; FleetMQ stores only 2.
    pub magic: i8,
    /// CRC32C of attributes..end, as stored.
    pub crc: u32,
    /// Codec (bits 0-2), timestamp type (bit 3), transactional, control.
    pub attributes: i16,
    /// Last record offset minus `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp record timestamp deltas are relative to.
    pub first_timestamp: i64,
    /// Newest record timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, -1 when none.
    pub producer_id: i64,
    /// Producer epoch, -1 when none.
    pub producer_epoch: i16,
    /// Sequence of the first record, -1 when none.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header fields; no validation (see [`BatchHeader::check`]).
    pub fn parse(raw: &[u8; HEADER_LEN]) -> Self {
        let mut b = &raw[..];
        let base_offset = b.get_i64();
        let batch_length = b.get_i32();
        let _leader_epoch = b.get_i32();
        Self {
            base_offset,
            batch_length,
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            first_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        }
    }

    /// Structural sanity: v2, a length that covers the header, sane offset deltas.
    pub fn check(&self) -> Result<(), String> {
        if self.magic != MAGIC_V2 {
            return Err(format!("batch magic {} is not 2", self.magic));
        }
        if (self.batch_length as i64) < (HEADER_LEN as i64 - LOG_OVERHEAD as i64) {
            return Err(format!("batch length {} too small", self.batch_length));
        }
        if self.last_offset_delta < 0 || self.record_count < 0 {
            return Err(format!(
                "negative last offset delta {} or record count {}",
                self.last_offset_delta, self.record_count
            ));
        }
        if self.base_offset < 0 || self.base_offset.checked_add(self.last_offset_delta as i64).is_none() {
            return Err(format!("invalid base offset {}", self.base_offset));
        }
        Ok(())
    }

    /// Whole batch size on disk, header included.
    pub fn total_len(&self) -> u64 {
        LOG_OVERHEAD + self.batch_length.max(0) as u64
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// The compression codec bits of the attributes.
    pub fn codec(&self) -> i16 {
        self.attributes & 0x7
    }
}

/// Reads the `batchLength` field from the first [`LOG_OVERHEAD`] bytes of a batch.
pub(crate) fn batch_length_at(bytes: &[u8]) -> Option<i32> {
    let mut len = bytes.get(8..12)?;
    Some(len.get_i32())
}

/// True when the stored CRC matches CRC32C over attributes..end of the whole batch in `batch`.
pub(crate) fn crc_matches(batch: &[u8]) -> bool {
    if batch.len() < HEADER_LEN {
        return false;
    }
    let mut stored = &batch[17..CRC_START];
    stored.get_u32() == crc32c::crc32c(&batch[CRC_START..])
}

/// Encodes `records` as one v2 batch starting at `base_offset`. Errors are human-readable
/// reasons; the caller adds topic and partition.
pub(crate) fn encode_batch(
    base_offset: i64,
    records: &[Record],
    producer: Option<ProducerStamp>,
    compression: Compression,
) -> Result<BytesMut, String> {
    let first = records.first().ok_or("no records")?;
    let count = i32::try_from(records.len()).map_err(|_| "too many records")?;
    let first_ts = first.timestamp_ms;
    let max_ts = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(first_ts);

    let mut body = BytesMut::new();
    let mut scratch = BytesMut::new();
    for (delta, record) in records.iter().enumerate() {
        scratch.clear();
        encode_record(&mut scratch, record, first_ts, delta as i32)?;
        put_varint(&mut body, len_i32(scratch.len(), "record")?);
        body.extend_from_slice(&scratch);
    }

    let stamp = producer.map_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE), |p| {
        (p.producer_id, p.producer_epoch, p.base_sequence)
    });
    let codec: i16 = match compression {
        Compression::None => 0,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    };

    let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
    out.put_i64(base_offset);
    out.put_i32(0); // batchLength, filled below
    out.put_i32(PARTITION_LEADER_EPOCH);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, filled below
    out.put_i16(codec); // timestamp type bit 3 clear: CreateTime
    out.put_i32(count - 1);
    out.put_i64(first_ts);
    out.put_i64(max_ts);
    out.put_i64(stamp.0);
    out.put_i16(stamp.1);
    out.put_i32(stamp.2);
    out.put_i32(count);
    match compression {
        Compression::None => out.extend_from_slice(&body),
        Compression::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, |tmp| {
            tmp.extend_from_slice(&body);
            Ok(())
        })
        .map_err(|e| format!("lz4: {e:#}"))?,
        Compression::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut out, |tmp| {
            tmp.extend_from_slice(&body);
            Ok(())
        })
        .map_err(|e| format!("zstd: {e:#}"))?,
    }

    let batch_length = len_i32(out.len() - LOG_OVERHEAD as usize, "batch")?;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..CRC_START].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// One record body (everything after its length varint).
fn encode_record(buf: &mut BytesMut, record: &Record, first_ts: i64, offset_delta: i32) -> Result<(), String> {
    buf.put_i8(0); // record attributes, unused by Kafka
    put_varlong(buf, record.timestamp_ms.wrapping_sub(first_ts));
    put_varint(buf, offset_delta);
    put_nullable(buf, record.key.as_deref(), "key")?;
    put_nullable(buf, record.value.as_deref(), "value")?;
    put_varint(buf, len_i32(record.headers.len(), "header count")?);
    for (name, value) in &record.headers {
        put_varint(buf, len_i32(name.len(), "header name")?);
        buf.extend_from_slice(name.as_bytes());
        put_nullable(buf, value.as_deref(), "header value")?;
    }
    Ok(())
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>, what: &str) -> Result<(), String> {
    match bytes {
        None => put_varint(buf, -1),
        Some(b) => {
            put_varint(buf, len_i32(b.len(), what)?);
            buf.extend_from_slice(b);
        }
    }
    Ok(())
}

fn len_i32(len: usize, what: &str) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("{what} too large ({len} bytes)"))
}

/// Kafka varint: zigzag-encoded i32 as unsigned LEB128.
fn put_varint(buf: &mut BytesMut, v: i32) {
    put_varlong(buf, v as i64);
}

/// Kafka varlong: zigzag-encoded i64 as unsigned LEB128.
fn put_varlong(buf: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    buf.put_u8(z as u8);
}
