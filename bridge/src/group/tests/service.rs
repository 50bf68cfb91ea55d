//! The Tokio service end to end: concurrent joins, sync, commit, fetch, persistence.

use super::*;

fn service_config() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 200, tick_interval_ms: 5, ..config() }
}

/// A consumer's whole join: MEMBER_ID_REQUIRED, then the real join.
async fn join(svc: &GroupService, client: &str) -> JoinResponse {
    let first = svc.join(join_req(4, &MemberId::default(), client)).await.unwrap();
    assert_eq!(first.error, ErrorCode::MemberIdRequired);
    svc.join(join_req(4, &first.member_id, client)).await.unwrap()
}

fn sync(member: &MemberId, generation: i32, assignments: Vec<(MemberId, Bytes)>) -> SyncRequest {
    SyncRequest {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: member.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments,
    }
}

fn commit(member: &MemberId, generation: i32, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: GROUP.into(),
        generation_id: generation,
        member_id: member.clone(),
        group_instance_id: None,
        topics: vec![CommitTopic {
            name: "telemetry".into(),
            partitions: vec![CommitPartition { partition: 0, offset, leader_epoch: -1, metadata: Some("m".into()) }],
        }],
    }
}

#[tokio::test]
async fn two_concurrent_joins_complete_and_offsets_persist() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), OffsetStoreConfig::default()).unwrap();
    let svc = GroupService::start(service_config(), store).unwrap();

    let (ra, rb) = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        tokio::join!(join(&svc, "a"), join(&svc, "b"))
    })
    .await
    .expect("both joins complete");
    assert_eq!((ra.error, rb.error), (ErrorCode::None, ErrorCode::None));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader, rb.leader);
    let (leader, follower) = if ra.leader == ra.member_id { (ra, rb) } else { (rb, ra) };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());

    let assignments = vec![
        (leader.member_id.clone(), Bytes::from_static(b"p0")),
        (follower.member_id.clone(), Bytes::from_static(b"p1")),
    ];
    let (sf, sl) = tokio::join!(
        svc.sync(sync(&follower.member_id, 1, Vec::new())),
        svc.sync(sync(&leader.member_id, 1, assignments))
    );
    assert_eq!(sf.unwrap().assignment, "p1");
    assert_eq!(sl.unwrap().assignment, "p0");
    let hb = HeartbeatRequest {
        group_id: GROUP.into(),
        generation_id: 1,
        member_id: follower.member_id.clone(),
        group_instance_id: None,
    };
    assert_eq!(svc.heartbeat(hb).await.unwrap().error, ErrorCode::None);

    let stale = svc.commit_offsets(commit(&leader.member_id, 0, 7)).await.unwrap();
    assert_eq!(stale.topics[0].partitions[0].error, ErrorCode::IllegalGeneration);
    let ok = svc.commit_offsets(commit(&leader.member_id, 1, 42)).await.unwrap();
    assert_eq!(ok.topics[0].partitions[0].error, ErrorCode::None);
    let fetched = svc.fetch_offsets(FetchRequest { group_id: GROUP.into(), topics: None }).await.unwrap();
    assert_eq!(fetched.topics[0].partitions[0].offset, 42);

    let left = svc
        .leave(LeaveRequest {
            group_id: GROUP.into(),
            members: vec![LeavingMember { member_id: follower.member_id.clone(), group_instance_id: None }],
        })
        .await
        .unwrap();
    assert_eq!(left.legacy_error(), ErrorCode::None);
    drop(svc);

    // "Restart": a fresh store on the same directory has the acknowledged commit.
    let store = OffsetStore::open(dir.path(), OffsetStoreConfig::default()).unwrap();
    let c = store.get(GROUP, "telemetry", 0).expect("persisted");
    assert_eq!((c.offset, c.metadata.as_str()), (42, "m"));
}

#[tokio::test]
async fn pipelined_simple_commits_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), OffsetStoreConfig::default()).unwrap();
    let svc = GroupService::start(service_config(), store).unwrap();
    let nobody = MemberId::default();
    // kcat-style manual assignment: generation -1, no member id, group has no members.
    let (a, b, c) = tokio::join!(
        svc.commit_offsets(commit(&nobody, -1, 1)),
        svc.commit_offsets(commit(&nobody, -1, 2)),
        svc.commit_offsets(commit(&nobody, -1, 3))
    );
    for r in [a, b, c] {
        assert_eq!(r.unwrap().topics[0].partitions[0].error, ErrorCode::None);
    }
    let wanted = Some(vec![FetchTopic { name: "telemetry".into(), partitions: vec![0, 1] }]);
    let fetched = svc.fetch_offsets(FetchRequest { group_id: GROUP.into(), topics: wanted }).await.unwrap();
    let offsets: Vec<i64> = fetched.topics[0].partitions.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, vec![3, -1]);
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path(), OffsetStoreConfig::default()).unwrap();
    assert!(matches!(GroupService::start(GroupConfig::default(), store), Err(Error::NoRuntime)));
}
