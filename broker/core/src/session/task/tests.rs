use super::*;
use crate::config::Config;
use crate::ids::{ClientId, SessionId};
use crate::persist::Durability;
use crate::store::{MemoryStore, Store};

#[tokio::test]
async fn the_task_future_is_little_more_than_the_session_state() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durability = Arc::new(Durability::new(store.clone(), None));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let broker = Arc::new(Broker::builder(Arc::new(Config::default()), durability, rx).build().unwrap());
    let shared = crate::session::new_shared(ClientId::new("c"), SessionId::next(), false, 0);
    let task = SessionTask::new(broker, shared);
    let state = std::mem::size_of_val(&task);
    let future = std::mem::size_of_val(&task.run());
    eprintln!(
        "session task: future {future} B, state {state} B (link {} B, client I/O {} B, QoS {} B); shared record {} B",
        std::mem::size_of::<super::super::link::Link>(),
        std::mem::size_of::<crate::connection::ClientIo>(),
        std::mem::size_of::<QosState>(),
        std::mem::size_of::<SessionShared>(),
    );
    eprintln!(
        "parked {} B (link {} B, io {} B, guard {} B)",
        std::mem::size_of::<park::Parked>(),
        std::mem::size_of::<crate::session::link::ParkedLink>(),
        std::mem::size_of::<crate::connection::ParkedIo>(),
        std::mem::size_of::<crate::connection::ConnGuard>(),
    );
    // Every idle connection holds one of these: the state, never twice, no future per source it
    // waits on (they are polled in place), and no client packet kept across a wait.
    assert!(future < state + 64, "the task future is {future} B for {state} B of state");
    // The QoS flow tables are allocated by the first QoS 1/2 flow, not held inline.
    assert!(std::mem::size_of::<QosState>() <= 32);
    // What a parked idle connection holds: the shared record (in an `Arc`, 16 bytes more) and the
    // parked record, each in the allocator's 192-byte size class.
    assert!(std::mem::size_of::<SessionShared>() + 16 <= 192);
    assert!(std::mem::size_of::<park::Parked>() <= 192);
}
