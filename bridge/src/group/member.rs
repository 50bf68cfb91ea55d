//! One member of a group and one member still owing its MEMBER_ID_REQUIRED rejoin. Invariants: a
//! member has at most one parked JoinGroup and one parked SyncGroup reply; while a JoinGroup or
//! SyncGroup is parked the member is kept alive regardless of its session deadline (Kafka's
//! "awaiting members satisfy heartbeats"), except a new member, which gets a fixed join deadline.

use super::{JoinRequest, MemberId, ReplyTo};
use bytes::Bytes;

/// How long a member that joined during a rebalance, and so has never been in a generation, may
/// wait in JoinGroup before it is dropped (Kafka's `NewMemberJoinTimeoutMs`): a client that
/// disconnected while parked would otherwise stay in the rebalance.
pub(super) const NEW_MEMBER_JOIN_TIMEOUT_MS: u64 = 300_000;

/// A member of a group.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) id: MemberId,
    pub(super) client_id: String,
    pub(super) session_timeout_ms: u64,
    pub(super) rebalance_timeout_ms: u64,
    pub(super) protocol_type: String,
    /// (name, metadata) in preference order.
    pub(super) protocols: Vec<(String, Bytes)>,
    /// This generation's assignment from the leader; empty until the leader syncs.
    pub(super) assignment: Bytes,
    pub(super) awaiting_join: Option<ReplyTo>,
    pub(super) awaiting_sync: Option<ReplyTo>,
    /// When the member expires unless kept alive; see [`Member::expired`].
    pub(super) session_deadline: u64,
    /// Joined during the current rebalance and never completed one.
    pub(super) is_new: bool,
}

impl Member {
    /// A member admitted by a JoinGroup that is now parked until the rebalance completes.
    pub(super) fn joining(
        id: MemberId,
        req: &JoinRequest,
        session_timeout_ms: u64,
        rebalance_timeout_ms: u64,
        now: u64,
        reply: ReplyTo,
    ) -> Self {
        Member {
            id,
            client_id: req.client_id.clone(),
            session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
            session_deadline: now.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS),
            is_new: true,
        }
    }

    /// Whether the member lists protocol `name`.
    pub(super) fn supports(&self, name: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == name)
    }

    /// The member's metadata for protocol `name` (empty if it does not list it).
    pub(super) fn metadata_for(&self, name: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == name).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// Whether a rejoin carries exactly the protocols and metadata the member already has, in
    /// which case a stable group need not rebalance for it.
    pub(super) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates` (Kafka's vote).
    pub(super) fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols.iter().map(|(n, _)| n.as_str()).find(|n| candidates.contains(n))
    }

    /// Pushes the session deadline out after a sign of life.
    pub(super) fn touch(&mut self, now: u64) {
        self.session_deadline = now.saturating_add(self.session_timeout_ms);
    }

    /// Whether the session deadline can remove the member right now: members with a parked
    /// request are waiting on the group, not the other way round (new members excepted).
    fn deadline_applies(&self) -> bool {
        self.is_new || (self.awaiting_join.is_none() && self.awaiting_sync.is_none())
    }

    /// Whether the member has failed: no sign of life before its deadline.
    pub(super) fn expired(&self, now: u64) -> bool {
        self.deadline_applies() && now >= self.session_deadline
    }

    /// When the member could next expire, if at all while its state stays as it is.
    pub(super) fn wake_at(&self) -> Option<u64> {
        self.deadline_applies().then_some(self.session_deadline)
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED whose owner has not rejoined yet. It holds back
/// a rebalance (as in Kafka) until it rejoins or its session timeout passes.
#[derive(Debug)]
pub(super) struct PendingMember {
    pub(super) id: MemberId,
    pub(super) deadline: u64,
}
