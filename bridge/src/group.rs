//! Consumer groups: membership, rebalances and committed offsets, following Kafka's classic
//! consumer-group protocol so that ordinary Kafka clients (kafka-python, librdkafka / kcat -G) can
//! coordinate through the bridge's Kafka-protocol listener.
//!
//! Layers, innermost first:
//! - [`Coordinator`]: the membership state machine (JoinGroup, SyncGroup, Heartbeat, LeaveGroup and
//!   the membership check of OffsetCommit). It does no I/O and reads no clock: every call takes
//!   `now` in milliseconds and returns the replies that became ready. JoinGroup/SyncGroup replies
//!   that Kafka delays are parked inside it under an opaque [`ReplyTo`] token, and every parked
//!   token is answered exactly once, by a later request, by [`Coordinator::tick`], or when its
//!   member is removed.
//! - [`OffsetStore`]: committed offsets per (group, topic, partition), durable in an append-only,
//!   CRC-framed file that is compacted by atomic rewrite. Its API is synchronous and blocking, so it
//!   must never run on an async reactor thread.
//! - [`GroupService`]: the Tokio front end. One task owns the coordinator and drives its timers;
//!   one dedicated thread owns the offset store, so a commit is acknowledged only after it is
//!   fsynced.
//!
//! Error codes: [`ErrorCode`] uses Kafka's wire numbering, so a response's `error` goes into the
//! Kafka response's `error_code` unchanged (see [`ErrorCode::to_response_error`]).
//!
//! Kafka behaviour intentionally not reproduced: static membership (`group.instance.id` is
//! rejected with UNSUPPORTED_VERSION), offset retention/expiry, transactional offset commits,
//! and the Dead state: a group whose state Kafka would mark Dead is simply dropped from memory, and
//! requests for a group that is not in memory are answered as Kafka answers for an unknown group.

#![deny(missing_docs)]

use std::path::PathBuf;

mod config;
mod coordinator;
mod error_code;
mod member;
mod messages;
mod offsets;
mod rebalance;
mod service;
mod state;

#[cfg(test)]
mod tests;

pub use config::GroupConfig;
pub use coordinator::{Coordinator, GroupSummary, MemberSummary};
pub use error_code::ErrorCode;
pub use messages::{
    CommitPartition, CommitPartitionResult, CommitRequest, CommitResponse, CommitTopic, CommitTopicResult,
    FetchPartitionResult, FetchRequest, FetchResponse, FetchTopic, FetchTopicResult, GroupRequest, GroupResponse,
    HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, JoinedMember, LeaveRequest, LeaveResponse,
    LeavingMember, LeftMember, MemberId, ReplyTo, SyncRequest, SyncResponse,
};
pub use offsets::{CommittedOffset, OffsetStore, OffsetStoreConfig, OffsetStoreStats};
pub use service::GroupService;
pub use state::GroupState;

/// Longest group id, topic name or client id the group layer keeps, in bytes. Kafka's own limit
/// for topic names is 249; ids this long are already abuse, and bounding them bounds memory and
/// the size of an offset record.
pub const MAX_NAME_BYTES: usize = 255;

/// Failures of the group layer that are not Kafka protocol errors (those are [`ErrorCode`]s inside
/// responses): offset-store I/O and service lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on the offset store failed.
    #[error("offset store: {op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "append to".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The offset file exists but is not a FleetMQ offset file this version can read.
    #[error("offset store: {path} is not a readable offset file: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An offset record could not be encoded.
    #[error("offset store: encoding a record: {0}")]
    Encode(#[from] postcard::Error),
    /// An earlier write failed in a way that leaves the file's tail unknown; the store refuses
    /// further writes until it is reopened (which re-validates the file).
    #[error("offset store: {path} is unusable after a failed write; reopen it")]
    Poisoned {
        /// The offset file.
        path: PathBuf,
    },
    /// The group service is not running (its task ended or every handle was dropped).
    #[error("group service has shut down")]
    Closed,
    /// [`GroupService::start`] was called outside a Tokio runtime.
    #[error("group service must be started inside a Tokio runtime")]
    NoRuntime,
    /// The offset store's thread could not be started.
    #[error("group service: starting the offset store thread: {0}")]
    Thread(std::io::Error),
    /// The coordinator answered a request with a response of another kind; a bug, reported
    /// rather than panicking on a runtime path.
    #[error("group service: coordinator answered a {expected} request with another response kind")]
    WrongResponse {
        /// The response kind the request needed.
        expected: &'static str,
    },
}

/// Result alias of the group layer.
pub type Result<T> = std::result::Result<T, Error>;
