//! Heap held per idle connection, counted by the `dhat` allocator around the real server: the
//! figure FleetMQ must keep at or under Mosquitto's (745 bytes of RSS per idle connection in
//! BENCHMARKS.md). Clients are blocking std sockets on their own thread, so the count holds the
//! server's allocations only (std sockets allocate nothing).
//!
//! One test per file: the counting allocator is process-wide.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Idle connections measured (after a warm-up batch that grows the registry's tables).
const N: usize = 1000;
/// Heap bytes per parked idle connection at most. Requested bytes; the allocator rounds up a
/// little (mimalloc size classes).
const BUDGET: u64 = 600;

#[test]
fn a_parked_idle_connection_holds_less_heap_than_mosquitto_uses() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let cfg = fleetmq_core::config::Config::parse(
        "[storage]\nengine = \"memory\"\n[limits]\nidle_park_ms = 50\n[sys]\ninterval_ms = 0\n[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let server = rt.block_on(fleetmq::server::Server::start(cfg, false)).unwrap();
    let addr = server.listeners[0].1;
    let warm = std::thread::spawn(move || (0..N).map(|i| connect(addr, i)).collect::<Vec<_>>()).join().unwrap();
    wait_parked(&server.broker, N);
    let before = dhat::HeapStats::get().curr_bytes as u64;
    let idle = std::thread::spawn(move || (N..2 * N).map(|i| connect(addr, i)).collect::<Vec<_>>()).join().unwrap();
    wait_parked(&server.broker, 2 * N);
    let after = dhat::HeapStats::get().curr_bytes as u64;
    let per_connection = after.saturating_sub(before) / N as u64;
    eprintln!("heap per parked idle connection: {per_connection} B");
    assert!(per_connection <= BUDGET, "{per_connection} B of heap per parked idle connection (budget {BUDGET} B)");
    assert!(per_connection >= 100, "{per_connection} B: the count missed the sessions");
    drop((warm, idle));
    rt.block_on(server.shutdown(Duration::from_secs(5)));
}

/// Waits (up to 10 s) until `n` sessions are parked.
fn wait_parked(broker: &fleetmq_core::broker::Broker, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.parked() < n {
        assert!(Instant::now() < deadline, "{} of {n} connections parked", broker.parked());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens an MQTT 3.1.1 connection (keep-alive 60 s) and reads its CONNACK.
fn connect(addr: SocketAddr, i: usize) -> TcpStream {
    let id = format!("idle-{i:06}");
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&packet).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0], "CONNACK accepted");
    s
}
