//! Group commit: many concurrent writers, few durable writes. Async code hands a [`Batch`] to the
//! [`Committer`]; a dedicated OS thread (never a tokio reactor thread) takes the first queued batch,
//! drains whatever else is already queued (up to [`MAX_GROUP_BATCHES`] batches or
//! [`MAX_GROUP_BYTES`]), applies the whole group with one [`Store::write_many`] and then completes
//! every waiter with the group's result.
//!
//! Invariants: a writer's batch is applied exactly once and in queue order; `commit` resolves only
//! after its group was written — and, in [`SyncMode::Always`], synced; in [`SyncMode::Interval`] the
//! log is synced at most one interval after any acknowledged write. Dropping the committer writes
//! everything still queued and syncs the log before the thread ends.

use super::{Batch, Error, Result, Store};
use crate::config::{StorageConfig, SyncSetting};
use metrics::{counter, histogram, Counter, Histogram};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most batches written in one group (unless configured lower).
pub const MAX_GROUP_BATCHES: usize = 1024;
/// Group size (keys plus values) after which no further batch joins the group.
pub const MAX_GROUP_BYTES: usize = 4 << 20;

/// When acknowledged writes reach stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every group is synced before its writers are answered: no acknowledged write is lost.
    Always,
    /// Groups are written unsynced and the log is synced at least this often: a power loss may
    /// lose up to one interval of acknowledged writes (a process crash loses none).
    Interval(Duration),
}

impl SyncMode {
    /// The mode `[storage]` asks for (`sync`, `sync_interval_ms`).
    pub fn from_config(c: &StorageConfig) -> SyncMode {
        match c.sync {
            SyncSetting::Always => SyncMode::Always,
            SyncSetting::Interval => SyncMode::Interval(Duration::from_millis(c.sync_interval_ms.max(1))),
        }
    }
}

/// Counts since start: batches committed and groups written. `groups < batches` shows grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    pub batches: u64,
    pub groups: u64,
}

/// Where the commit thread reports one batch's result.
enum Waiter {
    Async(oneshot::Sender<Result<()>>),
    Blocking(mpsc::SyncSender<Result<()>>),
}

impl Waiter {
    fn complete(self, result: Result<()>) {
        // A writer that stopped waiting (cancelled future) simply does not hear back.
        match self {
            Waiter::Async(tx) => drop(tx.send(result)),
            Waiter::Blocking(tx) => drop(tx.send(result)),
        }
    }
}

struct Request {
    batch: Batch,
    waiter: Waiter,
}

#[derive(Default)]
struct Counts {
    batches: AtomicU64,
    groups: AtomicU64,
}

/// The group-commit front of a store. Share it behind an `Arc`; dropping it blocks until every
/// queued batch is written and the log synced, so drop it off the reactor (or at shutdown).
pub struct Committer {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl Committer {
    /// Starts the commit thread over `store`. Fails only if the OS refuses a new thread.
    pub fn start(store: Arc<dyn Store>, mode: SyncMode) -> Result<Committer> {
        Committer::with_group_limit(store, mode, MAX_GROUP_BATCHES)
    }

    /// Like [`Committer::start`] with at most `max_batches` batches per group (`storage.max_group_writes`;
    /// 1 turns group commit off, one write and sync per batch, the baseline it is measured against).
    pub fn with_group_limit(store: Arc<dyn Store>, mode: SyncMode, max_batches: usize) -> Result<Committer> {
        let (tx, rx) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let worker = Worker {
            store,
            mode,
            rx,
            max_batches: max_batches.max(1),
            counts: counts.clone(),
            dirty_since: None,
            write_errors: ErrorLog::default(),
            sync_errors: ErrorLog::default(),
            metrics: Metrics {
                batches: counter!("fleetmq_store_commit_batches_total"),
                groups: counter!("fleetmq_store_commit_groups_total"),
                errors: counter!("fleetmq_store_errors_total"),
                sync_seconds: histogram!("fleetmq_store_sync_seconds"),
            },
        };
        let thread = std::thread::Builder::new().name("fleetmq-store-commit".into()).spawn(move || worker.run())?;
        Ok(Committer { tx: Some(tx), thread: Some(thread), counts })
    }

    /// Commits `batch` with the next group; resolves once it is written (and synced in `Always`).
    /// Dropping the future does not withdraw the batch: once queued it is written.
    pub async fn commit(&self, batch: Batch) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Request { batch, waiter: Waiter::Async(tx) })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Queues `batch` now (so it is ordered before any batch queued after this call returns) and
    /// returns a future that resolves once it is written (and synced in `Always`).
    pub fn submit(&self, batch: Batch) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.send(Request { batch, waiter: Waiter::Async(tx) });
        async move {
            sent?;
            rx.await.map_err(|_| Error::Closed)?
        }
    }

    /// [`Committer::commit`] for threads outside the async runtime; blocks the calling thread.
    pub fn commit_blocking(&self, batch: Batch) -> Result<()> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request { batch, waiter: Waiter::Blocking(tx) })?;
        rx.recv().map_err(|_| Error::Closed)?
    }

    /// Batches and groups committed so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.counts.batches.load(Ordering::Relaxed),
            groups: self.counts.groups.load(Ordering::Relaxed),
        }
    }

    fn send(&self, req: Request) -> Result<()> {
        self.tx.as_ref().ok_or(Error::Closed)?.send(req).map_err(|_| Error::Closed)
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the storage commit thread panicked");
            }
        }
    }
}

struct Metrics {
    batches: Counter,
    groups: Counter,
    errors: Counter,
    sync_seconds: Histogram,
}

/// State of the commit thread.
struct Worker {
    store: Arc<dyn Store>,
    mode: SyncMode,
    rx: mpsc::Receiver<Request>,
    max_batches: usize,
    counts: Arc<Counts>,
    /// When the oldest unsynced write was acknowledged (`Interval` mode only).
    dirty_since: Option<Instant>,
    write_errors: ErrorLog,
    sync_errors: ErrorLog,
    metrics: Metrics,
}

/// How long storage errors of the same kind are counted silently after one was logged: a failing
/// disk fails every group commit, and the log must say so without flooding.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Throttle of one kind of commit-thread error (writes and syncs are throttled separately).
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
    failing: bool,
}

impl ErrorLog {
    /// Logs `what` with `error` unless one was logged within [`ERROR_LOG_INTERVAL`].
    fn report(&mut self, what: &str, error: &Error) {
        let now = Instant::now();
        self.failing = true;
        if self.last.is_some_and(|t| now.duration_since(t) < ERROR_LOG_INTERVAL) {
            self.suppressed += 1;
            return;
        }
        tracing::error!(%error, suppressed = self.suppressed, "{what} (errors not logged since the last report: suppressed)");
        self.last = Some(now);
        self.suppressed = 0;
    }

    /// After a success: says so once if the previous attempt had failed, with the unlogged count.
    fn recovered(&mut self, what: &str) {
        if std::mem::take(&mut self.failing) {
            tracing::warn!(suppressed = std::mem::take(&mut self.suppressed), "{what} succeeded again");
        }
    }
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.next_request() {
            self.commit_group(first);
            self.sync_if_due();
        }
        if self.dirty_since.is_some() {
            self.sync();
        }
    }

    /// Waits for the next request, syncing when the interval runs out first; `None` once every
    /// sender is gone and the queue is empty.
    fn next_request(&mut self) -> Option<Request> {
        loop {
            let (SyncMode::Interval(interval), Some(since)) = (self.mode, self.dirty_since) else {
                return self.rx.recv().ok();
            };
            match self.rx.recv_timeout(interval.saturating_sub(since.elapsed())) {
                Ok(req) => return Some(req),
                Err(mpsc::RecvTimeoutError::Timeout) => self.sync(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn commit_group(&mut self, first: Request) {
        let mut bytes = first.batch.size_bytes();
        let mut group = vec![first];
        while group.len() < self.max_batches && bytes < MAX_GROUP_BYTES {
            match self.rx.try_recv() {
                Ok(req) => {
                    bytes += req.batch.size_bytes();
                    group.push(req);
                }
                Err(_) => break,
            }
        }
        let (batches, waiters): (Vec<Batch>, Vec<Waiter>) = group.into_iter().map(|r| (r.batch, r.waiter)).unzip();
        let n = batches.len() as u64;
        let sync = self.mode == SyncMode::Always;
        let started = Instant::now();
        let result = self.store.write_many(batches, sync);
        if sync {
            self.metrics.sync_seconds.record(started.elapsed().as_secs_f64());
        }
        match &result {
            Ok(()) => {
                self.write_errors.recovered("storage write");
                if !sync && self.dirty_since.is_none() {
                    self.dirty_since = Some(Instant::now());
                }
            }
            Err(e) => {
                self.metrics.errors.increment(1);
                self.write_errors.report("storage write failed; nothing in it is acknowledged", e);
            }
        }
        self.counts.batches.fetch_add(n, Ordering::Relaxed);
        self.counts.groups.fetch_add(1, Ordering::Relaxed);
        self.metrics.batches.increment(n);
        self.metrics.groups.increment(1);
        for w in waiters {
            w.complete(result.clone());
        }
    }

    /// Under steady load the queue never runs dry, so the interval is also checked after each group.
    fn sync_if_due(&mut self) {
        if let (SyncMode::Interval(interval), Some(since)) = (self.mode, self.dirty_since) {
            if since.elapsed() >= interval {
                self.sync();
            }
        }
    }

    fn sync(&mut self) {
        let started = Instant::now();
        match self.store.sync_wal() {
            Ok(()) => {
                self.sync_errors.recovered("storage log sync");
                self.dirty_since = None;
            }
            Err(e) => {
                self.metrics.errors.increment(1);
                self.sync_errors.report("syncing the storage log failed; retrying after one interval", &e);
                self.dirty_since = Some(Instant::now());
            }
        }
        self.metrics.sync_seconds.record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests;
