//! FindCoordinator and the consumer-group APIs through the dispatcher: one member's whole life
//! (join, sync, heartbeat, commit, fetch offsets, leave) at the versions clients use, plus the
//! batched forms and the refusal of commits for partitions the log does not have.

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};

use super::*;

const GROUP: &str = "dashboards";

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str(GROUP))
}

#[tokio::test]
async fn find_coordinator_names_this_node_for_groups_only() {
    let f = fixture();
    let d = &f.dispatcher;
    let v0 = call(d, 0, &FindCoordinatorRequest::default().with_key("g".into())).await;
    assert_eq!((v0.error_code, v0.node_id.0, v0.host.as_str(), v0.port), (0, NODE, "bridge.local", 9092));
    let keys = vec![StrBytes::from_static_str("a"), StrBytes::from_static_str("b")];
    let v4 = call(d, 4, &FindCoordinatorRequest::default().with_coordinator_keys(keys)).await;
    let got: Vec<(&str, i32, i16)> =
        v4.coordinators.iter().map(|c| (c.key.as_str(), c.node_id.0, c.error_code)).collect();
    assert_eq!(got, vec![("a", NODE, 0), ("b", NODE, 0)]);
    let txn = call(d, 3, &FindCoordinatorRequest::default().with_key("tx".into()).with_key_type(1)).await;
    assert_eq!((txn.error_code, txn.node_id.0), (ResponseError::CoordinatorNotAvailable.code(), -1));
}

fn join(version: i16, member: &StrBytes) -> JoinGroupRequest {
    let protocol =
        JoinGroupRequestProtocol::default().with_name("range".into()).with_metadata(Bytes::from_static(b"m"));
    let mut req = JoinGroupRequest::default()
        .with_group_id(group())
        .with_session_timeout_ms(10_000)
        .with_member_id(member.clone())
        .with_protocol_type("consumer".into())
        .with_protocols(vec![protocol]);
    if version >= 1 {
        req.rebalance_timeout_ms = 10_000;
    }
    req
}

fn commit(member: &StrBytes, generation: i32, parts: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let topics = parts
        .iter()
        .map(|(topic, p, offset)| {
            let part = OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*offset)
                .with_committed_metadata(Some("meta".into()));
            OffsetCommitRequestTopic::default().with_name(name(topic)).with_partitions(vec![part])
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(group())
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member.clone())
        .with_topics(topics)
}

#[tokio::test]
async fn one_member_joins_syncs_commits_fetches_and_leaves() {
    let f = fixture();
    let d = &f.dispatcher;
    let first = call(d, 7, &join(7, &StrBytes::default())).await;
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.clone();
    assert!(member.starts_with("unit-test"), "member ids start with the client id: {member}");
    let joined = call(d, 7, &join(7, &member)).await;
    assert_eq!((joined.error_code, joined.generation_id, &joined.leader), (0, 1, &member));
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);

    let assignment = SyncGroupRequestAssignment::default().with_member_id(member.clone()).with_assignment("p0".into());
    let sync = SyncGroupRequest::default()
        .with_group_id(group())
        .with_generation_id(1)
        .with_member_id(member.clone())
        .with_protocol_type(Some("consumer".into()))
        .with_protocol_name(Some("range".into()))
        .with_assignments(vec![assignment]);
    let synced = call(d, 5, &sync).await;
    assert_eq!((synced.error_code, &synced.assignment[..]), (0, &b"p0"[..]));

    let beat = HeartbeatRequest::default().with_group_id(group()).with_generation_id(1).with_member_id(member.clone());
    assert_eq!(call(d, 4, &beat).await.error_code, 0);

    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let committed = call(d, 8, &commit(&member, 1, &[(TOPIC, 0, 3), (TOPIC, 5, 1), ("missing", 0, 1)])).await;
    let codes: Vec<i16> = committed.topics.iter().map(|t| t.partitions[0].error_code).collect();
    assert_eq!(codes, vec![0, unknown, unknown]);
    let stale = call(d, 2, &commit(&member, 0, &[(TOPIC, 1, 9)])).await;
    assert_eq!(stale.topics[0].partitions[0].error_code, ResponseError::IllegalGeneration.code());

    // Batched OffsetFetch (v8).
    let topics = OffsetFetchRequestTopics::default().with_name(name(TOPIC)).with_partition_indexes(vec![0, 1]);
    let batched = OffsetFetchRequestGroup::default().with_group_id(group()).with_topics(Some(vec![topics]));
    let v8 = call(d, 8, &OffsetFetchRequest::default().with_groups(vec![batched])).await;
    let g = &v8.groups[0];
    let got: Vec<(i32, i64)> = g.topics[0].partitions.iter().map(|p| (p.partition_index, p.committed_offset)).collect();
    assert_eq!((g.group_id.as_str(), g.error_code, got), (GROUP, 0, vec![(0, 3), (1, -1)]));

    let leave = LeaveGroupRequest::default()
        .with_group_id(group())
        .with_members(vec![MemberIdentity::default().with_member_id(member.clone())]);
    let left = call(d, 3, &leave).await;
    assert_eq!((left.error_code, left.members[0].error_code), (0, 0));
    assert_eq!(call(d, 4, &beat).await.error_code, ResponseError::UnknownMemberId.code());

    // Single-group OffsetFetch: v1 lists partitions, v5 may ask for everything with null.
    let topic = OffsetFetchRequestTopic::default().with_name(name(TOPIC)).with_partition_indexes(vec![0]);
    let v1 = call(d, 1, &OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![topic]))).await;
    assert_eq!(v1.topics[0].partitions[0].committed_offset, 3);
    let v5 = call(d, 5, &OffsetFetchRequest::default().with_group_id(group()).with_topics(None)).await;
    let p = &v5.topics[0].partitions[0];
    assert_eq!((v5.error_code, p.committed_offset, p.metadata.as_deref()), (0, 3, Some("meta")));
}

#[tokio::test]
async fn old_join_and_leave_versions_work() {
    let f = fixture();
    let d = &f.dispatcher;
    // v0 predates MEMBER_ID_REQUIRED: the first join is accepted directly.
    let joined = call(d, 0, &join(0, &StrBytes::default())).await;
    assert_eq!((joined.error_code, joined.protocol_name.as_deref()), (0, Some("range")));
    let leave = LeaveGroupRequest::default().with_group_id(group()).with_member_id(joined.member_id.clone());
    assert_eq!(call(d, 0, &leave).await.error_code, 0);
    let again = call(d, 2, &leave).await;
    assert_eq!(again.error_code, ResponseError::UnknownMemberId.code());
}
