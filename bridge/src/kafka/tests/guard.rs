//! The array-length guard's schemas against `kafka-protocol` itself: for every API and version
//! the listener decodes, a request with every array populated (as a client would send it) must
//! be walked to exactly its last byte, and every truncation of it must be rejected.

use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    CreateTopicsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest,
    ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, ProduceRequest, SyncGroupRequest,
};

use super::*;
use crate::kafka::guard::{check, consumed};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A request of `api` at version `v` with every array the version has populated twice.
fn populated(api: ApiKey, v: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    let g = || GroupId(s("group"));
    match api {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsRequest::default();
            if v >= 3 {
                r = r.with_client_software_name(s("kcat")).with_client_software_version(s("1.7"));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::Metadata => {
            let t = MetadataRequestTopic::default().with_name(Some(name("t")));
            MetadataRequest::default().with_topics(Some(vec![t.clone(), t])).encode(&mut buf, v)
        }
        ApiKey::ListOffsets => {
            let p = ListOffsetsPartition::default().with_partition_index(1).with_timestamp(-1);
            let t = ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![p.clone(), p]);
            ListOffsetsRequest::default().with_topics(vec![t.clone(), t]).encode(&mut buf, v)
        }
        ApiKey::Fetch => {
            let p = FetchPartition::default().with_partition(1).with_fetch_offset(5).with_partition_max_bytes(9);
            let t = FetchTopic::default().with_topic(name("t")).with_partitions(vec![p.clone(), p]);
            let mut r = FetchRequest::default().with_topics(vec![t.clone(), t]);
            if v >= 7 {
                r.forgotten_topics_data =
                    vec![ForgottenTopic::default().with_topic(name("f")).with_partitions(vec![1, 2])];
            }
            if v >= 11 {
                r.rack_id = s("rack");
            }
            if v >= 12 {
                r.cluster_id = Some(s("cluster"));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::FindCoordinator => {
            let r = if v >= 4 {
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")])
            } else {
                FindCoordinatorRequest::default().with_key(s("a"))
            };
            r.encode(&mut buf, v)
        }
        ApiKey::JoinGroup => {
            let p = JoinGroupRequestProtocol::default().with_name(s("range")).with_metadata(Bytes::from_static(b"md"));
            let mut r = JoinGroupRequest::default()
                .with_group_id(g())
                .with_member_id(s("m"))
                .with_protocols(vec![p.clone(), p]);
            if v >= 8 {
                r.reason = Some(s("why"));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::SyncGroup => {
            let a =
                SyncGroupRequestAssignment::default().with_member_id(s("m")).with_assignment(Bytes::from_static(b"a"));
            let mut r = SyncGroupRequest::default().with_group_id(g()).with_assignments(vec![a.clone(), a]);
            if v >= 5 {
                r = r.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
            }
            r.encode(&mut buf, v)
        }
        ApiKey::Heartbeat => HeartbeatRequest::default().with_group_id(g()).with_member_id(s("m")).encode(&mut buf, v),
        ApiKey::LeaveGroup => {
            let r = if v >= 3 {
                let m = MemberIdentity::default().with_member_id(s("m"));
                LeaveGroupRequest::default().with_group_id(g()).with_members(vec![m.clone(), m])
            } else {
                LeaveGroupRequest::default().with_group_id(g()).with_member_id(s("m"))
            };
            r.encode(&mut buf, v)
        }
        ApiKey::OffsetCommit => {
            let p =
                OffsetCommitRequestPartition::default().with_committed_offset(3).with_committed_metadata(Some(s("x")));
            let t = OffsetCommitRequestTopic::default().with_name(name("t")).with_partitions(vec![p.clone(), p]);
            OffsetCommitRequest::default().with_group_id(g()).with_topics(vec![t.clone(), t]).encode(&mut buf, v)
        }
        ApiKey::OffsetFetch => {
            let r = if v >= 8 {
                let t = OffsetFetchRequestTopics::default().with_name(name("t")).with_partition_indexes(vec![0, 1]);
                let grp = OffsetFetchRequestGroup::default().with_group_id(g()).with_topics(Some(vec![t.clone(), t]));
                OffsetFetchRequest::default().with_groups(vec![grp.clone(), grp])
            } else {
                let t = OffsetFetchRequestTopic::default().with_name(name("t")).with_partition_indexes(vec![0, 1]);
                OffsetFetchRequest::default().with_group_id(g()).with_topics(Some(vec![t.clone(), t]))
            };
            r.encode(&mut buf, v)
        }
        ApiKey::Produce => {
            let p = PartitionProduceData::default().with_index(1).with_records(Some(Bytes::from_static(b"records")));
            let t = TopicProduceData::default().with_name(name("t")).with_partition_data(vec![p.clone(), p]);
            ProduceRequest::default().with_acks(1).with_topic_data(vec![t.clone(), t]).encode(&mut buf, v)
        }
        ApiKey::CreateTopics => {
            let a =
                CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![1.into(), 2.into()]);
            let c = CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("1")));
            let t = CreatableTopic::default().with_name(name("t")).with_assignments(vec![a]).with_configs(vec![c]);
            CreateTopicsRequest::default().with_topics(vec![t.clone(), t]).encode(&mut buf, v)
        }
        other => panic!("no fixture for {other:?}"),
    }
    .unwrap_or_else(|e| panic!("{api:?} v{v}: {e}"));
    buf
}

#[test]
fn schemas_walk_every_decoded_request_to_its_last_byte() {
    let refused = [(ApiKey::CreateTopics, 2, 7)];
    for (api, min, max) in SUPPORTED_APIS.iter().chain(refused.iter()).copied() {
        for v in min..=max {
            let body = populated(api, v);
            assert_eq!(consumed(api, v, &body), Ok(body.len()), "{api:?} v{v}");
            for cut in 0..body.len() {
                assert!(check(api, v, &body[..cut]).is_err(), "{api:?} v{v} cut at {cut} accepted");
            }
        }
    }
}

#[test]
fn apis_without_a_schema_are_never_decoded() {
    assert!(check(ApiKey::InitProducerId, 4, &[]).is_err());
}
