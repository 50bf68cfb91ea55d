//! Decoding stored Kafka v2 batches back into records, for the `fleetmq log tail` CLI, time
//! lookups and tests.
//!
//! Invariant: every batch is CRC-checked before its records are trusted, and every length read
//! from the bytes is bounds-checked, so hostile or damaged input yields [`Error::Decode`], never a
//! panic. Decompression output is not capped; callers pass bytes the log itself stored.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Lz4, Zstd};

use super::batch::{batch_length_at, crc_matches, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::{Error, Result, StoredRecord};

/// Decodes every whole batch in `bytes` (e.g. [`super::ReadResult::records`]) into records in
/// offset order. Fails on a partial trailing batch, a bad CRC or an unsupported codec.
pub fn decode_batches(bytes: &Bytes) -> Result<Vec<StoredRecord>> {
    let mut out = Vec::new();
    let mut rest = bytes.clone();
    while !rest.is_empty() {
        let len = batch_length_at(&rest).ok_or_else(|| Error::Decode(format!("{} trailing bytes", rest.len())))?;
        let total = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD as usize))
            .filter(|t| *t >= HEADER_LEN && *t <= rest.len())
            .ok_or_else(|| Error::Decode(format!("batch length {len} with {} bytes left", rest.len())))?;
        let batch = rest.split_to(total);
        decode_batch_into(&batch, &mut out)?;
    }
    Ok(out)
}

/// Decodes one whole batch (exactly one, CRC included) and appends its records to `out`.
pub(crate) fn decode_batch_into(batch: &Bytes, out: &mut Vec<StoredRecord>) -> Result<()> {
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(batch.get(..HEADER_LEN).ok_or_else(|| short("batch header"))?);
    let header = BatchHeader::parse(&raw);
    header.check().map_err(Error::Decode)?;
    if !crc_matches(batch) {
        return Err(Error::Decode(format!("CRC mismatch in batch at offset {}", header.base_offset)));
    }
    let mut section = batch.slice(HEADER_LEN..);
    let mut records = match header.codec() {
        0 => section,
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut section, |b| Ok(b.clone()))
            .map_err(|e| Error::Decode(format!("lz4: {e:#}")))?,
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut section, |b| Ok(b.clone()))
            .map_err(|e| Error::Decode(format!("zstd: {e:#}")))?,
        other => return Err(Error::Decode(format!("unsupported compression codec {other}"))),
    };
    for _ in 0..header.record_count {
        let len = get_varint(&mut records)?;
        let len = usize::try_from(len).map_err(|_| Error::Decode(format!("record length {len}")))?;
        if len > records.remaining() {
            return Err(short("record"));
        }
        let mut rec = records.split_to(len);
        out.push(decode_record(&mut rec, &header)?);
    }
    Ok(())
}

fn decode_record(buf: &mut Bytes, header: &BatchHeader) -> Result<StoredRecord> {
    if !buf.has_remaining() {
        return Err(short("record attributes"));
    }
    let _attributes = buf.get_i8();
    let ts_delta = get_varlong(buf)?;
    let offset_delta = get_varint(buf)?;
    let key = get_nullable(buf)?;
    let value = get_nullable(buf)?;
    let count = get_varint(buf)?;
    let count = usize::try_from(count).map_err(|_| Error::Decode(format!("{count} headers")))?;
    let mut headers = Vec::with_capacity(count.min(buf.remaining()));
    for _ in 0..count {
        let name = get_nullable(buf)?.ok_or_else(|| Error::Decode("null header name".into()))?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| Error::Decode("header name is not UTF-8".into()))?;
        headers.push((name, get_nullable(buf)?));
    }
    let sequence = if header.base_sequence < 0 {
        -1
    } else {
        // Kafka sequences wrap at i32::MAX back to 0.
        ((header.base_sequence as i64 + offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
    };
    Ok(StoredRecord {
        offset: header.base_offset + offset_delta as i64,
        timestamp_ms: header.first_timestamp.wrapping_add(ts_delta),
        key,
        value,
        headers,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        sequence,
    })
}

fn short(what: &str) -> Error {
    Error::Decode(format!("truncated {what}"))
}

fn get_nullable(buf: &mut Bytes) -> Result<Option<Bytes>> {
    let len = get_varint(buf)?;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| Error::Decode(format!("field length {len}")))?;
    if len > buf.remaining() {
        return Err(short("field"));
    }
    Ok(Some(buf.split_to(len)))
}

fn get_varint(buf: &mut Bytes) -> Result<i32> {
    let v = get_varlong(buf)?;
    i32::try_from(v).map_err(|_| Error::Decode(format!("varint {v} out of range")))
}

/// Kafka varlong: unsigned LEB128 of the zigzag encoding, at most 10 bytes.
fn get_varlong(buf: &mut Bytes) -> Result<i64> {
    let mut z: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() {
            return Err(short("varint"));
        }
        let byte = buf.get_u8();
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(Error::Decode("varint longer than 10 bytes".into()))
}
