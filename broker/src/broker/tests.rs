use super::*;
use crate::codec::QoS;
use crate::ids::ClientId;
use crate::store::MemoryStore;
use bytes::Bytes;

fn broker(store: Arc<dyn Store>) -> Broker {
    broker_with(store, Config::default())
}

fn broker_with(store: Arc<dyn Store>, config: Config) -> Broker {
    let (_tx, rx) = watch::channel(false);
    let durability = Arc::new(crate::persist::Durability::new(store.clone(), None));
    Broker::new(Arc::new(config), store, durability, None, None, rx, None).unwrap()
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
        uid: crate::ids::MessageUid::next(),
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
    let [Found::InStore(topic, _)] = &found[..] else { panic!("rebuilt entries keep payloads on disk: {found:?}") };
    let read = again.read_retained(std::slice::from_ref(topic));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].payload, "one");
}

#[test]
fn retained_records_over_the_budget_or_expired_are_deleted_at_rebuild() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let b = broker(store.clone());
    for t in ["b/1", "b/2", "b/3"] {
        b.publish(retained(t, "x"), Batch::new());
    }
    let mut config = Config::default();
    config.limits.max_retained_bytes = retained("b/1", "x").cost() * 2;
    let again = broker_with(store.clone(), config);
    assert_eq!(again.retained.len(), 2);
    assert!(store.get(Cf::Retained, b"b/1").unwrap().is_none(), "the oldest record is deleted, not just skipped");
}
