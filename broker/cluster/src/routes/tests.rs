use super::*;
use crate::mux::Link;
use fleetmq_core::store::MemoryStore;
use std::time::Duration;

fn opts() -> LinkOptions {
    LinkOptions {
        heartbeat: Duration::from_millis(100),
        heartbeat_timeout: Duration::from_secs(2),
        window: 65536,
        tls: None,
    }
}

async fn routing_with_live_peer() -> (Arc<ShardRouting>, crate::mux::Accepted) {
    let durability = Arc::new(Durability::new(Arc::new(MemoryStore::new()), None));
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let shards = [("s1".to_string(), addr), ("s2".to_string(), addr)];
    let r = Arc::new(ShardRouting::new("s1", &shards, opts(), 1 << 30, durability, ShardRing::new(["s1", "s2"], 16)));
    let (a, b) = tokio::io::duplex(1 << 20);
    let accept = tokio::spawn(async move { Link::accept(b, "s2", opts(), |_| true).await });
    let (link, _) = Link::dial(a, "s1", opts()).await.unwrap();
    let peer_side = accept.await.unwrap().unwrap();
    *r.peers[0].link.lock() = Some(link);
    (r, peer_side)
}

fn fill(r: &ShardRouting, from_seq: u64, n: usize) {
    let mut outbox = r.peers[0].outbox.lock();
    for _ in 0..n {
        let target = Target { peer: 0, direct: true, groups: Vec::new(), retain: false, moved: false };
        outbox.push(1, target, Bytes::from(vec![0u8; 100_000]), None);
    }
    assert!(outbox.bytes > r.pacing.high_water, "filled from seq {from_seq}");
}

#[tokio::test]
async fn a_publisher_waits_while_a_live_peer_lags_and_no_longer_than_the_limit() {
    let (r, _peer) = routing_with_live_peer().await;
    fill(&r, 1, 20);
    let waiting = tokio::spawn(r.clone().wait_for_room(vec![0], Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!waiting.is_finished(), "past high water the ack waits");
    {
        let mut outbox = r.peers[0].outbox.lock();
        for seq in 1..=16 {
            outbox.ack(1, seq);
        }
        assert!(outbox.bytes <= r.pacing.low_water);
    }
    r.peers[0].room.notify_waiters();
    tokio::time::timeout(Duration::from_secs(1), waiting).await.expect("released once under low water").unwrap();

    fill(&r, 21, 20);
    let started = std::time::Instant::now();
    r.clone().wait_for_room(vec![0], Duration::from_millis(200)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(190) && waited < Duration::from_secs(2), "bounded: {waited:?}");

    // A peer without a live link holds nobody up (its forwards wait in the outbox).
    *r.peers[0].link.lock() = None;
    tokio::time::timeout(Duration::from_millis(100), r.clone().wait_for_room(vec![0], Duration::from_secs(10)))
        .await
        .expect("no wait for an unreachable peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwards_leave_in_sequence_order() {
    let (r, mut peer) = routing_with_live_peer().await;
    r.replace_routes(0, vec![RouteKey { filter: "t/#".into(), group: None }]);
    let broker = standalone_broker();
    let msg = Arc::new(message("t/1", false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (r, broker, msg) = (r.clone(), broker.clone(), msg.clone());
            std::thread::spawn(move || {
                for _ in 0..5_000 {
                    assert_eq!(r.forward(&broker.stats, &msg, &mut Batch::new()).shards, 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for expected in 1..=20_000u64 {
        let (m, _) = tokio::time::timeout(Duration::from_secs(5), peer.messages.recv()).await.unwrap().unwrap();
        match m {
            ShardMsg::Forward { seq, .. } => assert_eq!(seq, expected, "forwards left out of order"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn standalone_broker() -> Arc<Broker> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let durability = Arc::new(Durability::new(store.clone(), None));
    Arc::new(Broker::builder(Arc::new(Default::default()), durability, rx).build().unwrap())
}

fn message(topic: &str, retain: bool) -> Message {
    Message {
        topic: Arc::from(topic),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Default::default(),
        publisher: fleetmq_core::ids::ClientId::new("p"),
        expires_at: None,
        uid: fleetmq_core::ids::MessageUid::next(),
    }
}

#[tokio::test]
async fn a_suback_waiting_on_a_peer_whose_link_drops_is_released_and_nothing_stays_behind() {
    let (r, _peer) = routing_with_live_peer().await;
    let first = r.subscribed("a/+", None).expect("a new route waits for the live peer");
    let second = r.subscribed("a/+", None).expect("a subscriber joining an announcement in flight waits too");
    // The link drops before the peer acknowledged.
    r.route_acked(0, None);
    tokio::time::timeout(Duration::from_secs(1), first).await.expect("released").unwrap();
    tokio::time::timeout(Duration::from_secs(1), second).await.expect("released").unwrap();
    assert!(r.routes.syncs.lock().is_empty());
    assert!(r.subscribed("a/+", None).is_none(), "a known route makes nobody wait");
}

#[tokio::test]
async fn a_shared_group_is_served_here_rather_than_by_an_unreachable_shard() {
    let (r, _peer) = routing_with_live_peer().await;
    let broker = standalone_broker();
    let _ = r.subscribed("jobs/#", Some("g"));
    r.replace_routes(0, vec![RouteKey::new("jobs/#", Some("g"))]);
    // Both shards have members: the rotation alternates while the peer is reachable...
    let elsewhere: usize = (0..10)
        .map(|_| r.forward(&broker.stats, &message("jobs/1", false), &mut Batch::new()).served_elsewhere.len())
        .sum();
    assert_eq!(elsewhere, 5);
    // ... and keeps every message here while it is not.
    *r.peers[0].link.lock() = None;
    for _ in 0..10 {
        let f = r.forward(&broker.stats, &message("jobs/1", false), &mut Batch::new());
        assert!(f.served_elsewhere.is_empty() && f.shards == 0);
    }
}

#[tokio::test]
async fn a_node_keeps_its_own_sys_topics() {
    let (r, _peer) = routing_with_live_peer().await;
    let broker = standalone_broker();
    r.replace_routes(0, vec![RouteKey::new("#", None), RouteKey::new("$SYS/#", None)]);
    assert!(r.retained_owner("$SYS/broker/version").is_none(), "stored here whatever the ring says");
    assert_eq!(r.forward(&broker.stats, &message("$SYS/broker/version", true), &mut Batch::new()).shards, 0);
    assert_eq!(r.forward(&broker.stats, &message("$app/x", false), &mut Batch::new()).shards, 0, "'#' skips $ topics");
    r.replace_routes(0, vec![RouteKey::new("$app/x", None)]);
    assert_eq!(
        r.forward(&broker.stats, &message("$app/x", false), &mut Batch::new()).shards,
        1,
        "other $ topics travel"
    );
}
