//! One partition directory: its ordered segments, appends, rolls and read snapshots.
//!
//! Invariants (all held under the partition's mutex):
//! - `sealed` are ordered by base offset and each ends where the next (or `active`) begins;
//!   `active` is the only segment written to, and a partition always has one.
//! - log start offset = base offset of the oldest segment; high watermark = `active`'s next
//!   offset. Every offset in between is readable.

use std::path::{Path, PathBuf};

use bytes::BytesMut;

use super::batch::{encode_batch, BatchHeader, HEADER_LEN};
use super::reader::SegmentView;
use super::segment::Segment;
use super::{io_err, AppendInfo, Error, LogConfig, PartitionOffsets, ProducerStamp, Record, Result};

/// A partition's segments. Lives in a `Mutex` inside the log's topic table.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Topic name, for errors and logs.
    pub(crate) topic: String,
    /// Partition number.
    pub(crate) id: u32,
    /// `<dir>/<topic>-<partition>`.
    pub(crate) dir: PathBuf,
    /// Immutable segments, oldest first.
    pub(crate) sealed: Vec<Segment>,
    /// The segment appends go to.
    pub(crate) active: Segment,
}

/// Segment files found in a partition directory.
#[derive(Debug, Default)]
struct Listing {
    logs: Vec<i64>,
    orphans: Vec<PathBuf>,
}

fn list_segments(dir: &Path) -> Result<Listing> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let (Some(stem), Some(ext)) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        let Some(base) = (stem.len() == 20).then(|| stem.parse::<i64>().ok()).flatten() else {
            continue;
        };
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => indexes.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    let orphans =
        indexes.into_iter().filter(|(base, _)| logs.binary_search(base).is_err()).map(|(_, path)| path).collect();
    Ok(Listing { logs, orphans })
}

/// fsyncs a directory so file creations and deletions in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, recovering the active segment and
    /// checking the sealed ones.
    pub fn open(dir: PathBuf, topic: &str, id: u32, config: &LogConfig) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let listing = list_segments(&dir)?;
        for orphan in &listing.orphans {
            std::fs::remove_file(orphan).map_err(io_err(orphan))?;
        }
        let interval = config.index_interval_bytes;
        let mut sealed = Vec::with_capacity(listing.logs.len());
        for pair in listing.logs.windows(2) {
            sealed.push(Segment::open_sealed(&dir, pair[0], pair[1], interval)?);
        }
        let active = match listing.logs.last() {
            Some(&base) => {
                let (seg, cut) = Segment::open_active(&dir, base, interval)?;
                if cut > 0 {
                    tracing::warn!(topic, partition = id, bytes = cut, "truncated torn log tail");
                }
                seg
            }
            None => {
                let seg = Segment::create(&dir, 0, interval)?;
                sync_dir(&dir)?;
                seg
            }
        };
        Ok(Self { topic: topic.to_owned(), id, dir, sealed, active })
    }

    fn encode_error(&self, reason: impl Into<String>) -> Error {
        Error::Encode { topic: self.topic.clone(), partition: self.id, reason: reason.into() }
    }

    /// Appends `records` as one batch at the high watermark, rolling first if due.
    pub fn append(
        &mut self,
        records: &[Record],
        producer: Option<ProducerStamp>,
        config: &LogConfig,
    ) -> Result<AppendInfo> {
        if records.is_empty() {
            return Err(Error::EmptyAppend { topic: self.topic.clone(), partition: self.id });
        }
        let base = self.active.next_offset();
        let batch = encode_batch(base, records, producer, config.compression).map_err(|r| self.encode_error(r))?;
        let header = header_of(&batch).ok_or_else(|| self.encode_error("short batch"))?;
        if header.last_offset() == i64::MAX {
            return Err(self.encode_error("offsets exhausted"));
        }
        if self.active.should_roll(&header, config.segment_bytes, config.segment_ms) {
            self.roll(config)?;
        }
        self.active.append(&batch, &header, config.fsync)?;
        Ok(AppendInfo { base_offset: header.base_offset, last_offset: header.last_offset() })
    }

    /// Seals the active segment and starts a new one at the high watermark.
    fn roll(&mut self, config: &LogConfig) -> Result<()> {
        self.active.seal()?;
        let next = Segment::create(&self.dir, self.active.next_offset(), config.index_interval_bytes)?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.active, next);
        self.sealed.push(old);
        tracing::debug!(topic = %self.topic, partition = self.id, base = self.active.base_offset(), "rolled segment");
        Ok(())
    }

    /// Current retained range.
    pub fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets { log_start_offset: self.log_start_offset(), high_watermark: self.active.next_offset() }
    }

    /// Base offset of the oldest retained segment.
    pub fn log_start_offset(&self) -> i64 {
        self.sealed.first().map_or(self.active.base_offset(), Segment::base_offset)
    }

    /// Snapshots the segments that may hold `offset` or later, after a range check.
    pub fn views_from(&self, offset: i64) -> Result<(Vec<SegmentView>, PartitionOffsets)> {
        let offsets = self.offsets();
        if offset < offsets.log_start_offset || offset > offsets.high_watermark {
            return Err(Error::OffsetOutOfRange {
                topic: self.topic.clone(),
                partition: self.id,
                offset,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
            });
        }
        let first = self.sealed.partition_point(|s| s.next_offset() <= offset);
        let views = self.sealed[first..].iter().chain(std::iter::once(&self.active)).map(Segment::view).collect();
        Ok((views, offsets))
    }

    /// Snapshots every segment, oldest first.
    pub fn views(&self) -> Vec<SegmentView> {
        self.sealed.iter().chain(std::iter::once(&self.active)).map(Segment::view).collect()
    }

    /// fsyncs the active segment (sealed ones were synced when sealed).
    pub fn flush(&self) -> Result<()> {
        self.active.sync()
    }
}

fn header_of(batch: &[u8]) -> Option<BatchHeader> {
    let raw: &[u8; HEADER_LEN] = batch.get(..HEADER_LEN)?.try_into().ok()?;
    Some(BatchHeader::parse(raw))
}

/// Whole batches from the batch containing `offset`, across segments, within `max_bytes` but
/// at least one batch when any exists (KIP-74). Runs without the partition lock.
pub(crate) fn read_views(views: &[SegmentView], offset: i64, max_bytes: usize) -> Result<BytesMut> {
    let mut out = BytesMut::new();
    for view in views {
        // After the first batch, or past a gap left by a damaged sealed segment, a segment is
        // read from its start.
        let start = if out.is_empty() && offset >= view.base_offset { view.batch_pos_for(offset)? } else { Some(0) };
        let Some(start) = start else {
            continue;
        };
        let budget = max_bytes.saturating_sub(out.len());
        let at_least_one = out.is_empty();
        if !view.read_into(start, budget, at_least_one, &mut out)? {
            break;
        }
    }
    Ok(out)
}

/// Earliest `(offset, timestamp)` with timestamp >= `ts`: the first segment whose newest
/// timestamp reaches `ts` is the only one searched (earlier ones hold only older records).
pub(crate) fn offset_for_timestamp(views: &[SegmentView], ts: i64) -> Result<Option<(i64, i64)>> {
    match views.iter().find(|v| v.max_timestamp.is_some_and(|m| m >= ts)) {
        Some(view) => view.offset_for_timestamp(ts),
        None => Ok(None),
    }
}
