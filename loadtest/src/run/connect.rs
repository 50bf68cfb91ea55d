//! Connection-storm driver: open this process's share of N idle connections at the global rate,
//! hold them with keep-alive pings, sample the broker's RSS, then close them.
//!
//! Uses the raw client ([`crate::client::raw`]) because rumqttc cannot bind a source address.
//! Connection `i` is attempted at `t0 + i / rate` from source address `source_addrs[i % len]`, so
//! processes interleave evenly. With rate 0 attempts go out as fast as possible, at most
//! [`MAX_PENDING`] handshakes at a time. The hold ends at
//! `max(t0 + N / rate, this process's last attempt) + duration`.
//!
//! Invariants: setup makes one probe connection, so an unreachable broker or a TLS/credential
//! problem is a clear error instead of N identical failures; every attempt is bounded by the
//! connect timeout; the RSS sample is taken before any held connection is closed.

use super::{instant_at, ConnectRaw, Control, Error, Live, RawResult, Result, Slice};
use crate::client::raw::{self, RawConn};
use crate::client::{Endpoint, Failure};
use crate::scenario::{ConnectLoad, Scenario};
use crate::stats::latency::Latency;
use crate::stats::series::Series;
use crate::sys::{self, CpuMeter};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Most handshakes in progress at once per process.
pub const MAX_PENDING: usize = 512;
/// Longest wait for held connections to close at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Ready to open connections at `t0`.
pub struct Prepared {
    load: ConnectLoad,
    scn: Scenario,
    ep: Arc<Endpoint>,
    addr: SocketAddr,
    slice: Slice,
    live: Arc<Live>,
}

/// Resolves the broker and proves it accepts one connection.
pub async fn prepare(
    scn: &Scenario,
    load: &ConnectLoad,
    ep: Endpoint,
    slice: Slice,
    live: Arc<Live>,
) -> Result<Prepared> {
    let text = ep.addr_text();
    let addr = raw::resolve(&ep).await.map_err(|failure| Error::Connect { addr: text.clone(), failure })?;
    let source =
        scn.connection.source_addrs.get(slice.index as usize % scn.connection.source_addrs.len().max(1)).copied();
    let probe_id = format!("flt-{}-probe{}", scn.run_id, slice.index);
    let conn =
        raw::connect(&ep, addr, source, &probe_id).await.map_err(|failure| Error::Connect { addr: text, failure })?;
    let stop = CancellationToken::new();
    stop.cancel();
    let _ = conn.hold(stop).await;
    Ok(Prepared { load: load.clone(), scn: scn.clone(), ep: Arc::new(ep), addr, slice, live })
}

enum Outcome {
    Connected(Duration),
    Failed(Failure),
}

fn source_for(addrs: &[IpAddr], i: u32) -> Option<IpAddr> {
    if addrs.is_empty() {
        None
    } else {
        addrs.get(i as usize % addrs.len()).copied()
    }
}

impl Prepared {
    /// Opens, holds and closes the connections; `rss_before` is sampled by the caller.
    pub async fn run(self, t0_ns: u64, control: Control) -> Result<RawResult> {
        let t0 = instant_at(t0_ns);
        let n = self.load.connections;
        let rate = self.load.rate;
        let planned_ramp = if rate > 0.0 { Duration::try_from_secs_f64(f64::from(n) / rate).ok() } else { None };
        tokio::select! {
            _ = tokio::time::sleep_until(t0) => {}
            _ = control.stop.cancelled() => {}
        }
        let meter = CpuMeter::start(self.scn.threads);
        let hold = CancellationToken::new();
        let pending = Arc::new(Semaphore::new(MAX_PENDING));
        let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let mut holders: JoinSet<Option<Failure>> = JoinSet::new();
        let mut latency = Latency::new()?;
        let mut raw = ConnectRaw::default();
        let mut attempts = self.slice.indices(n).peekable();
        let mut outstanding = 0u64;
        let mut launched_all = false;
        while !launched_all || outstanding > 0 {
            let next_due = match attempts.peek() {
                None => {
                    launched_all = true;
                    None
                }
                Some(&i) if rate > 0.0 => {
                    Duration::try_from_secs_f64(f64::from(i) / rate).ok().and_then(|d| t0.checked_add(d)).or(Some(t0))
                }
                Some(_) => Some(Instant::now()),
            };
            let launch = async {
                match next_due {
                    Some(due) => {
                        tokio::time::sleep_until(due).await;
                        pending.clone().acquire_owned().await.ok()
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = control.stop.cancelled() => break,
                permit = launch, if !launched_all => {
                    let Some(i) = attempts.next() else { continue };
                    outstanding += 1;
                    raw.attempted += 1;
                    let (ep, addr, tx, hold) = (self.ep.clone(), self.addr, tx.clone(), hold.clone());
                    let source = source_for(&self.scn.connection.source_addrs, i);
                    let id = self.scn.client_id('c', i);
                    holders.spawn(async move {
                        let started = Instant::now();
                        let conn = raw::connect(&ep, addr, source, &id).await;
                        drop(permit);
                        match conn {
                            Ok(c) => {
                                let _ = tx.send(Outcome::Connected(started.elapsed()));
                                hold_conn(c, hold).await
                            }
                            Err(f) => {
                                let _ = tx.send(Outcome::Failed(f));
                                None
                            }
                        }
                    });
                }
                Some(outcome) = rx.recv() => {
                    outstanding = outstanding.saturating_sub(1);
                    self.account(outcome, &mut raw, &mut latency, t0_ns);
                }
            }
        }
        let ramp_end = Instant::now();
        raw.ramp_secs = ramp_end.saturating_duration_since(t0).as_secs_f64();
        let usage = meter.finish();
        let hold_from = planned_ramp.and_then(|p| t0.checked_add(p)).map_or(ramp_end, |p| p.max(ramp_end));
        let hold_end = hold_from + self.load.duration;
        tokio::select! {
            _ = tokio::time::sleep_until(hold_end) => {}
            _ = control.stop.cancelled() => {}
        }
        while let Ok(outcome) = rx.try_recv() {
            self.account(outcome, &mut raw, &mut latency, t0_ns);
        }
        raw.rss_after = self.load.broker_pid.and_then(sys::rss_bytes);
        let mut dropped = 0u64;
        while let Some(done) = holders.try_join_next() {
            if let Ok(Some(f)) = done {
                dropped += 1;
                *raw.dropped.entry(f.to_string()).or_default() += 1;
            }
        }
        raw.held = raw.connected.saturating_sub(dropped);
        hold.cancel();
        let closing = async {
            while let Some(done) = holders.join_next().await {
                if let Ok(Some(f)) = done {
                    *raw.dropped.entry(f.to_string()).or_default() += 1;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        holders.abort_all();
        raw.latency = latency.data();
        let mut errors = BTreeMap::new();
        super::add_map(&mut errors, &raw.failures);
        super::add_map(&mut errors, &raw.dropped);
        Ok(RawResult {
            connect: Some(raw),
            errors,
            processes: vec![usage],
            interrupted: control.stop.is_cancelled(),
            ..RawResult::default()
        })
    }

    fn account(&self, outcome: Outcome, raw: &mut ConnectRaw, latency: &mut Latency, t0_ns: u64) {
        match outcome {
            Outcome::Connected(d) => {
                raw.connected += 1;
                latency.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                raw.series.add(Series::bucket(t0_ns, crate::payload::now_ns()), 1);
                self.live.connected.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(f) => {
                *raw.failures.entry(f.to_string()).or_default() += 1;
                self.live.failed.fetch_add(1, Ordering::Relaxed);
                self.live.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Holds one connection until `stop`; `Some(reason)` when it ended early.
async fn hold_conn(conn: RawConn, stop: CancellationToken) -> Option<Failure> {
    conn.hold(stop).await.err()
}
