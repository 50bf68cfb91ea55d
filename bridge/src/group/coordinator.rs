//! [`Coordinator`]: every consumer group's membership, driven by requests and by time. It does no
//! I/O and reads no clock; `now` is passed in (milliseconds on any monotonic scale). Invariants:
//! - Each call returns the replies that became ready; a request's own reply may be among them or
//!   parked (JoinGroup, SyncGroup) and released by a later call, and each [`ReplyTo`] is answered
//!   exactly once.
//! - After each call, every due timer of every touched group has fired.
//! - At most `max_groups` groups and, per group, `max_members` members and as many pending ids.

use super::member::{Member, PendingMember};
use super::state::{Group, Out};
use super::{
    CommitRequest, ErrorCode, GroupConfig, GroupRequest, GroupResponse, GroupState, HeartbeatRequest,
    HeartbeatResponse, JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, LeftMember, MemberId, ReplyTo,
    SyncRequest, SyncResponse, MAX_NAME_BYTES,
};
use bytes::Bytes;
use std::collections::HashMap;

/// The group coordinator state machine (see the module docs for its contract).
#[derive(Debug)]
pub struct Coordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    id_seed: u64,
    id_counter: u64,
}

/// A group as DescribeGroups would report it; also what tests inspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Current state.
    pub state: GroupState,
    /// Current generation (0 before the first rebalance).
    pub generation_id: i32,
    /// The members' protocol type, once a member joined.
    pub protocol_type: Option<String>,
    /// The protocol selected for the current generation.
    pub protocol_name: Option<String>,
    /// The leader, if there are members.
    pub leader: Option<MemberId>,
    /// Members in join order.
    pub members: Vec<MemberSummary>,
}

/// One member in a [`GroupSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSummary {
    /// Member id.
    pub member_id: MemberId,
    /// Client id it joined with.
    pub client_id: String,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
    /// Its assignment in the current generation.
    pub assignment: Bytes,
}

impl Coordinator {
    /// A coordinator with no groups. `id_seed` makes generated member ids differ between process
    /// runs (pass something like the start time); ids are unique within a run regardless.
    pub fn new(config: GroupConfig, id_seed: u64) -> Self {
        Coordinator { config, groups: HashMap::new(), id_seed, id_counter: 0 }
    }

    /// Handles one membership request at time `now`; returns every reply that became ready,
    /// possibly including `reply` itself.
    pub fn handle(&mut self, now: u64, req: GroupRequest, reply: ReplyTo) -> Vec<(ReplyTo, GroupResponse)> {
        let mut out = Vec::new();
        let group_id = req.group_id().to_owned();
        match req {
            GroupRequest::Join(r) => self.join(now, r, reply, &mut out),
            GroupRequest::Sync(r) => self.sync(now, r, reply, &mut out),
            GroupRequest::Heartbeat(r) => {
                let error = self.heartbeat(now, &r);
                out.push((reply, GroupResponse::Heartbeat(HeartbeatResponse { error })));
            }
            GroupRequest::Leave(r) => {
                let resp = self.leave(now, r, &mut out);
                out.push((reply, GroupResponse::Leave(resp)));
            }
        }
        self.settle(now, &group_id, &mut out);
        out
    }

    /// Fires every timer due at `now` (session expiry, rebalance and initial-delay deadlines,
    /// missing SyncGroups); returns the replies that became ready.
    pub fn tick(&mut self, now: u64) -> Vec<(ReplyTo, GroupResponse)> {
        let mut out = Vec::new();
        for group in self.groups.values_mut() {
            if group.wake_at.is_some_and(|at| at <= now) {
                group.run_timers(now, &self.config, &mut out);
            }
        }
        out
    }

    /// The membership half of OffsetCommit (Kafka's `validateOffsetCommit`): whether `req` may
    /// commit, refreshing the committing member's session. On [`ErrorCode::None`] the caller
    /// persists the offsets; otherwise every partition gets the returned error.
    pub fn authorize_commit(&mut self, now: u64, req: &CommitRequest) -> ErrorCode {
        if req.group_id.len() > MAX_NAME_BYTES {
            return ErrorCode::InvalidGroupId;
        }
        let simple = req.generation_id < 0 && req.member_id.is_empty() && req.group_instance_id.is_none();
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return match (req.generation_id < 0, simple) {
                (true, true) => ErrorCode::None,
                (true, false) => ErrorCode::UnknownMemberId,
                (false, _) => ErrorCode::IllegalGeneration,
            };
        };
        let generation = group.generation;
        let state = group.state;
        let error = if simple {
            if state == GroupState::Empty {
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            }
        } else {
            match group.member_mut(&req.member_id) {
                None => ErrorCode::UnknownMemberId,
                Some(_) if req.generation_id != generation => ErrorCode::IllegalGeneration,
                Some(_) if state == GroupState::CompletingRebalance => ErrorCode::RebalanceInProgress,
                Some(member) => {
                    member.touch(now);
                    ErrorCode::None
                }
            }
        };
        // No timers run here: touching only moves a deadline later, so the group's `wake_at`
        // stays a valid lower bound and the next tick re-arms it.
        error
    }

    /// The group's current membership, or `None` if the coordinator holds no such group.
    pub fn describe(&self, group_id: &str) -> Option<GroupSummary> {
        let group = self.groups.get(group_id)?;
        let protocol = group.protocol_name.as_deref().unwrap_or_default();
        Some(GroupSummary {
            state: group.state,
            generation_id: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol_name.clone(),
            leader: group.leader.clone(),
            members: group
                .members
                .iter()
                .map(|m| MemberSummary {
                    member_id: m.id.clone(),
                    client_id: m.client_id.clone(),
                    metadata: m.metadata_for(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Number of groups held in memory.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    fn settle(&mut self, now: u64, group_id: &str, out: &mut Out) {
        if let Some(group) = self.groups.get_mut(group_id) {
            group.run_timers(now, &self.config, out);
        }
    }

    /// Makes room for one more group by dropping idle ones; whether there is room.
    fn make_room(&mut self) -> bool {
        if self.groups.len() >= self.config.max_groups {
            self.groups.retain(|_, g| !g.is_idle());
        }
        self.groups.len() < self.config.max_groups
    }

    /// A fresh member id: `<client id>-<32 hex digits>`, like Kafka's `<client id>-<uuid>`.
    fn next_member_id(&mut self, client_id: &str) -> MemberId {
        self.id_counter += 1;
        let mut end = client_id.len().min(MAX_NAME_BYTES);
        while !client_id.is_char_boundary(end) {
            end -= 1;
        }
        let salt = splitmix64(self.id_seed ^ splitmix64(self.id_counter));
        MemberId(format!("{}-{salt:016x}{:016x}", &client_id[..end], self.id_counter))
    }

    fn join(&mut self, now: u64, req: JoinRequest, reply: ReplyTo, out: &mut Out) {
        let fail = |out: &mut Out, member: MemberId, error| {
            out.push((reply, GroupResponse::Join(JoinResponse::error(member, error))))
        };
        if !valid_group_id(&req.group_id) {
            return fail(out, req.member_id, ErrorCode::InvalidGroupId);
        }
        let session = u64::try_from(req.session_timeout_ms).unwrap_or(0);
        if session < self.config.min_session_timeout_ms || session > self.config.max_session_timeout_ms {
            return fail(out, req.member_id, ErrorCode::InvalidSessionTimeout);
        }
        if req.group_instance_id.is_some() {
            return fail(out, req.member_id, ErrorCode::UnsupportedVersion);
        }
        let rebalance = u64::try_from(req.rebalance_timeout_ms).unwrap_or(session);
        let new_member = req.member_id.is_empty();
        if !self.groups.contains_key(&req.group_id) {
            if !new_member {
                return fail(out, req.member_id, ErrorCode::UnknownMemberId);
            }
            if !self.make_room() {
                return fail(out, req.member_id, ErrorCode::CoordinatorNotAvailable);
            }
            self.groups.insert(req.group_id.clone(), Group::new(req.group_id.clone()));
        }
        let fresh_id = if new_member { Some(self.next_member_id(&req.client_id)) } else { None };
        let cfg = &self.config;
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fail(out, req.member_id, ErrorCode::CoordinatorNotAvailable);
        };
        if !group.accepts_joining_member(&req.member_id, cfg.max_members) {
            return fail(out, MemberId::default(), ErrorCode::GroupMaxSizeReached);
        }
        if !group.supports_protocols(&req.member_id, &req.protocol_type, &req.protocols) {
            return fail(out, req.member_id, ErrorCode::InconsistentGroupProtocol);
        }
        if let Some(id) = fresh_id {
            if req.api_version >= 4 {
                // KIP-394: hand out the id and wait for the member to come back with it.
                if group.pending.len() >= cfg.max_members {
                    return fail(out, MemberId::default(), ErrorCode::GroupMaxSizeReached);
                }
                group.pending.push(PendingMember { id: id.clone(), deadline: now.saturating_add(session) });
                return fail(out, id, ErrorCode::MemberIdRequired);
            }
            let member = Member::joining(id, &req, session, rebalance, now, reply);
            group.add_member_and_rebalance(now, cfg, member, out);
        } else if group.is_pending(&req.member_id) {
            let member = Member::joining(req.member_id.clone(), &req, session, rebalance, now, reply);
            group.add_member_and_rebalance(now, cfg, member, out);
        } else if let Some(pos) = group.position(&req.member_id) {
            let matches = group.members.get(pos).is_some_and(|m| m.matches(&req.protocols));
            let leader = group.is_leader(&req.member_id);
            match group.state {
                GroupState::PreparingRebalance => {
                    group.update_member_and_rebalance(now, cfg, &req, session, rebalance, reply, out)
                }
                // Same metadata: the member probably lost the JoinGroup reply; repeat it.
                GroupState::CompletingRebalance if matches => {
                    let members = if leader { group.joined_members() } else { Vec::new() };
                    out.push((reply, GroupResponse::Join(group.join_response(&req.member_id, members))));
                }
                // A follower with unchanged metadata needs no rebalance; the leader rejoining
                // asks for one (e.g. topic metadata changed), as does changed metadata.
                GroupState::Stable if matches && !leader => {
                    out.push((reply, GroupResponse::Join(group.join_response(&req.member_id, Vec::new()))));
                }
                GroupState::CompletingRebalance | GroupState::Stable => {
                    group.update_member_and_rebalance(now, cfg, &req, session, rebalance, reply, out)
                }
                GroupState::Empty => fail(out, req.member_id, ErrorCode::UnknownMemberId),
            }
        } else {
            return fail(out, req.member_id, ErrorCode::UnknownMemberId);
        }
        group.try_complete_join(now, out);
    }

    fn sync(&mut self, now: u64, req: SyncRequest, reply: ReplyTo, out: &mut Out) {
        let fail = |out: &mut Out, error| out.push((reply, GroupResponse::Sync(SyncResponse::error(error))));
        if !valid_group_id(&req.group_id) {
            return fail(out, ErrorCode::InvalidGroupId);
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else {
            return fail(out, ErrorCode::UnknownMemberId);
        };
        if !group.has_member(&req.member_id) {
            return fail(out, ErrorCode::UnknownMemberId);
        }
        if req.generation_id != group.generation {
            return fail(out, ErrorCode::IllegalGeneration);
        }
        let type_differs = req.protocol_type.is_some() && req.protocol_type != group.protocol_type;
        let name_differs = req.protocol_name.is_some() && req.protocol_name != group.protocol_name;
        if type_differs || name_differs {
            return fail(out, ErrorCode::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty => fail(out, ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => fail(out, ErrorCode::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                group.pending_sync.retain(|id| id != &req.member_id);
                let Some(member) = group.member_mut(&req.member_id) else {
                    return fail(out, ErrorCode::UnknownMemberId);
                };
                if let Some(old) = member.awaiting_sync.replace(reply) {
                    out.push((old, GroupResponse::Sync(SyncResponse::error(ErrorCode::RebalanceInProgress))));
                }
                if group.is_leader(&req.member_id) {
                    group.set_and_propagate_assignment(now, req.assignments, out);
                }
            }
            GroupState::Stable => {
                group.pending_sync.retain(|id| id != &req.member_id);
                let (protocol_type, protocol_name) = (group.protocol_type.clone(), group.protocol_name.clone());
                let Some(member) = group.member_mut(&req.member_id) else {
                    return fail(out, ErrorCode::UnknownMemberId);
                };
                member.touch(now);
                let resp = SyncResponse {
                    error: ErrorCode::None,
                    protocol_type,
                    protocol_name,
                    assignment: member.assignment.clone(),
                };
                out.push((reply, GroupResponse::Sync(resp)));
            }
        }
    }

    fn heartbeat(&mut self, now: u64, req: &HeartbeatRequest) -> ErrorCode {
        if !valid_group_id(&req.group_id) {
            return ErrorCode::InvalidGroupId;
        }
        let Some(group) = self.groups.get_mut(&req.group_id) else { return ErrorCode::UnknownMemberId };
        let (generation, state) = (group.generation, group.state);
        let Some(member) = group.member_mut(&req.member_id) else { return ErrorCode::UnknownMemberId };
        if req.generation_id != generation {
            return ErrorCode::IllegalGeneration;
        }
        match state {
            GroupState::Empty => ErrorCode::UnknownMemberId,
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.touch(now);
                ErrorCode::None
            }
            GroupState::PreparingRebalance => {
                member.touch(now);
                ErrorCode::RebalanceInProgress
            }
        }
    }

    fn leave(&mut self, now: u64, req: LeaveRequest, out: &mut Out) -> LeaveResponse {
        if !valid_group_id(&req.group_id) {
            return LeaveResponse { error: ErrorCode::InvalidGroupId, members: Vec::new() };
        }
        let cfg = &self.config;
        let mut group = self.groups.get_mut(&req.group_id);
        let mut members = Vec::with_capacity(req.members.len());
        for m in req.members {
            let error = match group.as_deref_mut() {
                // No static membership: a removal by instance id alone finds nobody.
                Some(g) if !m.member_id.is_empty() => {
                    if g.remove_pending_and_update(now, &m.member_id, out) {
                        ErrorCode::None
                    } else if g.has_member(&m.member_id) {
                        tracing::info!(group = %req.group_id, member = %m.member_id, "group member left");
                        g.remove_member_and_update(now, cfg, &m.member_id, out);
                        ErrorCode::None
                    } else {
                        ErrorCode::UnknownMemberId
                    }
                }
                _ => ErrorCode::UnknownMemberId,
            };
            members.push(LeftMember { member_id: m.member_id, group_instance_id: m.group_instance_id, error });
        }
        LeaveResponse { error: ErrorCode::None, members }
    }
}

/// Kafka's rule for membership APIs: non-empty; FleetMQ also bounds the length.
fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= MAX_NAME_BYTES
}

/// A 64-bit mixer (splitmix64's finaliser), to spread seed and counter over the id's digits.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
