//! FleetMQ: an MQTT 3.1/3.1.1/5.0 broker for IoT device fleets.
#![forbid(unsafe_code)]

pub mod codec;
pub mod router;
pub mod topic;
