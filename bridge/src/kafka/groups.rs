//! Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit and OffsetFetch,
//! mapped field by field onto [`GroupService`](crate::group::GroupService).
//!
//! Invariants: the group layer's error codes go out unchanged; if the service itself is gone the
//! answer is COORDINATOR_NOT_AVAILABLE, which makes clients rediscover the coordinator and retry;
//! commits for topics or partitions the log does not have are refused with
//! UNKNOWN_TOPIC_OR_PARTITION before they reach the offset store, as Kafka refuses them.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::codec::Frame;
use super::dispatch::Dispatcher;
use super::Result;
use crate::group::{self as g, ErrorCode, MemberId};

/// An owned string as the wire library's string type.
fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// A member id from the wire.
fn member(id: &StrBytes) -> MemberId {
    MemberId::new(id.as_str())
}

/// The service's answer, or `fallback` (COORDINATOR_NOT_AVAILABLE) if the service is gone.
fn or_unavailable<T>(result: g::Result<T>, fallback: impl FnOnce() -> T) -> T {
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "group service unavailable to the Kafka listener");
        metrics::counter!("fleetmq_kafka_errors_total", "kind" => "groups").increment(1);
        fallback()
    })
}

/// JoinGroup; may wait for the rebalance to complete.
pub(super) async fn join(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: JoinGroupRequest = frame.decode()?;
    let v = frame.version;
    let member_id = member(&r.member_id);
    let req = g::JoinRequest {
        api_version: v,
        group_id: r.group_id.to_string(),
        member_id: member_id.clone(),
        group_instance_id: r.group_instance_id.as_deref().map(str::to_owned),
        client_id: frame.client_id(),
        session_timeout_ms: r.session_timeout_ms,
        rebalance_timeout_ms: if v >= 1 { r.rebalance_timeout_ms } else { -1 },
        protocol_type: r.protocol_type.to_string(),
        protocols: r.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
    };
    let resp = or_unavailable(d.groups.join(req).await, || {
        g::JoinResponse::error(member_id, ErrorCode::CoordinatorNotAvailable)
    });
    let members = resp
        .members
        .into_iter()
        .map(|m| JoinGroupResponseMember::default().with_member_id(s(m.member_id.0)).with_metadata(m.metadata))
        .collect();
    let mut body = JoinGroupResponse::default()
        .with_error_code(resp.error.code())
        .with_generation_id(resp.generation_id)
        .with_leader(s(resp.leader.0))
        .with_member_id(s(resp.member_id.0))
        .with_members(members);
    if v >= 7 {
        body.protocol_type = resp.protocol_type.map(s);
        body.protocol_name = resp.protocol_name.map(s);
    } else {
        body.protocol_name = Some(s(resp.protocol_name.unwrap_or_default()));
    }
    frame.respond(&body)
}

/// SyncGroup; a follower's answer waits for the leader's assignment.
pub(super) async fn sync(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: SyncGroupRequest = frame.decode()?;
    let req = g::SyncRequest {
        group_id: r.group_id.to_string(),
        generation_id: r.generation_id,
        member_id: member(&r.member_id),
        group_instance_id: r.group_instance_id.as_deref().map(str::to_owned),
        protocol_type: r.protocol_type.as_deref().map(str::to_owned),
        protocol_name: r.protocol_name.as_deref().map(str::to_owned),
        assignments: r.assignments.into_iter().map(|a| (member(&a.member_id), a.assignment)).collect(),
    };
    let resp = or_unavailable(d.groups.sync(req).await, || g::SyncResponse::error(ErrorCode::CoordinatorNotAvailable));
    let mut body = SyncGroupResponse::default().with_error_code(resp.error.code()).with_assignment(resp.assignment);
    if frame.version >= 5 {
        body.protocol_type = resp.protocol_type.map(s);
        body.protocol_name = resp.protocol_name.map(s);
    }
    frame.respond(&body)
}

/// Heartbeat.
pub(super) async fn heartbeat(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: HeartbeatRequest = frame.decode()?;
    let req = g::HeartbeatRequest {
        group_id: r.group_id.to_string(),
        generation_id: r.generation_id,
        member_id: member(&r.member_id),
        group_instance_id: r.group_instance_id.as_deref().map(str::to_owned),
    };
    let resp = or_unavailable(d.groups.heartbeat(req).await, || g::HeartbeatResponse {
        error: ErrorCode::CoordinatorNotAvailable,
    });
    frame.respond(&HeartbeatResponse::default().with_error_code(resp.error.code()))
}

/// LeaveGroup: one member (v0–2) or a batch (v3+).
pub(super) async fn leave(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: LeaveGroupRequest = frame.decode()?;
    let v = frame.version;
    let members = if v <= 2 {
        vec![g::LeavingMember { member_id: member(&r.member_id), group_instance_id: None }]
    } else {
        let leaving = r.members.iter().map(|m| g::LeavingMember {
            member_id: member(&m.member_id),
            group_instance_id: m.group_instance_id.as_deref().map(str::to_owned),
        });
        leaving.collect()
    };
    let req = g::LeaveRequest { group_id: r.group_id.to_string(), members };
    let resp = or_unavailable(d.groups.leave(req).await, || g::LeaveResponse {
        error: ErrorCode::CoordinatorNotAvailable,
        members: Vec::new(),
    });
    let body = if v <= 2 {
        LeaveGroupResponse::default().with_error_code(resp.legacy_error().code())
    } else {
        let members = resp.members.into_iter().map(|m| {
            MemberResponse::default()
                .with_member_id(s(m.member_id.0))
                .with_group_instance_id(m.group_instance_id.map(s))
                .with_error_code(m.error.code())
        });
        LeaveGroupResponse::default().with_error_code(resp.error.code()).with_members(members.collect())
    };
    frame.respond(&body)
}

/// OffsetCommit: partitions the log has go to the group service (membership check, then durable
/// write); the others are answered UNKNOWN_TOPIC_OR_PARTITION.
pub(super) async fn offset_commit(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: OffsetCommitRequest = frame.decode()?;
    let v = frame.version;
    let known: HashMap<String, u32> = d.log.topics().into_iter().map(|t| (t.name, t.partitions)).collect();
    let exists = |topic: &str, p: i32| known.get(topic).is_some_and(|n| u32::try_from(p).is_ok_and(|p| p < *n));
    let topics = r.topics.iter().filter_map(|t| {
        let partitions: Vec<g::CommitPartition> = t
            .partitions
            .iter()
            .filter(|p| exists(&t.name, p.partition_index))
            .map(|p| g::CommitPartition {
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if v >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: p.committed_metadata.as_deref().map(str::to_owned),
            })
            .collect();
        (!partitions.is_empty()).then(|| g::CommitTopic { name: t.name.to_string(), partitions })
    });
    let req = g::CommitRequest {
        group_id: r.group_id.to_string(),
        generation_id: r.generation_id_or_member_epoch,
        member_id: member(&r.member_id),
        group_instance_id: r.group_instance_id.as_deref().map(str::to_owned),
        topics: topics.collect(),
    };
    let resp = if req.topics.is_empty() {
        g::CommitResponse { topics: Vec::new() }
    } else {
        or_unavailable(d.groups.commit_offsets(req.clone()).await, || {
            g::CommitResponse::all(&req, ErrorCode::CoordinatorNotAvailable)
        })
    };
    let outcome: HashMap<(&str, i32), i16> = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| ((t.name.as_str(), p.partition), p.error.code())))
        .collect();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let topics = r.topics.iter().map(|t| {
        let partitions = t.partitions.iter().map(|p| {
            let code = if exists(&t.name, p.partition_index) {
                outcome.get(&(t.name.as_str(), p.partition_index)).copied().unwrap_or(unknown)
            } else {
                unknown
            };
            OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
        });
        OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
    });
    frame.respond(&OffsetCommitResponse::default().with_topics(topics.collect()))
}

/// Committed offsets of one group; `topics == None` asks for all of them.
async fn fetch_group(d: &Dispatcher, group_id: &GroupId, topics: Option<Vec<g::FetchTopic>>) -> g::FetchResponse {
    let req = g::FetchRequest { group_id: group_id.to_string(), topics };
    or_unavailable(d.groups.fetch_offsets(req).await, || g::FetchResponse {
        error: ErrorCode::CoordinatorNotAvailable,
        topics: Vec::new(),
    })
}

/// OffsetFetch: one group (v1–7) or a batch of groups (v8).
pub(super) async fn offset_fetch(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let r: OffsetFetchRequest = frame.decode()?;
    let v = frame.version;
    if v >= 8 {
        let mut groups = Vec::with_capacity(r.groups.len());
        for group in r.groups {
            let wanted = group.topics.map(|ts| {
                let topic = |t: kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics| {
                    g::FetchTopic { name: t.name.to_string(), partitions: t.partition_indexes }
                };
                ts.into_iter().map(topic).collect()
            });
            let resp = fetch_group(d, &group.group_id, wanted).await;
            let topics = resp.topics.into_iter().map(|t| {
                let partitions = t.partitions.into_iter().map(|p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p.partition)
                        .with_committed_offset(p.offset)
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(p.metadata.map(s))
                        .with_error_code(p.error.code())
                });
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(s(t.name)))
                    .with_partitions(partitions.collect())
            });
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_topics(topics.collect())
                    .with_error_code(resp.error.code()),
            );
        }
        return frame.respond(&OffsetFetchResponse::default().with_groups(groups));
    }
    let wanted: Option<Vec<g::FetchTopic>> = r.topics.map(|ts| {
        ts.into_iter().map(|t| g::FetchTopic { name: t.name.to_string(), partitions: t.partition_indexes }).collect()
    });
    let mut resp = fetch_group(d, &r.group_id, wanted.clone()).await;
    if v < 2 && !resp.error.is_ok() {
        // v1 has no group-level error: Kafka reports it on every requested partition.
        resp.topics = wanted.unwrap_or_default().into_iter().map(|t| failed_topic(t, resp.error)).collect();
    }
    let topics = resp.topics.into_iter().map(|t| {
        let partitions = t.partitions.into_iter().map(|p| {
            let mut part = OffsetFetchResponsePartition::default()
                .with_partition_index(p.partition)
                .with_committed_offset(p.offset)
                .with_metadata(p.metadata.map(s))
                .with_error_code(p.error.code());
            if v >= 5 {
                part.committed_leader_epoch = p.leader_epoch;
            }
            part
        });
        OffsetFetchResponseTopic::default().with_name(TopicName(s(t.name))).with_partitions(partitions.collect())
    });
    let mut body = OffsetFetchResponse::default().with_topics(topics.collect());
    if v >= 2 {
        body.error_code = resp.error.code();
    }
    frame.respond(&body)
}

/// Every partition of `topic` answered with `error` and no offset.
fn failed_topic(topic: g::FetchTopic, error: ErrorCode) -> g::FetchTopicResult {
    let partitions = topic.partitions.into_iter().map(|partition| g::FetchPartitionResult {
        partition,
        offset: -1,
        leader_epoch: -1,
        metadata: None,
        error,
    });
    g::FetchTopicResult { name: topic.name, partitions: partitions.collect() }
}
