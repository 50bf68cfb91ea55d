//! One segment: a `.log` file of whole batches plus its `.index` and `.timeindex`.
//!
//! Invariants:
//! - `size` bytes of the `.log` hold whole, dense batches from `base_offset` to
//!   `next_offset - 1`; bytes beyond `size` (a failed write) are never read and are overwritten
//!   by the next append.
//! - An index entry is written for a batch when at least `index_interval` bytes of batches were
//!   appended since the previous entry (every batch when the interval is 0); the time entry
//!   written with it records the newest timestamp *before* that batch (see [`super::index`]).
//! - Only the active segment is appended to; sealing writes the final time entry and fsyncs.
//! - The active segment is CRC-verified and truncated to its valid prefix on open. Sealed ones
//!   keep their indexes when those are ordered, in range, and the batch headers from the last
//!   index entry chain exactly to the end of the file and the next segment's base offset;
//!   otherwise both indexes are rebuilt from batch headers.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::batch::{BatchHeader, HEADER_LEN};
use super::index::{
    offset_entry, parse_offset_entry, parse_time_entry, time_entry, IndexFile, OFFSET_ENTRY, TIME_ENTRY,
};
use super::reader::SegmentView;
use super::scan::scan_batches;
use super::{io_err, Result};

/// File name stem of a segment: the base offset as 20 zero-padded digits, like Kafka.
pub(crate) fn segment_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// The state of an open segment. Owned by its partition, behind the partition lock.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    log_path: Arc<Path>,
    log: Arc<File>,
    index: IndexFile,
    time_index: IndexFile,
    size: u64,
    next_offset: i64,
    max_timestamp: Option<i64>,
    /// Newest timestamp of the first batch: the reference for time-based rolling.
    first_batch_max_ts: Option<i64>,
    bytes_since_index: u64,
    index_interval: u64,
}

impl Segment {
    /// Creates a new, empty segment; fails if its `.log` already exists. A failure after the file
    /// was created removes it again, so a later roll can retry instead of finding it in the way.
    pub fn create(dir: &Path, base_offset: i64, index_interval: u32) -> Result<Self> {
        let stem = segment_stem(base_offset);
        let log_path = dir.join(format!("{stem}.log"));
        let log =
            OpenOptions::new().read(true).write(true).create_new(true).open(&log_path).map_err(io_err(&log_path))?;
        Self::with_files(dir, base_offset, log_path.clone(), log, index_interval, true).inspect_err(|_| {
            let _ = std::fs::remove_file(&log_path);
        })
    }

    /// Opens the newest segment: CRC-checks every batch, truncates a torn or corrupt tail and
    /// rebuilds both indexes. Returns the segment and the number of bytes cut off.
    pub fn open_active(dir: &Path, base_offset: i64, index_interval: u32) -> Result<(Self, u64)> {
        let mut seg = Self::open_existing(dir, base_offset, index_interval)?;
        let file_len = seg.log.metadata().map_err(io_err(&seg.log_path))?.len();
        let valid = seg.rebuild(file_len, true)?;
        let cut = file_len - valid;
        if cut > 0 {
            seg.log.set_len(valid).map_err(io_err(&seg.log_path))?;
            seg.log.sync_all().map_err(io_err(&seg.log_path))?;
        }
        Ok((seg, cut))
    }

    /// Opens an older, immutable segment that ends where `next_offset` begins. Its indexes are
    /// kept when consistent, otherwise rebuilt from batch headers and made durable.
    pub fn open_sealed(dir: &Path, base_offset: i64, next_offset: i64, index_interval: u32) -> Result<Self> {
        let mut seg = Self::open_existing(dir, base_offset, index_interval)?;
        let file_len = seg.log.metadata().map_err(io_err(&seg.log_path))?.len();
        match seg.check_sealed(file_len, next_offset)? {
            Ok(max_timestamp) => {
                seg.size = file_len;
                seg.next_offset = next_offset;
                seg.max_timestamp = max_timestamp;
            }
            Err(reason) => {
                tracing::warn!(segment = %seg.log_path.display(), %reason, "rebuilding segment indexes");
                seg.rebuild(file_len, false)?;
                if seg.next_offset != next_offset {
                    tracing::warn!(
                        segment = %seg.log_path.display(),
                        ends = seg.next_offset,
                        next_segment = next_offset,
                        "sealed segment does not reach the next segment; offsets in between are lost"
                    );
                }
                seg.seal()?;
            }
        }
        Ok(seg)
    }

    fn open_existing(dir: &Path, base_offset: i64, index_interval: u32) -> Result<Self> {
        let log_path = dir.join(format!("{}.log", segment_stem(base_offset)));
        let log = OpenOptions::new().read(true).write(true).open(&log_path).map_err(io_err(&log_path))?;
        Self::with_files(dir, base_offset, log_path, log, index_interval, false)
    }

    fn with_files(
        dir: &Path,
        base_offset: i64,
        log_path: PathBuf,
        log: File,
        index_interval: u32,
        truncate_indexes: bool,
    ) -> Result<Self> {
        let stem = segment_stem(base_offset);
        let index_path = dir.join(format!("{stem}.index"));
        let time_path = dir.join(format!("{stem}.timeindex"));
        Ok(Self {
            base_offset,
            log_path: log_path.into(),
            log: Arc::new(log),
            index: IndexFile::open(index_path, OFFSET_ENTRY, truncate_indexes)?,
            time_index: IndexFile::open(time_path, TIME_ENTRY, truncate_indexes)?,
            size: 0,
            next_offset: base_offset,
            max_timestamp: None,
            first_batch_max_ts: None,
            bytes_since_index: 0,
            index_interval: u64::from(index_interval),
        })
    }

    /// Re-derives all in-memory state and both indexes from the first `file_len` bytes of the
    /// log; returns the length of the valid prefix.
    fn rebuild(&mut self, file_len: u64, verify_crc: bool) -> Result<u64> {
        self.index.clear()?;
        self.time_index.clear()?;
        self.size = 0;
        self.next_offset = self.base_offset;
        self.max_timestamp = None;
        self.first_batch_max_ts = None;
        self.bytes_since_index = 0;
        let (log, path) = (self.log.clone(), self.log_path.clone());
        let outcome = scan_batches(&log, &path, self.base_offset, file_len, verify_crc, |pos, h| self.track(pos, h))?;
        if let Some(reason) = outcome.stop {
            tracing::warn!(
                segment = %path.display(),
                %reason,
                valid_bytes = outcome.valid_len,
                dropped_bytes = file_len - outcome.valid_len,
                "segment has an invalid tail"
            );
        }
        Ok(outcome.valid_len)
    }

    /// Accounts for a batch now stored at `pos`: in-memory state first (so a failed index write
    /// only makes the index sparser), then the index entries due.
    fn track(&mut self, pos: u64, h: &BatchHeader) -> Result<()> {
        let due = self.bytes_since_index >= self.index_interval;
        let before = self.max_timestamp;
        self.size = pos + h.total_len();
        self.next_offset = h.last_offset() + 1;
        self.max_timestamp = Some(before.map_or(h.max_timestamp, |m| m.max(h.max_timestamp)));
        self.first_batch_max_ts.get_or_insert(h.max_timestamp);
        if !due {
            self.bytes_since_index += h.total_len();
            return Ok(());
        }
        self.bytes_since_index = h.total_len();
        // Relative offsets fit u32 (rolling keeps them <= i32::MAX) and batch start positions
        // fit u32 (segment_bytes <= i32::MAX); anything else is skipped, never truncated.
        let (Ok(rel), Ok(pos32)) = (u32::try_from(h.base_offset - self.base_offset), u32::try_from(pos)) else {
            return Ok(());
        };
        self.index.append(&offset_entry(rel, pos32))?;
        if let Some(ts) = before {
            self.time_index.append(&time_entry(ts, rel))?;
        }
        Ok(())
    }

    /// Whether `batch` must go to a fresh segment: this one is non-empty and the batch would
    /// push it past `segment_bytes`, overflow relative offsets, or span more than `segment_ms`.
    pub fn should_roll(&self, h: &BatchHeader, segment_bytes: u64, segment_ms: Option<u64>) -> bool {
        if self.size == 0 {
            return false;
        }
        let too_big = self.size + h.total_len() > segment_bytes;
        let rel_overflow = h.last_offset() - self.base_offset > i64::from(i32::MAX);
        let too_old = match (segment_ms, self.first_batch_max_ts) {
            (Some(ms), Some(first)) => h.max_timestamp.saturating_sub(first) > i64::try_from(ms).unwrap_or(i64::MAX),
            _ => false,
        };
        too_big || rel_overflow || too_old
    }

    /// Appends one encoded batch (whose header is `h`) with a single positional write.
    pub fn append(&mut self, batch: &[u8], h: &BatchHeader, fsync: bool) -> Result<()> {
        let pos = self.size;
        let written =
            self.log.write_all_at(batch, pos).and_then(|()| if fsync { self.log.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Best effort: drop the partial bytes now; if this fails too they stay beyond
            // `size`, unread, and the next append overwrites them.
            let _ = self.log.set_len(pos);
            return Err(io_err(&self.log_path)(e));
        }
        if let Err(e) = self.track(pos, h) {
            tracing::warn!(segment = %self.log_path.display(), error = %e, "index entry not written");
        }
        Ok(())
    }

    /// Writes the final time entry and makes the segment durable before a newer one exists.
    pub fn seal(&mut self) -> Result<()> {
        if let (Some(ts), Ok(rel)) = (self.max_timestamp, u32::try_from(self.next_offset - self.base_offset)) {
            self.time_index.append(&time_entry(ts, rel))?;
        }
        self.sync()?;
        self.index.sync()?;
        self.time_index.sync()
    }

    /// fsyncs the log data.
    pub fn sync(&self) -> Result<()> {
        self.log.sync_data().map_err(io_err(&self.log_path))
    }

    /// Validates a sealed segment's indexes against its log. `Ok(Ok(max_timestamp))` when they
    /// can be trusted, `Ok(Err(reason))` when they must be rebuilt.
    fn check_sealed(&self, file_len: u64, next_offset: i64) -> Result<std::result::Result<Option<i64>, String>> {
        if !self.index.is_whole()? || !self.time_index.is_whole()? {
            return Ok(Err("index file has a torn entry".into()));
        }
        let empty_indexes = self.index.entries() == 0 && self.time_index.entries() == 0;
        if file_len == 0 || next_offset <= self.base_offset {
            return Ok(if file_len == 0 && empty_indexes {
                Ok(None)
            } else {
                Err("empty segment with index entries or offsets".into())
            });
        }
        let span = next_offset - self.base_offset;
        let (mut ok, mut prev, mut last) = (true, None::<(u32, u32)>, None);
        self.index.for_each(|e| {
            let cur = parse_offset_entry(e).ok();
            ok = match (prev, cur) {
                (_, None) => false,
                (None, Some((rel, pos))) => i64::from(rel) < span && u64::from(pos) < file_len,
                (Some((pr, pp)), Some((rel, pos))) => {
                    rel > pr && pos > pp && i64::from(rel) < span && u64::from(pos) < file_len
                }
            };
            prev = cur;
            last = cur;
            ok
        })?;
        if !ok {
            return Ok(Err("offset index entries out of order or out of range".into()));
        }
        // From the last indexed batch (or the start), batch headers must chain densely to exactly
        // the end of the file and to `next_offset`: catches stale entries and torn tails.
        let (rel, pos) = last.unwrap_or((0, 0));
        let (mut pos, mut next) = (u64::from(pos), self.base_offset + i64::from(rel));
        while pos < file_len {
            let mut raw = [0u8; HEADER_LEN];
            if self.log.read_exact_at(&mut raw, pos).is_err() {
                return Ok(Err(format!("torn batch header at byte {pos}")));
            }
            let h = BatchHeader::parse(&raw);
            if h.check().is_err() || h.base_offset != next || h.total_len() > file_len - pos {
                return Ok(Err(format!("index or log tail inconsistent at byte {pos}")));
            }
            pos += h.total_len();
            next = h.last_offset() + 1;
        }
        if next != next_offset {
            return Ok(Err(format!("segment ends at offset {next}, next segment starts at {next_offset}")));
        }
        let (mut ok, mut prev, mut last) = (true, None::<(i64, u32)>, None);
        self.time_index.for_each(|e| {
            let cur = parse_time_entry(e).ok();
            ok = match (prev, cur) {
                (_, None) => false,
                (None, Some((_, rel))) => i64::from(rel) <= span,
                (Some((pt, pr)), Some((ts, rel))) => ts >= pt && rel >= pr && i64::from(rel) <= span,
            };
            prev = cur;
            last = cur;
            ok
        })?;
        match last {
            Some((ts, rel)) if ok && i64::from(rel) == span => Ok(Ok(Some(ts))),
            _ => Ok(Err("time index lacks its seal entry".into())),
        }
    }

    /// Removes the segment's files, log first so a crash leaves only orphan indexes, which the
    /// next open deletes.
    pub fn delete_files(&self) -> Result<()> {
        std::fs::remove_file(&self.log_path).map_err(io_err(&self.log_path))?;
        for path in [self.index.path(), self.time_index.path()] {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete index file");
            }
        }
        Ok(())
    }

    /// A snapshot for reads outside the partition lock.
    pub fn view(&self) -> SegmentView {
        SegmentView {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.size,
            max_timestamp: self.max_timestamp,
            log_path: self.log_path.clone(),
            log: self.log.clone(),
            index: self.index.view(),
            time_index: self.time_index.view(),
        }
    }

    /// First offset of the segment.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset the next batch appended here gets.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of valid batches.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Newest record timestamp, `None` when empty.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }
}
