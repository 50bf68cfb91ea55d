//! Unit tests of the Kafka listener, driven through [`Dispatcher::handle`] with requests encoded
//! by `kafka-protocol` exactly as a client would send them. Shared fixtures live here:
//! discovery and bad input are tested in this file, fetching, groups, the array guard and the
//! socket layer in their own files.

mod fetch;
mod groups;
mod guard;
mod net;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tempfile::TempDir;

use super::*;
use crate::group::{GroupConfig, GroupService, OffsetStore, OffsetStoreConfig};
use crate::log::{Log, LogConfig, Record};

pub(super) const TOPIC: &str = "telemetry";
pub(super) const NODE: i32 = 7;

/// A log with [`TOPIC`] (3 partitions, empty), a group service and a dispatcher over both.
pub(super) struct Fixture {
    /// Keeps the log and offset directories alive.
    pub _dir: TempDir,
    pub log: Log,
    pub dispatcher: Dispatcher,
}

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(LogConfig { fsync: false, ..LogConfig::new(dir.path().join("log")) }).unwrap();
    log.ensure_topic(TOPIC, 3).unwrap();
    let store = OffsetStore::open(dir.path().join("offsets"), OffsetStoreConfig::default()).unwrap();
    let config = GroupConfig { initial_rebalance_delay_ms: 20, tick_interval_ms: 5, ..GroupConfig::default() };
    let groups = GroupService::start(config, store).unwrap();
    let node = Node { id: NODE, host: "bridge.local".into(), port: 9092 };
    let dispatcher = Dispatcher::new(log.clone(), groups, node, crate::kafka::KafkaConfig::default().max_fetch_bytes);
    Fixture { _dir: dir, log, dispatcher }
}

/// A record with key, value and one header.
pub(super) fn rec(ts: i64, value: &str) -> Record {
    Record {
        timestamp_ms: ts,
        key: Some(Bytes::from(format!("k-{value}"))),
        value: Some(Bytes::from(value.to_owned())),
        headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
    }
}

/// Encodes a request frame (header and body, no length prefix) as a client would.
pub(super) fn frame<R: Request>(version: i16, req: &R) -> Bytes {
    let api = ApiKey::try_from(R::KEY).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("unit-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, api.request_header_version(version)).unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.freeze()
}

/// Decodes a response frame for `R` at `version`, checking the correlation id.
pub(super) fn decode<R: Request>(version: i16, mut response: Bytes) -> R::Response {
    let api = ApiKey::try_from(R::KEY).unwrap();
    let header = ResponseHeader::decode(&mut response, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 42);
    let body = R::Response::decode(&mut response, version).unwrap();
    assert!(response.is_empty(), "trailing bytes in the response");
    body
}

/// Sends `req` through the dispatcher and decodes the answer.
pub(super) async fn call<R: Request>(d: &Dispatcher, version: i16, req: &R) -> R::Response {
    let response = d.handle(frame(version, req)).await.unwrap();
    decode::<R>(version, response)
}

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

#[tokio::test]
async fn api_versions_advertises_exactly_the_supported_ranges() {
    let f = fixture();
    for version in [0, 1, 2, 3] {
        let mut req = ApiVersionsRequest::default();
        if version >= 3 {
            req = req.with_client_software_name("kcat".into()).with_client_software_version("1.7".into());
        }
        let resp = call(&f.dispatcher, version, &req).await;
        assert_eq!(resp.error_code, 0);
        let got: Vec<(i16, i16, i16)> =
            resp.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        let want: Vec<(i16, i16, i16)> = SUPPORTED_APIS.iter().map(|(a, min, max)| (*a as i16, *min, *max)).collect();
        assert_eq!(got, want, "v{version}");
    }
}

#[tokio::test]
async fn api_versions_from_the_future_gets_unsupported_version_in_a_v0_body() {
    let f = fixture();
    // A v9 request the crate cannot encode: header v2, then an arbitrary body.
    let mut buf = BytesMut::new();
    let header = RequestHeader::default().with_request_api_key(18).with_request_api_version(9).with_correlation_id(42);
    header.encode(&mut buf, 2).unwrap();
    buf.extend_from_slice(b"\x05hello\x00");
    let mut response = f.dispatcher.handle(buf.freeze()).await.unwrap();
    assert_eq!(ResponseHeader::decode(&mut response, 0).unwrap().correlation_id, 42);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, ResponseError::UnsupportedVersion.code());
    let keys: Vec<(i16, i16, i16)> = body.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
    assert_eq!(keys, vec![(18, 0, 3)], "the ApiVersions range, so the client can retry lower");
}

fn topic_names(resp: &MetadataResponse) -> Vec<(String, i16, usize)> {
    let name = |t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic| {
        t.name.as_ref().map(|n| n.to_string()).unwrap_or_default()
    };
    resp.topics.iter().map(|t| (name(t), t.error_code, t.partitions.len())).collect()
}

#[tokio::test]
async fn metadata_reports_this_node_and_the_log_topics() {
    let f = fixture();
    f.log.ensure_topic("alerts", 1).unwrap();
    let all = vec![("alerts".to_string(), 0, 1), (TOPIC.to_string(), 0, 3)];
    // v0: an empty list means every topic.
    let v0 = call(&f.dispatcher, 0, &MetadataRequest::default().with_topics(Some(Vec::new()))).await;
    assert_eq!(topic_names(&v0), all);
    // v1+: null means every topic, an empty list none.
    let v1 = call(&f.dispatcher, 1, &MetadataRequest::default().with_topics(None)).await;
    assert_eq!(topic_names(&v1), all);
    let none = call(&f.dispatcher, 4, &MetadataRequest::default().with_topics(Some(Vec::new()))).await;
    assert!(none.topics.is_empty());

    let wanted = vec![
        MetadataRequestTopic::default().with_name(Some(name(TOPIC))),
        MetadataRequestTopic::default().with_name(Some(name("missing"))),
    ];
    let req = MetadataRequest::default().with_topics(Some(wanted)).with_allow_auto_topic_creation(true);
    let v9 = call(&f.dispatcher, 9, &req).await;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(topic_names(&v9), vec![(TOPIC.to_string(), 0, 3), ("missing".to_string(), unknown, 0)]);
    assert_eq!(f.log.topics().len(), 2, "nothing auto-created");
    let broker = &v9.brokers[0];
    assert_eq!((broker.node_id.0, broker.host.as_str(), broker.port), (NODE, "bridge.local", 9092));
    assert_eq!(v9.controller_id.0, NODE);
    for (i, p) in v9.topics[0].partitions.iter().enumerate() {
        assert_eq!(p.partition_index, i as i32);
        assert_eq!(p.leader_id.0, NODE);
        assert_eq!(p.leader_epoch, crate::log::PARTITION_LEADER_EPOCH);
        assert_eq!(p.replica_nodes, vec![p.leader_id]);
    }
}

#[tokio::test]
async fn bad_frames_are_refused_without_panicking() {
    let f = fixture();
    let d = &f.dispatcher;
    assert!(matches!(d.handle(Bytes::from_static(b"\x00")).await, Err(Error::Malformed { .. })));
    assert!(matches!(d.handle(Bytes::from_static(b"\x03\xe7\x00\x00")).await, Err(Error::UnknownApiKey(999))));
    // A header cut inside the client id.
    let header = Bytes::from_static(b"\x00\x03\x00\x01\x00\x00\x00\x2a\x00\x09unit");
    assert!(matches!(d.handle(header).await, Err(Error::Malformed { .. })));
    // A valid header with the body cut short.
    let full = frame(11, &FetchRequest::default());
    assert!(matches!(d.handle(full.slice(..full.len() - 3)).await, Err(Error::Malformed { .. })));
    // Versions outside the advertised ranges.
    let fetch13 = frame(13, &FetchRequest::default());
    assert!(matches!(d.handle(fetch13).await, Err(Error::UnsupportedVersion { api: ApiKey::Fetch, version: 13 })));
    let metadata10 = frame(10, &MetadataRequest::default());
    assert!(matches!(d.handle(metadata10).await, Err(Error::UnsupportedVersion { .. })));
    // An API FleetMQ neither serves nor answers.
    let init = frame(4, &kafka_protocol::messages::InitProducerIdRequest::default());
    assert!(matches!(d.handle(init).await, Err(Error::UnsupportedApi { api: ApiKey::InitProducerId, .. })));
}

#[tokio::test]
async fn hostile_array_lengths_are_rejected_before_decoding() {
    let f = fixture();
    let d = &f.dispatcher;
    // Metadata v1 claiming 2^31-1 topics in a 14-byte frame: decoding it would try to reserve
    // hundreds of gigabytes and abort the process.
    let mut huge = BytesMut::from(&frame(1, &MetadataRequest::default().with_topics(Some(Vec::new())))[..]);
    let at = huge.len() - 4;
    huge[at..].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(d.handle(huge.freeze()).await, Err(Error::Malformed { .. })));
    // Fetch v12 (compact arrays) claiming 2^32-2 topics.
    let mut compact = BytesMut::from(&frame(12, &FetchRequest::default())[..]);
    let topics_at = compact.len() - 4; // topics, forgotten topics, rack id, tags: one byte each
    compact.truncate(topics_at);
    compact.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x01, 0x00]);
    assert!(matches!(d.handle(compact.freeze()).await, Err(Error::Malformed { .. })));
}

#[tokio::test]
async fn produce_and_create_topics_are_refused_with_errors() {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{CreateTopicsRequest, ProduceRequest};
    let f = fixture();
    let data = TopicProduceData::default()
        .with_name(name(TOPIC))
        .with_partition_data(vec![PartitionProduceData::default().with_index(1).with_records(Some(Bytes::new()))]);
    let produce = ProduceRequest::default().with_acks(-1).with_topic_data(vec![data]);
    let resp = call(&f.dispatcher, 9, &produce).await;
    let part = &resp.responses[0].partition_responses[0];
    assert_eq!((part.index, part.error_code), (1, ResponseError::InvalidRequest.code()));
    assert!(part.error_message.as_deref().is_some_and(|m| m.contains("read-only")));
    let fire_and_forget = frame(9, &produce.with_acks(0));
    assert!(f.dispatcher.handle(fire_and_forget).await.is_err(), "acks=0 gets no response: close");

    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default().with_name(name("new"))]);
    let resp = call(&f.dispatcher, 5, &create).await;
    assert_eq!(resp.topics[0].error_code, ResponseError::InvalidRequest.code());
    assert_eq!(f.log.topics().len(), 1);
}
