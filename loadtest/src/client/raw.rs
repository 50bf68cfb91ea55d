//! A minimal MQTT client for idle connections: CONNECT, CONNACK, PINGREQ/PINGRESP, DISCONNECT.
//!
//! rumqttc cannot bind a socket's local address, and one process on one source address runs out of
//! ephemeral ports and file descriptors long before tens of thousands of connections, so the
//! connect scenario speaks just enough MQTT itself over a `tokio::net::TcpSocket` bound to a chosen
//! source address (optionally wrapped in TLS).
//!
//! Invariants: reads are bounded (packets over [`MAX_INBOUND`] bytes are a protocol error, never an
//! allocation); every wait is bounded by the connect timeout or the keep-alive; nothing panics on
//! broker input.

use super::{tls, Endpoint, Failure};
use crate::scenario::MqttVersion;
use rumqttc::tokio_rustls::TlsConnector;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_util::sync::CancellationToken;

/// Largest packet read from the broker while idle.
pub const MAX_INBOUND: usize = 64 * 1024;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One open, accepted connection.
pub struct RawConn {
    io: Box<dyn Io>,
    keepalive: Duration,
}

/// Builds a CONNECT packet.
pub fn connect_packet(
    version: MqttVersion,
    client_id: &str,
    credentials: Option<&(String, String)>,
    keepalive_secs: u16,
) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, "MQTT");
    body.push(match version {
        MqttVersion::V311 => 4,
        MqttVersion::V5 => 5,
    });
    let mut flags = 0x02;
    if credentials.is_some() {
        flags |= 0x80 | 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&keepalive_secs.to_be_bytes());
    if version == MqttVersion::V5 {
        body.push(0);
    }
    put_str(&mut body, client_id);
    if let Some((u, p)) = credentials {
        put_str(&mut body, u);
        put_str(&mut body, p);
    }
    let mut pkt = vec![0x10];
    put_varint(&mut pkt, body.len());
    pkt.extend_from_slice(&body);
    pkt
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.push(b);
        if n == 0 {
            break;
        }
    }
}

/// Reads one packet: (first byte, body).
async fn read_packet(io: &mut (impl AsyncRead + Unpin + ?Sized)) -> Result<(u8, Vec<u8>), Failure> {
    let first = io.read_u8().await.map_err(|e| Failure::from_io(&e))?;
    let mut len: usize = 0;
    let mut shift = 0;
    loop {
        let b = io.read_u8().await.map_err(|e| Failure::from_io(&e))?;
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(Failure::Protocol("malformed remaining length".into()));
        }
    }
    if len > MAX_INBOUND {
        return Err(Failure::Protocol(format!("packet of {len} bytes while idle")));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await.map_err(|e| Failure::from_io(&e))?;
    Ok((first, body))
}

/// Name of a CONNACK code for reports (3.1.1 return codes and 5.0 reason codes).
pub fn connack_code_name(version: MqttVersion, code: u8) -> String {
    let name = match (version, code) {
        (MqttVersion::V311, 1) => "unacceptable protocol version",
        (MqttVersion::V311, 2) => "identifier rejected",
        (MqttVersion::V311, 3) => "server unavailable",
        (MqttVersion::V311, 4) => "bad user name or password",
        (MqttVersion::V311, 5) => "not authorized",
        (MqttVersion::V5, 0x80) => "unspecified error",
        (MqttVersion::V5, 0x84) => "unsupported protocol version",
        (MqttVersion::V5, 0x85) => "client identifier not valid",
        (MqttVersion::V5, 0x86) => "bad user name or password",
        (MqttVersion::V5, 0x87) => "not authorized",
        (MqttVersion::V5, 0x88) => "server unavailable",
        (MqttVersion::V5, 0x89) => "server busy",
        (MqttVersion::V5, 0x8A) => "banned",
        (MqttVersion::V5, 0x97) => "quota exceeded",
        (MqttVersion::V5, 0x9F) => "connection rate exceeded",
        _ => "",
    };
    if name.is_empty() {
        format!("0x{code:02X}")
    } else {
        format!("0x{code:02X} ({name})")
    }
}

/// Resolves the broker address once (all connections use it).
pub async fn resolve(ep: &Endpoint) -> Result<SocketAddr, Failure> {
    let mut addrs = tokio::net::lookup_host((ep.host.as_str(), ep.port))
        .await
        .map_err(|e| Failure::Io(format!("cannot resolve {}: {e}", ep.host)))?;
    addrs.next().ok_or_else(|| Failure::Io(format!("{} resolves to no address", ep.host)))
}

/// Opens a connection from `source` (if any) and completes CONNECT/CONNACK within the timeout.
pub async fn connect(
    ep: &Endpoint,
    addr: SocketAddr,
    source: Option<IpAddr>,
    client_id: &str,
) -> Result<RawConn, Failure> {
    let keepalive_secs = u16::try_from(ep.keepalive.as_secs()).unwrap_or(u16::MAX).max(1);
    let deadline = tokio::time::Instant::now() + ep.connect_timeout;
    let work = async {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| Failure::Io(e.to_string()))?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0)).map_err(|e| Failure::Io(format!("bind {ip}: {e}")))?;
        }
        let tcp = socket.connect(addr).await.map_err(|e| Failure::Io(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut io: Box<dyn Io> = match &ep.tls {
            Some(cfg) => {
                let name = tls::server_name(&ep.host).map_err(|e| Failure::Tls(e.to_string()))?;
                let stream = TlsConnector::from(cfg.clone()).connect(name, tcp).await.map_err(|e| match e.kind() {
                    std::io::ErrorKind::InvalidData => Failure::Tls(e.to_string()),
                    _ => match Failure::from_io(&e) {
                        Failure::Closed => Failure::Tls("handshake closed by broker".into()),
                        other => other,
                    },
                })?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        let pkt = connect_packet(ep.mqtt, client_id, ep.credentials.as_ref(), keepalive_secs);
        io.write_all(&pkt).await.map_err(|e| Failure::from_io(&e))?;
        io.flush().await.map_err(|e| Failure::from_io(&e))?;
        let (first, body) = read_packet(&mut io).await?;
        if first != 0x20 {
            return Err(Failure::Protocol(format!("expected CONNACK, got packet type {}", first >> 4)));
        }
        match body.get(1) {
            Some(0) => Ok(RawConn { io, keepalive: Duration::from_secs(u64::from(keepalive_secs)) }),
            Some(&code) => Err(Failure::Refused(connack_code_name(ep.mqtt, code))),
            None => Err(Failure::Protocol("short CONNACK".into())),
        }
    };
    tokio::time::timeout_at(deadline, work).await.unwrap_or(Err(Failure::Timeout))
}

/// Splits one complete packet off the front of `buf`: `Ok(None)` when more bytes are needed.
fn take_packet(buf: &mut Vec<u8>) -> Result<Option<(u8, Vec<u8>)>, Failure> {
    let Some(&first) = buf.first() else { return Ok(None) };
    let mut len: usize = 0;
    let mut idx = 1;
    loop {
        let Some(&b) = buf.get(idx) else { return Ok(None) };
        len |= usize::from(b & 0x7F) << (7 * (idx - 1));
        idx += 1;
        if b & 0x80 == 0 {
            break;
        }
        if idx > 4 {
            return Err(Failure::Protocol("malformed remaining length".into()));
        }
    }
    if len > MAX_INBOUND {
        return Err(Failure::Protocol(format!("packet of {len} bytes while idle")));
    }
    let Some(body) = buf.get(idx..idx + len) else { return Ok(None) };
    let body = body.to_vec();
    buf.drain(..idx + len);
    Ok(Some((first, body)))
}

impl RawConn {
    /// Keeps the connection alive with PINGREQ until `stop` fires, then sends DISCONNECT and closes.
    /// Returns why the connection ended early, if it did.
    pub async fn hold(mut self, stop: CancellationToken) -> Result<(), Failure> {
        let mut next_ping = Instant::now() + self.keepalive;
        let mut awaiting_pong: Option<Instant> = None;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        loop {
            let wake = awaiting_pong.map(|t| t + self.keepalive).unwrap_or(next_ping);
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = self.io.write_all(&[0xE0, 0x00]).await;
                    let _ = self.io.shutdown().await;
                    return Ok(());
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    if awaiting_pong.is_some() {
                        return Err(Failure::Protocol("no PINGRESP within the keep-alive".into()));
                    }
                    self.io.write_all(&[0xC0, 0x00]).await.map_err(|e| Failure::from_io(&e))?;
                    awaiting_pong = Some(Instant::now());
                    next_ping = Instant::now() + self.keepalive;
                }
                r = self.io.read(&mut chunk) => {
                    let n = r.map_err(|e| Failure::from_io(&e))?;
                    if n == 0 {
                        return Err(Failure::Closed);
                    }
                    buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    while let Some((first, body)) = take_packet(&mut buf)? {
                        match first >> 4 {
                            13 => awaiting_pong = None,
                            14 => {
                                let reason = body.first().map(|c| format!("0x{c:02X}")).unwrap_or_else(|| "0x00".into());
                                return Err(Failure::Disconnected(reason));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_311_matches_the_spec_layout() {
        let p = connect_packet(MqttVersion::V311, "ab", None, 30);
        assert_eq!(p, vec![0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, b'a', b'b']);
    }

    #[test]
    fn connect_packet_5_with_credentials() {
        let creds = ("u".to_string(), "pw".to_string());
        let p = connect_packet(MqttVersion::V5, "c", Some(&creds), 60);
        assert_eq!(
            p,
            vec![0x10, 21, 0, 4, b'M', b'Q', b'T', b'T', 5, 0xC2, 0, 60, 0, 0, 1, b'c', 0, 1, b'u', 0, 2, b'p', b'w']
        );
    }

    #[test]
    fn varint_boundaries() {
        for (n, want) in [(0usize, vec![0u8]), (127, vec![0x7F]), (128, vec![0x80, 1]), (16_384, vec![0x80, 0x80, 1])] {
            let mut b = Vec::new();
            put_varint(&mut b, n);
            assert_eq!(b, want, "{n}");
        }
    }

    #[tokio::test]
    async fn read_packet_bounds_and_parses() {
        let mut ok: &[u8] = &[0x20, 2, 0, 0];
        assert_eq!(read_packet(&mut ok).await.unwrap(), (0x20, vec![0, 0]));
        let mut huge: &[u8] = &[0x30, 0xFF, 0xFF, 0xFF, 0x7F];
        assert!(matches!(read_packet(&mut huge).await, Err(Failure::Protocol(_))));
        let mut bad: &[u8] = &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert!(matches!(read_packet(&mut bad).await, Err(Failure::Protocol(_))));
        let mut short: &[u8] = &[0x20, 2, 0];
        assert_eq!(read_packet(&mut short).await, Err(Failure::Closed));
    }

    #[test]
    fn take_packet_waits_for_complete_packets() {
        let mut buf = vec![0xD0, 0x00, 0xE0, 0x01];
        assert_eq!(take_packet(&mut buf).unwrap(), Some((0xD0, vec![])));
        assert_eq!(take_packet(&mut buf).unwrap(), None);
        buf.push(0x8E);
        assert_eq!(take_packet(&mut buf).unwrap(), Some((0xE0, vec![0x8E])));
        assert!(buf.is_empty());
        let mut bad = vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert!(take_packet(&mut bad).is_err());
    }

    #[test]
    fn connack_names() {
        assert_eq!(connack_code_name(MqttVersion::V311, 5), "0x05 (not authorized)");
        assert_eq!(connack_code_name(MqttVersion::V5, 0x87), "0x87 (not authorized)");
        assert_eq!(connack_code_name(MqttVersion::V5, 0x42), "0x42");
    }
}
