//! A group's state transitions, after Kafka's GroupCoordinator: admitting and updating members,
//! PreparingRebalance → CompletingRebalance → Stable (or Empty), distributing assignments, and the
//! timers (initial delay, rebalance timeout, pending SyncGroup, session expiry). Invariants:
//! - Every transition into PreparingRebalance goes through `prepare_rebalance`, which first answers
//!   parked SyncGroups with REBALANCE_IN_PROGRESS.
//! - `complete_join` answers every parked JoinGroup and drops members that did not rejoin.
//! - `run_timers` leaves `wake_at` up to date.

use super::member::Member;
use super::state::{Group, GroupState, JoinTimer, Out};
use super::{ErrorCode, GroupConfig, GroupResponse, JoinRequest, JoinResponse, MemberId, ReplyTo, SyncResponse};
use bytes::Bytes;
use std::collections::HashMap;

impl Group {
    /// Kafka's `addMemberAndRebalance`: admits a member whose JoinGroup is parked in it.
    pub(super) fn add_member_and_rebalance(&mut self, now: u64, cfg: &GroupConfig, member: Member, out: &mut Out) {
        if self.state == GroupState::PreparingRebalance && self.generation == 0 {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending.retain(|p| p.id != member.id);
        tracing::debug!(group = %self.id, member = %member.id, "group member added");
        self.members.push(member);
        self.maybe_prepare_rebalance(now, cfg, out);
    }

    /// Kafka's `updateMemberAndRebalance`: a known member rejoins (possibly with new protocols);
    /// its JoinGroup is parked. A JoinGroup it already had parked is answered REBALANCE_IN_PROGRESS
    /// so that reply is not lost.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_member_and_rebalance(
        &mut self,
        now: u64,
        cfg: &GroupConfig,
        req: &JoinRequest,
        session_timeout_ms: u64,
        rebalance_timeout_ms: u64,
        reply: ReplyTo,
        out: &mut Out,
    ) {
        let Some(member) = self.member_mut(&req.member_id) else {
            out.push((
                reply,
                GroupResponse::Join(JoinResponse::error(req.member_id.clone(), ErrorCode::UnknownMemberId)),
            ));
            return;
        };
        if let Some(old) = member.awaiting_join.replace(reply) {
            let stale = JoinResponse::error(member.id.clone(), ErrorCode::RebalanceInProgress);
            out.push((old, GroupResponse::Join(stale)));
        }
        member.protocols = req.protocols.clone();
        member.client_id = req.client_id.clone();
        member.session_timeout_ms = session_timeout_ms;
        member.rebalance_timeout_ms = rebalance_timeout_ms;
        self.maybe_prepare_rebalance(now, cfg, out);
    }

    /// Starts a rebalance unless one is already being prepared.
    pub(super) fn maybe_prepare_rebalance(&mut self, now: u64, cfg: &GroupConfig, out: &mut Out) {
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, cfg, out);
        }
    }

    /// Kafka's `prepareRebalance`: cancels a sync round in progress and waits for members to
    /// (re)join, with the initial delay if the group was empty.
    pub(super) fn prepare_rebalance(&mut self, now: u64, cfg: &GroupConfig, out: &mut Out) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_assignments(now, ErrorCode::RebalanceInProgress, out);
        }
        self.pending_sync.clear();
        let rebalance_timeout = self.rebalance_timeout_ms();
        let delay = cfg.initial_rebalance_delay_ms;
        self.join_timer = Some(if self.state == GroupState::Empty {
            JoinTimer::Initial {
                deadline: now.saturating_add(delay),
                remaining_ms: rebalance_timeout.saturating_sub(delay),
            }
        } else {
            JoinTimer::Rebalance { deadline: now.saturating_add(rebalance_timeout) }
        });
        tracing::debug!(group = %self.id, generation = self.generation, from = ?self.state, "group preparing rebalance");
        self.state = GroupState::PreparingRebalance;
        self.try_complete_join(now, out);
    }

    /// Completes the join phase early once every member has rejoined (not during the initial delay).
    pub(super) fn try_complete_join(&mut self, now: u64, out: &mut Out) {
        let rebalance = matches!(self.join_timer, Some(JoinTimer::Rebalance { .. }));
        if self.state == GroupState::PreparingRebalance && rebalance && self.has_all_members_joined() {
            self.complete_join(now, out);
        }
    }

    /// Kafka's `onCompleteJoin` + `initNextGeneration`: drops members that did not rejoin, starts
    /// the next generation and answers every parked JoinGroup (the leader's with all members).
    pub(super) fn complete_join(&mut self, now: u64, out: &mut Out) {
        let missing: Vec<MemberId> =
            self.members.iter().filter(|m| m.awaiting_join.is_none()).map(|m| m.id.clone()).collect();
        for id in &missing {
            tracing::info!(group = %self.id, member = %id, "group member dropped: did not rejoin before the rebalance timeout");
            self.remove_member(id, out);
        }
        self.join_timer = None;
        self.new_member_added = false;
        self.pending_sync.clear();
        // Generations stay positive: a negative one means "no generation" to clients.
        self.generation = if self.generation == i32::MAX { 1 } else { self.generation + 1 };
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let all = self.joined_members();
        let leader = self.leader.clone().unwrap_or_default();
        let mut replies = Vec::with_capacity(self.members.len());
        for m in &mut self.members {
            if let Some(reply) = m.awaiting_join.take() {
                replies.push((reply, m.id.clone()));
            }
            m.touch(now);
            m.is_new = false;
            self.pending_sync.push(m.id.clone());
        }
        for (reply, id) in replies {
            let members = if id == leader { all.clone() } else { Vec::new() };
            out.push((reply, GroupResponse::Join(self.join_response(&id, members))));
        }
        self.sync_deadline = now.saturating_add(self.rebalance_timeout_ms());
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or_default(),
            "group rebalance completed"
        );
    }

    /// Kafka's `removeMemberAndUpdateGroup`: removes a member and lets the group react.
    pub(super) fn remove_member_and_update(&mut self, now: u64, cfg: &GroupConfig, id: &MemberId, out: &mut Out) {
        if !self.remove_member(id, out) {
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now, cfg, out),
            GroupState::PreparingRebalance => self.try_complete_join(now, out),
            GroupState::Empty => {}
        }
    }

    /// Removes an outstanding MEMBER_ID_REQUIRED id, which may be all a rebalance waited for.
    pub(super) fn remove_pending_and_update(&mut self, now: u64, id: &MemberId, out: &mut Out) -> bool {
        let before = self.pending.len();
        self.pending.retain(|p| &p.id != id);
        let removed = self.pending.len() != before;
        if removed {
            self.try_complete_join(now, out);
        }
        removed
    }

    /// Clears assignments and answers parked SyncGroups with `error`.
    fn reset_assignments(&mut self, now: u64, error: ErrorCode, out: &mut Out) {
        for m in &mut self.members {
            m.assignment = Bytes::new();
            if let Some(reply) = m.awaiting_sync.take() {
                out.push((reply, GroupResponse::Sync(SyncResponse::error(error))));
                m.touch(now);
            }
        }
    }

    /// Kafka's `setAndPropagateAssignment`: stores the leader's assignments (members it left out
    /// get empty ones, unknown ids are ignored), answers parked SyncGroups, and becomes Stable.
    pub(super) fn set_and_propagate_assignment(
        &mut self,
        now: u64,
        assignments: Vec<(MemberId, Bytes)>,
        out: &mut Out,
    ) {
        let assignments: HashMap<MemberId, Bytes> = assignments.into_iter().collect();
        for m in &mut self.members {
            m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
            if let Some(reply) = m.awaiting_sync.take() {
                let resp = SyncResponse {
                    error: ErrorCode::None,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                };
                out.push((reply, GroupResponse::Sync(resp)));
                m.touch(now);
            }
        }
        self.state = GroupState::Stable;
        tracing::debug!(group = %self.id, generation = self.generation, "group stable");
    }

    /// Fires every timer of the group due at `now`, then refreshes `wake_at`.
    pub(super) fn run_timers(&mut self, now: u64, cfg: &GroupConfig, out: &mut Out) {
        let expired_pending: Vec<MemberId> =
            self.pending.iter().filter(|p| now >= p.deadline).map(|p| p.id.clone()).collect();
        for id in &expired_pending {
            self.remove_pending_and_update(now, id, out);
        }

        let expired: Vec<MemberId> = self.members.iter().filter(|m| m.expired(now)).map(|m| m.id.clone()).collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "group member expired: session timeout");
            self.remove_member_and_update(now, cfg, id, out);
        }

        let syncing = matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable);
        if syncing && !self.pending_sync.is_empty() && now >= self.sync_deadline {
            for id in std::mem::take(&mut self.pending_sync) {
                tracing::info!(group = %self.id, member = %id, "group member dropped: no SyncGroup before the rebalance timeout");
                self.remove_member(&id, out);
            }
            self.prepare_rebalance(now, cfg, out);
        }

        if self.state == GroupState::PreparingRebalance {
            match self.join_timer {
                Some(JoinTimer::Initial { deadline, remaining_ms }) if now >= deadline => {
                    let delay = cfg.initial_rebalance_delay_ms.min(remaining_ms);
                    if self.new_member_added && delay > 0 {
                        self.new_member_added = false;
                        self.join_timer = Some(JoinTimer::Initial {
                            deadline: now.saturating_add(delay),
                            remaining_ms: remaining_ms - delay,
                        });
                    } else {
                        self.complete_join(now, out);
                    }
                }
                Some(JoinTimer::Rebalance { deadline }) if now >= deadline => self.complete_join(now, out),
                _ => {}
            }
        }
        self.refresh_wake_at();
    }
}
