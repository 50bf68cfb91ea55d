//! FleetMQ: an MQTT 3.1/3.1.1/5.0 broker for IoT device fleets.
//!
//! Layers, from the wire inwards: [`listener`] accepts sockets, [`handler`] runs the CONNECT phase
//! over [`connection`] framing and the [`codec`], then hands the connection to the [`session`]
//! layer, whose tasks (one per session) serve it and use the [`broker`] (subscription
//! [`router`], retained messages, [`acl`]) to route messages. [`server`] starts and stops a node.
//! In a [`cluster`], front nodes forward each session to the shard node that owns it.
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod bridge;
pub mod broker;
pub mod certs;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod handler;
pub mod http;
pub mod ids;
pub mod listener;
pub mod message;
pub mod metrics;
pub mod persist;
pub mod proxy;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
pub mod sys;
pub mod tls;
pub mod topic;
