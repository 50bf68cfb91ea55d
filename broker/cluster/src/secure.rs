//! Mutual TLS on internal links (`[cluster.tls]`): the acceptor a shard wraps every accepted link
//! in and the connector fronts and shards dial peers with.
//!
//! Invariants: both sides present a certificate and verify the other's against the cluster CA
//! only (never the system roots); the dialer checks the peer's server certificate against the
//! configured `server_name`, or else the IP address it dialed; both sides offer only the ALPN
//! protocol [`ALPN_LINK`] and the accepting side requires it (rustls alone would also accept a
//! client offering no ALPN), so an MQTT client that happens to hold a cluster certificate cannot
//! open an internal link, nor a node reach a client listener.

use fleetmq_core::config::LinkTlsConfig;
use rustls::pki_types::ServerName;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// ALPN protocol of FleetMQ internal links.
pub const ALPN_LINK: &[u8] = b"fleetmq-link";

/// Both halves of a node's internal-link TLS, built once at start-up.
pub struct LinkTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Loads the files `[cluster.tls]` names; every error names its file.
    pub fn new(c: &LinkTlsConfig) -> fleetmq_certs::tls::Result<LinkTls> {
        let opts =
            fleetmq_certs::tls::TlsOptions { cert: c.cert.clone(), key: c.key.clone(), client_ca: Some(c.ca.clone()) };
        let mut server = Arc::unwrap_or_clone(fleetmq_certs::tls::server_config(&opts)?);
        server.alpn_protocols = vec![ALPN_LINK.to_vec()];
        let (cert, key) = match (&c.client_cert, &c.client_key) {
            (Some(cert), Some(key)) => (cert, key),
            _ => (&c.cert, &c.key),
        };
        let mut client = Arc::unwrap_or_clone(fleetmq_certs::tls::client_config(cert, key, &c.ca)?);
        client.alpn_protocols = vec![ALPN_LINK.to_vec()];
        let server_name = match &c.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|_| fleetmq_certs::tls::Error::InvalidServerName { name: name.clone() })?,
            ),
            None => None,
        };
        Ok(LinkTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Client side of the handshake over a freshly dialed `tcp` to `addr`.
    pub async fn connect(&self, tcp: TcpStream, addr: SocketAddr) -> io::Result<client::TlsStream<TcpStream>> {
        let name = self.server_name.clone().unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        self.connector.connect(name, tcp).await
    }

    /// Server side of the handshake over an accepted `tcp`; the peer must have negotiated
    /// [`ALPN_LINK`].
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<server::TlsStream<TcpStream>> {
        let stream = self.acceptor.accept(tcp).await?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_LINK) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "peer did not negotiate ALPN fleetmq-link"));
        }
        Ok(stream)
    }
}

#[cfg(test)]
mod tests;
