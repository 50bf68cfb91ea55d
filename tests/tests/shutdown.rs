//! Process lifecycle: SIGTERM / SIGINT shut down gracefully (5.0 clients get DISCONNECT 0x8B, the
//! process exits 0 in time) and SIGKILL leaves nothing behind.

use fleetmq_tests::{unique, Broker, RawClient};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

async fn graceful(signal: &str) {
    let mut b = Broker::start("[sys]\ninterval_ms = 0\n");
    let mut c5 = RawClient::v5(b.tcp_addr(), &unique("stay5")).await;
    let mut c4 = RawClient::v4(b.tcp_addr(), &unique("stay4")).await;
    b.signal(signal);
    assert_eq!(c5.expect_disconnect(WAIT).await, 0x8B, "server shutting down");
    c4.expect_closed_v4(WAIT).await;
    let status = b.wait_exit(WAIT).expect("broker still running 10 s after the signal");
    assert_eq!(status.code(), Some(0), "SIG{signal} exit status: {status}");
    assert!(tokio::net::TcpStream::connect(b.tcp_addr()).await.is_err(), "listener still accepting after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_disconnects_clients_and_exits_zero() {
    graceful("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_disconnects_clients_and_exits_zero() {
    graceful("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_broker_exits_promptly_on_sigterm() {
    let mut b = Broker::start("");
    b.sigterm();
    let status =
        b.wait_exit(Duration::from_secs(6)).expect("idle broker did not exit within the default shutdown timeout");
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_closes_client_connections() {
    let mut b = Broker::start("");
    let mut c = RawClient::v4(b.tcp_addr(), &unique("orphan")).await;
    b.kill9();
    assert!(b.wait_exit(WAIT).is_some());
    c.expect_closed(WAIT).await;
}

/// Connections that have not reached a session yet (no CONNECT, no PROXY header) do not hold the
/// shutdown drain until their connect timeout (10 s, beyond the 5 s drain limit, which would log
/// "connections still open").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_before_connect_do_not_delay_shutdown() {
    let mut b = Broker::start(
        "[sys]\ninterval_ms = 0\n[[listener]]\nkind = \"tcp\"\nbind = \"127.0.0.1:0\"\nproxy_protocol = \"v2\"\n",
    );
    let _silent = tokio::net::TcpStream::connect(b.tcp_addr()).await.unwrap();
    let _no_header = tokio::net::TcpStream::connect(b.listeners()[1].1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.sigterm();
    let status = b.wait_exit(WAIT).expect("broker still running 10 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(!b.stderr().contains("still open"), "drain timed out:\n{}", b.stderr());
}
