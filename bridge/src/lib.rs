//! FleetMQ bridge: copies chosen MQTT topics into a partitioned, replayable log that stream
//! processors read with ordinary Kafka clients.
//!
//! [`log`] owns the embedded log on disk (partitioned, segmented, CRC-checked Kafka v2 record
//! batches); [`group`] owns consumer-group membership and committed offsets; [`kafka`] serves
//! both to Kafka consumers over the Kafka wire protocol; [`producer`] ships records into an
//! external Kafka cluster instead (`target = "kafka"`).
#![forbid(unsafe_code)]

pub mod group;
pub mod kafka;
pub mod log;
pub mod producer;
