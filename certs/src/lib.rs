//! FleetMQ's certificates: what a TLS listener or an internal link needs before it can start.
//!
//! [`dev`] writes a development CA with a server and a client certificate (`fleetmq certs`);
//! [`tls`] loads PEM files into rustls server and client configurations, checking them (no
//! certificate, no key, a key that does not match its certificate, a CA that cannot anchor trust:
//! errors that name the file), and reads the identity of a verified client certificate. The
//! README next to this crate describes a production certificate layout for a fleet.
//!
//! May not import: sockets, tokio, MQTT or any other FleetMQ crate — the listeners and the
//! cluster's links take the configurations built here and do the handshakes themselves.
#![forbid(unsafe_code)]

pub mod dev;
pub mod tls;
