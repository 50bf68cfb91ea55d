//! [`ErrorCode`]: the Kafka protocol error codes the group coordinator and the offset store answer
//! with. Invariant: each variant's discriminant is exactly Kafka's wire code, so the listener copies
//! [`ErrorCode::code`] into a response's `error_code` field without translation.

use kafka_protocol::error::ResponseError;

/// A Kafka error code as carried in group and offset responses; [`ErrorCode::None`] is success.
///
/// A closed enum rather than a raw `i16` so the group layer can only produce codes whose client
/// reaction is known for these APIs (rejoin, retry, reset generation, give up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// NONE (0): success.
    None = 0,
    /// UNKNOWN_TOPIC_OR_PARTITION (3): a commit named a negative partition index.
    UnknownTopicOrPartition = 3,
    /// OFFSET_METADATA_TOO_LARGE (12): a commit's metadata string exceeds the store's limit.
    OffsetMetadataTooLarge = 12,
    /// COORDINATOR_NOT_AVAILABLE (15, retriable): no room for another group, or the offset store
    /// could not persist a commit; clients back off, rediscover the coordinator and retry.
    CoordinatorNotAvailable = 15,
    /// INVALID_TOPIC_EXCEPTION (17): a commit named an empty or over-long topic.
    InvalidTopic = 17,
    /// ILLEGAL_GENERATION (22): the member's generation is not the group's current one.
    IllegalGeneration = 22,
    /// INCONSISTENT_GROUP_PROTOCOL (23): protocol type differs from the group's, no protocol is
    /// shared with every member, or the join named no protocol at all.
    InconsistentGroupProtocol = 23,
    /// INVALID_GROUP_ID (24): empty (for membership APIs) or over-long group id.
    InvalidGroupId = 24,
    /// UNKNOWN_MEMBER_ID (25): the coordinator does not know this member (or the group).
    UnknownMemberId = 25,
    /// INVALID_SESSION_TIMEOUT (26): session timeout outside the configured range.
    InvalidSessionTimeout = 26,
    /// REBALANCE_IN_PROGRESS (27): the group is rebalancing; the member must rejoin.
    RebalanceInProgress = 27,
    /// INVALID_COMMIT_OFFSET_SIZE (28): the store holds its maximum number of offsets and the
    /// commit would add a new one.
    InvalidCommitOffsetSize = 28,
    /// UNSUPPORTED_VERSION (35): static membership (`group.instance.id`) was requested; FleetMQ
    /// answers like a broker that predates it.
    UnsupportedVersion = 35,
    /// MEMBER_ID_REQUIRED (79): JoinGroup v4+ without a member id; the response carries the id
    /// the member must rejoin with (KIP-394).
    MemberIdRequired = 79,
    /// GROUP_MAX_SIZE_REACHED (81): the group already has its maximum number of members.
    GroupMaxSizeReached = 81,
}

impl ErrorCode {
    /// The wire value, for a response's `error_code` field.
    pub const fn code(self) -> i16 {
        self as i16
    }

    /// Whether this is success.
    pub const fn is_ok(self) -> bool {
        matches!(self, ErrorCode::None)
    }

    /// The same code as `kafka-protocol`'s error type, `None` for success, so the listener and
    /// tests can name errors the way the wire library does.
    pub const fn to_response_error(self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.code())
    }
}
