//! Log configuration: where the log lives, how segments roll, what is retained.
//!
//! Invariant: a config accepted by [`LogConfig::validate`] keeps every batch start position of a
//! segment below 2^31, so index positions always fit the on-disk `u32`.

use std::path::PathBuf;

use super::{Error, Result};

/// Default segment size; big enough to amortise file handles, small enough for retention.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Default sparse index spacing (Kafka's `index.interval.bytes`).
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Default retention (Kafka's `retention.ms` default of 7 days).
pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Largest segment size: batch start positions must fit the index's `u32` (Kafka uses i32).
const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// Compression applied to each appended batch. Kafka consumers decompress transparently; only
/// codecs every Kafka client supports are offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// Store records uncompressed.
    #[default]
    None,
    /// LZ4 frame format, Kafka codec 3: cheap on the CPU.
    Lz4,
    /// Zstandard, Kafka codec 4: best ratio.
    Zstd,
}

/// How the log is laid out and retained. One config applies to every topic of a [`super::Log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Root directory holding topic metadata and partition directories.
    pub dir: PathBuf,
    /// Roll to a new segment before an append would grow the active one beyond this.
    pub segment_bytes: u64,
    /// Roll once the active segment spans more than this many milliseconds of record time
    /// (Kafka's `segment.ms`), so age retention can delete data at a predictable granularity.
    pub segment_ms: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_ms: Option<u64>,
    /// Delete the oldest sealed segments while a partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Bytes of batches between sparse index entries; smaller means faster seeks, bigger index.
    pub index_interval_bytes: u32,
    /// Codec for newly appended batches (existing batches keep theirs).
    pub compression: Compression,
    /// fsync the segment after every append, so an acknowledged append survives power loss.
    pub fsync: bool,
}

impl LogConfig {
    /// FleetMQ defaults: 64 MiB segments, an index entry every 4 KiB, 7 days retention, no size
    /// limit, no compression, fsync on every append.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: None,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            compression: Compression::None,
            fsync: true,
        }
    }

    /// Rejects settings the on-disk format cannot honour, before anything is written.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes == 0 || self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes must be in 1..={MAX_SEGMENT_BYTES}, got {}",
                self.segment_bytes
            )));
        }
        if self.segment_ms == Some(0) {
            return Err(Error::InvalidConfig("segment_ms must be positive".into()));
        }
        if self.dir.as_os_str().is_empty() {
            return Err(Error::InvalidConfig("dir must not be empty".into()));
        }
        Ok(())
    }
}
