use super::*;
use crate::ids::ClientId;
use crate::message::Delivery;
use crate::store::MemoryStore;
use bytes::Bytes;
use fleetmq_codec::QoS;
use fleetmq_codec::SubOptions;

fn broker(store: Arc<dyn Store>) -> Broker {
    broker_with(store, Config::default())
}

fn broker_with(store: Arc<dyn Store>, config: Config) -> Broker {
    builder(store, config).build().unwrap()
}

fn builder(store: Arc<dyn Store>, config: Config) -> BrokerBuilder {
    let (_tx, rx) = watch::channel(false);
    let durability = Arc::new(crate::persist::Durability::new(store, None));
    Broker::builder(Arc::new(config), durability, rx)
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

fn message(topic: &str, qos: QoS, retain: bool) -> Arc<Message> {
    Arc::new(Message { qos, retain, ..(*retained(topic, "m")).clone() })
}

/// A session subscribed to `filters` (`$share/g/f` for a shared group) at QoS 1 or 2.
fn subscriber(b: &Broker, id: &str, filters: &[(&str, QoS, Option<u32>)]) -> Arc<crate::session::SessionShared> {
    let shared = crate::session::new_shared(ClientId::new(id), SessionId::next(), false, 0);
    for (filter, qos, sub_id) in filters {
        let (group, inner) = match filter.strip_prefix("$share/") {
            Some(rest) => {
                let (g, f) = rest.split_once('/').unwrap();
                (Some(g), f)
            }
            None => (None, *filter),
        };
        let options = SubOptions { qos: *qos, no_local: false, retain_as_published: false, retain_handling: 0 };
        b.subscribe(inner, group, SubEntry { session: shared.clone(), options, sub_id: *sub_id });
    }
    shared
}

fn queued(s: &crate::session::SessionShared) -> Vec<Delivery> {
    s.inbox.lock().take_all()
}

#[test]
fn a_publish_reaches_each_subscriber_once_at_its_highest_qos_with_every_subscription_id() {
    let b = broker(Arc::new(MemoryStore::new()));
    let both = subscriber(&b, "both", &[("s/+", QoS::AtLeastOnce, Some(1)), ("s/#", QoS::ExactlyOnce, Some(2))]);
    let one = subscriber(&b, "one", &[("s/x", QoS::AtLeastOnce, None)]);
    let other = subscriber(&b, "other", &[("t/#", QoS::AtLeastOnce, None)]);
    let published = b.publish(message("s/x", QoS::ExactlyOnce, false), Batch::new());
    assert_eq!(published.queued, 2);
    let got = queued(&both);
    assert_eq!(got.len(), 1, "overlapping subscriptions deliver once");
    assert_eq!(got[0].qos, QoS::ExactlyOnce, "at the highest granted QoS");
    let mut ids = got[0].sub_ids.clone();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert_eq!(queued(&one)[0].qos, QoS::AtLeastOnce, "min(message, granted)");
    assert!(queued(&other).is_empty());
}

#[test]
fn a_shared_group_gets_one_copy_per_message_rotating_over_its_members() {
    let b = broker(Arc::new(MemoryStore::new()));
    let members: Vec<_> =
        (0..3).map(|i| subscriber(&b, &format!("m{i}"), &[("$share/g/w/#", QoS::AtLeastOnce, None)])).collect();
    for _ in 0..6 {
        b.publish(message("w/1", QoS::AtLeastOnce, false), Batch::new());
    }
    let counts: Vec<usize> = members.iter().map(|m| queued(m).len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 6, "each message once to the group: {counts:?}");
    assert!(counts.iter().all(|&n| n == 2), "round robin over the members: {counts:?}");
}

/// A stand-in for another shard: records what the core asked of it.
#[derive(Default)]
struct FakeRouting {
    /// Topics whose retained message another shard owns.
    owned_elsewhere: Vec<&'static str>,
    /// Shared groups another shard serves.
    served_elsewhere: Vec<RouteKey>,
    forwarded: parking_lot::Mutex<Vec<String>>,
    routes: parking_lot::Mutex<Vec<(String, bool)>>,
}

impl Routing for FakeRouting {
    fn retained_elsewhere(&self, topic: &str) -> bool {
        self.owned_elsewhere.contains(&topic)
    }

    fn forward(&self, _: &crate::metrics::Stats, msg: &Message, _: &mut Batch) -> crate::port::Forwarded {
        self.forwarded.lock().push(msg.topic.to_string());
        crate::port::Forwarded { shards: 1, served_elsewhere: self.served_elsewhere.clone(), congested: Vec::new() }
    }

    fn wait_for_room(self: Arc<Self>, _: Vec<usize>, _: std::time::Duration) -> crate::port::BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    fn subscribed(&self, filter: &str, _: Option<&str>) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.routes.lock().push((filter.to_string(), true));
        None
    }

    fn unsubscribed(&self, filter: &str, _: Option<&str>) {
        self.routes.lock().push((filter.to_string(), false));
    }

    fn gather_retained<'a>(&'a self, _: &'a str) -> crate::port::BoxFuture<'a, Vec<Arc<Message>>> {
        Box::pin(async { Vec::new() })
    }

    fn route_sync_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}

fn shard(routing: Arc<FakeRouting>) -> Broker {
    builder(Arc::new(MemoryStore::new()), Config::default()).routing(routing).build().unwrap()
}

#[test]
fn on_a_shard_publishes_go_through_the_routing_port() {
    let routing = Arc::new(FakeRouting {
        owned_elsewhere: vec!["r/remote"],
        served_elsewhere: vec![RouteKey::new("w/#", Some("g"))],
        ..Default::default()
    });
    let b = shard(routing.clone());
    let local = subscriber(&b, "local", &[("$share/g/w/#", QoS::AtLeastOnce, None), ("w/#", QoS::AtLeastOnce, None)]);
    let published = b.publish(message("w/1", QoS::AtLeastOnce, false), Batch::new());
    assert_eq!(*routing.forwarded.lock(), ["w/1"]);
    assert_eq!(published.queued, 2, "the other shard's subscribers count as matching");
    assert_eq!(queued(&local).len(), 1, "the direct subscription only: another shard serves the group");
    b.publish(message("r/remote", QoS::AtLeastOnce, true), Batch::new());
    b.publish(message("r/here", QoS::AtLeastOnce, true), Batch::new());
    let kept: Vec<_> = b.retained_matching("r/#", Instant::now());
    assert_eq!(kept.len(), 1, "a retained message another shard owns is stored there, not here: {kept:?}");
    let routes = routing.routes.lock().clone();
    assert_eq!(
        routes,
        [("w/#".to_string(), true), ("w/#".to_string(), true)],
        "each new subscription goes to the routing"
    );
    b.unsubscribe("w/#", None, local.id);
    assert_eq!(routing.routes.lock().last(), Some(&("w/#".to_string(), false)), "and each removed one");
}
