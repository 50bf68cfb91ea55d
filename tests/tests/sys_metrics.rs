//! Observability: the Prometheus endpoint's gauges and counters follow what clients do, and the
//! `$SYS` tree publishes version and a growing uptime.

use fleetmq_tests::v5::{self, v5_client};
use fleetmq_tests::wire::{Connect, Publish};
use fleetmq_tests::{cli, metrics, unique, Broker, RawClient, TempDir};
use rumqttc::v5::mqttbytes::QoS;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// Metrics on, `$SYS` off (so retained-message and subscription counts are exactly the test's).
const NO_SYS: &str = "[sys]\ninterval_ms = 0\n[metrics]\nbind = \"127.0.0.1:0\"\n";

/// Polls the metrics endpoint until `check(sum of name)` holds; panics with the last value.
async fn eventually(b: &Broker, name: &str, what: &str, check: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics::fetch_async(&b.metrics_url()).await;
        let v = metrics::sum(&text, name);
        if v.is_some_and(&check) {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{name} should be {what}; last value {v:?}\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_session_gauges_follow_clients() {
    let b = Broker::start(NO_SYS);
    let c1 = RawClient::v4(b.tcp_addr(), &unique("g1")).await;
    let c2 = RawClient::v5(b.tcp_addr(), &unique("g2")).await;
    eventually(&b, "fleetmq_connections", "2", |v| v == 2.0).await;
    eventually(&b, "fleetmq_sessions", "at least 2", |v| v >= 2.0).await;
    drop(c1);
    eventually(&b, "fleetmq_connections", "1 after a disconnect", |v| v == 1.0).await;
    drop(c2);
    eventually(&b, "fleetmq_connections", "0", |v| v == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_counters_and_state_gauges_follow_traffic() {
    let b = Broker::start(NO_SYS);
    let topic = unique("counted");
    let mut sub = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    sub.subscribe(1, &[(&topic, 1), ("other/#", 0)]).await;
    let mut publ = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    for i in 0..3u16 {
        publ.publish(&Publish::new(false, &topic, b"m").qos(1, i + 1)).await;
        sub.read_publish(WAIT).await;
    }
    publ.publish(&Publish::new(false, "kept/value", b"r").qos(1, 9).retain()).await;
    eventually(&b, "fleetmq_messages_received_total", "at least 4", |v| v >= 4.0).await;
    eventually(&b, "fleetmq_messages_sent_total", "at least 3", |v| v >= 3.0).await;
    eventually(&b, "fleetmq_bytes_received_total", "positive", |v| v > 0.0).await;
    eventually(&b, "fleetmq_bytes_sent_total", "positive", |v| v > 0.0).await;
    eventually(&b, "fleetmq_subscriptions", "2", |v| v == 2.0).await;
    eventually(&b, "fleetmq_retained_messages", "1", |v| v == 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_is_off_unless_configured() {
    let b = Broker::start("");
    assert_eq!(b.try_metrics_url(), None, "metrics announced without [metrics] bind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_failures_are_counted() {
    let dir = TempDir::new("fleetmq-authm");
    cli::passwd(&dir.join("passwords"), "alice", "wonderland");
    let b = Broker::start_in(
        dir,
        &format!("[auth]\nallow_anonymous = false\npassword_file = \"$DIR/passwords\"\n{NO_SYS}"),
    );
    for password in ["wrong", "worse"] {
        let mut c = Connect::v5(&unique("intruder"));
        c.username = Some("alice".into());
        c.password = Some(password.as_bytes().to_vec());
        let (_c, ack) = RawClient::handshake(b.tcp_addr(), &c).await;
        assert_eq!(ack.code, 0x86);
    }
    eventually(&b, "fleetmq_auth_failures_total", "at least 2", |v| v >= 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_rejections_are_counted() {
    let b = Broker::start(&format!("[limits]\nmax_subscriptions_per_client = 1\n{NO_SYS}"));
    let mut c = RawClient::v5(b.tcp_addr(), &unique("greedy")).await;
    assert_eq!(c.subscribe(1, &[("a", 0), ("b", 0)]).await, vec![0, 0x97]);
    eventually(&b, "fleetmq_limit_rejections_total", "at least 1", |v| v >= 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted() {
    let b = Broker::start(NO_SYS);
    let mut c = RawClient::v4(b.tcp_addr(), &unique("bad")).await;
    c.send(&[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01]).await;
    c.expect_closed_v4(WAIT).await;
    eventually(&b, "fleetmq_malformed_packets_total", "at least 1", |v| v >= 1.0).await;
}

fn seconds(payload: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(payload);
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("uptime is not a number of seconds: {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_uptime_grows_and_version_is_published() {
    let b = Broker::start("[sys]\ninterval_ms = 200\n");
    let mut sys = v5_client(b.tcp_addr(), &unique("sys"), true).await;
    sys.subscribe_ok("$SYS/broker/version", QoS::AtMostOnce).await;
    let version = sys.wait_for_publishes(1, WAIT).await.remove(0);
    assert!(!version.payload.is_empty(), "empty $SYS/broker/version");
    assert!(version.retain, "$SYS topics are retained");

    sys.subscribe_ok("$SYS/broker/uptime", QoS::AtMostOnce).await;
    let first = seconds(&sys.wait_for_publishes(1, WAIT).await[0].payload);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let p = sys.wait_for_publishes(1, WAIT).await.remove(0);
        if v5::topic(&p) != "$SYS/broker/uptime" {
            // The version subscription above keeps receiving its refreshes too.
            assert_eq!(v5::topic(&p), "$SYS/broker/version");
            continue;
        }
        let now = seconds(&p.payload);
        assert!(now >= first, "uptime went backwards: {first} -> {now}");
        if now > first {
            break;
        }
        assert!(Instant::now() < deadline, "uptime stuck at {first}");
    }
}

/// One GET on the operations endpoint: (status code, body).
fn http_get(b: &Broker, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = b.metrics_url().trim_start_matches("http://").split('/').next().unwrap().to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head: {reply:?}"));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_endpoints_answer_load_balancers() {
    let b = Broker::start(NO_SYS);
    assert_eq!(http_get(&b, "/health"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&b, "/ready"), (200, "ready\n".to_string()));
    assert_eq!(http_get(&b, "/nope").0, 404);
    let (code, body) = http_get(&b, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("fleetmq_"), "metrics body: {body}");
}
