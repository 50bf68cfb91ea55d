//! Runs a whole scenario inside this process: prepare, pick `t0`, run, and end the drain period as
//! soon as every expected delivery has arrived.
//!
//! Invariants: `t0` is chosen after setup completes (plus [`START_DELAY`]) so no client starts
//! before all are connected; the broker's "before" RSS is sampled after the probe and before the
//! first measured connection.

use super::{prepare, Control, Error, Live, Prepared, RawResult, Result, Slice};
use crate::payload::now_ns;
use crate::scenario::{Scenario, Workload};
use crate::sys;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Gap between the end of setup and `t0`.
pub const START_DELAY: Duration = Duration::from_millis(100);
/// How often the drain watcher checks the counters.
pub const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Runs `scn` in this process, updating `live` as it goes.
pub async fn run_local(scn: &Scenario, control: Control, live: Arc<Live>) -> Result<RawResult> {
    let prepared = tokio::select! {
        p = prepare(scn, Slice::WHOLE, live.clone()) => p?,
        _ = control.stop.cancelled() => return Err(Error::Interrupted),
    };
    let rss_before = match &scn.workload {
        Workload::Connect(load) => load.broker_pid.and_then(sys::rss_bytes),
        Workload::PubSub(_) => None,
    };
    let t0_ns = now_ns() + super::nanos(START_DELAY);
    live.t0_ns.store(t0_ns, Ordering::Relaxed);
    let watcher = match (&scn.workload, &prepared) {
        (Workload::PubSub(load), Prepared::PubSub(_)) => {
            let (publishers, per_msg) = (load.publishers, load.receivers_per_message());
            Some(tokio::spawn(watch_drain(live.clone(), control.clone(), publishers, per_msg)))
        }
        _ => None,
    };
    let mut result = prepared.run(t0_ns, control).await;
    if let Some(w) = watcher {
        w.abort();
    }
    if let Ok(RawResult { connect: Some(c), .. }) = &mut result {
        c.rss_before = rss_before;
    }
    result
}

/// Cancels `control.drained` once every publisher is done and every expected delivery arrived.
pub async fn watch_drain(live: Arc<Live>, control: Control, publishers: u32, receivers_per_message: u64) {
    loop {
        if control.stop.is_cancelled() || control.drained.is_cancelled() {
            return;
        }
        if live.snapshot().drained(publishers, receivers_per_message) {
            control.drained.cancel();
            return;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}
