//! Plain data crossing the log's public API: what callers append and what they get back.
//!
//! Invariant: these types carry no file handles or locks, so they can be moved freely between
//! the blocking log threads and async listener tasks.

use bytes::Bytes;

/// One message to append. Mirrors a Kafka record so the bridge can map MQTT fields directly
/// (payload to value, topic or client id to key, user properties to headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// Create time in milliseconds since the Unix epoch; drives time lookups and retention.
    pub timestamp_ms: i64,
    /// Partitioning key; `None` is a Kafka null key.
    pub key: Option<Bytes>,
    /// Payload; `None` is a Kafka null value (tombstone).
    pub value: Option<Bytes>,
    /// Headers in order. Duplicate names are kept, as Kafka and MQTT user properties allow.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Idempotent-producer identity stamped into a batch header, so consumers and tooling can see
/// which writer produced it and detect gaps in its sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStamp {
    /// Kafka producer id.
    pub producer_id: i64,
    /// Kafka producer epoch.
    pub producer_epoch: i16,
    /// Sequence number of the batch's first record.
    pub base_sequence: i32,
}

/// Where an append landed; the bridge reports these offsets and uses them for ordering checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the batch.
    pub base_offset: i64,
    /// Offset of the last record of the batch.
    pub last_offset: i64,
}

/// The retained offset range of a partition (Kafka ListOffsets earliest/latest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Oldest offset still retained.
    pub log_start_offset: i64,
    /// Next offset to be written; everything below it is readable.
    pub high_watermark: i64,
}

/// Raw bytes for a Fetch response plus the partition state to report with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole Kafka v2 record batches, exactly as stored; empty at the high watermark.
    pub records: Bytes,
    /// High watermark when the read started.
    pub high_watermark: i64,
    /// Log start offset when the read started.
    pub log_start_offset: i64,
}

/// A topic and its partition count, for Metadata responses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Number of partitions (0..partitions are valid).
    pub partitions: u32,
}

/// A record decoded from stored batches, with the batch metadata a CLI or test needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Create time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Key, `None` when null.
    pub key: Option<Bytes>,
    /// Value, `None` when null.
    pub value: Option<Bytes>,
    /// Headers in stored order, duplicates included.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Producer id from the batch header, -1 when none.
    pub producer_id: i64,
    /// Producer epoch from the batch header, -1 when none.
    pub producer_epoch: i16,
    /// This record's sequence (base sequence + offset delta), -1 when none.
    pub sequence: i32,
}

/// What one partition lost to retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRetention {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Whole segments deleted.
    pub deleted_segments: u64,
    /// Bytes of segment data deleted.
    pub deleted_bytes: u64,
    /// The partition's log start offset afterwards.
    pub log_start_offset: i64,
}

/// Outcome of [`super::Log::enforce_retention`], for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// One entry per partition that deleted at least one segment.
    pub partitions: Vec<PartitionRetention>,
}

impl RetentionReport {
    /// Total segments deleted across partitions.
    pub fn deleted_segments(&self) -> u64 {
        self.partitions.iter().map(|p| p.deleted_segments).sum()
    }

    /// Total bytes deleted across partitions.
    pub fn deleted_bytes(&self) -> u64 {
        self.partitions.iter().map(|p| p.deleted_bytes).sum()
    }
}
