//! Fetch: raw stored record batches for each requested partition, with Kafka's long poll.
//!
//! Semantics kept from Kafka:
//! - Records are the stored bytes, whole batches from the one containing the fetch offset; the
//!   client skips records below its offset.
//! - `partition_max_bytes` bounds each partition and `max_bytes` the whole response, except that
//!   the first non-empty partition always gets at least one batch (KIP-74), so an oversized batch
//!   cannot stall a consumer.
//! - High watermark and last stable offset are both the high watermark (there are no
//!   transactions); an offset outside `log_start_offset..=high_watermark` is OFFSET_OUT_OF_RANGE.
//! - Long poll: while fewer than `min_bytes` bytes are available, no partition failed and
//!   `max_wait_ms` has not passed, wait for the next append to the log, then read again.
//! - No fetch sessions (KIP-227): every response is a full one with session id 0, which tells
//!   clients to keep sending full requests; a request naming a session is refused with
//!   FETCH_SESSION_ID_NOT_FOUND.
//!
//! Invariant: all log reads of one round run in one blocking task, off the reactor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;

use super::codec::Frame;
use super::dispatch::{blocking, log_error_code, partition_number, Dispatcher};
use super::Result;
use crate::log::{Error as LogError, Log};

/// Longest long poll, whatever the client asks: an answer with fewer than `min_bytes` is always
/// allowed, and this bounds how long a request can hold its connection.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What a Fetch asks for, detached from the request so blocking tasks can own it.
#[derive(Debug)]
struct Plan {
    topics: Vec<(TopicName, Vec<Want>)>,
    max_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Want {
    index: i32,
    offset: i64,
    max_bytes: usize,
}

/// One partition's outcome.
#[derive(Debug, Clone)]
struct Got {
    index: i32,
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

/// One read round: per topic, per partition, plus the totals the long poll looks at.
#[derive(Debug)]
struct Round {
    topics: Vec<Vec<Got>>,
    bytes: usize,
    failed: bool,
}

/// Serves a Fetch request, long-polling as described in the module docs.
pub(super) async fn fetch(d: &Dispatcher, frame: &Frame) -> Result<Bytes> {
    let req: FetchRequest = frame.decode()?;
    let v = frame.version;
    if v >= 7 && req.session_id != 0 {
        let body = FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        return frame.respond(&body);
    }
    // The client's limits, never above the listener's own.
    let byte_limit = |n: i32| usize::try_from(n).unwrap_or(0).min(d.max_fetch_bytes);
    let plan = Arc::new(Plan {
        topics: req
            .topics
            .iter()
            .map(|t| {
                let wants = t.partitions.iter().map(|p| Want {
                    index: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: byte_limit(p.partition_max_bytes),
                });
                (t.topic.clone(), wants.collect())
            })
            .collect(),
        max_bytes: byte_limit(req.max_bytes),
    });
    let min_bytes = byte_limit(req.min_bytes);
    let wait = Duration::from_millis(u64::try_from(req.max_wait_ms).unwrap_or(0)).min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    // Subscribe before the first read so an append landing between a read and the wait is seen.
    let mut appended = d.log.appended();
    let round = loop {
        let log = d.log.clone();
        let todo = Arc::clone(&plan);
        let round = blocking(move || read_round(&log, &todo)).await?;
        if round.bytes >= min_bytes || round.failed || Instant::now() >= deadline {
            break round;
        }
        match tokio::time::timeout_at(deadline, appended.changed()).await {
            Ok(Ok(())) => continue,
            // Deadline passed with no append (or the log is gone): what was read still holds.
            Ok(Err(_)) | Err(_) => break round,
        }
    };
    metrics::counter!("fleetmq_kafka_fetch_bytes_total").increment(round.bytes as u64);
    let read_committed = req.isolation_level == 1;
    let responses = plan
        .topics
        .iter()
        .zip(round.topics)
        .map(|((name, _), gots)| {
            let partitions = gots.into_iter().map(|g| partition_data(g, v, read_committed)).collect();
            FetchableTopicResponse::default().with_topic(name.clone()).with_partitions(partitions)
        })
        .collect();
    frame.respond(&FetchResponse::default().with_responses(responses))
}

/// Reads every wanted partition within the response budget (blocking).
fn read_round(log: &Log, plan: &Plan) -> Round {
    let mut remaining = plan.max_bytes;
    let mut bytes = 0usize;
    let mut failed = false;
    let topics = plan
        .topics
        .iter()
        .map(|(topic, wants)| {
            wants
                .iter()
                .map(|want| {
                    let got = read_partition(log, topic, *want, remaining, bytes == 0);
                    bytes += got.records.len();
                    remaining = remaining.saturating_sub(got.records.len());
                    failed |= got.error != 0;
                    got
                })
                .collect()
        })
        .collect();
    Round { topics, bytes, failed }
}

/// Reads one partition with `min(partition limit, remaining)` bytes. Only the first non-empty
/// partition (`first`) may exceed that limit; a later one that would gets no records this time.
fn read_partition(log: &Log, topic: &str, want: Want, remaining: usize, first: bool) -> Got {
    let mut got = Got { index: want.index, error: 0, high_watermark: -1, log_start_offset: -1, records: Bytes::new() };
    let Some(partition) = partition_number(want.index) else {
        got.error = ResponseError::UnknownTopicOrPartition.code();
        return got;
    };
    let budget = want.max_bytes.min(remaining);
    let read = if budget == 0 && !first {
        log.offsets(topic, partition).map(|o| (Bytes::new(), o.high_watermark, o.log_start_offset))
    } else {
        log.read(topic, partition, want.offset, budget).map(|r| (r.records, r.high_watermark, r.log_start_offset))
    };
    match read {
        Ok((records, high_watermark, log_start_offset)) => {
            got.high_watermark = high_watermark;
            got.log_start_offset = log_start_offset;
            if first || records.len() <= budget {
                got.records = records;
            }
        }
        Err(e) => {
            got.error = log_error_code(&e);
            if let LogError::OffsetOutOfRange { log_start_offset, high_watermark, .. } = e {
                got.high_watermark = high_watermark;
                got.log_start_offset = log_start_offset;
            }
        }
    }
    got
}

/// One partition of the response, with only the fields version `v` carries.
fn partition_data(got: Got, v: i16, read_committed: bool) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(got.index)
        .with_error_code(got.error)
        .with_high_watermark(got.high_watermark)
        .with_last_stable_offset(got.high_watermark)
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_records(Some(got.records));
    if v >= 5 {
        data.with_log_start_offset(got.log_start_offset)
    } else {
        data
    }
}
