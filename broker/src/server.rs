//! Starting and stopping a node: loads auth material, binds listeners, starts the metrics exporter
//! and the `$SYS` publisher, and on shutdown stops accepting, disconnects clients (5.0: 0x8B) and
//! waits for connection tasks to drain within a bound.
//!
//! Invariant: every startup failure (bad file, port in use) is reported before anything listens, so
//! a node either starts completely or not at all.

use crate::acl::Acl;
use crate::auth::PasswordFile;
use crate::broker::Broker;
use crate::config::{Config, ListenerKind, StorageEngine};
use crate::listener::{Listener, NodeLimits};
use crate::store::{MemoryStore, RocksOptions, RocksStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Listener(#[from] crate::listener::Error),
    #[error("auth.password_file: {0}")]
    Passwords(crate::auth::Error),
    #[error("auth.acl_file: {0}")]
    Acl(crate::acl::Error),
    #[error("{0}")]
    Metrics(String),
    #[error("storage: {0}")]
    Store(crate::store::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A running node.
pub struct Server {
    pub broker: Arc<Broker>,
    /// Bound listener addresses in config order.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    pub metrics: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
}

impl Server {
    /// Starts a node from a validated config. `install_metrics` is false in tests that run several
    /// nodes in one process (the metrics recorder is process-global).
    pub async fn start(config: Config, install_metrics: bool) -> Result<Server> {
        let passwords = match &config.auth.password_file {
            Some(p) => Some(PasswordFile::load(p).map_err(Error::Passwords)?),
            None => None,
        };
        let acl = match &config.auth.acl_file {
            Some(p) => Some(Acl::load(p).map_err(Error::Acl)?),
            None => None,
        };
        let metrics = match (&config.metrics.bind, install_metrics) {
            (Some(bind), true) => {
                let addr = bind.parse().map_err(|_| Error::Metrics(format!("metrics.bind: bad address {bind}")))?;
                Some(crate::metrics::install_prometheus(addr).map_err(Error::Metrics)?)
            }
            _ => None,
        };
        let mut bound = Vec::new();
        for l in &config.listeners {
            bound.push(Listener::bind(l).await?);
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limits = NodeLimits::new(config.limits.max_connections, config.limits.connect_rate);
        let sys_interval = config.sys.interval_ms;
        let store: Arc<dyn Store> = match config.storage.engine {
            StorageEngine::Memory => Arc::new(MemoryStore::new()),
            StorageEngine::Rocksdb => {
                Arc::new(RocksStore::open(&config.node.data_dir, &RocksOptions::default()).map_err(Error::Store)?)
            }
        };
        let broker = Arc::new(Broker::new(Arc::new(config), store, acl, passwords, shutdown_rx).map_err(Error::Store)?);
        let tracker = TaskTracker::new();
        let mut listeners = Vec::new();
        for l in bound {
            let addr = l.local_addr().map_err(|source| {
                Error::Listener(crate::listener::Error::Bind { bind: "local_addr".into(), source })
            })?;
            listeners.push((l.kind, addr));
            tokio::spawn(l.run(broker.clone(), limits.clone(), tracker.clone()));
        }
        if sys_interval > 0 {
            tokio::spawn(crate::sys::run(broker.clone(), Duration::from_millis(sys_interval)));
        }
        Ok(Server { broker, listeners, metrics, shutdown, tracker })
    }

    /// Stops accepting, disconnects every client and waits up to `timeout` for connections to close.
    /// Returns `false` if connections were still open at the deadline.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        let _ = self.shutdown.send(true);
        self.tracker.close();
        tokio::time::timeout(timeout, self.tracker.wait()).await.is_ok()
    }
}
