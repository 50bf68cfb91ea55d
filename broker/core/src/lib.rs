//! FleetMQ's broker core: everything a node does with MQTT sessions and messages, whatever its
//! role, over any byte stream.
//!
//! Data flows from the wire inwards: [`connection`] frames a client's byte stream into packets
//! (`fleetmq_codec`), [`handler`] runs the CONNECT phase and attaches the client to its
//! [`session`], whose task (one per session, driving I/O-free QoS state machines) serves it and
//! uses the [`broker`] — the subscription [`router`], retained messages, [`acl`] — to route
//! messages into other sessions' bounded inboxes. What must survive a crash is written through
//! [`persist`] into the [`store`] wall: one storage trait with a memory and a RocksDB engine and
//! one conformance suite. [`bridge`] captures bridged publishes into the same commits; tasks
//! wait for the node's end through [`shutdown`].
//!
//! May not import: the cluster (`fleetmq-cluster`), the server (`fleetmq`: listeners, TLS,
//! PROXY protocol, HTTP, the binary). A cluster plugs in through the traits of [`port`], which
//! the server wires; nothing here names a cluster type, so the core compiles and is tested alone.
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod config;
pub mod connection;
pub mod handler;
pub mod ids;
pub mod message;
pub mod metrics;
pub mod persist;
pub mod port;
pub mod router;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod sys;
pub mod topic;
