//! The storage wall: everything FleetMQ persists goes through the [`Store`] trait, so engines can be
//! swapped without touching the broker. Two engines exist: [`RocksStore`] (durable, on disk: the
//! default) and [`MemoryStore`] (volatile: tests, benchmarks, fronts); both pass the same conformance tests
//! (`store/conformance.rs`). [`commit::Committer`] groups concurrent writers into few durable writes.
//!
//! Layout: keys live in column families ([`Cf`]); within one, keys are byte strings ordered
//! lexicographically so prefix scans are range scans. `Cf::Retained` maps a topic (UTF-8 bytes) to a
//! record encoded by `message::record`. The on-disk layout is documented in `store/rocks.rs`.
//!
//! Invariants: a [`Batch`] is applied atomically (all or nothing), and so is every `write_many` call
//! as a whole; `write` returns only after the batch is as durable as the engine promises (for a disk
//! engine: synced to stable storage); engine calls may block, so async code must not call a blocking
//! engine on a reactor thread (the memory engine never blocks; use the [`commit::Committer`]).
//! The wall stores bytes: it imports no message, session or codec type (their encodings live with
//! them, e.g. `message::record`), so nothing above it is in a cycle with it.

use bytes::Bytes;
use std::path::PathBuf;
use std::sync::Arc;

pub mod commit;
mod memory;
mod rocks;

pub use memory::MemoryStore;
pub use rocks::{RocksOptions, RocksStore, FORMAT_VERSION};

/// Column families: independent key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// topic → retained message record.
    Retained,
    /// session key → persistent session record (see `persist/keys.rs`).
    Sessions,
    /// node metadata (format version).
    Meta,
    /// session key + delivery sequence → queued or in-flight delivery of a persistent session.
    Queue,
    /// message id → message record shared by the queue entries that reference it.
    Messages,
    /// session key + packet id → inbound QoS 2 packet id awaiting PUBREL.
    Inbound,
    /// peer shard + slot → forward to that shard not yet acknowledged (cluster shards).
    Outbox,
    /// bridge sequence → record accepted for the log and not yet shipped to it.
    Bridge,
}

impl Cf {
    /// Every column family, for engines that create them up front.
    pub const ALL: [Cf; 8] =
        [Cf::Retained, Cf::Sessions, Cf::Meta, Cf::Queue, Cf::Messages, Cf::Inbound, Cf::Outbox, Cf::Bridge];

    /// The column family's stable name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Retained => "retained",
            Cf::Sessions => "sessions",
            Cf::Meta => "meta",
            Cf::Queue => "queue",
            Cf::Messages => "messages",
            Cf::Inbound => "inbound",
            Cf::Outbox => "outbox",
            Cf::Bridge => "bridge",
        }
    }
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        cf: Cf,
        key: Bytes,
        value: Bytes,
    },
    Delete {
        cf: Cf,
        key: Bytes,
    },
    /// Deletes every key in `from..to` (one range tombstone on a disk engine, however many keys).
    DeleteRange {
        cf: Cf,
        from: Bytes,
        to: Bytes,
    },
}

/// Operations applied together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    pub fn put(&mut self, cf: Cf, key: impl Into<Bytes>, value: impl Into<Bytes>) -> &mut Self {
        self.ops.push(Op::Put { cf, key: key.into(), value: value.into() });
        self
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Bytes>) -> &mut Self {
        self.ops.push(Op::Delete { cf, key: key.into() });
        self
    }

    /// Deletes the keys in `from..to` that exist when the batch is applied; keys written later
    /// are not affected. An empty range (`from >= to`) is no operation.
    pub fn delete_range(&mut self, cf: Cf, from: impl Into<Bytes>, to: impl Into<Bytes>) -> &mut Self {
        let (from, to) = (from.into(), to.into());
        if from < to {
            self.ops.push(Op::DeleteRange { cf, from, to });
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate payload size (keys plus values), used to bound commit groups.
    pub fn size_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key, .. } => key.len(),
                Op::DeleteRange { from, to, .. } => from.len() + to.len(),
            })
            .sum()
    }
}

/// Why a storage operation failed. `Clone` so one failed group commit can be reported to every
/// writer in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("storage i/o: {0}")]
    Io(#[source] Arc<std::io::Error>),
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt record in {cf:?}: {reason}")]
    Corrupt { cf: Cf, reason: String },
    #[error("data_dir {} is in use by another FleetMQ process", path.display())]
    Locked { path: PathBuf },
    #[error("cannot open data_dir {}: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("data_dir {} has storage format {found}, this FleetMQ reads format {expected}", path.display())]
    Format { path: PathBuf, found: String, expected: u32 },
    #[error("the storage committer has stopped")]
    Closed,
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A key-value engine with column families, prefix scans and atomic batches.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>>;
    /// Visits every key starting with `prefix`, in key order, until `f` returns `false`.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Visits every key from `start` (inclusive) on, in key order, until `f` returns `false`: a
    /// reader that resumes where it stopped skips what it deleted behind it.
    fn scan_from(&self, cf: Cf, start: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Applies a batch atomically and durably: a disk engine syncs it to stable storage first.
    fn write(&self, batch: Batch) -> Result<()>;
    /// Applies several batches, in order, as one atomic write. With `sync` a disk engine syncs its
    /// log before returning; without, the write survives a process crash but not a power loss until
    /// the next [`Store::sync_wal`]. Volatile engines ignore `sync`.
    fn write_many(&self, batches: Vec<Batch>, sync: bool) -> Result<()>;
    /// Makes every write so far durable (syncs the write-ahead log); a no-op for volatile engines.
    fn sync_wal(&self) -> Result<()>;
}

#[cfg(test)]
pub(crate) mod conformance;
