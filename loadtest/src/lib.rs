//! FleetMQ load tool library: scenario configuration ([`scenario`]), payload codec ([`payload`]),
//! pure statistics ([`stats`]), MQTT client wrappers ([`client`]), scenario drivers ([`run`]),
//! reporting ([`report`]) and multi-process execution ([`worker`]).
//!
//! Invariants: the library never panics on broker behaviour or user input; every module has its
//! own `Error`; all timing uses the wall clock in ns since the Unix epoch so results from worker
//! processes on one host merge exactly.
#![forbid(unsafe_code)]

pub mod client;
pub mod payload;
pub mod report;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod sys;
pub mod worker;
