//! Time-driven behaviour: session expiry, rebalance timeout, missing SyncGroup, the initial delay
//! and outstanding MEMBER_ID_REQUIRED ids.

use super::*;

#[test]
fn a_member_that_stops_heartbeating_expires_and_the_group_rebalances() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    // Both sessions run from the sync at STABLE_AT; only a keeps heartbeating.
    let b_deadline = STABLE_AT + SESSION_MS as u64;
    assert_eq!(h.heartbeat(5_000, &a, 1), ErrorCode::None);
    h.tick(b_deadline - 1);
    assert_eq!(h.member_ids(), vec![a.clone(), b.clone()]);
    h.tick(b_deadline);
    assert_eq!(h.member_ids(), vec![a.clone()]);
    assert_eq!(h.heartbeat(b_deadline + 1, &a, 1), ErrorCode::RebalanceInProgress);
    assert_eq!(h.heartbeat(b_deadline + 1, &b, 1), ErrorCode::UnknownMemberId);
    let t = h.join(b_deadline + 2, join_req(4, &a, "a"));
    let r = h.join_reply(t);
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn a_member_not_rejoining_within_the_rebalance_timeout_is_dropped() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let tc = h.join(1_000, join_req(3, &MemberId::default(), "c"));
    let deadline = 1_000 + REBALANCE_MS as u64;
    let ta = h.join(1_100, join_req(4, &a, "a"));
    // b stays alive (heartbeats) but never rejoins, like a consumer stuck in processing.
    for t in [2_000, 4_000, deadline - 1] {
        assert_eq!(h.heartbeat(t, &b, 1), ErrorCode::RebalanceInProgress);
    }
    h.tick(deadline - 1);
    assert!(h.parked(ta) && h.parked(tc));
    h.tick(deadline);
    let (ra, rc) = (h.join_reply(ta), h.join_reply(tc));
    assert_eq!((ra.generation_id, rc.generation_id), (2, 2));
    let ids: Vec<MemberId> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    assert_eq!(ids, vec![a.clone(), rc.member_id.clone()]);
    assert_eq!(h.heartbeat(deadline + 1, &b, 1), ErrorCode::UnknownMemberId);
}

#[test]
fn a_member_that_never_syncs_is_dropped_and_waiting_syncs_are_told_to_rejoin() {
    let mut h = Harness::new();
    let ta = h.join(0, join_req(3, &MemberId::default(), "a"));
    let tb = h.join(0, join_req(3, &MemberId::default(), "b"));
    h.tick(DELAY_MS);
    h.tick(STABLE_AT);
    let (a, b) = (h.join_reply(ta).member_id, h.join_reply(tb).member_id);
    let sync_deadline = STABLE_AT + REBALANCE_MS as u64;
    let sb = h.sync(300, &b, 1, &[]);
    assert_eq!(h.heartbeat(3_000, &a, 1), ErrorCode::None, "heartbeats are fine while completing");
    h.tick(sync_deadline - 1);
    assert!(h.parked(sb));
    h.tick(sync_deadline);
    assert_eq!(h.sync_reply(sb).error, ErrorCode::RebalanceInProgress);
    assert_eq!(h.member_ids(), vec![b.clone()]);
    let tb = h.join(sync_deadline + 1, join_req(3, &b, "b"));
    let r = h.join_reply(tb);
    assert_eq!((r.generation_id, r.leader), (2, b));
}

#[test]
fn the_initial_delay_is_extended_for_new_members_up_to_the_rebalance_timeout() {
    let mut h = Harness::with(GroupConfig { max_members: 10, ..config() });
    let short = |client: &str| JoinRequest { rebalance_timeout_ms: 250, ..join_req(3, &MemberId::default(), client) };
    let ta = h.join(0, short("a"));
    h.join(50, short("b"));
    h.tick(DELAY_MS);
    h.join(150, short("c"));
    h.tick(2 * DELAY_MS);
    h.join(240, short("d"));
    h.tick(249);
    assert!(h.parked(ta), "still within the rebalance timeout");
    h.tick(250);
    let r = h.join_reply(ta);
    assert_eq!((r.generation_id, r.members.len()), (1, 4));
}

#[test]
fn a_lone_member_waits_exactly_the_initial_delay() {
    let mut h = Harness::new();
    let t = h.join(10, join_req(3, &MemberId::default(), "a"));
    h.tick(10 + DELAY_MS - 1);
    assert!(h.parked(t));
    h.tick(10 + DELAY_MS);
    assert_eq!(h.join_reply(t).generation_id, 1);
}

#[test]
fn members_waiting_in_a_rebalance_outlive_their_session_timeout() {
    let mut h = Harness::new();
    let long =
        |member: &MemberId, client: &str| JoinRequest { rebalance_timeout_ms: 30_000, ..join_req(3, member, client) };
    let ta = h.join(0, long(&MemberId::default(), "a"));
    let tb = h.join(0, long(&MemberId::default(), "b"));
    h.tick(DELAY_MS);
    h.tick(STABLE_AT);
    let (a, b) = (h.join_reply(ta).member_id, h.join_reply(tb).member_id);
    let sb = h.sync(STABLE_AT, &b, 1, &[]);
    let sa = h.sync(STABLE_AT, &a, 1, &[]);
    h.sync_reply(sa);
    h.sync_reply(sb);

    let ta = h.join(1_000, long(&a, "a"));
    assert_eq!(h.heartbeat(9_000, &b, 1), ErrorCode::RebalanceInProgress);
    h.tick(15_000);
    assert!(h.parked(ta), "a's session deadline passed, but it is waiting on the group");
    assert_eq!(h.member_ids(), vec![a.clone(), b.clone()]);
    h.tick(19_000);
    let r = h.join_reply(ta);
    assert_eq!((r.generation_id, r.members.len()), (2, 1), "b expired and the rebalance finished without it");
}

#[test]
fn an_outstanding_member_id_holds_the_rebalance_until_it_expires() {
    let mut h = Harness::new();
    let (a, b) = h.stable_pair();
    let t = h.join(300, JoinRequest { session_timeout_ms: 1_000, ..join_req(4, &MemberId::default(), "c") });
    let c = h.join_reply(t).member_id;
    let ta = h.join(400, join_req(4, &a, "a"));
    let tb = h.join(500, join_req(4, &b, "b"));
    h.tick(1_299);
    assert!(h.parked(ta) && h.parked(tb), "c may still come back with its id");
    h.tick(1_300);
    assert_eq!(h.join_reply(ta).members.len(), 2);
    assert_eq!(h.join_reply(tb).generation_id, 2);
    let late = h.join(1_400, join_req(4, &c, "c"));
    assert_eq!(h.join_reply(late).error, ErrorCode::UnknownMemberId);
}

#[test]
fn idle_groups_make_room_for_new_ones() {
    let mut h = Harness::new();
    for i in 0..4 {
        let req = JoinRequest { group_id: format!("g{i}"), ..join_req(3, &MemberId::default(), "a") };
        h.join(0, req);
    }
    let fifth = JoinRequest { group_id: "g4".into(), ..join_req(3, &MemberId::default(), "a") };
    let t = h.join(0, fifth.clone());
    assert_eq!(h.join_reply(t).error, ErrorCode::CoordinatorNotAvailable);

    // g0's only member leaves: the group becomes Empty and can be dropped for g4.
    h.tick(DELAY_MS);
    let g0 = h.coord.describe("g0").expect("g0").members[0].member_id.clone();
    let leave =
        LeaveRequest { group_id: "g0".into(), members: vec![LeavingMember { member_id: g0, group_instance_id: None }] };
    h.send(DELAY_MS, GroupRequest::Leave(leave));
    let t = h.join(DELAY_MS, fifth);
    assert!(h.parked(t));
    assert!(h.coord.describe("g0").is_none());
    assert_eq!(h.coord.group_count(), 4);
}
