//! Tests of the group layer: the coordinator state machine driven with explicit times
//! (`membership`, `timeouts`, `commits`), the offset store on real files (`offsets`), and the Tokio
//! service end to end (`service`). The [`Harness`] here checks on every step that no reply token is
//! answered twice.

use super::*;
use bytes::Bytes;
use std::collections::HashSet;

mod commits;
mod membership;
mod offsets;
mod service;
mod timeouts;

pub(super) const GROUP: &str = "fleet";
pub(super) const SESSION_MS: i32 = 10_000;
pub(super) const REBALANCE_MS: i32 = 5_000;
pub(super) const DELAY_MS: u64 = 100;
/// When [`Harness::stable_pair`] finishes: the second member extends the initial delay once.
pub(super) const STABLE_AT: u64 = 2 * DELAY_MS;

pub(super) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        min_session_timeout_ms: 1_000,
        max_session_timeout_ms: 60_000,
        max_members: 3,
        max_groups: 4,
        ..GroupConfig::default()
    }
}

pub(super) fn protocols(names: &[&str], meta: &str) -> Vec<(String, Bytes)> {
    names.iter().map(|n| (n.to_string(), Bytes::from(format!("{meta}/{n}")))).collect()
}

pub(super) fn join_req(api_version: i16, member: &MemberId, client: &str) -> JoinRequest {
    JoinRequest {
        api_version,
        group_id: GROUP.into(),
        member_id: member.clone(),
        group_instance_id: None,
        client_id: client.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols(&["range"], client),
    }
}

/// Drives a [`Coordinator`] and collects its replies by token.
pub(super) struct Harness {
    pub(super) coord: Coordinator,
    next: u64,
    inbox: Vec<(ReplyTo, GroupResponse)>,
    answered: HashSet<ReplyTo>,
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with(config())
    }

    pub(super) fn with(cfg: GroupConfig) -> Self {
        Harness { coord: Coordinator::new(cfg, 7), next: 0, inbox: Vec::new(), answered: HashSet::new() }
    }

    fn collect(&mut self, replies: Vec<(ReplyTo, GroupResponse)>) {
        for (token, resp) in replies {
            assert!(self.answered.insert(token), "{token:?} answered twice");
            self.inbox.push((token, resp));
        }
    }

    pub(super) fn send(&mut self, now: u64, req: GroupRequest) -> ReplyTo {
        self.next += 1;
        let token = ReplyTo(self.next);
        let replies = self.coord.handle(now, req, token);
        self.collect(replies);
        token
    }

    pub(super) fn tick(&mut self, now: u64) {
        let replies = self.coord.tick(now);
        self.collect(replies);
    }

    /// Whether `token` is still parked (unanswered).
    pub(super) fn parked(&self, token: ReplyTo) -> bool {
        !self.answered.contains(&token)
    }

    fn take(&mut self, token: ReplyTo) -> Option<GroupResponse> {
        let pos = self.inbox.iter().position(|(t, _)| *t == token)?;
        Some(self.inbox.remove(pos).1)
    }

    pub(super) fn join_reply(&mut self, token: ReplyTo) -> JoinResponse {
        match self.take(token) {
            Some(GroupResponse::Join(r)) => r,
            other => panic!("expected a JoinGroup reply for {token:?}, got {other:?}"),
        }
    }

    pub(super) fn sync_reply(&mut self, token: ReplyTo) -> SyncResponse {
        match self.take(token) {
            Some(GroupResponse::Sync(r)) => r,
            other => panic!("expected a SyncGroup reply for {token:?}, got {other:?}"),
        }
    }

    pub(super) fn join(&mut self, now: u64, req: JoinRequest) -> ReplyTo {
        self.send(now, GroupRequest::Join(req))
    }

    /// KIP-394 first step: a v4 join without id; returns the id handed out.
    pub(super) fn member_id(&mut self, now: u64, client: &str) -> MemberId {
        let t = self.join(now, join_req(4, &MemberId::default(), client));
        let r = self.join_reply(t);
        assert_eq!(r.error, ErrorCode::MemberIdRequired);
        assert_eq!(r.generation_id, -1);
        r.member_id
    }

    pub(super) fn sync(
        &mut self,
        now: u64,
        member: &MemberId,
        generation: i32,
        assignments: &[(&MemberId, &str)],
    ) -> ReplyTo {
        let assignments = assignments.iter().map(|(m, a)| ((*m).clone(), Bytes::from(a.to_string()))).collect();
        self.send(
            now,
            GroupRequest::Sync(SyncRequest {
                group_id: GROUP.into(),
                generation_id: generation,
                member_id: member.clone(),
                group_instance_id: None,
                protocol_type: Some("consumer".into()),
                protocol_name: None,
                assignments,
            }),
        )
    }

    pub(super) fn heartbeat(&mut self, now: u64, member: &MemberId, generation: i32) -> ErrorCode {
        let req = HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: generation,
            member_id: member.clone(),
            group_instance_id: None,
        };
        let t = self.send(now, GroupRequest::Heartbeat(req));
        match self.take(t) {
            Some(GroupResponse::Heartbeat(r)) => r.error,
            other => panic!("expected a Heartbeat reply, got {other:?}"),
        }
    }

    pub(super) fn leave(&mut self, now: u64, members: &[&MemberId]) -> LeaveResponse {
        let members =
            members.iter().map(|m| LeavingMember { member_id: (*m).clone(), group_instance_id: None }).collect();
        let t = self.send(now, GroupRequest::Leave(LeaveRequest { group_id: GROUP.into(), members }));
        match self.take(t) {
            Some(GroupResponse::Leave(r)) => r,
            other => panic!("expected a LeaveGroup reply, got {other:?}"),
        }
    }

    pub(super) fn summary(&self) -> GroupSummary {
        self.coord.describe(GROUP).expect("group exists")
    }

    pub(super) fn member_ids(&self) -> Vec<MemberId> {
        self.summary().members.into_iter().map(|m| m.member_id).collect()
    }

    /// Two members "a" and "b" through the v4 flow, stable at generation 1 with assignments
    /// "a-parts" / "b-parts"; returns their ids (a is the leader). Time advances to [`STABLE_AT`].
    pub(super) fn stable_pair(&mut self) -> (MemberId, MemberId) {
        let a = self.member_id(0, "a");
        let b = self.member_id(0, "b");
        let ta = self.join(0, join_req(4, &a, "a"));
        let tb = self.join(0, join_req(4, &b, "b"));
        self.tick(DELAY_MS);
        assert!(self.parked(ta), "b arrived during the initial delay, which is extended once");
        self.tick(STABLE_AT);
        assert_eq!(self.join_reply(ta).generation_id, 1);
        assert_eq!(self.join_reply(tb).generation_id, 1);
        let sb = self.sync(STABLE_AT, &b, 1, &[]);
        let sa = self.sync(STABLE_AT, &a, 1, &[(&a, "a-parts"), (&b, "b-parts")]);
        assert_eq!(self.sync_reply(sa).assignment, "a-parts");
        assert_eq!(self.sync_reply(sb).assignment, "b-parts");
        assert_eq!(self.summary().state, GroupState::Stable);
        (a, b)
    }
}
