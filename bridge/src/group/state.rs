//! One group's membership state and the queries and primitive edits on it; the transitions between
//! states live in `rebalance.rs`. Invariants:
//! - `leader` is `Some` exactly when `members` is non-empty, and names a member (the earliest
//!   joined one, unless the leader left).
//! - `members` keeps join order; `pending` never shares an id with `members`.
//! - `join_timer` is `Some` exactly in PreparingRebalance; `pending_sync` is empty outside
//!   CompletingRebalance and Stable.
//! - Removing a member answers its parked replies, so no [`ReplyTo`] is ever dropped.

use super::member::{Member, PendingMember};
use super::{ErrorCode, GroupResponse, JoinResponse, JoinedMember, MemberId, ReplyTo, SyncResponse};
use bytes::Bytes;

/// Replies that became ready, collected while handling one event.
pub(super) type Out = Vec<(ReplyTo, GroupResponse)>;

/// A group's place in Kafka's classic rebalance protocol. Kafka's Dead state has no variant: a
/// group that would be Dead is dropped from memory instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; committed offsets may exist, and "simple" commits are accepted.
    Empty,
    /// Waiting for every member to (re)join; JoinGroup replies are parked.
    PreparingRebalance,
    /// Generation chosen and JoinGroup answered; waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Assignment distributed; members heartbeat.
    Stable,
}

/// The deadline that ends PreparingRebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinTimer {
    /// First rebalance of an empty group: wait `initial_rebalance_delay_ms`, then again while new
    /// members keep arriving, for at most `remaining_ms` more (Kafka's InitialDelayedJoin). Only
    /// the deadline ends it, never "everyone joined".
    Initial { deadline: u64, remaining_ms: u64 },
    /// Ends at the rebalance timeout, or as soon as every member has rejoined (Kafka's DelayedJoin).
    Rebalance { deadline: u64 },
}

impl JoinTimer {
    pub(super) fn deadline(self) -> u64 {
        match self {
            JoinTimer::Initial { deadline, .. } | JoinTimer::Rebalance { deadline } => deadline,
        }
    }
}

/// One consumer group's membership.
#[derive(Debug)]
pub(super) struct Group {
    /// The group id, for logs.
    pub(super) id: String,
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<MemberId>,
    pub(super) members: Vec<Member>,
    pub(super) pending: Vec<PendingMember>,
    pub(super) join_timer: Option<JoinTimer>,
    /// Members of this generation that have not sent SyncGroup yet.
    pub(super) pending_sync: Vec<MemberId>,
    /// When members still in `pending_sync` are dropped.
    pub(super) sync_deadline: u64,
    /// A new member arrived during the initial delay, so the delay is extended once more.
    pub(super) new_member_added: bool,
    /// Earliest time a timer of this group can fire; `tick` skips the group until then.
    pub(super) wake_at: Option<u64>,
}

impl Group {
    pub(super) fn new(id: String) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            join_timer: None,
            pending_sync: Vec::new(),
            sync_deadline: 0,
            new_member_added: false,
            wake_at: None,
        }
    }

    pub(super) fn position(&self, id: &MemberId) -> Option<usize> {
        self.members.iter().position(|m| &m.id == id)
    }

    pub(super) fn member_mut(&mut self, id: &MemberId) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| &m.id == id)
    }

    pub(super) fn has_member(&self, id: &MemberId) -> bool {
        self.position(id).is_some()
    }

    pub(super) fn is_pending(&self, id: &MemberId) -> bool {
        self.pending.iter().any(|p| &p.id == id)
    }

    pub(super) fn is_leader(&self, id: &MemberId) -> bool {
        self.leader.as_ref() == Some(id)
    }

    /// Whether nothing but the generation number is left, so the group may be dropped.
    pub(super) fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    /// The group's rebalance timeout: the longest any member asked for.
    pub(super) fn rebalance_timeout_ms(&self) -> u64 {
        self.members.iter().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0)
    }

    fn num_awaiting_join(&self) -> usize {
        self.members.iter().filter(|m| m.awaiting_join.is_some()).count()
    }

    /// Kafka's `hasAllMembersJoined`: every member has rejoined and no MEMBER_ID_REQUIRED rejoin
    /// is outstanding.
    pub(super) fn has_all_members_joined(&self) -> bool {
        self.pending.is_empty() && self.members.iter().all(|m| m.awaiting_join.is_some())
    }

    /// Kafka's `acceptJoiningMember`: whether `id` may join without exceeding `max_members`.
    pub(super) fn accepts_joining_member(&self, id: &MemberId, max_members: usize) -> bool {
        match self.state {
            GroupState::Empty => true,
            GroupState::PreparingRebalance => {
                let rejoining = self.members.iter().any(|m| &m.id == id && m.awaiting_join.is_some());
                rejoining || self.num_awaiting_join() < max_members
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.has_member(id) || self.members.len() < max_members
            }
        }
    }

    /// Kafka's `supportsProtocols`: the type must be the group's and at least one protocol must be
    /// listed by every other member; `joiner` itself is left out so a member may change its list.
    pub(super) fn supports_protocols(
        &self,
        joiner: &MemberId,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.state == GroupState::Empty {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let others: Vec<&Member> = self.members.iter().filter(|m| &m.id != joiner).collect();
        protocols.iter().any(|(name, _)| others.iter().all(|m| m.supports(name)))
    }

    /// Kafka's `selectProtocol`: among protocols every member lists, each member votes for its
    /// most preferred; most votes wins, ties going to the one the leader prefers.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.iter().all(|m| m.supports(n)))
            .collect();
        let leader = self.leader.as_ref().and_then(|l| self.members.iter().find(|m| &m.id == l)).unwrap_or(first);
        let mut best: Option<(&str, usize)> = None;
        for (name, _) in &leader.protocols {
            if !candidates.contains(&name.as_str()) {
                continue;
            }
            let votes = self.members.iter().filter(|m| m.vote(&candidates) == Some(name.as_str())).count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((name, votes));
            }
        }
        // Joins are checked against every member, so a common protocol always exists; fall back
        // to the leader's first choice rather than leave the generation without a protocol.
        best.map(|(n, _)| n.to_owned()).or_else(|| leader.protocols.first().map(|(n, _)| n.clone()))
    }

    /// The leader's view: every member's metadata for the selected protocol, in join order.
    pub(super) fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: None,
                metadata: m.metadata_for(protocol),
            })
            .collect()
    }

    /// A successful JoinGroup answer for `member` in the current generation.
    pub(super) fn join_response(&self, member: &MemberId, members: Vec<JoinedMember>) -> JoinResponse {
        JoinResponse {
            error: ErrorCode::None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member.clone(),
            members,
        }
    }

    /// Kafka's `group.remove`: drops the member (or pending member) `id`, answering its parked
    /// JoinGroup/SyncGroup with UNKNOWN_MEMBER_ID, and moves leadership to the earliest remaining
    /// member if needed. Returns whether a member (not a pending one) was removed.
    pub(super) fn remove_member(&mut self, id: &MemberId, out: &mut Out) -> bool {
        self.pending.retain(|p| &p.id != id);
        self.pending_sync.retain(|p| p != id);
        let Some(pos) = self.position(id) else { return false };
        let member = self.members.remove(pos);
        if let Some(reply) = member.awaiting_join {
            out.push((
                reply,
                GroupResponse::Join(JoinResponse::error(MemberId::default(), ErrorCode::UnknownMemberId)),
            ));
        }
        if let Some(reply) = member.awaiting_sync {
            out.push((reply, GroupResponse::Sync(SyncResponse::error(ErrorCode::UnknownMemberId))));
        }
        if self.leader.as_ref() == Some(id) {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        true
    }

    /// Recomputes `wake_at` from every deadline that can currently fire.
    pub(super) fn refresh_wake_at(&mut self) {
        let members = self.members.iter().filter_map(Member::wake_at);
        let pending = self.pending.iter().map(|p| p.deadline);
        let sync = (!self.pending_sync.is_empty()).then_some(self.sync_deadline);
        let join = self.join_timer.map(JoinTimer::deadline);
        self.wake_at = members.chain(pending).chain(sync).chain(join).min();
    }
}
