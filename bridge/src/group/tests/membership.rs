//! JoinGroup / SyncGroup / Heartbeat / LeaveGroup flows and their errors, at explicit times.

use super::*;

#[test]
fn two_members_join_and_the_followers_sync_waits_for_the_leaders() {
    let mut h = Harness::new();
    // v3: no MEMBER_ID_REQUIRED round trip; ids are generated on the first join.
    let ta = h.join(0, join_req(3, &MemberId::default(), "a"));
    let tb = h.join(50, join_req(3, &MemberId::default(), "b"));
    assert!(h.parked(ta) && h.parked(tb), "joins wait for the initial delay");
    assert_eq!(h.summary().state, GroupState::PreparingRebalance);

    h.tick(DELAY_MS);
    assert!(h.parked(ta) && h.parked(tb), "a member arriving during the delay extends it once");
    h.tick(2 * DELAY_MS - 1);
    assert!(h.parked(ta));
    h.tick(2 * DELAY_MS);
    let (ra, rb) = (h.join_reply(ta), h.join_reply(tb));
    assert_eq!((ra.error, rb.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert!(ra.member_id.as_str().starts_with("a-") && rb.member_id.as_str().starts_with("b-"));
    assert_ne!(ra.member_id, rb.member_id);
    assert_eq!(ra.leader, ra.member_id, "the first member leads");
    assert_eq!(rb.leader, ra.member_id);
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(ra.protocol_type.as_deref(), Some("consumer"));
    let metadata: Vec<(MemberId, Bytes)> =
        ra.members.iter().map(|m| (m.member_id.clone(), m.metadata.clone())).collect();
    assert_eq!(
        metadata,
        vec![(ra.member_id.clone(), Bytes::from("a/range")), (rb.member_id.clone(), Bytes::from("b/range"))]
    );
    assert!(rb.members.is_empty(), "followers get no member list");
    assert_eq!(h.summary().state, GroupState::CompletingRebalance);

    let (a, b) = (ra.member_id, rb.member_id);
    let sb = h.sync(210, &b, 1, &[]);
    assert!(h.parked(sb), "a follower's sync waits for the leader's");
    let sa = h.sync(220, &a, 1, &[(&a, "p0"), (&b, "p1"), (&MemberId::new("ghost"), "p2")]);
    let (ya, yb) = (h.sync_reply(sa), h.sync_reply(sb));
    assert_eq!((ya.error, yb.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!((ya.assignment, yb.assignment), (Bytes::from("p0"), Bytes::from("p1")));
    assert_eq!(yb.protocol_name.as_deref(), Some("range"));
    assert_eq!(h.summary().state, GroupState::Stable);
    assert_eq!(h.heartbeat(230, &b, 1), ErrorCode::None);

    // A late sync in Stable is answered at once with the stored assignment.
    let again = h.sync(240, &b, 1, &[]);
    assert_eq!(h.sync_reply(again).assignment, "p1");
}

#[test]
fn member_id_required_from_version_4() {
    let mut h = Harness::new();
    let t = h.join(0, join_req(4, &MemberId::default(), "kcat"));
    let r = h.join_reply(t);
    assert_eq!(r.error, ErrorCode::MemberIdRequired);
    assert_eq!(r.error.code(), 79);
    assert!(r.member_id.as_str().starts_with("kcat-"));
    assert!(h.member_ids().is_empty(), "the id is pending, not a member yet");

    let unknown = h.join(1, join_req(4, &MemberId::new("kcat-forged"), "kcat"));
    assert_eq!(h.join_reply(unknown).error, ErrorCode::UnknownMemberId);

    let t = h.join(2, join_req(4, &r.member_id, "kcat"));
    assert!(h.parked(t));
    assert_eq!(h.member_ids(), vec![r.member_id.clone()]);
    h.tick(2 + DELAY_MS);
    let joined = h.join_reply(t);
    assert_eq!((joined.error, joined.generation_id), (ErrorCode::None, 1));
    assert_eq!(joined.member_id, r.member_id);
    assert_eq!(joined.leader, r.member_id);
    assert_eq!(joined.members.len(), 1);
}

#[test]
fn old_versions_are_admitted_without_the_round_trip() {
    let mut h = Harness::new();
    let t = h.join(0, join_req(0, &MemberId::default(), "legacy"));
    assert!(h.parked(t));
    assert_eq!(h.member_ids().len(), 1);
}

#[test]
fn a_third_member_makes_the_others_rejoin_into_generation_2() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let now = STABLE_AT + 10;
    let c = h.member_id(now, "c");
    assert_eq!(h.heartbeat(now, &a, 1), ErrorCode::None, "a pending id does not start a rebalance");

    let tc = h.join(now, join_req(4, &c, "c"));
    assert!(h.parked(tc));
    assert_eq!(h.summary().state, GroupState::PreparingRebalance);
    assert_eq!(h.heartbeat(now + 1, &a, 1), ErrorCode::RebalanceInProgress);
    assert_eq!(h.heartbeat(now + 1, &b, 1), ErrorCode::RebalanceInProgress);
    let stale_sync = h.sync(now + 1, &b, 1, &[]);
    assert_eq!(h.sync_reply(stale_sync).error, ErrorCode::RebalanceInProgress);

    let ta = h.join(now + 2, join_req(4, &a, "a"));
    assert!(h.parked(ta) && h.parked(tc), "b has not rejoined yet");
    let tb = h.join(now + 3, join_req(4, &b, "b"));
    let (ra, rb, rc) = (h.join_reply(ta), h.join_reply(tb), h.join_reply(tc));
    assert_eq!((ra.generation_id, rb.generation_id, rc.generation_id), (2, 2, 2));
    assert_eq!(ra.leader, a);
    let ids: Vec<MemberId> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids, vec![a.clone(), b.clone(), c.clone()]);
    assert!(rb.members.is_empty() && rc.members.is_empty());
    assert_eq!(h.heartbeat(now + 4, &b, 1), ErrorCode::IllegalGeneration);
    assert_eq!(h.heartbeat(now + 4, &b, 2), ErrorCode::None, "CompletingRebalance accepts heartbeats");
}

#[test]
fn a_stable_follower_rejoining_unchanged_gets_the_current_generation() {
    let mut h = Harness::new();
    let (_a, b) = h.stable_pair();
    let t = h.join(STABLE_AT + 1, join_req(4, &b, "b"));
    let r = h.join_reply(t);
    assert_eq!((r.error, r.generation_id), (ErrorCode::None, 1));
    assert_eq!(h.summary().state, GroupState::Stable);

    // Changed metadata forces a rebalance.
    let mut changed = join_req(4, &b, "b");
    changed.protocols = protocols(&["range"], "b2");
    let t = h.join(STABLE_AT + 2, changed);
    assert!(h.parked(t));
    assert_eq!(h.summary().state, GroupState::PreparingRebalance);
}

#[test]
fn protocol_type_and_protocols_must_match_the_group() {
    let mut h = Harness::new();
    let a = h.join(0, join_req(3, &MemberId::default(), "a"));
    assert!(h.parked(a));

    let mut other_protocol = join_req(3, &MemberId::default(), "b");
    other_protocol.protocols = protocols(&["roundrobin"], "b");
    let t = h.join(1, other_protocol);
    assert_eq!(h.join_reply(t).error, ErrorCode::InconsistentGroupProtocol);

    let mut other_type = join_req(3, &MemberId::default(), "b");
    other_type.protocol_type = "connect".into();
    let t = h.join(1, other_type);
    assert_eq!(h.join_reply(t).error, ErrorCode::InconsistentGroupProtocol);

    let mut none = join_req(3, &MemberId::default(), "x");
    none.group_id = "other".into();
    none.protocols.clear();
    let t = h.join(1, none);
    assert_eq!(h.join_reply(t).error, ErrorCode::InconsistentGroupProtocol);
    assert_eq!(h.member_ids().len(), 1);
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let mut h = Harness::new();
    let mut ta = join_req(3, &MemberId::default(), "a");
    ta.protocols = protocols(&["range", "roundrobin"], "a");
    let mut tb = join_req(3, &MemberId::default(), "b");
    tb.protocols = protocols(&["roundrobin", "range"], "b");
    let mut tc = join_req(3, &MemberId::default(), "c");
    tc.protocols = protocols(&["roundrobin", "range", "sticky"], "c");
    let ta = h.join(0, ta);
    h.join(0, tb);
    h.join(0, tc);
    h.tick(DELAY_MS);
    h.tick(2 * DELAY_MS);
    let r = h.join_reply(ta);
    assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
    assert_eq!(r.members[0].metadata, "a/roundrobin", "the leader sees metadata of the chosen protocol");
}

#[test]
fn heartbeat_and_sync_reject_unknown_members_and_other_generations() {
    let mut h = Harness::new();
    let (a, _b) = h.stable_pair();
    let now = STABLE_AT + 1;
    let ghost = MemberId::new("ghost");
    assert_eq!(h.heartbeat(now, &ghost, 1), ErrorCode::UnknownMemberId);
    assert_eq!(h.heartbeat(now, &a, 0), ErrorCode::IllegalGeneration);
    assert_eq!(h.heartbeat(now, &a, 2), ErrorCode::IllegalGeneration);
    let t = h.sync(now, &ghost, 1, &[]);
    assert_eq!(h.sync_reply(t).error, ErrorCode::UnknownMemberId);
    let t = h.sync(now, &a, 7, &[]);
    assert_eq!(h.sync_reply(t).error, ErrorCode::IllegalGeneration);

    let hb =
        HeartbeatRequest { group_id: "nope".into(), generation_id: 1, member_id: a.clone(), group_instance_id: None };
    let t = h.send(now, GroupRequest::Heartbeat(hb));
    assert_eq!(h.take(t), Some(GroupResponse::Heartbeat(HeartbeatResponse { error: ErrorCode::UnknownMemberId })));
    let mut no_group = join_req(4, &a, "a");
    no_group.group_id = String::new();
    let t = h.join(now, no_group);
    assert_eq!(h.join_reply(t).error, ErrorCode::InvalidGroupId);
}

#[test]
fn joins_outside_the_session_range_static_members_and_full_groups_are_refused() {
    let mut h = Harness::new();
    for session in [999, 60_001, -1] {
        let mut r = join_req(4, &MemberId::default(), "a");
        r.session_timeout_ms = session;
        let t = h.join(0, r);
        assert_eq!(h.join_reply(t).error, ErrorCode::InvalidSessionTimeout, "session {session}");
    }
    let mut r = join_req(4, &MemberId::default(), "a");
    r.group_instance_id = Some("static-1".into());
    let t = h.join(0, r);
    assert_eq!(h.join_reply(t).error, ErrorCode::UnsupportedVersion);

    for client in ["a", "b", "c"] {
        h.join(0, join_req(3, &MemberId::default(), client));
    }
    let t = h.join(0, join_req(3, &MemberId::default(), "d"));
    let r = h.join_reply(t);
    assert_eq!((r.error, r.member_id), (ErrorCode::GroupMaxSizeReached, MemberId::default()));
    assert_eq!(h.member_ids().len(), 3);
}

#[test]
fn leave_single_then_batch() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let now = STABLE_AT + 1;

    // v0–2 shape: one member, error folded to the top level.
    let r = h.leave(now, &[&b]);
    assert_eq!(r.legacy_error(), ErrorCode::None);
    assert_eq!(h.member_ids(), vec![a.clone()]);
    assert_eq!(h.heartbeat(now, &a, 1), ErrorCode::RebalanceInProgress);
    assert_eq!(h.heartbeat(now, &b, 1), ErrorCode::UnknownMemberId);
    let t = h.join(now + 1, join_req(4, &a, "a"));
    let r = h.join_reply(t);
    assert_eq!((r.generation_id, r.members.len()), (2, 1), "the last member rejoining completes at once");

    // v3+ shape: several members, each with its own error.
    let ghost = MemberId::new("ghost");
    let r = h.leave(now + 2, &[&a, &ghost]);
    assert_eq!(r.error, ErrorCode::None);
    let errors: Vec<ErrorCode> = r.members.iter().map(|m| m.error).collect();
    assert_eq!(errors, vec![ErrorCode::None, ErrorCode::UnknownMemberId]);
    assert_eq!(r.members[1].member_id, ghost);
    let s = h.summary();
    assert_eq!((s.state, s.generation_id), (GroupState::Empty, 3));
    assert_eq!(h.leave(now + 3, &[&a]).legacy_error(), ErrorCode::UnknownMemberId);
}

#[test]
fn leaving_answers_a_parked_join_and_lets_the_rebalance_finish() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let now = STABLE_AT + 1;
    let ta = h.join(now, join_req(4, &a, "a"));
    assert!(h.parked(ta), "the leader rejoining starts a rebalance, waiting for b");
    let r = h.leave(now + 1, &[&b]);
    assert_eq!(r.members[0].error, ErrorCode::None);
    let ra = h.join_reply(ta);
    assert_eq!((ra.generation_id, ra.members.len()), (2, 1));

    let tb = h.join(now + 2, join_req(3, &MemberId::default(), "b"));
    let left = h.leave(now + 3, &[&a]);
    assert_eq!(left.members[0].error, ErrorCode::None);
    let rb = h.join_reply(tb);
    assert_eq!((rb.generation_id, rb.members.len()), (3, 1), "b alone forms the next generation");

    // A member leaving while its own join is parked gets that join answered.
    let tc = h.join(now + 4, join_req(3, &MemberId::default(), "c"));
    assert!(h.parked(tc));
    let c = h.member_ids()[1].clone();
    assert_eq!(h.leave(now + 5, &[&c]).members[0].error, ErrorCode::None);
    assert_eq!(h.join_reply(tc).error, ErrorCode::UnknownMemberId);
    assert_eq!(h.summary().state, GroupState::PreparingRebalance, "still waiting for b to rejoin");
}

#[test]
fn error_codes_are_kafkas() {
    use kafka_protocol::error::ResponseError as K;
    let pairs = [
        (ErrorCode::UnknownTopicOrPartition, K::UnknownTopicOrPartition),
        (ErrorCode::OffsetMetadataTooLarge, K::OffsetMetadataTooLarge),
        (ErrorCode::CoordinatorNotAvailable, K::CoordinatorNotAvailable),
        (ErrorCode::InvalidTopic, K::InvalidTopicException),
        (ErrorCode::IllegalGeneration, K::IllegalGeneration),
        (ErrorCode::InconsistentGroupProtocol, K::InconsistentGroupProtocol),
        (ErrorCode::InvalidGroupId, K::InvalidGroupId),
        (ErrorCode::UnknownMemberId, K::UnknownMemberId),
        (ErrorCode::InvalidSessionTimeout, K::InvalidSessionTimeout),
        (ErrorCode::RebalanceInProgress, K::RebalanceInProgress),
        (ErrorCode::InvalidCommitOffsetSize, K::InvalidCommitOffsetSize),
        (ErrorCode::UnsupportedVersion, K::UnsupportedVersion),
        (ErrorCode::MemberIdRequired, K::MemberIdRequired),
        (ErrorCode::GroupMaxSizeReached, K::GroupMaxSizeReached),
    ];
    for (ours, kafka) in pairs {
        assert_eq!(ours.code(), kafka.code(), "{ours:?}");
        assert_eq!(ours.to_response_error(), Some(kafka));
    }
    assert_eq!(ErrorCode::None.code(), 0);
    assert_eq!(ErrorCode::None.to_response_error(), None);
}
