//! Publisher back-pressure: a publisher whose messages fill an online subscriber's queue past half
//! is paused (its socket is not read) until the subscriber catches up, so nothing is dropped; a
//! subscriber that does not catch up within `backpressure_wait_ms` is marked slow, stops pausing
//! anyone, and its own queue drops instead, while other subscribers still get everything.

use fleetmq_tests::broker::METRICS;
use fleetmq_tests::parse::{self, kind};
use fleetmq_tests::{metrics, unique, wire, Broker, RawClient};
use std::net::SocketAddr;
use std::time::Duration;

const MESSAGES: usize = 1500;
/// Large enough that the whole stream does not fit in loopback socket buffers.
const PAYLOAD: usize = 4096;

fn config(wait_ms: u64) -> String {
    format!("[limits]\nmax_queued_messages = 40\nbackpressure_wait_ms = {wait_ms}\n{METRICS}")
}

/// Publishes `MESSAGES` numbered QoS 0 messages on `topic` from a 3.1.1 client, as fast as the
/// broker reads them.
async fn publish_all(addr: SocketAddr, topic: String) {
    let mut p = RawClient::v4(addr, &unique("pub")).await;
    let filler = vec![b'x'; PAYLOAD];
    for n in 0..MESSAGES {
        let mut payload = format!("{n}:").into_bytes();
        payload.extend_from_slice(&filler);
        p.send(&wire::Publish::new(false, &topic, payload).encode()).await;
    }
    p.send(&wire::disconnect()).await;
}

/// Reads publishes until `count` arrived or 30 s pass; returns their sequence numbers.
async fn read_numbers(c: &mut RawClient, count: usize) -> Vec<usize> {
    let mut got = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(p) = c.try_read_packet(left).await else { break };
        if p.kind() != kind::PUBLISH {
            continue;
        }
        let p = parse::publish(&p, false).expect("valid PUBLISH");
        let text = String::from_utf8_lossy(&p.payload);
        got.push(text.split(':').next().and_then(|n| n.parse().ok()).expect("numbered payload"));
    }
    got
}

async fn counter(b: &Broker, name: &str, label: &str) -> f64 {
    metrics::sum_matching(&metrics::fetch_async(&b.metrics_url()).await, name, label).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_catches_up_loses_nothing() {
    let b = Broker::start(&config(10_000));
    let topic = unique("bp");
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    assert_eq!(sub.subscribe(1, &[(&topic, 0)]).await, vec![0]);
    let publisher = tokio::spawn(publish_all(b.tcp_addr(), topic));
    // Not reading for a while: the queue fills to half and the publisher must be paused, not dropped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = read_numbers(&mut sub, MESSAGES).await;
    publisher.await.expect("publisher");
    assert_eq!(got.len(), MESSAGES, "QoS 0 messages were dropped although the subscriber kept up");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    assert!(counter(&b, "fleetmq_backpressure_pauses_total", "").await >= 1.0, "the publisher was never paused");
    assert_eq!(counter(&b, "fleetmq_messages_dropped_total", "queue_full").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_pauses_publishers_once_then_drops() {
    let b = Broker::start(&config(300));
    let prefix = unique("bp");
    let mut stalled = RawClient::v4(b.tcp_addr(), &unique("stalled")).await;
    assert_eq!(stalled.subscribe(1, &[(&format!("{prefix}/#"), 0)]).await, vec![0]);
    let mut healthy = RawClient::v4(b.tcp_addr(), &unique("healthy")).await;
    assert_eq!(healthy.subscribe(1, &[(&format!("{prefix}/#"), 0)]).await, vec![0]);
    let publisher = tokio::spawn(publish_all(b.tcp_addr(), format!("{prefix}/data")));
    let got = read_numbers(&mut healthy, MESSAGES).await;
    publisher.await.expect("publisher");
    assert_eq!(got.len(), MESSAGES, "a stalled subscriber cost the healthy one messages");
    // The slow mark lasts 20 pauses (6 s here): one mark, two if the run outlasts it.
    let marks = counter(&b, "fleetmq_backpressure_slow_marks_total", "").await;
    assert!((1.0..=2.0).contains(&marks), "stalled subscriber marked slow {marks} times");
    assert!(counter(&b, "fleetmq_messages_dropped_total", "queue_full").await > 0.0, "the stalled queue did not drop");
    fleetmq_tests::assert_roundtrip(b.tcp_addr()).await;
    drop(stalled);
}
