use super::*;
use crate::config::Config;
use crate::ids::{ClientId, SessionId};
use crate::persist::Durability;
use crate::store::{MemoryStore, Store};

#[tokio::test]
async fn the_task_future_holds_the_session_state_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durability = Arc::new(Durability::new(store.clone(), None));
    let (_tx, rx) = watch::channel(false);
    let broker = Arc::new(Broker::new(Arc::new(Config::default()), store, durability, None, None, rx, None).unwrap());
    let shared = crate::session::new_shared(ClientId::new("c"), SessionId::next(), false, 0);
    let task = SessionTask::new(broker, shared);
    let state = std::mem::size_of_val(&task);
    let future = std::mem::size_of_val(&task.run());
    // Every idle connection holds one of these: the state plus what one turn of the loop waits on
    // (about 0.75 KB), never the state twice.
    assert!(future < 2 * state, "the task future is {future} B for {state} B of state");
}
