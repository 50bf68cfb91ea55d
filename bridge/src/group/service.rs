//! [`GroupService`]: the async front end of the group layer, what the Kafka listener calls.
//!
//! One Tokio task owns the [`Coordinator`]: requests arrive over a bounded queue, each with a
//! oneshot for its reply, and a periodic tick drives timeouts. One dedicated thread owns the
//! [`OffsetStore`], so blocking file I/O never runs on the reactor. Invariants:
//! - Commits and fetches reach the store thread in arrival order through a FIFO queue, so two
//!   commits of one partition are applied in the order they were sent, and a fetch sees every
//!   commit acknowledged before it was sent.
//! - A commit is acknowledged only after the store has fsynced it.
//! - When every handle is dropped the task ends, then the store thread drains its queue and ends.

use super::{
    CommitRequest, CommitResponse, Coordinator, Error, ErrorCode, FetchRequest, FetchResponse, GroupConfig,
    GroupRequest, GroupResponse, HeartbeatRequest, HeartbeatResponse, JoinRequest, JoinResponse, LeaveRequest,
    LeaveResponse, OffsetStore, ReplyTo, Result, SyncRequest, SyncResponse,
};
use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

/// Handle to the running group service; cheap to clone. The service stops when the last handle
/// is dropped (requests still parked then fail with [`Error::Closed`]).
#[derive(Debug, Clone)]
pub struct GroupService {
    tx: mpsc::Sender<Command>,
}

#[derive(Debug)]
enum Command {
    Group { req: GroupRequest, reply: oneshot::Sender<GroupResponse> },
    Commit { req: CommitRequest, reply: oneshot::Sender<CommitResponse> },
    Fetch { req: FetchRequest, reply: oneshot::Sender<FetchResponse> },
}

#[derive(Debug)]
enum StoreJob {
    Commit { req: CommitRequest, reply: oneshot::Sender<CommitResponse> },
    Fetch { req: FetchRequest, reply: oneshot::Sender<FetchResponse> },
}

impl GroupService {
    /// Starts the coordinator task on the current Tokio runtime and the store thread, which takes
    /// ownership of `store` (open it beforehand, off the reactor: opening replays the file).
    pub fn start(config: GroupConfig, store: OffsetStore) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let depth = config.queue_depth.max(1);
        let (store_tx, store_rx) = mpsc::channel(depth);
        let writer = std::thread::Builder::new()
            .name("fleetmq-offsets".into())
            .spawn(move || run_store(store, store_rx))
            .map_err(Error::Thread)?;
        let (tx, rx) = mpsc::channel(depth);
        let tick = Duration::from_millis(config.tick_interval_ms.max(1));
        runtime.spawn(run(Coordinator::new(config, id_seed()), rx, store_tx, writer, tick));
        Ok(GroupService { tx })
    }

    /// JoinGroup; resolves when the coordinator answers (possibly after a rebalance delay).
    pub async fn join(&self, req: JoinRequest) -> Result<JoinResponse> {
        match self.group(GroupRequest::Join(req)).await? {
            GroupResponse::Join(r) => Ok(r),
            _ => Err(Error::WrongResponse { expected: "JoinGroup" }),
        }
    }

    /// SyncGroup; a follower's resolves once the leader's assignment arrives.
    pub async fn sync(&self, req: SyncRequest) -> Result<SyncResponse> {
        match self.group(GroupRequest::Sync(req)).await? {
            GroupResponse::Sync(r) => Ok(r),
            _ => Err(Error::WrongResponse { expected: "SyncGroup" }),
        }
    }

    /// Heartbeat.
    pub async fn heartbeat(&self, req: HeartbeatRequest) -> Result<HeartbeatResponse> {
        match self.group(GroupRequest::Heartbeat(req)).await? {
            GroupResponse::Heartbeat(r) => Ok(r),
            _ => Err(Error::WrongResponse { expected: "Heartbeat" }),
        }
    }

    /// LeaveGroup.
    pub async fn leave(&self, req: LeaveRequest) -> Result<LeaveResponse> {
        match self.group(GroupRequest::Leave(req)).await? {
            GroupResponse::Leave(r) => Ok(r),
            _ => Err(Error::WrongResponse { expected: "LeaveGroup" }),
        }
    }

    /// OffsetCommit: membership check, then durable write; resolves after the fsync.
    pub async fn commit_offsets(&self, req: CommitRequest) -> Result<CommitResponse> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Commit { req, reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// OffsetFetch for one group.
    pub async fn fetch_offsets(&self, req: FetchRequest) -> Result<FetchResponse> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Fetch { req, reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    async fn group(&self, req: GroupRequest) -> Result<GroupResponse> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Group { req, reply }).await.map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }
}

/// The coordinator task.
async fn run(
    mut coordinator: Coordinator,
    mut rx: mpsc::Receiver<Command>,
    store: mpsc::Sender<StoreJob>,
    writer: JoinHandle<()>,
    tick: Duration,
) {
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let tick_ms = u64::try_from(tick.as_millis()).unwrap_or(u64::MAX);
    let mut waiting: HashMap<ReplyTo, oneshot::Sender<GroupResponse>> = HashMap::new();
    let mut next_token = 0u64;
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_tick = 0u64;
    loop {
        tokio::select! {
            // Requests first, so heartbeats already queued are seen before a tick expires their
            // senders; the inline tick below keeps timers running under constant load.
            biased;
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let now = now_ms();
                match cmd {
                    Command::Group { req, reply } => {
                        next_token += 1;
                        let token = ReplyTo(next_token);
                        waiting.insert(token, reply);
                        deliver(&mut waiting, coordinator.handle(now, req, token));
                    }
                    Command::Commit { req, reply } => match coordinator.authorize_commit(now, &req) {
                        ErrorCode::None => to_store(&store, StoreJob::Commit { req, reply }).await,
                        error => drop(reply.send(CommitResponse::all(&req, error))),
                    },
                    Command::Fetch { req, reply } => to_store(&store, StoreJob::Fetch { req, reply }).await,
                }
                if now.saturating_sub(last_tick) >= tick_ms {
                    deliver(&mut waiting, coordinator.tick(now));
                    last_tick = now;
                }
            }
            _ = ticker.tick() => {
                let now = now_ms();
                deliver(&mut waiting, coordinator.tick(now));
                last_tick = now;
            }
        }
    }
    drop(waiting);
    drop(store);
    if !matches!(tokio::task::spawn_blocking(move || writer.join()).await, Ok(Ok(()))) {
        tracing::warn!("group service: offset store thread did not stop cleanly");
    }
    tracing::debug!("group service stopped");
}

/// Queues `job` for the store thread (waiting while its queue is full); if the thread is gone,
/// answers COORDINATOR_NOT_AVAILABLE so the client retries.
async fn to_store(store: &mpsc::Sender<StoreJob>, job: StoreJob) {
    if let Err(mpsc::error::SendError(job)) = store.send(job).await {
        match job {
            StoreJob::Commit { req, reply } => {
                drop(reply.send(CommitResponse::all(&req, ErrorCode::CoordinatorNotAvailable)));
            }
            StoreJob::Fetch { reply, .. } => {
                drop(reply.send(FetchResponse { error: ErrorCode::CoordinatorNotAvailable, topics: Vec::new() }));
            }
        }
    }
}

fn deliver(waiting: &mut HashMap<ReplyTo, oneshot::Sender<GroupResponse>>, replies: Vec<(ReplyTo, GroupResponse)>) {
    for (token, resp) in replies {
        match waiting.remove(&token) {
            // The requester may have gone away (client disconnected); nothing to do then.
            Some(tx) => drop(tx.send(resp)),
            None => tracing::warn!(token = token.0, "group service: reply for an unknown request"),
        }
    }
}

/// The store thread: serves commits and fetches in queue order until the queue closes.
fn run_store(mut store: OffsetStore, mut jobs: mpsc::Receiver<StoreJob>) {
    while let Some(job) = jobs.blocking_recv() {
        match job {
            StoreJob::Commit { req, reply } => {
                let resp = store.commit(&req).unwrap_or_else(|e| {
                    tracing::error!(group = %req.group_id, error = %e, "offset commit not persisted");
                    CommitResponse::all(&req, ErrorCode::CoordinatorNotAvailable)
                });
                drop(reply.send(resp));
            }
            StoreJob::Fetch { req, reply } => drop(reply.send(store.fetch(&req))),
        }
    }
}

/// Seed for member ids, so ids from before a restart are not handed out again.
fn id_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ (u64::from(std::process::id()) << 32)
}
