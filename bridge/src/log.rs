//! The embedded log: partitioned, segmented Kafka v2 record batches on disk.
//!
//! FleetMQ's bridge appends MQTT messages here and the Kafka-protocol listener serves them back
//! to ordinary Kafka consumers. The log owns the bytes on disk and nothing else.
//!
//! Layout under [`LogConfig::dir`]:
//!
//! ```text
//! <dir>/<topic>.topic                          topic metadata (partition count); commit point
//! <dir>/<topic>-<partition>/<base>.log         Kafka RecordBatch v2 bytes, back to back
//! <dir>/<topic>-<partition>/<base>.index       sparse offset index (u32 rel offset, u32 pos)
//! <dir>/<topic>-<partition>/<base>.timeindex   sparse time index (i64 ts, u32 rel offset)
//! ```
//!
//! `<base>` is the first offset of the segment as 20 zero-padded digits, like Kafka.
//!
//! Invariants the whole module keeps:
//! - Every stored batch is exactly what a Kafka broker would store (magic 2, CRC32C over
//!   attributes..end), so a Fetch response is the raw stored bytes.
//! - Offsets in a partition are dense: each batch starts at the previous batch's last offset + 1.
//! - The newest segment of a partition is the only one ever written; older ones are immutable.
//! - After [`Log::open`] every active segment ends on a whole batch with a valid CRC.

mod batch;
mod config;
mod decode;
mod index;
pub mod inspect;
mod partition;
mod partitioner;
mod reader;
mod retention;
mod scan;
mod segment;
mod store;
mod topic;
mod types;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use batch::PARTITION_LEADER_EPOCH;
pub use config::{Compression, LogConfig, DEFAULT_INDEX_INTERVAL_BYTES, DEFAULT_RETENTION_MS, DEFAULT_SEGMENT_BYTES};
pub use decode::decode_batches;
pub use partitioner::{murmur2, partition_for_key};
pub use store::Log;
pub use topic::validate_topic_name;
pub use types::{
    AppendInfo, PartitionOffsets, PartitionRetention, ProducerStamp, ReadResult, Record, RetentionReport, StoredRecord,
    TopicInfo,
};

/// Everything that can go wrong in the log, each naming the file, topic or partition involved so
/// an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed; the log stays usable for other partitions.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot work (e.g. a segment size that overflows index positions).
    #[error("invalid log configuration: {0}")]
    InvalidConfig(String),
    /// A topic name Kafka would reject (clients could not address it).
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A partition count of zero or beyond what Kafka can express.
    #[error("invalid partition count {partitions} for topic {topic:?}")]
    InvalidPartitionCount {
        /// The topic being created.
        topic: String,
        /// The requested count.
        partitions: u32,
    },
    /// The topic exists with a different partition count; changing it would remap keys.
    #[error("topic {topic:?} already exists with {existing} partitions, not {requested}")]
    PartitionCountMismatch {
        /// The topic.
        topic: String,
        /// Partitions on disk.
        existing: u32,
        /// Partitions requested.
        requested: u32,
    },
    /// No such topic; the listener maps this to UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists but not this partition; also UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The missing partition.
        partition: u32,
    },
    /// The requested offset is not retained; the listener maps this to OFFSET_OUT_OF_RANGE.
    #[error(
        "offset {offset} out of range for {topic}-{partition} \
         (log start {log_start_offset}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset asked for.
        offset: i64,
        /// The oldest retained offset.
        log_start_offset: i64,
        /// The next offset to be written.
        high_watermark: i64,
    },
    /// An append carried no records; Kafka batches cannot be empty.
    #[error("empty append to {topic}-{partition}")]
    EmptyAppend {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The records cannot be expressed as a Kafka batch (too large, compression failed, ...).
    #[error("cannot encode record batch for {topic}-{partition}: {reason}")]
    Encode {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// What went wrong.
        reason: String,
    },
    /// Bytes that should hold record batches do not (bad header, CRC, truncated record).
    #[error("cannot decode record batches: {0}")]
    Decode(String),
    /// A file on disk is inconsistent in a way recovery does not repair.
    #[error("corrupt {path}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result of every fallible log operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds a closure mapping an `io::Error` to [`Error::Io`] on `path`, for `map_err`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}
