//! [`GroupConfig`]: the knobs and hard bounds of the group coordinator and its service. Invariant:
//! every collection the coordinator grows from client input is bounded by one of these numbers.

/// Group coordinator settings; defaults follow Kafka's broker defaults where Kafka has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Kafka's `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended while new members keep arriving, up to the rebalance
    /// timeout), so a fleet of consumers starting together rebalances once, not once per member.
    pub initial_rebalance_delay_ms: u64,
    /// Kafka's `group.min.session.timeout.ms`; shorter session timeouts get INVALID_SESSION_TIMEOUT.
    pub min_session_timeout_ms: u64,
    /// Kafka's `group.max.session.timeout.ms`; longer session timeouts get INVALID_SESSION_TIMEOUT.
    pub max_session_timeout_ms: u64,
    /// Kafka's `group.max.size`: members per group; further new members get GROUP_MAX_SIZE_REACHED.
    /// Also bounds members waiting for a MEMBER_ID_REQUIRED rejoin.
    pub max_members: usize,
    /// Groups held in memory. When full, empty groups are dropped to make room; if none are empty
    /// a new group's first JoinGroup gets COORDINATOR_NOT_AVAILABLE (retriable).
    pub max_groups: usize,
    /// How often [`GroupService`](super::GroupService) drives the coordinator's timers; the
    /// resolution of session, rebalance and initial-delay timeouts.
    pub tick_interval_ms: u64,
    /// Depth of the service's request queue and of its offset-store queue.
    pub queue_depth: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_members: 1_000,
            max_groups: 10_000,
            tick_interval_ms: 100,
            queue_depth: 1_024,
        }
    }
}
