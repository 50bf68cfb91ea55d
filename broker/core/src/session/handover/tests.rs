use super::*;
use crate::config::Config;
use crate::persist::records::SubscriptionRecord;
use crate::persist::Durability;
use crate::store::commit::{Committer, SyncMode};
use crate::store::{MemoryStore, Store};
use bytes::Bytes;
use fleetmq_codec::SubOptions;

fn durable_broker() -> (Arc<Broker>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let committer = Committer::start(store.clone(), SyncMode::Always).unwrap();
    let durability = Arc::new(Durability::new(store.clone(), Some(committer)));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let broker = Broker::builder(Arc::new(Config::default()), durability, rx).build().unwrap();
    (Arc::new(broker), store)
}

fn message(topic: &str, payload: &'static str, qos: QoS) -> Arc<Message> {
    Arc::new(Message {
        topic: Arc::from(topic),
        payload: Bytes::from_static(payload.as_bytes()),
        qos,
        retain: false,
        properties: Default::default(),
        publisher: ClientId::new("pub"),
        expires_at: None,
        uid: MessageUid::next(),
    })
}

fn entry(seq: u64, msg: &Arc<Message>) -> HandedEntry {
    HandedEntry { seq, qos: msg.qos, retain: false, sub_ids: vec![], released: false, msg: msg.clone() }
}

fn record() -> SessionRecord {
    let mut r = SessionRecord::new(None, 600);
    let options = SubOptions { qos: QoS::ExactlyOnce, ..Default::default() };
    r.subscriptions.push(SubscriptionRecord::new("t/#", options, None));
    let now = std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() as u64;
    r.offline_since_ms = Some(now);
    r
}

fn queued(broker: &Broker, client_id: &str) -> Vec<String> {
    let s = broker.sessions.get(&ClientId::new(client_id)).unwrap();
    let mut inbox = s.inbox.lock();
    let all = inbox.take_all();
    let names = all.iter().map(|d| String::from_utf8_lossy(&d.msg.payload).into_owned()).collect();
    inbox.prepend(all);
    names
}

#[tokio::test]
async fn a_taken_session_routes_its_subscriptions_and_merges_older_entries_in_front_once() {
    let (broker, store) = durable_broker();
    let synced = take_in(&broker, "dev", record(), 100).await.unwrap();
    assert!(synced.is_empty(), "no other shards to wait for");
    // A publish while the old owner still sends its entries: it reaches the new owner ...
    let window = message("t/1", "window", QoS::ExactlyOnce);
    let published = broker.publish(window.clone(), Batch::new());
    assert_eq!(published.queued, 1, "the handed-over subscription routes here");
    published.commit.unwrap().await.unwrap();
    // ... and the old owner, which sends its copy (same uid) after its older entries.
    let old = message("t/0", "old", QoS::AtLeastOnce);
    let entries = vec![entry(7, &old), entry(8, &window)];
    assert!(merge(&broker, "dev", entries, vec![42]).await);
    assert_eq!(queued(&broker, "dev"), ["old", "window"], "older first, the repeat dropped");
    // The old owner restarted before it saw Done and sends the same entries again.
    assert!(merge(&broker, "dev", vec![entry(7, &old), entry(8, &window)], vec![42]).await);
    assert_eq!(queued(&broker, "dev"), ["old", "window"], "a repeated hand-over adds nothing");

    // Stored: the old entry keeps its sequence (below the new session's own), the inbound id too.
    let inc = broker.sessions.get(&ClientId::new("dev")).unwrap().id.0;
    assert!(store.get(Cf::Queue, &keys::queue("dev", inc, 7)).unwrap().is_some());
    assert!(store.get(Cf::Inbound, &keys::inbound("dev", inc, 42)).unwrap().is_some());
    let mut seqs = Vec::new();
    store
        .scan_prefix(Cf::Queue, &keys::session("dev", inc), &mut |k, _| {
            seqs.push(keys::parse(k).and_then(|(_, _, rest)| keys::parse_u64(rest)).unwrap());
            true
        })
        .unwrap();
    assert_eq!(seqs.len(), 2, "one stored entry per message: {seqs:?}");
    assert!(seqs[0] == 7 && seqs[1] >= 100 + RESERVED_SEQS, "restart order = queue order: {seqs:?}");
}

#[tokio::test]
async fn an_existing_session_keeps_its_state_and_gets_the_entries_with_fresh_sequences() {
    let (broker, store) = durable_broker();
    take_in(&broker, "dev", record(), 0).await.unwrap();
    assert!(merge(&broker, "dev", vec![entry(3, &message("t/a", "first", QoS::AtLeastOnce))], vec![]).await);
    // A second hand-over to the same session (the old owner restarted before it was done).
    assert!(take_in(&broker, "dev", record(), 0).await.unwrap().is_empty());
    assert!(merge(&broker, "dev", vec![entry(3, &message("t/b", "second", QoS::AtLeastOnce))], vec![]).await);
    assert_eq!(queued(&broker, "dev"), ["second", "first"], "entries handed later are older");
    let inc = broker.sessions.get(&ClientId::new("dev")).unwrap().id.0;
    let mut n = 0;
    store
        .scan_prefix(Cf::Queue, &keys::session("dev", inc), &mut |_, _| {
            n += 1;
            true
        })
        .unwrap();
    assert_eq!(n, 2, "the second entry did not overwrite the first (same old sequence)");
}

#[tokio::test]
async fn one_message_handed_over_twice_for_two_subscriptions_stays_twice() {
    let (broker, _) = durable_broker();
    take_in(&broker, "dev", record(), 0).await.unwrap();
    // A direct and a shared subscription of the session both matched it: two deliveries, one uid.
    let both = message("t/1", "both", QoS::AtLeastOnce);
    assert!(merge(&broker, "dev", vec![entry(1, &both), entry(2, &both)], vec![]).await);
    assert_eq!(queued(&broker, "dev"), ["both", "both"]);
}

#[tokio::test]
async fn merging_into_a_session_that_ended_reports_done() {
    let (broker, _) = durable_broker();
    assert!(merge(&broker, "gone", vec![entry(1, &message("t/x", "x", QoS::AtLeastOnce))], vec![]).await);
}
