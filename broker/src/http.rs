//! The node's operations endpoint on `metrics.bind`: `/metrics` (Prometheus text), `/health`
//! (the process serves requests) and `/ready` (the node accepts MQTT connections; 503 once it is
//! shutting down, so a load balancer stops sending clients while it drains).
//!
//! Invariants: one small GET per connection, answered and closed; a request is read within
//! `REQUEST_TIMEOUT` and `MAX_REQUEST` bytes, and at most `MAX_CONNECTIONS` are served at once,
//! so a slow or hostile scraper cannot hold the node's resources; the endpoint keeps answering
//! during shutdown until the process exits.

use fleetmq_core::broker::Broker;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request and take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at the same time at most; beyond, connections are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Installs the process-wide Prometheus recorder; the handle renders `/metrics`.
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))
}

/// An HTTP answer: status line text, content type, body.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    fn text(status: &'static str, body: &str) -> Reply {
        Reply { status, content_type: "text/plain; charset=utf-8", body: body.to_string() }
    }
}

/// Answers a request line such as `GET /ready HTTP/1.1`.
pub fn respond(request_line: &str, ready: bool, metrics: &PrometheusHandle) -> Reply {
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Reply::text("400 Bad Request", "bad request\n");
    };
    if method != "GET" && method != "HEAD" {
        return Reply::text("405 Method Not Allowed", "only GET\n");
    }
    match target.split('?').next().unwrap_or("") {
        "/metrics" => {
            Reply { status: "200 OK", content_type: "text/plain; version=0.0.4; charset=utf-8", body: metrics.render() }
        }
        "/health" => Reply::text("200 OK", "ok\n"),
        "/ready" if ready => Reply::text("200 OK", "ready\n"),
        "/ready" => Reply::text("503 Service Unavailable", "shutting down\n"),
        _ => Reply::text("404 Not Found", "not found\n"),
    }
}

/// Serves the endpoint until the process exits.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, metrics: PrometheusHandle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let broker = broker.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &broker, &metrics)).await;
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, broker: &Broker, metrics: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or("");
    let reply = respond(line, !broker.is_shutting_down(), metrics);
    let with_body = !line.starts_with("HEAD ");
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(reply.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle() -> PrometheusHandle {
        metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle()
    }

    #[test]
    fn ready_turns_503_when_shutting_down() {
        let h = handle();
        assert_eq!(respond("GET /ready HTTP/1.1", true, &h).status, "200 OK");
        assert_eq!(respond("GET /ready HTTP/1.1", false, &h).status, "503 Service Unavailable");
        // Health is about the process, not about accepting clients.
        assert_eq!(respond("GET /health HTTP/1.0", false, &h).status, "200 OK");
    }

    #[test]
    fn unknown_paths_methods_and_garbage_get_4xx() {
        let h = handle();
        assert_eq!(respond("GET /nope HTTP/1.1", true, &h).status, "404 Not Found");
        assert_eq!(respond("POST /ready HTTP/1.1", true, &h).status, "405 Method Not Allowed");
        assert_eq!(respond("", true, &h).status, "400 Bad Request");
        assert_eq!(
            respond("GET /metrics?x=1 HTTP/1.1", true, &h).content_type,
            "text/plain; version=0.0.4; charset=utf-8"
        );
    }
}
