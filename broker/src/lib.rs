//! The FleetMQ server: the `fleetmq` binary's library. It owns what touches the machine and the
//! operator — [`listener`]s (TCP, TLS via `fleetmq_certs`, the PROXY protocol in [`proxy`]) and
//! the operations endpoint in [`http`] — and [`server`],
//! which loads the config, opens the store and wires the core (`fleetmq_core`) to the cluster
//! (`fleetmq_cluster`) and the bridge (`fleetmq_bridge`) by role.
//!
//! Nothing below imports this crate; it may import every other FleetMQ crate.
#![forbid(unsafe_code)]

pub mod http;
pub mod listener;
pub mod proxy;
pub mod server;
