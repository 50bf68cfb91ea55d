//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) on listeners behind a load
//! balancer: the header the balancer sends before any client byte carries the client's real
//! address, which then stands for the peer (connection and authentication logs).
//!
//! Invariants: only the header's own bytes are consumed (the socket is peeked until the header is
//! complete, then exactly that many bytes are read), so the client's first packet stays in the
//! socket for TLS or MQTT; a header that is missing, malformed, of a version the listener does not
//! accept, or longer than `MAX_HEADER` refuses the connection; the caller bounds the wait.

use fleetmq_core::config::ProxyProtocol;
use ppp::PartialResult;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest header accepted (a v2 header with a few TLVs is well under this).
const MAX_HEADER: usize = 1024;
/// Pause between looks at a header that arrived in pieces (load balancers send it in one write).
const PIECE_WAIT: Duration = Duration::from_millis(5);

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed before the PROXY header was complete")]
    Closed,
    #[error("malformed or unexpected PROXY header: {0}")]
    Malformed(String),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// What a complete header said: its length and the client address (`None` for a LOCAL or UNKNOWN
/// header, e.g. a balancer's health check: the socket's own peer address stands).
type Parsed = (usize, Option<SocketAddr>);

/// Reads the PROXY header the listener expects and returns the client address it carries.
pub async fn read_header(stream: &mut TcpStream, accept: ProxyProtocol) -> Result<Option<SocketAddr>> {
    let mut buf = [0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(Error::Closed);
        }
        if let Some((len, addr)) = parse(&buf[..n], accept)? {
            stream.read_exact(&mut buf[..len]).await?;
            return Ok(addr);
        }
        if n == MAX_HEADER {
            return Err(Error::TooLong);
        }
        if n == seen {
            // Peeking again would return the same bytes at once: wait for the rest.
            tokio::time::sleep(PIECE_WAIT).await;
        }
        seen = n;
    }
}

/// Parses a header at the start of `input`; `Ok(None)` while it is incomplete.
pub fn parse(input: &[u8], accept: ProxyProtocol) -> Result<Option<Parsed>> {
    let v2_prefix = input.len().min(ppp::v2::PROTOCOL_PREFIX.len());
    let is_v2 = input[..v2_prefix] == ppp::v2::PROTOCOL_PREFIX[..v2_prefix];
    let want_v2 = match accept {
        ProxyProtocol::V1 => false,
        ProxyProtocol::V2 => true,
        ProxyProtocol::Any | ProxyProtocol::Off => is_v2,
    };
    if want_v2 {
        let header = ppp::v2::Header::try_from(input);
        if header.is_incomplete() {
            return Ok(None);
        }
        let header = header.map_err(|e| Error::Malformed(e.to_string()))?;
        let addr = match (header.command, header.addresses) {
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            _ => None,
        };
        return Ok(Some((header.len(), addr)));
    }
    let header = ppp::v1::Header::try_from(input);
    if header.is_incomplete() {
        return Ok(None);
    }
    let header = header.map_err(|e| Error::Malformed(e.to_string()))?;
    let addr = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some((header.header.len(), addr)))
}

#[cfg(test)]
mod tests;
