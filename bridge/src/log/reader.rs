//! Reads from segment snapshots, outside the partition lock.
//!
//! A [`SegmentView`] freezes a segment's size and index entry counts at the moment it was taken.
//! Segments are append-only and deleted files stay readable through their open handles, so a
//! view stays valid while appends, rolls and retention proceed: reads only ever touch bytes that
//! were whole batches when the view was taken.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::batch::{batch_length_at, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::decode::decode_batch_into;
use super::index::{parse_offset_entry, parse_time_entry, IndexView};
use super::{io_err, Error, Result};

/// Read-only snapshot of one segment.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    /// First offset of the segment.
    pub base_offset: i64,
    /// Offset after the last batch in the snapshot.
    pub next_offset: i64,
    /// Bytes of whole batches in the snapshot; nothing beyond is read.
    pub size: u64,
    /// Newest record timestamp, `None` when empty.
    pub max_timestamp: Option<i64>,
    /// The `.log` file, for errors.
    pub log_path: Arc<Path>,
    /// Open handle; keeps a deleted segment readable.
    pub log: Arc<File>,
    /// Offset index snapshot.
    pub index: IndexView,
    /// Time index snapshot.
    pub time_index: IndexView,
}

impl SegmentView {
    fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt { path: self.log_path.to_path_buf(), reason }
    }

    /// The header of the batch at `pos`, checked to lie wholly within the snapshot.
    fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        if pos + HEADER_LEN as u64 > self.size {
            return Err(self.corrupt(format!("no batch header at byte {pos}")));
        }
        let mut raw = [0u8; HEADER_LEN];
        self.log.read_exact_at(&mut raw, pos).map_err(io_err(&self.log_path))?;
        let h = BatchHeader::parse(&raw);
        h.check().map_err(|r| self.corrupt(format!("{r} at byte {pos}")))?;
        if pos + h.total_len() > self.size {
            return Err(self.corrupt(format!("batch at byte {pos} overruns the segment")));
        }
        Ok(h)
    }

    /// Position of the batch containing `offset`: sparse index lookup (binary search), then a
    /// header scan of at most about one index interval. `None` if the segment does not hold it.
    pub fn batch_pos_for(&self, offset: i64) -> Result<Option<u64>> {
        if offset < self.base_offset || offset >= self.next_offset {
            return Ok(None);
        }
        let rel = u32::try_from(offset - self.base_offset).unwrap_or(u32::MAX);
        let entry = self.index.last_where(|e| parse_offset_entry(e).is_ok_and(|(r, _)| r <= rel))?;
        let mut pos = match entry {
            Some(e) => u64::from(parse_offset_entry(&e)?.1),
            None => 0,
        };
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(Some(pos));
            }
            pos += h.total_len();
        }
        Err(self.corrupt(format!("offset {offset} below {} not found", self.next_offset)))
    }

    /// Appends whole batches starting at `start` to `out` while they fit in `budget` bytes; with
    /// `at_least_one` the first batch is taken whatever its size (KIP-74). Returns true when the
    /// rest of the segment was taken, i.e. the read may continue in the next segment.
    pub fn read_into(&self, start: u64, budget: usize, at_least_one: bool, out: &mut BytesMut) -> Result<bool> {
        if start >= self.size {
            return Ok(true);
        }
        let avail = self.size - start;
        let mut want = avail.min(budget as u64);
        if at_least_one {
            want = want.max(self.header_at(start)?.total_len());
        }
        let want = usize::try_from(want).map_err(|_| self.corrupt(format!("read of {want} bytes at {start}")))?;
        if want == 0 {
            return Ok(false);
        }
        let old = out.len();
        out.resize(old + want, 0);
        if let Err(e) = self.log.read_exact_at(&mut out[old..], start) {
            out.truncate(old);
            return Err(io_err(&self.log_path)(e));
        }
        let mut taken = 0usize;
        while let Some(len) = out.get(old + taken..).and_then(batch_length_at) {
            let total = usize::try_from(len).ok().map(|l| l + LOG_OVERHEAD as usize).filter(|t| *t >= HEADER_LEN);
            let Some(total) = total else {
                out.truncate(old);
                let at = start + taken as u64;
                return Err(self.corrupt(format!("bad batch length {len} at byte {at}")));
            };
            if taken + total > want {
                break;
            }
            taken += total;
        }
        out.truncate(old + taken);
        Ok(start + taken as u64 == self.size)
    }

    /// Earliest `(offset, timestamp)` in this segment with timestamp >= `ts`: the time index
    /// narrows the start, then batch headers (max timestamp) pick the batch, which is decoded.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        if self.max_timestamp.is_none_or(|m| m < ts) {
            return Ok(None);
        }
        let entry = self.time_index.last_where(|e| parse_time_entry(e).is_ok_and(|(t, _)| t < ts))?;
        let from = match entry {
            Some(e) => self.base_offset + i64::from(parse_time_entry(&e)?.1),
            None => self.base_offset,
        };
        let Some(mut pos) = self.batch_pos_for(from)? else {
            return Ok(None);
        };
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= ts {
                let len =
                    usize::try_from(h.total_len()).map_err(|_| self.corrupt(format!("batch at {pos} too large")))?;
                let mut buf = vec![0u8; len];
                self.log.read_exact_at(&mut buf, pos).map_err(io_err(&self.log_path))?;
                let mut records = Vec::new();
                decode_batch_into(&Bytes::from(buf), &mut records)
                    .map_err(|e| self.corrupt(format!("batch at byte {pos}: {e}")))?;
                if let Some(r) = records.iter().find(|r| r.timestamp_ms >= ts) {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
            pos += h.total_len();
        }
        Ok(None)
    }
}
