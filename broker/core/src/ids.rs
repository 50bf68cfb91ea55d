//! Newtypes for identifiers, so a client id is never confused with a topic or a username.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// An MQTT client identifier; cheap to clone (shared string).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientId(Arc<str>);

impl ClientId {
    /// Wraps a client identifier string.
    pub fn new(id: &str) -> ClientId {
        ClientId(Arc::from(id))
    }

    /// The identifier as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One incarnation of a session: a new value every time a session is created, so router entries and
/// registry entries of a discarded session can never be mistaken for those of its successor that
/// uses the same client id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

impl SessionId {
    /// A process-unique session id, also above every id recovered from storage.
    pub fn next() -> SessionId {
        SessionId(NEXT_SESSION.fetch_add(1, Ordering::Relaxed))
    }

    /// Ensures ids handed out from now on are above `id` (a stored incarnation).
    pub fn advance_past(id: u64) {
        NEXT_SESSION.fetch_max(id.saturating_add(1), Ordering::Relaxed);
    }
}

/// A cluster-unique identity of one message, the same in every copy of it (forwarded to other
/// shards, stored, reloaded), so a session handed over between shards can tell two copies of one
/// publish apart from two publishes with the same content. A random per-process prefix and a
/// counter: unique without coordination between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageUid(pub u128);

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

impl MessageUid {
    /// A fresh uid.
    pub fn next() -> MessageUid {
        static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let prefix = *PREFIX.get_or_init(rand::random::<u64>);
        MessageUid((u128::from(prefix) << 64) | u128::from(NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed)))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}
