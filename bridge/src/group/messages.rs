//! Plain request and response types of the group layer, one per Kafka API, carrying exactly the
//! fields the coordinator and offset store use, named as in Kafka's message schemas
//! (`kafka_protocol::messages::*`) so the listener maps them field by field. Invariant: no wire
//! encoding lives here; versions only matter where Kafka's semantics depend on them
//! ([`JoinRequest::api_version`]).

use super::ErrorCode;
use bytes::Bytes;
use std::fmt;

/// A group member id as Kafka clients send it; empty means "not assigned yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub String);

impl MemberId {
    /// Wraps a member id string.
    pub fn new(id: impl Into<String>) -> Self {
        MemberId(id.into())
    }

    /// Whether the member has no id yet (Kafka's `UNKNOWN_MEMBER_ID`, the empty string).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Opaque token naming where a response must go; the async layer maps it to a waiting request.
/// The coordinator answers every token it is given exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// JoinGroup (API key 11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Request version: from 4 on, a member without an id first gets MEMBER_ID_REQUIRED (KIP-394).
    pub api_version: i16,
    /// `group_id`.
    pub group_id: String,
    /// `member_id`; empty for a member joining for the first time.
    pub member_id: MemberId,
    /// `group_instance_id` (v5+); static membership is not supported, so `Some` is rejected.
    pub group_instance_id: Option<String>,
    /// The request header's client id; prefixes generated member ids, as Kafka does.
    pub client_id: String,
    /// `session_timeout_ms`.
    pub session_timeout_ms: i32,
    /// `rebalance_timeout_ms` (v1+); negative (v0 has none) means "same as the session timeout".
    pub rebalance_timeout_ms: i32,
    /// `protocol_type`, "consumer" for consumer groups.
    pub protocol_type: String,
    /// `protocols`: (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
}

/// One member's metadata in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id`; always `None` (no static membership).
    pub group_instance_id: Option<String>,
    /// `metadata` for the selected protocol.
    pub metadata: Bytes,
}

/// JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// `error_code`.
    pub error: ErrorCode,
    /// `generation_id`; -1 on error.
    pub generation_id: i32,
    /// `protocol_type` (nullable on the wire from v7; older versions omit it).
    pub protocol_type: Option<String>,
    /// `protocol_name` (nullable from v7; write "" for `None` in older versions).
    pub protocol_name: Option<String>,
    /// `leader`: the leader's member id, empty on error.
    pub leader: MemberId,
    /// `member_id`: the member's own id (the freshly generated one with MEMBER_ID_REQUIRED).
    pub member_id: MemberId,
    /// `members`: every member's metadata for the leader, empty for followers.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// A failed join, shaped as Kafka's `JoinGroupResult(memberId, error)`.
    pub fn error(member_id: MemberId, error: ErrorCode) -> Self {
        JoinResponse {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: MemberId::default(),
            member_id,
            members: Vec::new(),
        }
    }
}

/// SyncGroup (API key 14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// `group_id`.
    pub group_id: String,
    /// `generation_id`.
    pub generation_id: i32,
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id` (v3+); ignored, members are identified by member id.
    pub group_instance_id: Option<String>,
    /// `protocol_type` (v5+); when present it must equal the group's.
    pub protocol_type: Option<String>,
    /// `protocol_name` (v5+); when present it must equal the group's selected protocol.
    pub protocol_name: Option<String>,
    /// `assignments`: (member, assignment), sent only by the leader.
    pub assignments: Vec<(MemberId, Bytes)>,
}

/// SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// `error_code`.
    pub error: ErrorCode,
    /// `protocol_type` (v5+).
    pub protocol_type: Option<String>,
    /// `protocol_name` (v5+).
    pub protocol_name: Option<String>,
    /// `assignment`: this member's bytes from the leader, empty on error.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// A failed sync.
    pub fn error(error: ErrorCode) -> Self {
        SyncResponse { error, protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// Heartbeat (API key 12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// `group_id`.
    pub group_id: String,
    /// `generation_id`.
    pub generation_id: i32,
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id` (v3+); ignored.
    pub group_instance_id: Option<String>,
}

/// Heartbeat response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// `error_code`.
    pub error: ErrorCode,
}

/// One member leaving (LeaveGroup v3+ lists several; v0–2 carry a single `member_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeavingMember {
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id`; echoed back only.
    pub group_instance_id: Option<String>,
}

/// LeaveGroup (API key 13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    /// `group_id`.
    pub group_id: String,
    /// The leaving members; for v0–2 the single `member_id`.
    pub members: Vec<LeavingMember>,
}

/// Outcome for one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftMember {
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id`.
    pub group_instance_id: Option<String>,
    /// `error_code` for this member.
    pub error: ErrorCode,
}

/// LeaveGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    /// Top-level `error_code`.
    pub error: ErrorCode,
    /// Per-member outcomes (v3+), in request order.
    pub members: Vec<LeftMember>,
}

impl LeaveResponse {
    /// The single `error_code` of LeaveGroup v0–2: the top-level error, else the member's.
    pub fn legacy_error(&self) -> ErrorCode {
        if !self.error.is_ok() {
            return self.error;
        }
        self.members.iter().map(|m| m.error).find(|e| !e.is_ok()).unwrap_or(ErrorCode::None)
    }
}

/// One partition's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    /// `partition_index`.
    pub partition: i32,
    /// `committed_offset`: the next offset the group will consume.
    pub offset: i64,
    /// `committed_leader_epoch` (v6+), -1 when unknown.
    pub leader_epoch: i32,
    /// `committed_metadata`; `None` is stored as "" (Kafka's NO_METADATA).
    pub metadata: Option<String>,
}

/// One topic's commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTopic {
    /// `name`.
    pub name: String,
    /// `partitions`.
    pub partitions: Vec<CommitPartition>,
}

/// OffsetCommit (API key 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// `group_id`; may be empty, as in Kafka.
    pub group_id: String,
    /// `generation_id_or_member_epoch`; -1 (with an empty member id) for a "simple" commit by a
    /// consumer that assigns partitions itself, allowed only while the group has no members.
    pub generation_id: i32,
    /// `member_id`.
    pub member_id: MemberId,
    /// `group_instance_id` (v7+).
    pub group_instance_id: Option<String>,
    /// `topics`.
    pub topics: Vec<CommitTopic>,
}

/// Outcome for one committed partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPartitionResult {
    /// `partition_index`.
    pub partition: i32,
    /// `error_code`.
    pub error: ErrorCode,
}

/// Outcomes for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitTopicResult {
    /// `name`.
    pub name: String,
    /// `partitions`, in request order.
    pub partitions: Vec<CommitPartitionResult>,
}

/// OffsetCommit response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResponse {
    /// `topics`, in request order.
    pub topics: Vec<CommitTopicResult>,
}

impl CommitResponse {
    /// The same error for every partition of `req`, as Kafka answers group-level failures.
    pub fn all(req: &CommitRequest, error: ErrorCode) -> Self {
        let topics = req
            .topics
            .iter()
            .map(|t| CommitTopicResult {
                name: t.name.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| CommitPartitionResult { partition: p.partition, error })
                    .collect(),
            })
            .collect();
        CommitResponse { topics }
    }
}

/// Partitions of one topic to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    /// `name`.
    pub name: String,
    /// `partition_indexes`.
    pub partitions: Vec<i32>,
}

/// OffsetFetch (API key 9), for one group (v8+ batches groups; the listener loops).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    /// `group_id`.
    pub group_id: String,
    /// `topics`; `None` (null, v2+) asks for every committed offset of the group.
    pub topics: Option<Vec<FetchTopic>>,
}

/// One partition's committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    /// `partition_index`.
    pub partition: i32,
    /// `committed_offset`; -1 when nothing is committed.
    pub offset: i64,
    /// `committed_leader_epoch` (v5+); -1 when unknown.
    pub leader_epoch: i32,
    /// `metadata`; "" when nothing is committed.
    pub metadata: Option<String>,
    /// `error_code`.
    pub error: ErrorCode,
}

/// One topic's committed offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResult {
    /// `name`.
    pub name: String,
    /// `partitions`.
    pub partitions: Vec<FetchPartitionResult>,
}

/// OffsetFetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// Top-level `error_code` (v2+).
    pub error: ErrorCode,
    /// `topics`: in request order, or sorted by name when all were asked for.
    pub topics: Vec<FetchTopicResult>,
}

/// A membership request for [`Coordinator::handle`](super::Coordinator::handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRequest {
    /// JoinGroup.
    Join(JoinRequest),
    /// SyncGroup.
    Sync(SyncRequest),
    /// Heartbeat.
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup.
    Leave(LeaveRequest),
}

impl GroupRequest {
    /// The group the request addresses.
    pub fn group_id(&self) -> &str {
        match self {
            GroupRequest::Join(r) => &r.group_id,
            GroupRequest::Sync(r) => &r.group_id,
            GroupRequest::Heartbeat(r) => &r.group_id,
            GroupRequest::Leave(r) => &r.group_id,
        }
    }
}

/// A membership response, matching the kind of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupResponse {
    /// JoinGroup.
    Join(JoinResponse),
    /// SyncGroup.
    Sync(SyncResponse),
    /// Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup.
    Leave(LeaveResponse),
}
