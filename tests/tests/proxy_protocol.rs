//! PROXY protocol on listeners behind a load balancer: the client address of a v1 or v2 header
//! is the one the broker logs; the MQTT bytes after the header (even in the same segment) are the
//! session's; a connection without the header is refused and counted, without harm to others.

use fleetmq_tests::haproxy::Haproxy;
use fleetmq_tests::wire::{self, Connect};
use fleetmq_tests::{metrics, unique, Broker, RawClient};
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn broker(mode: &str) -> (Broker, SocketAddr) {
    let b = Broker::start(&format!(
        "[log]\nlevel = \"debug\"\n[metrics]\nbind = \"127.0.0.1:0\"\n\
         [[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = \"{mode}\"\n"
    ));
    let behind = b.listeners()[1].1;
    (b, behind)
}

fn v2_header(src: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&1883u16.to_be_bytes());
    h
}

/// Sends `header` and CONNECT in one write, as a balancer forwarding a fast client does.
async fn connect_through(addr: SocketAddr, header: &[u8], client_id: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&Connect::v4(client_id).encode());
    c.send(&bytes).await;
    assert_eq!(c.expect_connack(WAIT).await.code, 0, "CONNACK through the PROXY listener");
    c
}

async fn wait_for_log(b: &Broker, needle: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !b.stderr().contains(needle) {
        assert!(tokio::time::Instant::now() < deadline, "log never showed {needle:?}:\n{}", b.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_header_gives_the_real_client_address_and_mqtt_follows() {
    let (b, behind) = broker("v2");
    let id = unique("v2");
    let mut c = connect_through(behind, &v2_header([203, 0, 113, 9], 4242), &id).await;
    wait_for_log(&b, &format!("client connected client_id={id} peer=203.0.113.9:4242")).await;
    // The session works normally after the header: a round trip through the same listener.
    let topic = unique("behind");
    assert_eq!(c.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let mut p = connect_through(behind, &v2_header([198, 51, 100, 7], 5000), &unique("v2p")).await;
    p.publish(&wire::Publish::new(false, &topic, b"via-lb").qos(1, 1)).await;
    assert_eq!(c.read_publish(WAIT).await.payload, b"via-lb");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_header_gives_the_real_client_address() {
    let (b, behind) = broker("any");
    let id = unique("v1");
    let _c = connect_through(behind, b"PROXY TCP4 192.0.2.55 127.0.0.1 40001 1883\r\n", &id).await;
    wait_for_log(&b, &format!("client connected client_id={id} peer=192.0.2.55:40001")).await;
    // `any` takes v2 as well.
    let id2 = unique("v2-on-any");
    let _c2 = connect_through(behind, &v2_header([192, 0, 2, 56], 40002), &id2).await;
    wait_for_log(&b, &format!("client connected client_id={id2} peer=192.0.2.56:40002")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_header_is_refused_and_counted() {
    let (b, behind) = broker("v2");
    // A client that bypasses the balancer: plain CONNECT where the header belongs.
    let mut direct = RawClient::connect(behind).await;
    direct.send(&Connect::v5(&unique("bypass")).encode()).await;
    let seen = direct.expect_closed(WAIT).await;
    assert!(seen.is_empty(), "a connection without a PROXY header got an answer: {seen:?}");
    // A v1 header on a v2-only listener.
    let mut wrong = RawClient::connect(behind).await;
    wrong.send(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 1883\r\n").await;
    assert!(wrong.expect_closed(WAIT).await.is_empty());
    let text = metrics::fetch_async(&b.metrics_url()).await;
    let refused = metrics::sum_matching(&text, "fleetmq_limit_rejections_total", "limit=\"proxy_header\"");
    assert_eq!(refused, Some(2.0), "refusals counted:\n{text}");
    // Other clients are unaffected: the direct listener and a proper header still work.
    fleetmq_tests::raw::assert_roundtrip(b.tcp_addr()).await;
    connect_through(behind, &v2_header([10, 1, 2, 3], 1), &unique("ok")).await;
}

/// A real load balancer: HAProxy (Debian's package) in TCP mode with `send-proxy-v2`, connecting
/// to the broker from another loopback address and health-checking `/ready`. The broker must log
/// the client's own address, not HAProxy's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_haproxy_with_proxy_v2_the_client_address_is_real() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (b, behind) = broker("v2");
    let metrics_port = b.metrics_url().trim_start_matches("http://").split(['/', ':']).nth(1).unwrap().to_string();
    let front_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = format!(
        "{}frontend mqtt\n    bind 127.0.0.1:{front_port}\n    default_backend fleetmq\n\
         backend fleetmq\n    option httpchk GET /ready\n    server node1 {behind} send-proxy-v2 source 127.0.0.2 \
         check port {metrics_port} inter 300ms\n",
        Haproxy::preamble()
    );
    let _haproxy = Haproxy::start(b.dir(), &cfg);
    let front: SocketAddr = format!("127.0.0.1:{front_port}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let id = unique("lb");
    let (local, connack) = loop {
        assert!(tokio::time::Instant::now() < deadline, "HAProxy never forwarded a CONNECT");
        let Ok(mut s) = tokio::net::TcpStream::connect(front).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let local = s.local_addr().unwrap();
        s.write_all(&Connect::v4(&id).encode()).await.unwrap();
        let mut ack = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut ack)).await {
            Ok(Ok(_)) => break (local, ack),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00], "CONNACK through HAProxy");
    wait_for_log(&b, &format!("client connected client_id={id} peer={local}")).await;
    assert!(!b.stderr().contains("peer=127.0.0.2:"), "the balancer's own address leaked into the log");
}
