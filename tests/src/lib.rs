//! End-to-end test harness for FleetMQ: the suites in `tests/tests/` start the real `fleetmq`
//! binary as a child process ([`broker::Broker`]) and drive it with real clients ([`v4`], [`v5`],
//! built on rumqttc) and with hand-built bytes ([`wire`], [`raw`], [`parse`]) for wire-exact and
//! protocol-violation checks.
//!
//! Invariants: every broker binds port 0 on loopback and lives in its own temp dir, every wait is
//! bounded, and everything a test starts is stopped when the test ends — so tests run in parallel.
//! The harness panics with a descriptive message on any unexpected outcome (that is how a test
//! fails); it never depends on FleetMQ's own codec.
//!
//! Running: `cargo test --workspace` builds the `fleetmq` binary first (the broker package's CLI
//! tests need it) and then runs these suites. `cargo test -p fleetmq-tests` alone expects the
//! binary already built in the same target dir (`cargo build -p fleetmq`), or `FLEETMQ_BIN` set to
//! its path. `FLEETMQ_KEEP_TMP=1` keeps each broker's temp dir (config, data, `stderr.log`); the
//! stderr tail of a broker is printed anyway when its test fails.
#![forbid(unsafe_code)]

pub mod broker;
pub mod cli;
pub mod cluster;
pub mod haproxy;
pub mod metrics;
pub mod parse;
pub mod raw;
pub mod tempdir;
pub mod v4;
pub mod v5;
pub mod wire;

pub use broker::Broker;
pub use raw::{assert_roundtrip, unique, RawClient};
pub use tempdir::TempDir;
