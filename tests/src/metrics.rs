//! Reads the broker's Prometheus endpoint over plain HTTP/1.0 with a std socket (no HTTP client
//! dependency) and extracts sample values from the text exposition format.
//!
//! Invariant: every network operation has a 5 s timeout; a non-200 answer panics with the reply.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Fetches the body of `url` (`http://HOST:PORT/PATH`) with a blocking request.
pub fn fetch(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: SocketAddr = host.parse().unwrap_or_else(|e| panic!("metrics URL host {host:?} is not IP:PORT: {e}"));
    let timeout = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .unwrap_or_else(|e| panic!("cannot connect to metrics endpoint {addr}: {e}"));
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| panic!("cannot send metrics request: {e}"));
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap_or_else(|e| panic!("cannot read metrics reply: {e}"));
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) =
        reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("metrics reply has no header/body split: {reply:?}"));
    let status = head.lines().next().unwrap_or("");
    assert!(status.contains(" 200"), "metrics endpoint answered {status:?}");
    body.to_string()
}

/// [`fetch`] from async code without blocking the runtime.
pub async fn fetch_async(url: &str) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || fetch(&url)).await.unwrap_or_else(|e| panic!("metrics fetch task failed: {e}"))
}

/// Sum of all samples of metric `name` (every label set), or `None` if no sample exists.
pub fn sum(text: &str, name: &str) -> Option<f64> {
    sum_matching(text, name, "")
}

/// Sum of the samples of `name` whose label text contains `label` (e.g. `reason="queue_full"`);
/// an empty `label` matches every sample.
pub fn sum_matching(text: &str, name: &str, label: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        if !labels.contains(label) {
            continue;
        }
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            total = Some(total.unwrap_or(0.0) + v);
        }
    }
    total
}
