use super::*;
use crate::codec::QoS;
use crate::ids::ClientId;
use crate::store::MemoryStore;
use bytes::Bytes;

fn broker(store: Arc<dyn Store>) -> Broker {
    let (_tx, rx) = watch::channel(false);
    let durability = Arc::new(crate::persist::Durability::new(store.clone(), None));
    Broker::new(Arc::new(Config::default()), store, durability, None, None, rx).unwrap()
}

fn retained(topic: &str, payload: &'static str) -> Arc<Message> {
    Arc::new(Message {
        topic: Arc::from(topic),
        payload: Bytes::from_static(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
        publisher: ClientId::new("p"),
        expires_at: None,
    })
}

#[test]
fn retained_messages_go_through_the_store_and_are_rebuilt_from_it() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let b = broker(store.clone());
    b.publish(retained("a/1", "one"), Batch::new());
    b.publish(retained("a/2", "two"), Batch::new());
    b.publish(retained("a/2", ""), Batch::new());
    assert!(store.get(Cf::Retained, b"a/1").unwrap().is_some());
    assert!(store.get(Cf::Retained, b"a/2").unwrap().is_none(), "empty payload deletes");
    let again = broker(store);
    let found = again.retained_matching("a/#", Instant::now());
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payload, "one");
}
