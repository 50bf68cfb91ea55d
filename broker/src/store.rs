//! The storage wall: everything FleetMQ persists goes through the [`Store`] trait, so engines can be
//! swapped without touching the broker. This issue ships the in-memory engine; a disk engine plugs in
//! behind the same trait and must pass the same conformance tests (`store/conformance.rs`).
//!
//! Layout: keys live in column families ([`Cf`]); within one, keys are byte strings ordered
//! lexicographically so prefix scans are range scans. `Cf::Retained` maps a topic (UTF-8 bytes) to a
//! record encoded by [`record`].
//!
//! Invariants: a [`Batch`] is applied atomically (all or nothing); `write` returns only after the batch
//! is as durable as the engine promises; engine calls may block, so async code must not call a
//! blocking engine on a reactor thread (the memory engine never blocks).

use bytes::Bytes;

mod memory;
pub mod record;

pub use memory::MemoryStore;

/// Column families: independent key spaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// topic → retained message record.
    Retained,
    /// client id → persistent session record.
    Sessions,
    /// node metadata (format version).
    Meta,
}

impl Cf {
    /// Every column family, for engines that create them up front.
    pub const ALL: [Cf; 3] = [Cf::Retained, Cf::Sessions, Cf::Meta];

    /// The column family's stable name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Retained => "retained",
            Cf::Sessions => "sessions",
            Cf::Meta => "meta",
        }
    }
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { cf: Cf, key: Bytes, value: Bytes },
    Delete { cf: Cf, key: Bytes },
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

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage engine: {0}")]
    Engine(String),
    #[error("corrupt record in {cf:?}: {reason}")]
    Corrupt { cf: Cf, reason: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A key-value engine with column families, prefix scans and atomic batches.
pub trait Store: Send + Sync + 'static {
    /// Reads one key.
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>>;
    /// Visits every key starting with `prefix`, in key order, until `f` returns `false`.
    fn scan_prefix(&self, cf: Cf, prefix: &[u8], f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()>;
    /// Applies a batch atomically.
    fn write(&self, batch: Batch) -> Result<()>;
}

#[cfg(test)]
pub(crate) mod conformance;
