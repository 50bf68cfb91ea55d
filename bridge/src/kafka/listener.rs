//! [`KafkaListener`]: the accept loop.
//!
//! Invariants:
//! - At most `max_connections` connections are served at once: a permit is taken before each
//!   accept and released when the connection's task ends, so excess clients wait in the backlog.
//! - An accept error (e.g. out of file descriptors) never ends the loop; it is logged and retried
//!   after a backoff that doubles up to one second and resets on the next success.
//! - Shutdown stops accepting at once, every connection closes at its next step, and
//!   [`KafkaListener::run`] returns only after every connection task has ended.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::connection::{self, signalled, Limits};
use super::{Dispatcher, Error, KafkaConfig, Node, Result};
use crate::group::GroupService;
use crate::log::Log;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A bound Kafka-protocol listener, ready to [`run`](KafkaListener::run).
#[derive(Debug)]
pub struct KafkaListener {
    listener: StdListener,
    local_addr: SocketAddr,
    config: KafkaConfig,
    log: Log,
    groups: GroupService,
}

impl KafkaListener {
    /// Binds `config.bind` now, so a taken port is reported at start-up rather than when serving
    /// begins; may be called outside a Tokio runtime.
    pub fn bind(config: KafkaConfig, log: Log, groups: GroupService) -> Result<Self> {
        let bind_err = |source| Error::Bind { addr: config.bind, source };
        let listener = StdListener::bind(config.bind).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        Ok(KafkaListener { listener, local_addr, config, log, groups })
    }

    /// The bound address (with the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves connections until `shutdown` becomes true (or its sender is dropped), then waits
    /// for every connection to close. Must run inside a Tokio runtime with I/O enabled.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<()> {
        let KafkaListener { listener, local_addr, config, log, groups } = self;
        let listener = TcpListener::from_std(listener)?;
        let limits = Limits {
            max_request_bytes: config.max_request_bytes,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.max(1)),
        };
        let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let mut tasks = JoinSet::new();
        let mut backoff = MIN_BACKOFF;
        tracing::info!(addr = %local_addr, "Kafka listener serving");
        loop {
            while let Some(ended) = tasks.try_join_next() {
                report(ended);
            }
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = signalled(&mut shutdown) => break,
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = signalled(&mut shutdown) => break,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "Kafka listener accept failed");
                    metrics::counter!("fleetmq_kafka_errors_total", "kind" => "accept").increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = signalled(&mut shutdown) => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = MIN_BACKOFF;
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot disable Nagle on a Kafka connection");
            }
            let node = advertised(&config, local_addr, &stream);
            let dispatcher = Dispatcher::new(log.clone(), groups.clone(), node, config.max_fetch_bytes);
            let stop = shutdown.clone();
            metrics::counter!("fleetmq_kafka_connections_total").increment(1);
            metrics::gauge!("fleetmq_kafka_connections").increment(1.0);
            tasks.spawn(async move {
                connection::serve(stream, peer, dispatcher, limits, stop).await;
                metrics::gauge!("fleetmq_kafka_connections").decrement(1.0);
                drop(permit);
            });
        }
        drop(listener);
        while let Some(ended) = tasks.join_next().await {
            report(ended);
        }
        tracing::info!(addr = %local_addr, "Kafka listener stopped");
        Ok(())
    }
}

/// Logs a connection task that did not end normally (it panicked or was cancelled).
fn report(ended: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended {
        tracing::error!(error = %e, "Kafka connection task failed");
    }
}

/// The node a client on `stream` is told about: the configured host, else the bound IP, else
/// (bound to an unspecified address) the local IP this client reached; the configured port,
/// else the bound one.
fn advertised(config: &KafkaConfig, local: SocketAddr, stream: &TcpStream) -> Node {
    let host = config.advertised_host.clone().unwrap_or_else(|| {
        if local.ip().is_unspecified() {
            stream.local_addr().map_or_else(|_| local.ip().to_string(), |a| a.ip().to_string())
        } else {
            local.ip().to_string()
        }
    });
    let port = i32::from(config.advertised_port.unwrap_or(local.port()));
    Node { id: config.node_id, host, port }
}
