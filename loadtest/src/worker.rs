//! Multi-process runs: the parent re-executes the tool as N workers (`fleetmq-loadtest __worker`),
//! each driving slice `k` of the clients, and merges their JSON results.
//!
//! Protocol, one JSON object per line: parent → worker stdin: a [`WorkerSpec`], later [`ToWorker`]
//! commands (`go` with the common `t0`, `drained`, `stop`); worker → parent stdout: [`ToParent`]
//! (`ready` after setup, `progress` snapshots, one final `result`, or `error`). Worker stderr is
//! inherited.
//!
//! Invariants: no worker starts its load before every worker reported `ready`; all use one `t0`;
//! the parent ends the drain early only when the summed counters say every delivery arrived; a
//! worker whose stdin closes stops as if interrupted, so a dying parent never leaves load running.

use crate::payload::now_ns;
use crate::run::{self, local, Control, Live, RawResult, Slice, Snapshot};
use crate::scenario::{Scenario, Workload};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Hidden subcommand that turns the binary into a worker.
pub const WORKER_ARG: &str = "__worker";
/// How often workers report progress.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Why a multi-process run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Spawning or talking to a worker failed.
    #[error("worker {index}: {message}")]
    Worker {
        /// Worker index.
        index: usize,
        /// What happened.
        message: String,
    },
    /// A worker's setup failed (its message is the user-facing error).
    #[error("{0}")]
    Setup(String),
    /// Merging results failed.
    #[error(transparent)]
    Run(#[from] run::Error),
    /// Malformed protocol line.
    #[error("bad worker protocol line: {0}")]
    Protocol(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// First line a worker reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The whole scenario.
    pub scenario: Scenario,
    /// This worker's share.
    pub slice: Slice,
}

/// Parent → worker commands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// Start the load at `t0_ns`.
    Go {
        /// Common start, ns since the epoch.
        t0_ns: u64,
    },
    /// End the drain period now.
    Drained,
    /// Stop now (interrupted).
    Stop,
}

/// Worker → parent messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToParent {
    /// Setup done.
    Ready,
    /// Setup or run failed.
    Error {
        /// One-line reason.
        message: String,
    },
    /// Live counters.
    Progress {
        /// Counters.
        snapshot: Snapshot,
    },
    /// Final result.
    Result {
        /// Everything measured.
        result: Box<RawResult>,
    },
}

/// Writes one protocol line to stdout (worker side).
pub fn emit(msg: &ToParent) {
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Parses the spec line.
pub fn parse_spec(line: &str) -> Result<WorkerSpec> {
    serde_json::from_str(line).map_err(|e| Error::Protocol(e.to_string()))
}

/// Worker body: set up, report ready, wait for `go`, run, report the result. `commands` carries
/// the parsed stdin lines after the spec (closed channel = parent gone).
pub async fn serve(spec: WorkerSpec, mut commands: mpsc::UnboundedReceiver<ToWorker>) -> bool {
    let live = Arc::new(Live::default());
    let prepared = match run::prepare(&spec.scenario, spec.slice, live.clone()).await {
        Ok(p) => p,
        Err(e) => {
            emit(&ToParent::Error { message: e.to_string() });
            return false;
        }
    };
    emit(&ToParent::Ready);
    let t0_ns = loop {
        match commands.recv().await {
            Some(ToWorker::Go { t0_ns }) => break t0_ns,
            Some(_) => {}
            None => return false,
        }
    };
    let control = Control::default();
    let c = control.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(ToWorker::Drained) => c.drained.cancel(),
                    Some(ToWorker::Stop) | None => { c.stop.cancel(); return; }
                    Some(ToWorker::Go { .. }) => {}
                },
                r = tokio::signal::ctrl_c() => { if r.is_ok() { c.stop.cancel(); } return; }
            }
        }
    });
    let l = live.clone();
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            emit(&ToParent::Progress { snapshot: l.snapshot() });
        }
    });
    let result = prepared.run(t0_ns, control).await;
    progress.abort();
    emit(&ToParent::Progress { snapshot: live.snapshot() });
    match result {
        Ok(r) => {
            emit(&ToParent::Result { result: Box::new(r) });
            true
        }
        Err(e) => {
            emit(&ToParent::Error { message: e.to_string() });
            false
        }
    }
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
}

async fn send(w: &mut Worker, index: usize, cmd: &ToWorker) -> Result<()> {
    let line = serde_json::to_string(cmd).map_err(|e| Error::Protocol(e.to_string()))? + "\n";
    w.stdin.write_all(line.as_bytes()).await.map_err(|e| Error::Worker { index, message: e.to_string() })?;
    w.stdin.flush().await.map_err(|e| Error::Worker { index, message: e.to_string() })
}

async fn broadcast(workers: &mut [Worker], cmd: &ToWorker) {
    for (i, w) in workers.iter_mut().enumerate() {
        let _ = send(w, i, cmd).await;
    }
}

/// Runs `scn` as `scn.processes` workers of executable `exe`, updating `live` with their summed
/// progress, and returns the merged result.
pub async fn run_processes(exe: &Path, scn: &Scenario, control: Control, live: Arc<Live>) -> Result<RawResult> {
    let n = scn.processes.max(1) as usize;
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Option<ToParent>)>();
    let mut workers = Vec::with_capacity(n);
    for index in 0..n {
        let mut child = Command::new(exe)
            .arg(WORKER_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Worker { index, message: format!("cannot start {}: {e}", exe.display()) })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Worker { index, message: "no stdio pipes".into() });
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send((index, serde_json::from_str::<ToParent>(&line).ok()));
            }
            let _ = tx.send((index, None));
        });
        let mut w = Worker { child, stdin };
        let spec = WorkerSpec { scenario: scn.clone(), slice: Slice { index: index as u32, count: n as u32 } };
        let line = serde_json::to_string(&spec).map_err(|e| Error::Protocol(e.to_string()))? + "\n";
        w.stdin.write_all(line.as_bytes()).await.map_err(|e| Error::Worker { index, message: e.to_string() })?;
        workers.push(w);
    }
    let mut ready = 0;
    while ready < n {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((_, Some(ToParent::Ready))) => ready += 1,
                Some((_, Some(ToParent::Error { message }))) => return Err(Error::Setup(message)),
                Some((index, None)) => return Err(Error::Worker { index, message: "exited during setup".into() }),
                Some(_) => {}
                None => return Err(Error::Protocol("all workers gone".into())),
            },
            _ = control.stop.cancelled() => return Err(Error::Setup("interrupted during setup".into())),
        }
    }
    let rss_before = match &scn.workload {
        Workload::Connect(load) => load.broker_pid.and_then(sys::rss_bytes),
        Workload::PubSub(_) => None,
    };
    let t0_ns = now_ns() + run::nanos(local::START_DELAY);
    live.t0_ns.store(t0_ns, Ordering::Relaxed);
    broadcast(&mut workers, &ToWorker::Go { t0_ns }).await;
    let drain_target = match &scn.workload {
        Workload::PubSub(l) => Some((l.publishers, l.receivers_per_message())),
        Workload::Connect(_) => None,
    };
    let mut snapshots = vec![Snapshot::default(); n];
    let mut results: Vec<Option<RawResult>> = vec![None; n];
    let (mut drained_sent, mut stop_sent) = (false, false);
    while results.iter().any(Option::is_none) {
        let msg = tokio::select! {
            m = rx.recv() => m,
            _ = control.stop.cancelled(), if !stop_sent => {
                stop_sent = true;
                broadcast(&mut workers, &ToWorker::Stop).await;
                continue;
            }
        };
        match msg {
            Some((i, Some(ToParent::Progress { snapshot }))) => {
                if let Some(s) = snapshots.get_mut(i) {
                    *s = snapshot;
                }
                let mut sum = Snapshot::default();
                snapshots.iter().for_each(|s| sum.add(s));
                live.store(&sum);
                if let (Some((p, per)), false) = (drain_target, drained_sent) {
                    if sum.drained(p, per) {
                        drained_sent = true;
                        broadcast(&mut workers, &ToWorker::Drained).await;
                    }
                }
            }
            Some((i, Some(ToParent::Result { result }))) => {
                if let Some(slot) = results.get_mut(i) {
                    *slot = Some(*result);
                }
            }
            Some((index, Some(ToParent::Error { message }))) => return Err(Error::Worker { index, message }),
            Some((index, None)) if results.get(index).is_some_and(Option::is_none) => {
                return Err(Error::Worker { index, message: "exited without a result".into() })
            }
            Some(_) => {}
            None => break,
        }
    }
    for w in &mut workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
    }
    let mut merged = RawResult::default();
    for r in results.into_iter().flatten() {
        merged.merge(r)?;
    }
    if let Some(c) = merged.connect.as_mut() {
        c.rss_before = rss_before;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_spec_roundtrips_every_workload() {
        use crate::scenario::spec::{Origin, Spec};
        for kind in ["connect", "fan-in", "fan-out", "p2p", "shared"] {
            let scenario = Spec::from_toml("t", &format!("[scenario]\nkind = \"{kind}\"\n"))
                .unwrap()
                .resolve(Origin::File)
                .unwrap();
            let spec = WorkerSpec { scenario, slice: Slice { index: 1, count: 2 } };
            let back = parse_spec(&serde_json::to_string(&spec).unwrap()).unwrap();
            assert_eq!(back.scenario, spec.scenario, "{kind}");
        }
    }

    #[test]
    fn protocol_lines_roundtrip() {
        let go = serde_json::to_string(&ToWorker::Go { t0_ns: 42 }).unwrap();
        assert_eq!(go, r#"{"type":"go","t0_ns":42}"#);
        assert_eq!(serde_json::from_str::<ToWorker>(r#"{"type":"drained"}"#).unwrap(), ToWorker::Drained);
        let p = serde_json::to_string(&ToParent::Progress { snapshot: Snapshot { sent: 3, ..Snapshot::default() } })
            .unwrap();
        assert!(
            matches!(serde_json::from_str::<ToParent>(&p).unwrap(), ToParent::Progress { snapshot } if snapshot.sent == 3)
        );
        assert!(parse_spec("{}").is_err());
    }
}
