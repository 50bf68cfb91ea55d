//! Discovery and offset lookup: ApiVersions, Metadata, FindCoordinator and ListOffsets.
//!
//! Invariants: this node is the only broker, leads every partition at leader epoch
//! [`PARTITION_LEADER_EPOCH`] (the epoch stamped into every stored batch) and coordinates every
//! group; topics are reported as the log holds them and never created on request; fields are set
//! only in the versions that carry them, since the encoder rejects values a version cannot hold.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::codec::{encode_response, Frame};
use super::dispatch::{blocking, log_error_code, partition_number, range, Dispatcher, SUPPORTED_APIS};
use super::Result;
use crate::log::{Log, TopicInfo, PARTITION_LEADER_EPOCH};

/// The cluster id reported in Metadata v2+; clients only compare it between brokers.
const CLUSTER_ID: &str = "fleetmq";

/// ListOffsets timestamp asking for the high watermark.
const LATEST: i64 = -1;
/// ListOffsets timestamp asking for the log start offset.
const EARLIEST: i64 = -2;

/// ApiVersions: the [`SUPPORTED_APIS`] table. A version this listener does not know is answered,
/// as Kafka specifies, with UNSUPPORTED_VERSION in a v0 body listing the ApiVersions range, so
/// the client retries with a version both sides speak.
pub(super) fn api_versions(frame: &Frame) -> Result<Bytes> {
    let (min, max) = range(SUPPORTED_APIS, ApiKey::ApiVersions).unwrap_or((0, 0));
    let entry = |(api, min, max): (ApiKey, i16, i16)| {
        ApiVersion::default().with_api_key(api as i16).with_min_version(min).with_max_version(max)
    };
    if !(min..=max).contains(&frame.version) {
        let body = ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(vec![entry((ApiKey::ApiVersions, min, max))]);
        return encode_response(ApiKey::ApiVersions, 0, frame.correlation_id(), &body);
    }
    let _client: ApiVersionsRequest = frame.decode()?;
    let body = ApiVersionsResponse::default().with_api_keys(SUPPORTED_APIS.iter().copied().map(entry).collect());
    frame.respond(&body)
}

/// Metadata: this broker, and the requested topics (all of them for a null list, or an empty v0
/// list). Unknown topics get UNKNOWN_TOPIC_OR_PARTITION; nothing is auto-created.
pub(super) async fn metadata(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let req: MetadataRequest = frame.decode()?;
    let v = frame.version;
    let all = d.log.topics();
    let wanted: Vec<std::result::Result<TopicInfo, TopicName>> = match req.topics {
        None => all.into_iter().map(Ok).collect(),
        Some(topics) if topics.is_empty() && v == 0 => all.into_iter().map(Ok).collect(),
        Some(topics) => topics
            .into_iter()
            .filter_map(|t| t.name)
            .map(|name| all.iter().find(|t| t.name == name.as_str()).cloned().ok_or(name))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .map(|t| match t {
            Ok(info) => topic_metadata(d, &info, v),
            Err(unknown) => MetadataResponseTopic::default()
                .with_name(Some(unknown))
                .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
        })
        .collect();
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(d.node.id))
        .with_host(StrBytes::from_string(d.node.host.clone()))
        .with_port(d.node.port);
    let mut body = MetadataResponse::default().with_brokers(vec![broker]).with_topics(topics);
    if v >= 1 {
        body.controller_id = BrokerId(d.node.id);
    }
    if v >= 2 {
        body.cluster_id = Some(StrBytes::from_static_str(CLUSTER_ID));
    }
    frame.respond(&body)
}

/// One existing topic of a Metadata response: every partition led by this node.
fn topic_metadata(d: &Dispatcher, topic: &TopicInfo, v: i16) -> MetadataResponseTopic {
    let name = Some(TopicName(StrBytes::from_string(topic.name.clone())));
    let node = BrokerId(d.node.id);
    let partitions = (0..topic.partitions)
        .filter_map(|p| i32::try_from(p).ok())
        .map(|p| {
            let mut part = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if v >= 7 {
                part.leader_epoch = PARTITION_LEADER_EPOCH;
            }
            part
        })
        .collect();
    MetadataResponseTopic::default().with_name(name).with_partitions(partitions)
}

/// FindCoordinator: this node for consumer groups (key type 0), one key (v0–3) or a batch (v4+).
/// Other key types (transactions, share groups) get COORDINATOR_NOT_AVAILABLE.
pub(super) fn find_coordinator(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let req: FindCoordinatorRequest = frame.decode()?;
    let v = frame.version;
    let error = if req.key_type == 0 { 0 } else { ResponseError::CoordinatorNotAvailable.code() };
    let (node, host, port) = if error == 0 {
        (BrokerId(d.node.id), StrBytes::from_string(d.node.host.clone()), d.node.port)
    } else {
        (BrokerId(-1), StrBytes::default(), -1)
    };
    let message = (error != 0).then(|| StrBytes::from_static_str("FleetMQ coordinates consumer groups only"));
    let body = if v >= 4 {
        let coordinators = req.coordinator_keys.into_iter().map(|key| {
            Coordinator::default()
                .with_key(key)
                .with_node_id(node)
                .with_host(host.clone())
                .with_port(port)
                .with_error_code(error)
                .with_error_message(message.clone())
        });
        FindCoordinatorResponse::default().with_coordinators(coordinators.collect())
    } else {
        let body = FindCoordinatorResponse::default().with_error_code(error).with_node_id(node).with_host(host);
        let body = body.with_port(port);
        if v >= 1 {
            body.with_error_message(message)
        } else {
            body
        }
    };
    frame.respond(&body)
}

/// ListOffsets: -2 is the log start offset, -1 the high watermark, anything else the first offset
/// whose timestamp is at least that value (offset and timestamp -1 when every record is older).
pub(super) async fn list_offsets(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let req: ListOffsetsRequest = frame.decode()?;
    let v = frame.version;
    let log = d.log.clone();
    let topics = blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let partitions =
                    t.partitions.iter().map(|p| lookup(&log, &t.name, p.partition_index, p.timestamp, v)).collect();
                ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
            })
            .collect()
    })
    .await?;
    frame.respond(&ListOffsetsResponse::default().with_topics(topics))
}

/// One partition of a ListOffsets response (blocking).
fn lookup(log: &Log, topic: &TopicName, index: i32, timestamp: i64, v: i16) -> ListOffsetsPartitionResponse {
    let resp = ListOffsetsPartitionResponse::default().with_partition_index(index);
    let Some(partition) = partition_number(index) else {
        return resp.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let found = match timestamp {
        EARLIEST => log.offsets(topic, partition).map(|o| Some((o.log_start_offset, -1))),
        LATEST => log.offsets(topic, partition).map(|o| Some((o.high_watermark, -1))),
        ts => log.offset_for_timestamp(topic, partition, ts),
    };
    match found {
        Ok(Some((offset, ts))) => {
            let resp = resp.with_offset(offset).with_timestamp(ts);
            if v >= 4 {
                resp.with_leader_epoch(PARTITION_LEADER_EPOCH)
            } else {
                resp
            }
        }
        Ok(None) => resp,
        Err(e) => resp.with_error_code(log_error_code(&e)),
    }
}
