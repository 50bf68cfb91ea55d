//! ListOffsets and Fetch through the dispatcher: offsets by sentinel and by time, raw stored
//! bytes from an offset, errors per partition, the response byte budget and the long poll.

use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{FetchResponse, ListOffsetsRequest};

use super::*;
use crate::log::decode_batches;

/// Partition 0 gets offsets 0..3 (times 1000, 2000, 3000) in one batch, then 3..5 (4000, 5000).
fn fill(log: &Log) {
    log.append(TOPIC, 0, &[rec(1000, "a"), rec(2000, "b"), rec(3000, "c")], None).unwrap();
    log.append(TOPIC, 0, &[rec(4000, "d"), rec(5000, "e")], None).unwrap();
}

async fn list_offset(d: &Dispatcher, version: i16, partition: i32, timestamp: i64) -> (i16, i64, i64, i32) {
    let part = ListOffsetsPartition::default().with_partition_index(partition).with_timestamp(timestamp);
    let topic = ListOffsetsTopic::default().with_name(name(TOPIC)).with_partitions(vec![part]);
    let resp =
        call(d, version, &ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![topic])).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp, p.leader_epoch)
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_time() {
    let f = fixture();
    fill(&f.log);
    let d = &f.dispatcher;
    assert_eq!(list_offset(d, 1, 0, -2).await, (0, 0, -1, -1), "earliest");
    assert_eq!(list_offset(d, 6, 0, -1).await, (0, 5, -1, 0), "latest, with leader epoch from v4");
    assert_eq!(list_offset(d, 4, 0, 2500).await, (0, 2, 3000, 0), "first record at or after 2500");
    assert_eq!(list_offset(d, 4, 0, 4000).await, (0, 3, 4000, 0), "exact time in the second batch");
    assert_eq!(list_offset(d, 2, 0, 9000).await, (0, -1, -1, -1), "every record older: offset -1");
    assert_eq!(list_offset(d, 2, 1, -1).await, (0, 0, -1, -1), "empty partition");
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(list_offset(d, 2, 3, -1).await.0, unknown);
    assert_eq!(list_offset(d, 2, -1, -1).await.0, unknown);
}

pub(super) fn fetch_req(parts: &[(i32, i64)], max_wait_ms: i32, min_bytes: i32) -> FetchRequest {
    let partitions = parts
        .iter()
        .map(|(p, offset)| {
            FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20)
        })
        .collect();
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default().with_topic(name(TOPIC)).with_partitions(partitions)])
}

/// (error, high watermark, log start, records) of the response's partitions in order.
fn parts(resp: &FetchResponse) -> Vec<(i16, i64, i64, Bytes)> {
    let partitions = resp.responses.iter().flat_map(|t| t.partitions.iter());
    partitions.map(|p| (p.error_code, p.high_watermark, p.log_start_offset, p.records.clone().unwrap())).collect()
}

#[tokio::test]
async fn fetch_returns_the_stored_batches_from_an_offset() {
    let f = fixture();
    fill(&f.log);
    for version in [4, 11, 12] {
        let resp = call(&f.dispatcher, version, &fetch_req(&[(0, 1)], 0, 1)).await;
        let got = parts(&resp);
        let stored = f.log.read(TOPIC, 0, 1, 1 << 20).unwrap().records;
        assert_eq!(got[0].0, 0);
        assert_eq!(got[0].3, stored, "v{version}: the raw stored bytes");
        assert_eq!(got[0].1, 5);
        assert_eq!(got[0].2, if version >= 5 { 0 } else { -1 }, "log start offset from v5");
        assert_eq!(resp.responses[0].partitions[0].last_stable_offset, 5);
        let offsets: Vec<i64> = decode_batches(&got[0].3).unwrap().iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3, 4], "whole batches; the client skips offset 0");
    }
    let resp = call(&f.dispatcher, 12, &fetch_req(&[(0, 3)], 0, 1)).await;
    let offsets: Vec<i64> = decode_batches(&parts(&resp)[0].3).unwrap().iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![3, 4], "from the batch holding offset 3");
}

#[tokio::test]
async fn fetch_reports_errors_per_partition() {
    let f = fixture();
    fill(&f.log);
    let resp = call(&f.dispatcher, 11, &fetch_req(&[(0, 5), (0, 6), (1, 0), (3, 0), (-1, 0)], 0, 0)).await;
    let got = parts(&resp);
    let out_of_range = ResponseError::OffsetOutOfRange.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    let summary: Vec<(i16, i64, bool)> = got.iter().map(|g| (g.0, g.1, g.3.is_empty())).collect();
    assert_eq!(
        summary,
        vec![(0, 5, true), (out_of_range, 5, true), (0, 0, true), (unknown, -1, true), (unknown, -1, true)]
    );

    let mut missing = fetch_req(&[(0, 0)], 0, 0);
    missing.topics[0].topic = name("missing");
    assert_eq!(parts(&call(&f.dispatcher, 12, &missing).await)[0].0, unknown);
}

#[tokio::test]
async fn fetch_honours_the_response_byte_budget_but_returns_at_least_one_batch() {
    let f = fixture();
    fill(&f.log);
    f.log.append(TOPIC, 1, &[rec(1, "x")], None).unwrap();
    let mut req = fetch_req(&[(0, 0), (1, 0)], 0, 1);
    req.max_bytes = 1;
    let got = parts(&call(&f.dispatcher, 11, &req).await);
    let first_batch = f.log.read(TOPIC, 0, 0, 1).unwrap().records;
    assert_eq!(got[0].3, first_batch, "the first batch, although bigger than max_bytes");
    assert!(got[1].3.is_empty(), "nothing more once the budget is spent");
    assert_eq!(got[1].1, 1, "but the partition's high watermark is still reported");
}

#[tokio::test]
async fn the_listener_caps_what_a_client_may_ask_one_fetch_for() {
    let f = fixture();
    fill(&f.log);
    f.log.append(TOPIC, 1, &[rec(1, "x")], None).unwrap();
    let node = Node { id: NODE, host: "bridge.local".into(), port: 9092 };
    let capped = Dispatcher::new(f.log.clone(), f.dispatcher.groups.clone(), node, 1);
    let mut req = fetch_req(&[(0, 0), (1, 0)], 0, 1);
    req.max_bytes = i32::MAX;
    let got = parts(&call(&capped, 11, &req).await);
    assert_eq!(got[0].3, f.log.read(TOPIC, 0, 0, 1).unwrap().records, "one batch still goes out");
    assert!(got[1].3.is_empty(), "the client's i32::MAX is held to the listener's cap");
}

#[tokio::test]
async fn fetch_long_poll_returns_when_data_is_appended() {
    let f = fixture();
    let d = f.dispatcher.clone();
    let waiting = tokio::spawn(async move { call(&d, 12, &fetch_req(&[(2, 0)], 30_000, 1)).await });
    // The poll must still be waiting: nothing has been appended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "returned before min_bytes were available");
    f.log.append(TOPIC, 2, &[rec(1, "late")], None).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("woken by the append").unwrap();
    let got = parts(&resp);
    assert_eq!(got[0].1, 1);
    assert_eq!(decode_batches(&got[0].3).unwrap()[0].value.as_deref(), Some(&b"late"[..]));
}

#[tokio::test(start_paused = true)]
async fn fetch_long_poll_gives_up_after_max_wait() {
    let f = fixture();
    let d = f.dispatcher.clone();
    let waiting = tokio::spawn(async move { call(&d, 12, &fetch_req(&[(2, 0)], 5_000, 1)).await });
    // The clock is paused and jumps to the next timer: the test's own, just before max_wait.
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    assert!(!waiting.is_finished(), "returned before max_wait_ms with nothing to return");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(waiting.is_finished(), "still waiting past max_wait_ms");
    let got = parts(&waiting.await.unwrap());
    assert_eq!((got[0].0, got[0].1, got[0].3.is_empty()), (0, 0, true), "an empty answer, no error");
}

#[tokio::test]
async fn fetch_sessions_are_not_kept() {
    let f = fixture();
    let mut req = fetch_req(&[(0, 0)], 0, 0);
    req.session_id = 12;
    req.session_epoch = 3;
    let resp = call(&f.dispatcher, 12, &req).await;
    assert_eq!(resp.error_code, ResponseError::FetchSessionIdNotFound.code());
    let full = call(&f.dispatcher, 12, &fetch_req(&[(0, 0)], 0, 0)).await;
    assert_eq!((full.error_code, full.session_id), (0, 0), "a full response without a session");
}
