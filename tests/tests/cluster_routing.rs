//! Cluster routing between shards: publishes to subscribers on other shards at every QoS, shared
//! groups spread over shards, SUBACK after route propagation, forwards that survive shard crashes,
//! and retained messages partitioned by topic. Real processes, as in `cluster.rs`.

use fleetmq_tests::cluster::{connect_when_back, persistent, retained_seen, Cluster};
use fleetmq_tests::parse::kind;
use fleetmq_tests::wire::{self, Props};
use fleetmq_tests::RawClient;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// One 5.0 client on each of the cluster's shards (ids `{prefix}{shard}-n`), connected through
/// the fronts in turn, each subscribed to `filter` at `qos` when given.
async fn one_per_shard(c: &Cluster, prefix: &str, filter: Option<(&str, u8)>) -> Vec<RawClient> {
    let mut clients = Vec::new();
    for shard in 0..c.shards.len() {
        let id = c.id_on_shard(shard, &format!("{prefix}{shard}")).await;
        let mut cl = RawClient::v5(c.front(shard % c.fronts.len()), &id).await;
        if let Some((filter, qos)) = filter {
            assert_eq!(cl.subscribe(1, &[(filter, qos)]).await, vec![qos]);
        }
        clients.push(cl);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_wildcard_subscribers_on_every_shard_once_and_in_order_at_each_qos() {
    let c = Cluster::start(3, 2, "");
    let mut subs = one_per_shard(&c, "xsub", Some(("fleet/+/telemetry", 2))).await;
    let mut pubs = one_per_shard(&c, "xpub", None).await;
    let mut expected = Vec::new();
    for (i, p) in pubs.iter_mut().enumerate() {
        for qos in 0..=2u8 {
            for n in 0..4u16 {
                let payload = format!("p{i}-q{qos}-{n}");
                let topic = format!("fleet/dev{i}/telemetry");
                let code = p.publish(&wire::Publish::new(true, &topic, &payload).qos(qos, 1 + n)).await;
                assert_eq!(code, 0);
                expected.push(payload);
            }
        }
    }
    for (s_index, s) in subs.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(String::from_utf8_lossy(&s.receive().await.payload).into_owned());
        }
        s.expect_no_publish(Duration::from_millis(500)).await;
        let mut sorted = got.clone();
        sorted.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(sorted, want, "subscriber on shard {s_index}: every message exactly once");
        for prefix in ["p0-", "p1-", "p2-"] {
            for q in 0..=2 {
                let stream: Vec<&String> = got.iter().filter(|m| m.starts_with(&format!("{prefix}q{q}"))).collect();
                let mut ordered = stream.clone();
                ordered.sort();
                assert_eq!(stream, ordered, "order per publisher and QoS on shard {s_index}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_right_after_the_suback_reaches_a_subscriber_on_another_shard() {
    let c = Cluster::start(2, 2, "");
    let sub_id = c.id_on_shard(0, "eager-sub").await;
    let pub_id = c.id_on_shard(1, "eager-pub").await;
    let mut s = RawClient::v5(c.front(0), &sub_id).await;
    let mut p = RawClient::v5(c.front(1), &pub_id).await;
    // While the other shard cannot take the route announcement, the SUBACK waits for it.
    c.shards[1].signal("STOP");
    s.send(&wire::subscribe(true, 500, &[("eager/held/+", 1)], &Props::new())).await;
    let early = s.try_read_packet(Duration::from_millis(300)).await;
    c.shards[1].signal("CONT");
    assert!(early.is_err(), "SUBACK before the other shard knew the route: {early:?}");
    assert_eq!(s.next_of_kind(kind::SUBACK, WAIT).await.kind(), kind::SUBACK);
    assert_eq!(p.publish(&wire::Publish::new(true, "eager/held/x", "held").qos(1, 500)).await, 0);
    assert_eq!(s.receive().await.payload, b"held");
    // Fresh filters each round: a publish right after the SUBACK always finds the route.
    for round in 0..20u16 {
        let topic = format!("eager/{round}/x");
        assert_eq!(s.subscribe(1 + round, &[(&format!("eager/{round}/+"), 1)]).await, vec![1]);
        assert_eq!(p.publish(&wire::Publish::new(true, &topic, format!("r{round}")).qos(1, 1 + round)).await, 0);
        assert_eq!(s.receive().await.payload, format!("r{round}").as_bytes(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_one_shard_lose_nothing_on_the_way_to_another() {
    let c = Cluster::start(2, 2, "");
    let sub_id = c.id_on_shard(1, "many-sub").await;
    let mut s = RawClient::v5(c.front(0), &sub_id).await;
    assert_eq!(s.subscribe(1, &[("many/+", 1)]).await, vec![1]);
    let mut publishers = Vec::new();
    for i in 0..100 {
        let id = format!("many-pub-{i}");
        let front = c.front(i % 2);
        publishers.push(tokio::spawn(async move {
            let mut p = RawClient::v5(front, &id).await;
            for n in 0..20u16 {
                let bytes = wire::Publish::new(true, format!("many/{i}"), format!("{i}-{n}")).qos(1, 1 + n).encode();
                p.send(&bytes).await;
            }
            for _ in 0..20 {
                p.next_of_kind(kind::PUBACK, WAIT).await;
            }
            id
        }));
    }
    let mut on_shard0 = 0;
    for p in publishers {
        let id = p.await.unwrap();
        on_shard0 += usize::from(c.shard_of(&id) == Some(0));
    }
    assert!(on_shard0 >= 20, "enough publishers on the other shard: {on_shard0}");
    let mut got = std::collections::HashSet::new();
    for _ in 0..2000 {
        got.insert(s.receive().await.payload);
    }
    assert_eq!(got.len(), 2000, "every message once");
    s.expect_no_publish(Duration::from_millis(500)).await;
}

/// Two durable shards and one front: a persistent QoS 1 subscriber on shard 2 (offline once its
/// route reached shard 1) and a connected publisher on shard 1. Returns the cluster, the
/// subscriber's client id, its topic and the publisher.
async fn offline_subscriber_on_another_shard(prefix: &str) -> (Cluster, String, String, RawClient) {
    let c = Cluster::start(2, 1, "[storage]\nengine = \"rocksdb\"\n");
    let sub_id = c.id_on_shard(1, &format!("{prefix}-sub")).await;
    let pub_id = c.id_on_shard(0, &format!("{prefix}-pub")).await;
    let topic = format!("{prefix}/{sub_id}");
    let (mut s, _) = RawClient::handshake(c.front(0), &persistent(&sub_id)).await;
    assert_eq!(s.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let p = RawClient::v5(c.front(0), &pub_id).await;
    s.send(&wire::disconnect_v5(0, &Props::new())).await;
    s.expect_closed(WAIT).await;
    (c, sub_id, topic, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_to_a_killed_shard_are_delivered_after_it_restarts() {
    let (mut c, sub_id, topic, mut p) = offline_subscriber_on_another_shard("far").await;

    c.shards[1].kill9();
    for n in 0..5 {
        assert_eq!(p.publish(&wire::Publish::new(true, &topic, format!("held-{n}")).qos(1, 1 + n)).await, 0);
    }
    c.shards[1].restart();
    let (mut s, present) = connect_when_back(c.front(0), &persistent(&sub_id)).await;
    assert!(present);
    for n in 0..5 {
        let m = s.receive().await;
        assert_eq!(m.payload, format!("held-{n}").as_bytes(), "acknowledged while the shard was down");
    }
    s.expect_no_publish(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_spread_over_shards_gets_each_message_once() {
    let c = Cluster::start(3, 2, "");
    let mut members = one_per_shard(&c, "worker", Some(("$share/workers/jobs/#", 1))).await;
    let watcher_id = c.id_on_shard(1, "watcher").await;
    let mut watcher = RawClient::v5(c.front(0), &watcher_id).await;
    assert_eq!(watcher.subscribe(1, &[("jobs/#", 1)]).await, vec![1]);
    let mut pubs = one_per_shard(&c, "boss", None).await;
    let per_publisher = 20u16;
    for (i, p) in pubs.iter_mut().enumerate() {
        for n in 0..per_publisher {
            let code =
                p.publish(&wire::Publish::new(true, format!("jobs/{i}"), format!("job-{i}-{n}")).qos(1, 1 + n)).await;
            assert_eq!(code, 0);
        }
    }
    let total = 3 * usize::from(per_publisher);
    let mut seen = Vec::new();
    for _ in 0..total {
        seen.push(watcher.receive().await.payload);
    }
    let mut per_member = Vec::new();
    let mut all = Vec::new();
    for m in members.iter_mut() {
        let got = m.receive_until_quiet(Duration::from_millis(700)).await;
        per_member.push(got.len());
        all.extend(got.into_iter().map(|p| p.payload));
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), total, "each message to exactly one member of the group: {per_member:?}");
    assert_eq!(unique.len(), total, "no message twice");
    assert!(per_member.iter().all(|n| *n > 0), "every shard's member takes a share: {per_member:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_forwards_survive_a_crash_of_the_publishing_shard_too() {
    let (mut c, sub_id, topic, mut p) = offline_subscriber_on_another_shard("durable").await;

    // The target is down, so the forwards wait in the publishing shard's outbox...
    c.shards[1].kill9();
    for n in 0..5 {
        assert_eq!(p.publish(&wire::Publish::new(true, &topic, format!("outbox-{n}")).qos(1, 1 + n)).await, 0);
    }
    // ... which then crashes as well: only its stored outbox can deliver them now.
    c.shards[0].kill9();
    c.shards[1].restart();
    c.shards[0].restart();
    let (mut s, present) = connect_when_back(c.front(0), &persistent(&sub_id)).await;
    assert!(present);
    for n in 0..5 {
        assert_eq!(s.receive().await.payload, format!("outbox-{n}").as_bytes());
    }
    s.expect_no_publish(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_live_on_their_topics_shard_and_wildcard_subscribes_gather_them() {
    let c = Cluster::start(3, 2, "");
    let mut p = RawClient::v5(c.front(0), "ret-pub").await;
    let mut want = Vec::new();
    for n in 0..12 {
        let topic = format!("ret/t{n}");
        let code = p.publish(&wire::Publish::new(true, &topic, format!("r{n}")).qos(1, 1 + n).retain()).await;
        assert!(code == 0 || code == 0x10, "retained publish refused: {code:#x}");
        want.push(format!("{topic}=r{n}"));
    }
    want.sort();
    // Forwards to the owning shards are asynchronous: wait until a subscriber sees all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let got = retained_seen(c.front(attempt % 2), &format!("ret-probe-{attempt}"), &["ret/#"]).await;
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "wildcard subscribe gathered {got:?}, want {want:?}");
    }
    // Every shard gathers all of them, and an exact topic finds its owner.
    for shard in 0..3 {
        let id = c.id_on_shard(shard, &format!("ret-sub{shard}")).await;
        assert_eq!(retained_seen(c.front(shard % 2), &id, &["ret/#"]).await, want, "subscriber on shard {shard}");
        assert_eq!(retained_seen(c.front(0), &id, &["ret/t7"]).await, vec!["ret/t7=r7".to_string()]);
    }
    // An exact filter asks only the topic's owner: every topic is found, so each is stored where
    // the ring puts it (and only there: a copy elsewhere would show twice in the wildcard gathers).
    let id = c.id_on_shard(2, "ret-exact").await;
    let mut cl = RawClient::v5(c.front(1), &id).await;
    let filters: Vec<String> = (0..12).map(|n| format!("ret/t{n}")).collect();
    let pairs: Vec<(&str, u8)> = filters.iter().map(|f| (f.as_str(), 0)).collect();
    assert_eq!(cl.subscribe(1, &pairs).await, vec![0; 12]);
    let mut got = Vec::new();
    for _ in 0..12 {
        let m = cl.read_publish(WAIT).await;
        got.push(format!("{}={}", m.topic, String::from_utf8_lossy(&m.payload)));
    }
    got.sort();
    assert_eq!(got, want);
    // Clearing goes to the owner too.
    p.publish(&wire::Publish::new(true, "ret/t7", "").qos(1, 99).retain()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        attempt += 1;
        let got = retained_seen(c.front(1), &format!("ret-probe-{attempt}"), &["ret/#"]).await;
        if !got.contains(&"ret/t7=r7".to_string()) {
            assert_eq!(got.len(), 11, "only the cleared one is gone: {got:?}");
            break;
        }
        assert!(Instant::now() < deadline, "retained message never cleared");
    }
}
