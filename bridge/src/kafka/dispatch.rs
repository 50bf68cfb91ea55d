//! [`Dispatcher`]: one request frame in, one encoded response out, with no socket in sight.
//!
//! It owns the routing and the version policy: [`SUPPORTED_APIS`] is the single table of what is
//! advertised. Produce and CreateTopics are answered with INVALID_REQUEST (the listener is
//! read-only); any other API outside the table, or a version outside its range, is refused,
//! which closes the connection as Kafka does. Invariant: every answer is encoded at the request's
//! own version (except ApiVersions' unsupported-version answer, which Kafka defines as v0), and
//! every log call that touches files goes through [`blocking`].

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::codec::{self, Frame};
use super::{fetch, groups, metadata, Error, Result};
use crate::group::GroupService;
use crate::log::Log;

/// The APIs FleetMQ serves as `(api, min version, max version)`; ApiVersions advertises exactly
/// these. Each range lies within what `kafka-protocol` implements and reaches down to what
/// librdkafka 2.x and kafka-python negotiate. Fetch stops at v12 and Metadata at v9, the last
/// versions that name topics rather than topic ids; OffsetFetch v8 is the batched-groups form.
/// Produce is advertised only because librdkafka enables message format v2 (and zstd) only for
/// brokers listing Produce v3 (v7); every Produce is refused with INVALID_REQUEST.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
];

/// Versions of APIs FleetMQ refuses with an error response instead of closing the connection.
const REFUSED_APIS: &[(ApiKey, i16, i16)] = &[(ApiKey::Produce, 3, 12), (ApiKey::CreateTopics, 2, 7)];

/// Why produce and topic creation are refused, in the responses that can carry a message.
const READ_ONLY: &str = "FleetMQ's Kafka listener is read-only: topics are written by the MQTT bridge";

/// The broker this listener presents itself as: the only node of its cluster, leader of every
/// partition and coordinator of every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Broker id.
    pub id: i32,
    /// Host clients should connect to.
    pub host: String,
    /// Port clients should connect to.
    pub port: i32,
}

/// Answers Kafka requests from a [`Log`] and a [`GroupService`]. Cheap to clone (handles only);
/// the listener makes one per connection so each can advertise the address its client reached.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub(super) log: Log,
    pub(super) groups: GroupService,
    pub(super) node: Node,
    /// Cap on the bytes of one Fetch response ([`super::KafkaConfig::max_fetch_bytes`]).
    pub(super) max_fetch_bytes: usize,
}

impl Dispatcher {
    /// A dispatcher serving `log` and `groups` as broker `node`, with Fetch responses capped at
    /// `max_fetch_bytes`.
    pub fn new(log: Log, groups: GroupService, node: Node, max_fetch_bytes: usize) -> Self {
        Dispatcher { log, groups, node, max_fetch_bytes }
    }

    /// Handles one request frame (header and body, without the length prefix) and returns the
    /// encoded response (header and body, without the length prefix). An `Err` means the request
    /// cannot be answered and the connection must be closed, as Kafka does for malformed requests,
    /// unknown APIs and unsupported versions.
    pub async fn handle(&self, frame: Bytes) -> Result<Bytes> {
        let frame = codec::parse(frame)?;
        metrics::counter!("fleetmq_kafka_requests_total", "api" => label(frame.api)).increment(1);
        if frame.api == ApiKey::ApiVersions {
            return metadata::api_versions(&frame);
        }
        let (api, version) = (frame.api, frame.version);
        match range(SUPPORTED_APIS, api) {
            Some((min, max)) if (min..=max).contains(&version) => {}
            Some(_) => return Err(Error::UnsupportedVersion { api, version }),
            None => return refuse(&frame),
        }
        match api {
            ApiKey::Metadata => metadata::metadata(self, &frame).await,
            ApiKey::ListOffsets => metadata::list_offsets(self, &frame).await,
            ApiKey::FindCoordinator => metadata::find_coordinator(self, &frame),
            ApiKey::Fetch => fetch::fetch(self, &frame).await,
            ApiKey::JoinGroup => groups::join(self, &frame).await,
            ApiKey::SyncGroup => groups::sync(self, &frame).await,
            ApiKey::Heartbeat => groups::heartbeat(self, &frame).await,
            ApiKey::LeaveGroup => groups::leave(self, &frame).await,
            ApiKey::OffsetCommit => groups::offset_commit(self, &frame).await,
            ApiKey::OffsetFetch => groups::offset_fetch(self, &frame).await,
            ApiKey::Produce => refuse(&frame),
            _ => Err(Error::UnsupportedApi { api, version }),
        }
    }
}

/// The `(min, max)` of `api` in `table`.
pub(super) fn range(table: &[(ApiKey, i16, i16)], api: ApiKey) -> Option<(i16, i16)> {
    table.iter().find(|(a, _, _)| *a == api).map(|(_, min, max)| (*min, *max))
}

/// Runs blocking log work on Tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Task(e.to_string()))
}

/// The Kafka error code for a failed log call: unknown topic or partition, offset out of range,
/// or a storage error (logged, since it needs an operator).
pub(super) fn log_error_code(error: &crate::log::Error) -> i16 {
    use crate::log::Error as E;
    match error {
        E::UnknownTopic(_) | E::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition.code(),
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        e => {
            tracing::warn!(error = %e, "log read failed while serving a Kafka request");
            metrics::counter!("fleetmq_kafka_errors_total", "kind" => "storage").increment(1);
            ResponseError::KafkaStorageError.code()
        }
    }
}

/// A Kafka partition index as a log partition number; negative indexes name no partition.
pub(super) fn partition_number(index: i32) -> Option<u32> {
    u32::try_from(index).ok()
}

/// Answers Produce and CreateTopics with INVALID_REQUEST per topic or partition; any other API
/// is refused. Produce with `acks = 0` expects no response, so it is
/// refused too: closing the connection is how Kafka tells such a producer it failed.
fn refuse(frame: &Frame) -> Result<Bytes> {
    let (api, version) = (frame.api, frame.version);
    let refused = || Error::UnsupportedApi { api, version };
    if !range(REFUSED_APIS, api).is_some_and(|(min, max)| (min..=max).contains(&version)) {
        return Err(refused());
    }
    let code = ResponseError::InvalidRequest.code();
    let message = Some(StrBytes::from_static_str(READ_ONLY));
    match api {
        ApiKey::Produce => {
            let req: ProduceRequest = frame.decode()?;
            if req.acks == 0 {
                return Err(refused());
            }
            let topics = req.topic_data.into_iter().map(|t| {
                let partitions = t.partition_data.iter().map(|p| {
                    let r = PartitionProduceResponse::default().with_index(p.index).with_error_code(code);
                    if version >= 8 {
                        r.with_error_message(message.clone())
                    } else {
                        r
                    }
                });
                TopicProduceResponse::default().with_name(t.name).with_partition_responses(partitions.collect())
            });
            frame.respond(&ProduceResponse::default().with_responses(topics.collect()))
        }
        ApiKey::CreateTopics => {
            let req: CreateTopicsRequest = frame.decode()?;
            let topics = req.topics.into_iter().map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(code)
                    .with_error_message(message.clone())
            });
            frame.respond(&CreateTopicsResponse::default().with_topics(topics.collect()))
        }
        _ => Err(refused()),
    }
}

/// A fixed metric label per API, so request counters have bounded cardinality.
fn label(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Fetch => "Fetch",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::Produce => "Produce",
        ApiKey::CreateTopics => "CreateTopics",
        _ => "other",
    }
}
