//! Accepting sockets: one `Listener` per configured `[[listener]]`, enforcing the node and listener
//! connection caps and the connect rate, doing the TLS handshake, and spawning a handler per stream.
//!
//! Invariants: the number of live client connections never exceeds `limits.max_connections` (a
//! permit travels with the connection, in its [`ConnGuard`], for its whole life); connections over a limit are answered with a
//! CONNACK reason by a small, separately bounded pool and otherwise closed at once; accept errors
//! (e.g. out of file descriptors) back off exponentially instead of spinning.

use fleetmq_certs::tls;
use fleetmq_codec::ReasonCode;
use fleetmq_core::broker::Broker;
use fleetmq_core::config::{ListenerConfig, ListenerKind, ProxyProtocol};
use fleetmq_core::connection::{self, ClientStream, ConnGuard};
use fleetmq_core::handler::{serve, Accepted};
use fleetmq_core::port::Forward;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// Accept backlog requested from the kernel (capped by net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 8192;
/// Connections being refused with a CONNACK at the same time; beyond this they are just closed.
const MAX_REFUSING: usize = 256;

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listener {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error("listener {bind}: {source}")]
    Tls { bind: String, source: tls::Error },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// Limits shared by all listeners of a node.
#[derive(Clone)]
pub struct NodeLimits {
    pub connections: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    rate: Arc<Mutex<RateWindow>>,
    connect_rate: u32,
}

impl NodeLimits {
    pub fn new(max_connections: usize, connect_rate: u32) -> NodeLimits {
        NodeLimits {
            connections: Arc::new(Semaphore::new(max_connections)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSING)),
            rate: Arc::new(Mutex::new(RateWindow { start: Instant::now(), count: 0 })),
            connect_rate,
        }
    }

    fn rate_exceeded(&self) -> bool {
        if self.connect_rate == 0 {
            return false;
        }
        let mut w = self.rate.lock();
        let now = Instant::now();
        if now.duration_since(w.start) >= Duration::from_secs(1) {
            w.start = now;
            w.count = 0;
        }
        w.count += 1;
        w.count > self.connect_rate
    }
}

struct RateWindow {
    start: Instant,
    count: u32,
}

/// A bound listening socket.
pub struct Listener {
    pub kind: ListenerKind,
    tcp: TcpListener,
    accept: AcceptOptions,
    own_limit: Option<Arc<Semaphore>>,
}

/// What every accepted stream of a listener goes through before MQTT.
#[derive(Clone)]
struct AcceptOptions {
    tls: Option<TlsAcceptor>,
    cn_as_username: bool,
    proxy_protocol: ProxyProtocol,
    /// On a front node: where admitted clients are forwarded.
    forward: Option<Arc<dyn Forward>>,
}

impl Listener {
    /// Binds the socket and loads TLS material, so config errors surface at startup.
    pub async fn bind(cfg: &ListenerConfig) -> Result<Listener> {
        let tls = match cfg.kind {
            ListenerKind::Tcp => None,
            ListenerKind::Tls => {
                let opts = tls::TlsOptions {
                    cert: cfg.cert.clone().unwrap_or_default(),
                    key: cfg.key.clone().unwrap_or_default(),
                    client_ca: cfg.client_ca.clone(),
                };
                let server =
                    tls::server_config(&opts).map_err(|source| Error::Tls { bind: cfg.bind.clone(), source })?;
                Some(TlsAcceptor::from(server))
            }
        };
        let tcp = bind_tcp(&cfg.bind).map_err(|source| Error::Bind { bind: cfg.bind.clone(), source })?;
        let own_limit = (cfg.max_connections > 0).then(|| Arc::new(Semaphore::new(cfg.max_connections)));
        let accept = AcceptOptions {
            tls,
            cn_as_username: cfg.cn_as_username,
            proxy_protocol: cfg.proxy_protocol,
            forward: None,
        };
        Ok(Listener { kind: cfg.kind, tcp, accept, own_limit })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts clients until shutdown, spawning a tracked handler task per connection; on a front
    /// node `forward` takes the admitted ones.
    pub async fn run(
        mut self,
        broker: Arc<Broker>,
        limits: NodeLimits,
        tracker: TaskTracker,
        forward: Option<Arc<dyn Forward>>,
    ) {
        self.accept.forward = forward;
        let mut shutdown = broker.shutdown_signal();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.changed() => return,
                a = connection::accept(&self.tcp) => a,
            };
            let _ = stream.set_nodelay(true);
            let node_permit = limits.connections.clone().try_acquire_owned().ok();
            let own_permit = match &self.own_limit {
                Some(s) => s.clone().try_acquire_owned().ok(),
                None => None,
            };
            let refuse = if node_permit.is_none() || (self.own_limit.is_some() && own_permit.is_none()) {
                broker.stats.limit_rejection("max_connections");
                Some(ReasonCode::QUOTA_EXCEEDED)
            } else if limits.rate_exceeded() {
                broker.stats.limit_rejection("connect_rate");
                Some(ReasonCode::CONNECTION_RATE_EXCEEDED)
            } else {
                None
            };
            // A refused connection must not occupy a slot of the caps that admitted it.
            let (node_permit, own_permit) = if refuse.is_some() { (None, None) } else { (node_permit, own_permit) };
            let refusing_permit = match refuse {
                Some(_) => match limits.refusing.clone().try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => continue,
                },
                None => None,
            };
            let mut guard = ConnGuard::new(broker.stats.clone());
            guard.permits = (node_permit, own_permit);
            // The session task serves the connection once it is accepted: the token keeps the
            // shutdown drain waiting for it after this accept task is gone.
            guard.token = Some(tracker.token());
            let broker = broker.clone();
            let accept = self.accept.clone();
            tracker.spawn(async move {
                let _refusing = refusing_permit;
                // Before its session owns it, a connection (TLS handshake, PROXY header, CONNECT)
                // ends with the node's shutdown instead of holding the drain until its timeout.
                let mut shutdown = broker.shutdown_signal();
                tokio::select! {
                    () = accept_stream(broker.clone(), stream, peer, accept, refuse, guard) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            });
        }
    }
}

/// Binds with a deep accept backlog, so a reconnect storm after an outage queues in the kernel
/// instead of being dropped (tokio's default backlog is 1024).
fn bind_tcp(bind: &str) -> std::io::Result<TcpListener> {
    let addr: SocketAddr = bind.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn accept_stream(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    mut peer: SocketAddr,
    accept: AcceptOptions,
    refuse: Option<ReasonCode>,
    guard: ConnGuard,
) {
    let at = tokio::time::Instant::now();
    // PROXY header, TLS handshake and CONNECT share one connect timeout.
    let deadline = at + Duration::from_millis(broker.config.mqtt.connect_timeout_ms);
    if accept.proxy_protocol != ProxyProtocol::Off {
        let header = crate::proxy::read_header(&mut stream, accept.proxy_protocol);
        let Some(client) = within(&broker, peer, deadline, ("proxy_header", "proxy_header_timeout"), header).await
        else {
            return;
        };
        peer = client.unwrap_or(peer);
    }
    let Some(acceptor) = accept.tls else {
        serve(
            broker,
            ClientStream::Tcp(stream),
            Accepted { peer, cert_username: None, refuse, at, forward: accept.forward },
            guard,
        )
        .await;
        return;
    };
    let Some(tls_stream) =
        within(&broker, peer, deadline, ("tls_handshake", "tls_handshake_timeout"), acceptor.accept(stream)).await
    else {
        return;
    };
    let cert_username = if accept.cn_as_username {
        match tls_stream.get_ref().1.peer_certificates().and_then(tls::peer_common_name) {
            Some(cn) => Some(cn),
            None => {
                tracing::info!(%peer, "client certificate has no CN; refusing");
                return;
            }
        }
    } else {
        None
    };
    serve(
        broker,
        ClientStream::Tls(Box::new(tls_stream)),
        Accepted { peer, cert_username, refuse, at, forward: accept.forward },
        guard,
    )
    .await;
}

/// Runs a pre-MQTT step (PROXY header, TLS handshake) until the connect deadline; a failure is
/// counted under the first label (a timeout under the second) and ends the connection.
async fn within<T, E: std::fmt::Display>(
    broker: &Broker,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    (limit, timeout_limit): (&'static str, &'static str),
    step: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, step).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            broker.stats.limit_rejection(limit);
            tracing::debug!(%peer, error = %e, limit, "connection refused before MQTT");
            None
        }
        Err(_) => {
            broker.stats.limit_rejection(timeout_limit);
            None
        }
    }
}
