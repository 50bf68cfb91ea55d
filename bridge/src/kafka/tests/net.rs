//! The socket layer: frame reading limits, and the listener over real TCP connections (bad
//! input isolated per connection, in-order responses behind a long poll, the connection cap,
//! the advertised address, shutdown).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fetch::fetch_req;
use super::*;
use crate::kafka::connection::{read_frame, write_frame};

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn frames_are_length_checked() {
    let read = |bytes: &'static [u8], max| async move { read_frame(&mut &bytes[..], max).await };
    assert!(read(b"", 10).await.unwrap().is_none(), "clean end of stream");
    assert_eq!(read(b"\x00\x00\x00\x03abc", 10).await.unwrap().unwrap(), &b"abc"[..]);
    assert!(matches!(read(b"\x00\x00\x00\x0babc", 10).await, Err(Error::FrameSize { size: 11, max: 10 })));
    assert!(matches!(read(b"\xff\xff\xff\xffabc", 10).await, Err(Error::FrameSize { size: -1, .. })));
    assert!(matches!(read(b"\x00\x00\x00\x00", 10).await, Err(Error::FrameSize { size: 0, .. })));
    assert!(matches!(read(b"\x00\x00\x00\x05abc", 10).await, Err(Error::Io(_))), "cut inside the frame");
    assert!(matches!(read(b"\x00\x00", 10).await, Err(Error::Io(_))), "cut inside the prefix");
}

struct Running {
    fixture: Fixture,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
}

fn start(config: KafkaConfig) -> Running {
    let fixture = fixture();
    let listener = KafkaListener::bind(config, fixture.log.clone(), fixture.dispatcher.groups.clone()).expect("bind");
    let addr = listener.local_addr();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listener.run(stopped));
    Running { fixture, addr, stop, task }
}

fn loopback() -> KafkaConfig {
    KafkaConfig { bind: SocketAddr::from(([127, 0, 0, 1], 0)), ..KafkaConfig::default() }
}

/// `frame` with its correlation id replaced by `id`.
fn with_id(frame: Bytes, id: i32) -> Bytes {
    let mut frame = BytesMut::from(&frame[..]);
    frame[4..8].copy_from_slice(&id.to_be_bytes());
    frame.freeze()
}

async fn round_trip(stream: &mut TcpStream) -> ApiVersionsResponse {
    write_frame(stream, &frame(3, &ApiVersionsRequest::default())).await.unwrap();
    let response = read_frame(stream, 1 << 20).await.unwrap().expect("a response");
    decode::<ApiVersionsRequest>(3, response)
}

/// Whether the server closed `stream` (end of stream or reset) within [`BOUND`].
async fn closed(stream: &mut TcpStream) -> bool {
    matches!(tokio::time::timeout(BOUND, read_frame(stream, 1 << 20)).await, Ok(Ok(None) | Err(_)))
}

#[tokio::test]
async fn a_bad_request_closes_only_its_own_connection() {
    let server = start(KafkaConfig { max_request_bytes: 1024, ..loopback() });
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    let mut huge = TcpStream::connect(server.addr).await.unwrap();
    write_frame(&mut garbage, b"\x03\xe7\x00\x00\x00\x00\x00\x01").await.unwrap();
    assert!(closed(&mut garbage).await, "unknown API key closes the connection");
    huge.write_all(&4096i32.to_be_bytes()).await.unwrap();
    assert!(closed(&mut huge).await, "a frame over max_request_bytes closes the connection");
    assert_eq!(round_trip(&mut good).await.error_code, 0, "the other connection is unaffected");
    server.stop.send(true).unwrap();
    tokio::time::timeout(BOUND, server.task).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn responses_keep_request_order_behind_a_long_poll() {
    let server = start(loopback());
    let mut conn = TcpStream::connect(server.addr).await.unwrap();
    let poll = with_id(frame(12, &fetch_req(&[(1, 0)], 30_000, 1)), 1);
    let versions = with_id(frame(3, &ApiVersionsRequest::default()), 2);
    write_frame(&mut conn, &poll).await.unwrap();
    write_frame(&mut conn, &versions).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.fixture.log.append(TOPIC, 1, &[rec(1, "wake")], None).unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut response = tokio::time::timeout(BOUND, read_frame(&mut conn, 1 << 20)).await.unwrap().unwrap().unwrap();
        ids.push(ResponseHeader::decode(&mut response, 0).unwrap().correlation_id);
    }
    assert_eq!(ids, vec![1, 2], "the Fetch answer first, although ApiVersions was ready earlier");
}

#[tokio::test]
async fn extra_clients_wait_for_a_connection_slot() {
    let server = start(KafkaConfig { max_connections: 1, ..loopback() });
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(round_trip(&mut first).await.error_code, 0);
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    write_frame(&mut second, &frame(3, &ApiVersionsRequest::default())).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), read_frame(&mut second, 1 << 20)).await;
    assert!(early.is_err(), "served beyond max_connections");
    drop(first);
    let response = tokio::time::timeout(BOUND, read_frame(&mut second, 1 << 20)).await.unwrap().unwrap().unwrap();
    assert_eq!(decode::<ApiVersionsRequest>(3, response).error_code, 0);
}

#[tokio::test]
async fn unspecified_bind_advertises_the_address_the_client_reached() {
    let server = start(KafkaConfig { bind: SocketAddr::from(([0, 0, 0, 0], 0)), node_id: 3, ..KafkaConfig::default() });
    let mut conn = TcpStream::connect(("127.0.0.1", server.addr.port())).await.unwrap();
    write_frame(&mut conn, &frame(1, &MetadataRequest::default())).await.unwrap();
    let response = read_frame(&mut conn, 1 << 20).await.unwrap().unwrap();
    let broker = decode::<MetadataRequest>(1, response).brokers.remove(0);
    assert_eq!((broker.node_id.0, broker.host.as_str(), broker.port), (3, "127.0.0.1", i32::from(server.addr.port())));
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_connections() {
    let server = start(loopback());
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(round_trip(&mut idle).await.error_code, 0);
    let mut polling = TcpStream::connect(server.addr).await.unwrap();
    write_frame(&mut polling, &frame(12, &fetch_req(&[(0, 0)], 30_000, 1))).await.unwrap();
    server.stop.send(true).unwrap();
    tokio::time::timeout(BOUND, server.task).await.expect("run returns").unwrap().unwrap();
    assert!(closed(&mut idle).await);
    assert!(closed(&mut polling).await, "a long poll in flight is abandoned");
    assert!(TcpStream::connect(server.addr).await.is_err(), "no longer accepting");
}
