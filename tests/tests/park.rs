//! Parked sessions: a connection that stays quiet with nothing in flight gives up its task and
//! its reactor registration (`limits.idle_park_ms`), and every way it can be needed again still
//! works: deliveries of each QoS, its own packets (PINGREQ, PUBLISH), its keep-alive deadline, an
//! abrupt close (will), a takeover, and node shutdown. Each test first waits until the broker's
//! `fleetmq_connections_parked` gauge shows the connection parked.

use fleetmq_tests::parse::kind;
use fleetmq_tests::wire::{self, prop, Connect, Props, Will};
use fleetmq_tests::{metrics, unique, Broker, RawClient};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// Parks after 100-200 ms of quiet.
const CONFIG: &str = "[limits]\nidle_park_ms = 100\n[metrics]\nbind = \"127.0.0.1:0\"\n";

async fn parked(b: &Broker) -> f64 {
    metrics::sum(&metrics::fetch_async(&b.metrics_url()).await, "fleetmq_connections_parked").unwrap_or(0.0)
}

/// Waits until exactly `n` connections are parked.
async fn until_parked(b: &Broker, n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = parked(b).await;
        if now == n as f64 {
            return;
        }
        assert!(Instant::now() < deadline, "{now} connections parked, expected {n}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A QoS 1 will on `topic`.
fn will(topic: &str, payload: &str) -> Option<Will> {
    Some(Will { topic: topic.into(), payload: payload.as_bytes().to_vec(), qos: 1, retain: false, props: Props::new() })
}

async fn subscriber(b: &Broker, id: &str, filter: &str) -> RawClient {
    let mut s = RawClient::v5(b.tcp_addr(), id).await;
    assert_eq!(s.subscribe(1, &[(filter, 2)]).await, vec![2]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_subscriber_gets_every_qos_in_order_and_parks_again() {
    let b = Broker::start(CONFIG);
    let topic = unique("park/deliver");
    let mut sub = subscriber(&b, &unique("sub"), &topic).await;
    let mut publisher = RawClient::v5(b.tcp_addr(), &unique("pub")).await;
    for round in 0..2 {
        until_parked(&b, 2).await;
        for qos in 0..3u8 {
            let payload = format!("r{round} q{qos}");
            let p = wire::Publish::new(true, &topic, &payload).qos(qos, u16::from(qos) + 1);
            publisher.send(&p.encode()).await;
            if qos > 0 {
                let ack = if qos == 1 { kind::PUBACK } else { kind::PUBREC };
                publisher.next_of_kind(ack, WAIT).await;
                if qos == 2 {
                    publisher.send(&wire::pubrel(3)).await;
                    publisher.next_of_kind(kind::PUBCOMP, WAIT).await;
                }
            }
        }
        let got: Vec<(u8, String)> = {
            let mut got = Vec::new();
            for _ in 0..3 {
                let p = sub.receive().await;
                got.push((p.qos, String::from_utf8(p.payload).unwrap()));
            }
            got
        };
        let want: Vec<(u8, String)> = (0..3).map(|q| (q, format!("r{round} q{q}"))).collect();
        assert_eq!(got, want, "round {round}");
    }
    sub.expect_no_publish(Duration::from_millis(300)).await;
    until_parked(&b, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_answers_pings_and_its_keepalive_still_ends_it() {
    let b = Broker::start(CONFIG);
    let topic = unique("park/will");
    let mut watcher = subscriber(&b, &unique("watcher"), &topic).await;
    let mut c = Connect::v4(&unique("sleepy"));
    c.keepalive = 1;
    c.will = will(&topic, "gone");
    let mut c = RawClient::connect_ok(b.tcp_addr(), &c).await;
    until_parked(&b, 2).await;
    c.send(&wire::pingreq()).await;
    assert_eq!(c.read_packet(WAIT).await.kind(), kind::PINGRESP, "a parked connection answers PINGREQ");
    // Silent past 1.5 x the keep-alive: closed from the parked state, with its will.
    let silent = Instant::now();
    c.expect_closed_v4(WAIT).await;
    assert!(silent.elapsed() >= Duration::from_millis(1400), "closed after {:?}", silent.elapsed());
    let will = watcher.receive().await;
    assert_eq!((will.topic.as_str(), &will.payload[..]), (topic.as_str(), &b"gone"[..]));
    until_parked(&b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_parked_connection_publishes_its_will_and_a_parked_publisher_is_heard() {
    let b = Broker::start(CONFIG);
    let topic = unique("park/drop");
    let mut watcher = subscriber(&b, &unique("watcher"), &topic).await;
    let mut c = Connect::v5(&unique("mortal"));
    c.will = will(&topic, "dropped");
    let mut c = RawClient::connect_ok(b.tcp_addr(), &c).await;
    until_parked(&b, 2).await;
    // Its own PUBLISH resumes it.
    assert_eq!(c.publish(&wire::Publish::new(true, &topic, "alive").qos(1, 7)).await, 0);
    assert_eq!(watcher.receive().await.payload, b"alive");
    until_parked(&b, 2).await;
    drop(c);
    let will = watcher.receive().await;
    assert_eq!(will.payload, b"dropped");
    until_parked(&b, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_session_is_taken_over_with_its_subscriptions_and_queue() {
    let b = Broker::start(CONFIG);
    let id = unique("roamer");
    let topic = unique("park/takeover");
    let mut c = Connect::v5(&id);
    c.props = Props::new().u32(prop::SESSION_EXPIRY, 600);
    let mut first = RawClient::connect_ok(b.tcp_addr(), &c).await;
    assert_eq!(first.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    until_parked(&b, 1).await;
    c.clean = false;
    let (mut second, ack) = RawClient::handshake(b.tcp_addr(), &c).await;
    assert_eq!((ack.code, ack.session_present), (0, true));
    assert_eq!(first.expect_disconnect(WAIT).await, 0x8E, "the parked connection is told it was taken over");
    let mut publisher = RawClient::v5(b.tcp_addr(), &unique("pub")).await;
    assert_eq!(publisher.publish(&wire::Publish::new(true, &topic, "after").qos(1, 1)).await, 0);
    let got = second.receive().await;
    assert_eq!((got.qos, &got.payload[..]), (1, &b"after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_disconnects_parked_clients_and_exits() {
    let mut b = Broker::start(CONFIG);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(RawClient::v5(b.tcp_addr(), &unique("idle")).await);
    }
    until_parked(&b, 3).await;
    b.sigterm();
    for c in &mut clients {
        assert_eq!(c.expect_disconnect(WAIT).await, 0x8B, "parked clients get Server Shutting Down");
    }
    let status = b.wait_exit(WAIT).expect("broker exits after SIGTERM with parked clients");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_resumes_every_parked_subscriber_once() {
    const N: usize = 200;
    let b = Broker::start(CONFIG);
    let topic = unique("park/broadcast");
    let mut subs = Vec::new();
    for i in 0..N {
        subs.push(subscriber(&b, &unique(&format!("fleet{i}")), &topic).await);
    }
    let mut publisher = RawClient::v5(b.tcp_addr(), &unique("pub")).await;
    for round in 0..2u16 {
        until_parked(&b, N + 1).await;
        let payload = format!("command {round}");
        assert_eq!(publisher.publish(&wire::Publish::new(true, &topic, &payload).qos(1, round + 1)).await, 0);
        for (i, s) in subs.iter_mut().enumerate() {
            let got = s.receive().await;
            assert_eq!((got.qos, got.payload.as_slice()), (1, payload.as_bytes()), "subscriber {i}, round {round}");
        }
    }
    for s in &mut subs {
        s.expect_no_publish(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_park_ms_zero_never_parks() {
    let b = Broker::start("[limits]\nidle_park_ms = 0\n[metrics]\nbind = \"127.0.0.1:0\"\n");
    let mut c = RawClient::v5(b.tcp_addr(), &unique("awake")).await;
    // Longer than the 100-200 ms after which the other tests' connections park.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(parked(&b).await, 0.0, "0 turns parking off (it does not mean 'park at once')");
    c.send(&wire::pingreq()).await;
    assert_eq!(c.read_packet(WAIT).await.kind(), kind::PINGRESP);
}
