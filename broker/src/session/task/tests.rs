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
    let broker = Arc::new(Broker::new(Arc::new(Config::default()), store, durability, None, None, rx, None).unwrap());
    let shared = crate::session::new_shared(ClientId::new("c"), SessionId::next(), false, 0);
    let task = SessionTask::new(broker, shared);
    let state = std::mem::size_of_val(&task);
    let future = std::mem::size_of_val(&task.run());
    // Every idle connection holds one of these: the state, never twice, and no future per
    // source it waits on (they are polled in place).
    assert!(future < state + 512, "the task future is {future} B for {state} B of state");
}
