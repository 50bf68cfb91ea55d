//! Starting and stopping a node: loads auth material, binds listeners, starts the operations
//! endpoint (`/metrics`, `/health`, `/ready`) and the `$SYS` publisher, and on shutdown stops accepting, disconnects clients (5.0: 0x8B) and
//! waits for connection tasks to drain within a bound.
//!
//! Invariant: every startup failure (bad file, port in use) is reported before anything listens, so
//! a node either starts completely or not at all.

use crate::listener::{Listener, NodeLimits};
use fleetmq_cluster::front::Front;
use fleetmq_cluster::routes::ShardRouting;
use fleetmq_core::acl::Acl;
use fleetmq_core::auth::PasswordFile;
use fleetmq_core::broker::Broker;
use fleetmq_core::config::{Config, ListenerKind, NodeRole, StorageEngine};
use fleetmq_core::persist::{Durability, RecoveredSession};
use fleetmq_core::port::Forward;
use fleetmq_core::store::commit::{Committer, SyncMode};
use fleetmq_core::store::{MemoryStore, RocksOptions, RocksStore, Store};
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
    Passwords(fleetmq_core::auth::Error),
    #[error("auth.acl_file: {0}")]
    Acl(fleetmq_core::acl::Error),
    #[error("{0}")]
    Metrics(String),
    #[error("storage: {0}")]
    Store(fleetmq_core::store::Error),
    #[error("cluster.tls: {0}")]
    LinkTls(fleetmq_certs::tls::Error),
    #[error("{0}")]
    Bridge(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A running node.
pub struct Server {
    pub broker: Arc<Broker>,
    /// Bound listener addresses in config order.
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    pub metrics: Option<SocketAddr>,
    /// A shard's internal listener (fronts and shards connect here).
    pub internal: Option<SocketAddr>,
    /// The bridge's Kafka-protocol listener (consumers of the embedded log).
    pub kafka: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tracker: TaskTracker,
    /// Where the bridge ships, for the drain once clients are gone.
    bridge_target: Option<fleetmq_core::bridge::shipper::Target>,
}

impl Server {
    /// Starts a node from a validated config. `install_metrics` is false in tests that run several
    /// nodes in one process (the metrics recorder is process-global).
    pub async fn start(config: Config, install_metrics: bool) -> Result<Server> {
        let passwords = match &config.auth.password_file {
            Some(p) => Some(PasswordFile::load(p).map_err(Error::Passwords)?),
            None => None,
        };
        let link_tls = match (&config.cluster.tls, config.node.role) {
            (Some(c), NodeRole::Front | NodeRole::Shard) => {
                Some(Arc::new(fleetmq_cluster::secure::LinkTls::new(c).map_err(Error::LinkTls)?))
            }
            _ => None,
        };
        let acl = match &config.auth.acl_file {
            Some(p) => Some(Acl::load(p).map_err(Error::Acl)?),
            None => None,
        };
        // The operations endpoint is bound here, so a taken port fails the start.
        let http = match (&config.metrics.bind, install_metrics) {
            (Some(bind), true) => {
                let listener = tokio::net::TcpListener::bind(bind.as_str())
                    .await
                    .map_err(|e| Error::Metrics(format!("metrics.bind {bind}: {e}")))?;
                let handle = crate::http::install_prometheus().map_err(Error::Metrics)?;
                Some((listener, handle))
            }
            _ => None,
        };
        let storage = config.storage.clone();
        let data_dir = config.node.data_dir.clone();
        let (durability, recovered) = tokio::task::spawn_blocking(move || open_storage(&storage, &data_dir))
            .await
            .map_err(|e| Error::Store(fleetmq_core::store::Error::Engine(e.to_string())))?
            .map_err(Error::Store)?;
        let bridge_side = match config.bridge.enabled() {
            true => {
                let (c, dir, node) = (config.bridge.clone(), config.node.data_dir.clone(), config.node.id.clone());
                let side = tokio::task::spawn_blocking(move || fleetmq_core::bridge::start::open(&c, &dir, &node))
                    .await
                    .map_err(|e| Error::Bridge(e.to_string()))?
                    .map_err(Error::Bridge)?;
                Some(side)
            }
            false => None,
        };
        let kafka = match &bridge_side {
            Some(fleetmq_core::bridge::start::LogSide::Embedded(log)) => {
                fleetmq_core::bridge::start::kafka_listener(&config.bridge, &config.node.data_dir, log)
                    .await
                    .map_err(Error::Bridge)?
            }
            _ => None,
        };
        let mut bound = Vec::new();
        for l in &config.listeners {
            bound.push(Listener::bind(l).await?);
        }
        let internal = match config.node.role {
            NodeRole::Shard => {
                let bind = config.cluster.internal_bind(&config.node.id).unwrap_or_default().to_string();
                let l = tokio::net::TcpListener::bind(&bind).await.map_err(|source| {
                    Error::Listener(crate::listener::Error::Bind { bind: format!("cluster.bind {bind}"), source })
                })?;
                Some(l)
            }
            _ => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limits = NodeLimits::new(config.limits.max_connections, config.limits.connect_rate);
        let sys_interval = config.sys.interval_ms;
        let config = Arc::new(config);
        // The cluster's part, by role: a shard routes through the other shards, a front
        // forwards its clients to them.
        let routing = (config.node.role == NodeRole::Shard)
            .then(|| Arc::new(ShardRouting::from_config(&config, durability.clone(), link_tls.clone())));
        let front = (config.node.role == NodeRole::Front)
            .then(|| Arc::new(Front::new(&config, fleetmq_cluster::link_options(&config.cluster, link_tls.clone()))));
        // Rebuilding the retained index and the outboxes scans the store: off the reactor threads.
        let (c, r) = (config.clone(), routing.clone());
        let broker = tokio::task::spawn_blocking(move || {
            let mut builder = Broker::builder(c, durability.clone(), shutdown_rx).acl(acl).passwords(passwords);
            if let Some(r) = r {
                r.recover(durability.store().as_ref())?;
                builder = builder.routing(r);
            }
            builder.build()
        })
        .await
        .map_err(|e| Error::Store(fleetmq_core::store::Error::Engine(e.to_string())))?
        .map(Arc::new)
        .map_err(Error::Store)?;
        fleetmq_core::session::restore_sessions(&broker, recovered);
        let bridge_target = match (&broker.bridge, bridge_side) {
            (Some(bridge), Some(side)) => {
                Some(fleetmq_core::bridge::start::run(bridge.clone(), side, broker.shutdown_signal()))
            }
            _ => None,
        };
        let kafka_addr = kafka.as_ref().map(|k| k.local_addr());
        if let Some(k) = kafka {
            let shutdown = broker.shutdown_signal();
            tokio::spawn(async move {
                if let Err(e) = k.run(shutdown).await {
                    tracing::error!(error = %e, "Kafka listener stopped");
                }
            });
        }
        // A front tries every shard once before it serves: early clients find their links.
        if let Some(front) = &front {
            front.connect_all().await;
            front.keep_links(broker.shutdown_signal());
        }
        let tracker = TaskTracker::new();
        let mut listeners = Vec::new();
        for l in bound {
            let addr = l.local_addr().map_err(|source| {
                Error::Listener(crate::listener::Error::Bind { bind: "local_addr".into(), source })
            })?;
            listeners.push((l.kind, addr));
            let forward = front.clone().map(|f| f as Arc<dyn Forward>);
            tokio::spawn(l.run(broker.clone(), limits.clone(), tracker.clone(), forward));
        }
        let mut internal_addr = None;
        if let (Some(l), Some(routing)) = (internal, &routing) {
            internal_addr = l.local_addr().ok();
            tokio::spawn(fleetmq_cluster::shard::run(l, broker.clone(), routing.clone(), link_tls, tracker.clone()));
        }
        if let Some(routing) = &routing {
            for peer in 0..routing.peer_count() {
                tokio::spawn(routing.clone().run_peer(broker.clone(), peer));
            }
        }
        let mut metrics = None;
        if let Some((listener, handle)) = http {
            metrics = listener.local_addr().ok();
            tokio::spawn(crate::http::serve(listener, broker.clone(), handle));
        }
        tokio::spawn(maintenance(broker.clone()));
        if sys_interval > 0 {
            tokio::spawn(fleetmq_core::sys::run(broker.clone(), Duration::from_millis(sys_interval)));
        }
        Ok(Server {
            broker,
            listeners,
            metrics,
            internal: internal_addr,
            kafka: kafka_addr,
            shutdown,
            tracker,
            bridge_target,
        })
    }

    /// Stops accepting, disconnects every client and waits up to `timeout` for connections to close;
    /// then ships what the bridge still buffers (up to `[bridge] shutdown_drain_ms`).
    /// Returns `false` if connections were still open at the deadline.
    pub async fn shutdown(self, timeout: Duration) -> bool {
        let _ = self.shutdown.send(true);
        self.broker.sessions.wake_all();
        self.tracker.close();
        let closed = tokio::time::timeout(timeout, self.tracker.wait()).await.is_ok();
        if let (Some(bridge), Some(target)) = (self.broker.bridge.clone(), self.bridge_target) {
            let within = Duration::from_millis(self.broker.config.bridge.shutdown_drain_ms);
            fleetmq_core::bridge::shipper::drain(bridge, target, within).await;
        }
        closed
    }
}

/// An opened store's durability service (which carries the store) and the sessions recovered from it.
type Storage = (Arc<Durability>, Vec<RecoveredSession>);

/// Opens the configured engine and recovers stored sessions (blocking; runs off the reactor).
fn open_storage(
    storage: &fleetmq_core::config::StorageConfig,
    data_dir: &std::path::Path,
) -> fleetmq_core::store::Result<Storage> {
    match storage.engine {
        StorageEngine::Memory => {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            Ok((Arc::new(Durability::new(store, None)), Vec::new()))
        }
        StorageEngine::Rocksdb => {
            let store: Arc<dyn Store> = Arc::new(RocksStore::open(data_dir, &RocksOptions::default())?);
            let committer =
                Committer::with_group_limit(store.clone(), SyncMode::from_config(storage), storage.max_group_writes)?;
            let durability = Durability::new(store, Some(committer));
            let started = std::time::Instant::now();
            let recovered = durability.recover()?;
            tracing::info!(
                sessions = recovered.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovered stored sessions"
            );
            Ok((Arc::new(durability), recovered))
        }
    }
}

/// How often expired retained messages are purged in the background (lookups also purge lazily).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(30);

/// Background purge of expired state until shutdown. Sessions expire by their own timers.
async fn maintenance(broker: Arc<Broker>) {
    let mut shutdown = broker.shutdown_signal();
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {
                let purged = broker.purge_expired_retained();
                if purged > 0 {
                    tracing::debug!(purged, "expired retained messages purged");
                }
            }
        }
    }
}
