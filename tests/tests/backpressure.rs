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

/// A DISCONNECT that arrives while its publisher is paused (held back, unread by the session) still
/// decides the will when the client closes the socket right after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_held_by_a_pause_still_suppresses_the_will() {
    use fleetmq_tests::wire::{Connect, Props, Will};
    let b = Broker::start("[limits]\nmax_queued_messages = 2\nbackpressure_wait_ms = 5000\n");
    let (topic, will_topic) = (unique("bp"), unique("will"));
    let mut watcher = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watcher.subscribe(1, &[(&will_topic, 0)]).await;
    // Takes one QoS 1 message at a time (Receive Maximum 1) and never acknowledges it.
    let mut c = Connect::v5(&unique("sub"));
    c.props = Props::new().u16(0x21, 1);
    let mut sub = RawClient::connect_ok(b.tcp_addr(), &c).await;
    sub.subscribe(1, &[(&topic, 1)]).await;
    let mut pc = Connect::v4(&unique("pub"));
    pc.will =
        Some(Will { topic: will_topic.clone(), payload: b"gone".to_vec(), qos: 0, retain: false, props: Props::new() });
    let mut p = RawClient::connect_ok(b.tcp_addr(), &pc).await;
    assert_eq!(p.publish(&wire::Publish::new(false, &topic, b"1").qos(1, 1)).await, 0);
    sub.read_publish(Duration::from_secs(5)).await;
    // The second message stays queued at the high-water mark (1 of 2): the publisher is paused, so
    // the DISCONNECT behind it is held; then the socket closes.
    let mut bytes = wire::Publish::new(false, &topic, b"2").qos(1, 2).encode();
    bytes.extend_from_slice(&wire::disconnect());
    p.send(&bytes).await;
    p.shutdown_write().await;
    let got = watcher.try_read_packet(Duration::from_secs(2)).await;
    assert!(got.is_err(), "will published although the client sent DISCONNECT 0x00: {got:?}");
}

/// While a subscriber's queue holds a long QoS 0 backlog, the session keeps reading the client's
/// own packets: a PINGREQ is answered long before the backlog is through. With
/// `backpressure_wait_ms = 0` the flooding publisher is never paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingreq_is_answered_while_a_backlog_drains() {
    const BACKLOG: usize = 40_000;
    let b = Broker::start(&format!(
        "{METRICS}[limits]\nmax_queued_messages = 50000\nmax_queued_bytes = 500000000\nbackpressure_wait_ms = 0\n"
    ));
    let topic = unique("backlog");
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    sub.subscribe(1, &[(&topic, 0)]).await;
    let mut p = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    let one = wire::Publish::new(false, &topic, vec![b'x'; 1000]).encode();
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    for _ in 0..BACKLOG / 100 {
        p.send(&batch).await;
    }
    // Everything is accepted once the publisher's PINGREQ is answered (packets are handled in order).
    p.send(&[0xC0, 0x00]).await;
    p.next_of_kind(kind::PINGRESP, Duration::from_secs(30)).await;
    // The subscriber reads for a while first, so the broker's writes keep succeeding when the
    // PINGREQ arrives: it must still be read between them.
    for _ in 0..1000 {
        assert_eq!(sub.read_packet(Duration::from_secs(30)).await.kind(), kind::PUBLISH);
    }
    sub.send(&[0xC0, 0x00]).await;
    let mut publishes = 1000;
    loop {
        let packet = sub.read_packet(Duration::from_secs(30)).await;
        if packet.kind() == kind::PINGRESP {
            break;
        }
        publishes += 1;
    }
    assert!(publishes < BACKLOG * 3 / 4, "PINGRESP only after {publishes} of {BACKLOG} queued messages");
    assert_eq!(counter(&b, "fleetmq_backpressure_pauses_total", "").await, 0.0, "paused with back-pressure off");
}
