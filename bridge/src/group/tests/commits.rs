//! The membership check of OffsetCommit ([`Coordinator::authorize_commit`]).

use super::*;

fn commit(member: &MemberId, generation: i32) -> CommitRequest {
    commit_to(GROUP, member, generation)
}

fn commit_to(group: &str, member: &MemberId, generation: i32) -> CommitRequest {
    CommitRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.clone(),
        group_instance_id: None,
        topics: vec![CommitTopic {
            name: "telemetry".into(),
            partitions: vec![CommitPartition { partition: 0, offset: 42, leader_epoch: -1, metadata: None }],
        }],
    }
}

#[test]
fn commits_need_a_current_member_and_generation() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let now = STABLE_AT + 1;
    assert_eq!(h.coord.authorize_commit(now, &commit(&a, 1)), ErrorCode::None);
    assert_eq!(h.coord.authorize_commit(now, &commit(&a, 2)), ErrorCode::IllegalGeneration);
    assert_eq!(h.coord.authorize_commit(now, &commit(&a, 0)), ErrorCode::IllegalGeneration);
    assert_eq!(h.coord.authorize_commit(now, &commit(&MemberId::new("ghost"), 1)), ErrorCode::UnknownMemberId);
    assert_eq!(
        h.coord.authorize_commit(now, &commit(&MemberId::default(), -1)),
        ErrorCode::UnknownMemberId,
        "simple commits are refused while the group has members"
    );

    // PreparingRebalance still accepts commits of the current generation (Kafka relies on the
    // heartbeat to tell members to rejoin) ...
    let tc = h.join(now, join_req(3, &MemberId::default(), "c"));
    assert_eq!(h.coord.authorize_commit(now, &commit(&a, 1)), ErrorCode::None);
    // ... but CompletingRebalance does not: the new assignment is not known yet.
    let ta = h.join(now + 1, join_req(4, &a, "a"));
    let tb = h.join(now + 1, join_req(4, &b, "b"));
    assert_eq!(h.join_reply(tc).generation_id, 2);
    h.join_reply(ta);
    h.join_reply(tb);
    assert_eq!(h.coord.authorize_commit(now + 2, &commit(&a, 2)), ErrorCode::RebalanceInProgress);
    assert_eq!(h.coord.authorize_commit(now + 2, &commit(&a, 1)), ErrorCode::IllegalGeneration);
}

#[test]
fn commits_during_completing_rebalance_are_told_to_rejoin() {
    let mut h = Harness::new();
    let ta = h.join(0, join_req(3, &MemberId::default(), "a"));
    h.tick(DELAY_MS);
    let a = h.join_reply(ta).member_id;
    assert_eq!(h.coord.authorize_commit(DELAY_MS, &commit(&a, 1)), ErrorCode::RebalanceInProgress);
    let s = h.sync(DELAY_MS, &a, 1, &[(&a, "all")]);
    assert_eq!(h.sync_reply(s).assignment, "all");
    assert_eq!(h.coord.authorize_commit(DELAY_MS, &commit(&a, 1)), ErrorCode::None);
}

#[test]
fn simple_commits_are_allowed_while_the_group_is_empty() {
    let mut h = Harness::new();
    let nobody = MemberId::default();
    assert_eq!(h.coord.authorize_commit(0, &commit_to("manual", &nobody, -1)), ErrorCode::None);
    assert_eq!(h.coord.authorize_commit(0, &commit_to("manual", &nobody, 3)), ErrorCode::IllegalGeneration);
    assert_eq!(h.coord.authorize_commit(0, &commit_to("manual", &MemberId::new("x"), -1)), ErrorCode::UnknownMemberId);
    assert_eq!(
        h.coord.authorize_commit(0, &commit_to("", &nobody, -1)),
        ErrorCode::None,
        "empty group ids are allowed"
    );
    assert!(h.coord.describe("manual").is_none(), "offset-only groups take no membership state");

    let (a, b) = h.stable_pair();
    h.leave(STABLE_AT + 1, &[&a, &b]);
    assert_eq!(h.summary().state, GroupState::Empty);
    assert_eq!(h.coord.authorize_commit(STABLE_AT + 2, &commit(&nobody, -1)), ErrorCode::None);
    assert_eq!(h.coord.authorize_commit(STABLE_AT + 2, &commit(&a, 1)), ErrorCode::UnknownMemberId);
}

#[test]
fn a_commit_counts_as_a_sign_of_life() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let deadline = STABLE_AT + SESSION_MS as u64;
    assert_eq!(h.coord.authorize_commit(deadline - 1, &commit(&a, 1)), ErrorCode::None);
    h.tick(deadline);
    assert_eq!(h.member_ids(), vec![a], "a committed instead of heartbeating; b did neither");
    assert_eq!(h.heartbeat(deadline, &b, 1), ErrorCode::UnknownMemberId);
}
