//! FleetMQ: an MQTT 3.1/3.1.1/5.0 broker for IoT device fleets.
#![forbid(unsafe_code)]

pub mod acl;
pub mod auth;
pub mod certs;
pub mod codec;
pub mod tls;
