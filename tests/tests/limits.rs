//! Resource limits: node and listener connection caps, subscriptions per client, offline queue
//! size with both overflow policies (and the dropped-messages metric), topic depth and length,
//! connect rate.

use fleetmq_tests::broker::METRICS;
use fleetmq_tests::parse;
use fleetmq_tests::v4::v4_client;
use fleetmq_tests::wire::{Connect, Publish};
use fleetmq_tests::{metrics, unique, Broker, RawClient};
use rumqttc::QoS;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(800);

/// Tries one 5.0 connection; `true` if the broker accepted it (the client is then kept in `keep`).
async fn try_connect(addr: SocketAddr, keep: &mut Vec<RawClient>) -> bool {
    let mut c = RawClient::connect(addr).await;
    if c.try_send(&Connect::v5(&unique("cap")).encode()).await.is_err() {
        return false;
    }
    match c.try_read_packet(WAIT).await {
        Ok(p) => {
            let ack = parse::connack(&p).unwrap_or_else(|e| panic!("not a CONNACK: {e}: {p:?}"));
            if ack.code == 0 {
                keep.push(c);
                return true;
            }
            assert!(
                [0x97, 0x9F, 0x89].contains(&ack.code),
                "refusal should say quota exceeded / rate exceeded / server busy: {ack:?}"
            );
            c.expect_closed(WAIT).await;
            false
        }
        Err(fleetmq_tests::raw::Error::Timeout) => {
            panic!("no CONNACK and no close within {WAIT:?}")
        }
        Err(_) => false,
    }
}

/// Fills `addr` up to `cap` connections, checks one more is refused, frees one and checks a new
/// connection is accepted again.
async fn connection_cap(addr: SocketAddr, cap: usize) {
    let mut open = Vec::new();
    for i in 0..cap {
        assert!(try_connect(addr, &mut open).await, "connection {i} within the cap was refused");
    }
    assert!(!try_connect(addr, &mut open).await, "connection over the cap of {cap} was accepted");
    open.pop();
    let deadline = Instant::now() + WAIT;
    while !try_connect(addr, &mut open).await {
        assert!(Instant::now() < deadline, "a freed connection slot was never reused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_connection_cap_refuses_extra_clients() {
    let b = Broker::start("[limits]\nmax_connections = 3\n");
    connection_cap(b.tcp_addr(), 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_connection_cap_refuses_extra_clients_on_that_listener_only() {
    let b = Broker::start("[[listener]]\nkind = \"tcp\"\nmax_connections = 2\n");
    let capped = b.listeners().get(1).map(|(_, a)| *a).expect("second listener");
    connection_cap(capped, 2).await;
    let mut other = Vec::new();
    for _ in 0..3 {
        assert!(try_connect(b.tcp_addr(), &mut other).await, "uncapped listener refused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_client_are_capped() {
    let b = Broker::start("[limits]\nmax_subscriptions_per_client = 2\n");
    let mut c5 = RawClient::v5(b.tcp_addr(), &unique("subs5")).await;
    assert_eq!(c5.subscribe(1, &[("a", 1), ("b", 1)]).await, vec![1, 1]);
    assert_eq!(c5.subscribe(2, &[("c", 1)]).await, vec![0x97], "quota exceeded");
    assert_eq!(c5.subscribe(3, &[("a", 0)]).await, vec![0], "replacing a subscription is not new");
    let mut c4 = RawClient::v4(b.tcp_addr(), &unique("subs4")).await;
    assert_eq!(c4.subscribe(1, &[("a", 1), ("b", 1), ("c", 1)]).await, vec![1, 1, 0x80]);
}

/// Queues six QoS 1 messages for an offline session capped at three and returns what the session
/// receives when it comes back, plus the dropped-message counter before and after.
async fn overflow(policy: &str) -> (Vec<String>, f64, f64) {
    let b = Broker::start(&format!("[limits]\nmax_queued_messages = 3\nqueue_overflow = \"{policy}\"\n{METRICS}"));
    let topic = unique("queue");
    let mut sub = v4_client(b.tcp_addr(), "offline", false).await;
    sub.subscribe_ok(&topic, QoS::AtLeastOnce).await;
    sub.disconnect().await;
    let before =
        metrics::sum(&metrics::fetch_async(&b.metrics_url()).await, "fleetmq_messages_dropped_total").unwrap_or(0.0);
    let mut publ = v4_client(b.tcp_addr(), &unique("pub"), true).await;
    for i in 0..6 {
        publ.publish(&topic, QoS::AtLeastOnce, false, i.to_string()).await;
    }
    let mut sub = v4_client(b.tcp_addr(), "offline", false).await;
    assert!(sub.connack.session_present);
    let got: Vec<String> = sub
        .wait_for_publishes(3, WAIT)
        .await
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    sub.expect_no_publish(QUIET).await;
    let after =
        metrics::sum(&metrics::fetch_async(&b.metrics_url()).await, "fleetmq_messages_dropped_total").unwrap_or(0.0);
    (got, before, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_keeps_the_newest_queued_messages() {
    let (got, before, after) = overflow("drop_oldest").await;
    assert_eq!(got, ["3", "4", "5"]);
    assert!(after - before >= 3.0, "dropped counter went from {before} to {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_newest_keeps_the_first_queued_messages() {
    let (got, before, after) = overflow("reject_newest").await;
    assert_eq!(got, ["0", "1", "2"]);
    assert!(after - before >= 3.0, "dropped counter went from {before} to {after}");
}

/// Publishes to `bad` (QoS 1, 5.0) and `good`; the bad one must be refused with reason 0x90 —
/// either as PUBACK or as DISCONNECT — and never delivered.
async fn topic_limit(config: &str, bad: &str, good: &str) {
    let b = Broker::start(config);
    let mut watch = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watch.subscribe(1, &[("#", 1)]).await;

    let mut c = RawClient::v5(b.tcp_addr(), &unique("deep")).await;
    c.send(&Publish::new(true, bad, b"bad").qos(1, 1).encode()).await;
    let p = c.read_packet(WAIT).await;
    match p.kind() {
        parse::kind::PUBACK => {
            let ack = parse::ack(&p).unwrap_or_else(|e| panic!("bad PUBACK: {e}"));
            assert_eq!(ack.reason, 0x90, "PUBACK reason for {bad:?}");
        }
        parse::kind::DISCONNECT => {
            assert_eq!(parse::disconnect_reason(&p).ok(), Some(0x90), "DISCONNECT for {bad:?}");
            c.expect_closed(WAIT).await;
            c = RawClient::v5(b.tcp_addr(), &unique("deep")).await;
        }
        _ => panic!("expected PUBACK or DISCONNECT 0x90, got {p:?}"),
    }
    let mut c4 = RawClient::v4(b.tcp_addr(), &unique("deep4")).await;
    let _ = c4.try_send(&Publish::new(false, bad, b"bad").qos(1, 1).encode()).await;
    assert!(c.publish(&Publish::new(true, good, b"good").qos(1, 2)).await < 0x80);
    let got = watch.read_publish(WAIT).await;
    assert_eq!(got.payload, b"good", "the over-limit message must not be delivered");
    watch.expect_no_publish(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_with_too_many_levels_is_refused() {
    topic_limit("[limits]\nmax_topic_levels = 3\n", "a/b/c/d", "a/b/c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_over_the_maximum_length_is_refused() {
    let long = "x".repeat(30);
    topic_limit("[limits]\nmax_topic_length = 20\n", &long, &"y".repeat(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_rate_refuses_connections_beyond_the_rate_with_0x9f() {
    let b = Broker::start("[limits]\nconnect_rate = 3\n");
    let mut codes = Vec::new();
    let mut keep = Vec::new();
    for i in 0..8 {
        let (c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5(&unique(&format!("rate{i}")))).await;
        codes.push(ack.code);
        keep.push(c);
    }
    let accepted = codes.iter().filter(|&&c| c == 0).count();
    assert!((1..=3).contains(&accepted), "at most 3 per second accepted: {codes:?}");
    assert!(codes.iter().all(|&c| c == 0 || c == 0x9F), "refusals carry 0x9F: {codes:?}");
    drop(keep);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v5(&unique("later"))).await;
    assert_eq!(ack.code, 0, "the next second admits connections again");
}
