//! Cluster: front nodes forward each client's session to the shard that owns its client id; every
//! node is a real `fleetmq` process started from TOML on its own loopback address.

use fleetmq_tests::cluster::Cluster;
use fleetmq_tests::parse::kind;
use fleetmq_tests::raw::Error as RawError;
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::RawClient;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn persistent_v5(id: &str) -> Connect {
    let mut c = Connect::v5(id);
    c.clean = false;
    c.props = Props::new().u32(prop::SESSION_EXPIRY, 300);
    c
}

/// Publishes at `qos` and reads the copy the client's own subscription brings back.
async fn echo(c: &mut RawClient, topic: &str, qos: u8, payload: &str) {
    let code = c.publish(&wire::Publish::new(c.is_v5(), topic, payload).qos(qos, 100 + u16::from(qos))).await;
    assert_eq!(code, 0, "publish at QoS {qos} refused");
    let p = c.read_publish(WAIT).await;
    assert_eq!((p.topic.as_str(), p.payload.as_slice()), (topic, payload.as_bytes()));
    match p.qos {
        1 => c.send(&wire::puback(p.pid.unwrap_or(0))).await,
        2 => {
            c.send(&wire::pubrec(p.pid.unwrap_or(0))).await;
            c.expect_ack(kind::PUBREL, p.pid.unwrap_or(0)).await;
            c.send(&wire::pubcomp(p.pid.unwrap_or(0))).await;
        }
        _ => {}
    }
}

/// A client id the ring places on shard `shard` (found by connecting candidates).
async fn id_on_shard(c: &Cluster, shard: usize, prefix: &str) -> String {
    for i in 0..200 {
        let id = format!("{prefix}-{i}");
        let mut cl = RawClient::v5(c.front(0), &id).await;
        cl.send(&wire::disconnect_v5(0, &Props::new())).await;
        cl.expect_closed(WAIT).await;
        if c.shard_of(&id) == Some(shard) {
            return id;
        }
    }
    panic!("no client id with prefix {prefix} lands on shard {shard}");
}

/// Connects until the CONNACK is a success (the front may still see the shard as down).
async fn connect_when_back(front: SocketAddr, connect: &Connect) -> (RawClient, bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (cl, ack) = RawClient::handshake(front, connect).await;
        if ack.code == 0 {
            return (cl, ack.session_present);
        }
        assert_eq!(ack.code, 0x88, "only 'server unavailable' is expected while the shard is down");
        assert!(Instant::now() < deadline, "shard did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_lives_on_exactly_one_shard_and_every_qos_works_through_the_fronts() {
    let c = Cluster::start(3, 2, "");
    let mut used = HashSet::new();
    for i in 0..24 {
        let id = format!("spread-{i}");
        let connect = if i % 3 == 0 { Connect::v4(&id) } else { Connect::v5(&id) };
        let (mut cl, ack) = RawClient::handshake(c.front(i % 2), &connect).await;
        assert_eq!(ack.code, 0);
        let topic = format!("echo/{id}");
        assert_eq!(cl.subscribe(1, &[(&topic, 2)]).await, vec![2]);
        for qos in 0..=2 {
            echo(&mut cl, &topic, qos, &format!("m{qos}")).await;
        }
        cl.send(&wire::pingreq()).await;
        assert_eq!(cl.next_of_kind(kind::PINGRESP, WAIT).await.kind(), kind::PINGRESP);
        let shard = c.shard_of(&id).unwrap_or_else(|| panic!("{id} is not on exactly one shard"));
        used.insert(shard);
    }
    assert_eq!(used.len(), 3, "24 clients should spread over all 3 shards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_is_found_through_the_other_front_with_its_queued_messages() {
    let c = Cluster::start(2, 2, "");
    let roamer = id_on_shard(&c, 1, "roamer").await;
    let publisher = id_on_shard(&c, 1, "roam-pub").await;
    let topic = format!("roam/{roamer}");
    let (mut a, ack) = RawClient::handshake(c.front(0), &persistent_v5(&roamer)).await;
    assert_eq!((ack.code, ack.session_present), (0, false));
    assert_eq!(a.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    a.send(&wire::disconnect_v5(0, &Props::new())).await;
    a.expect_closed(WAIT).await;

    let mut p = RawClient::v5(c.front(1), &publisher).await;
    for n in 0..3 {
        let code = p.publish(&wire::Publish::new(true, &topic, format!("q{n}")).qos(1, 1 + n)).await;
        assert_eq!(code, 0);
    }
    let (mut b, ack) = RawClient::handshake(c.front(1), &persistent_v5(&roamer)).await;
    assert_eq!((ack.code, ack.session_present), (0, true), "same session through the other front");
    for n in 0..3 {
        let m = b.read_publish(WAIT).await;
        assert_eq!(m.payload, format!("q{n}").as_bytes());
        b.send(&wire::puback(m.pid.unwrap_or(0))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_through_the_other_front_ends_the_old_connection_with_0x8e() {
    let c = Cluster::start(2, 2, "");
    let mut old = RawClient::v5(c.front(0), "twin").await;
    let (mut new, ack) = RawClient::handshake(c.front(1), &Connect::v5("twin")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(old.expect_disconnect(WAIT).await, 0x8E);
    new.send(&wire::pingreq()).await;
    assert_eq!(new.next_of_kind(kind::PINGRESP, WAIT).await.kind(), kind::PINGRESP);
}

/// Whether the connection still answers PINGREQ (false: it was closed, after DISCONNECT 0x8E).
async fn survives(cl: &mut RawClient) -> bool {
    tokio::time::sleep(Duration::from_millis(500)).await;
    if cl.try_send(&wire::pingreq()).await.is_err() {
        return false;
    }
    loop {
        match cl.try_read_packet(Duration::from_secs(3)).await {
            Ok(p) if p.kind() == kind::PINGRESP => return true,
            Ok(p) if p.kind() == kind::DISCONNECT => {
                assert_eq!(fleetmq_tests::parse::disconnect_reason(&p).unwrap_or(0), 0x8E);
            }
            Ok(_) => {}
            Err(RawError::Closed) | Err(RawError::Io(_)) => return false,
            Err(e) => panic!("neither answer nor close: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simultaneous_double_connect_through_both_fronts_leaves_exactly_one_connection() {
    let c = Cluster::start(2, 2, "");
    for round in 0..6 {
        let id = format!("double-{round}");
        let connect = if round % 2 == 0 { persistent_v5(&id) } else { Connect::v5(&id) };
        let ((mut a, ack_a), (mut b, ack_b)) =
            tokio::join!(RawClient::handshake(c.front(0), &connect), RawClient::handshake(c.front(1), &connect));
        assert_eq!((ack_a.code, ack_b.code), (0, 0));
        let (alive_a, alive_b) = tokio::join!(survives(&mut a), survives(&mut b));
        assert!(alive_a ^ alive_b, "round {round}: exactly one owner expected, got a={alive_a} b={alive_b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_enforces_the_keepalive() {
    let c = Cluster::start(1, 1, "");
    let mut connect = Connect::v5("sleepy");
    connect.keepalive = 1;
    let (mut cl, ack) = RawClient::handshake(c.front(0), &connect).await;
    assert_eq!(ack.code, 0);
    let started = Instant::now();
    assert_eq!(cl.expect_disconnect(WAIT).await, 0x8D);
    assert!(started.elapsed() >= Duration::from_millis(1400), "closed before 1.5 x keepalive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shard_disconnects_its_clients_refuses_them_until_back_and_loses_nothing_acknowledged() {
    let mut c = Cluster::start(2, 1, "[storage]\nengine = \"rocksdb\"\n");
    let victim = id_on_shard(&c, 0, "victim").await;
    let publisher = id_on_shard(&c, 0, "victim-pub").await;
    let bystander = id_on_shard(&c, 1, "bystander").await;
    let topic = format!("loss/{victim}");
    let (mut v, _) = RawClient::handshake(c.front(0), &persistent_v5(&victim)).await;
    assert_eq!(v.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    v.send(&wire::disconnect_v5(0, &Props::new())).await;
    v.expect_closed(WAIT).await;
    let mut p = RawClient::v5(c.front(0), &publisher).await;
    for n in 0..5 {
        assert_eq!(p.publish(&wire::Publish::new(true, &topic, format!("kept-{n}")).qos(1, 1 + n)).await, 0);
    }
    let mut by = RawClient::v5(c.front(0), &bystander).await;
    let by_topic = format!("echo/{bystander}");
    assert_eq!(by.subscribe(1, &[(&by_topic, 1)]).await, vec![1]);

    c.shards[0].kill9();
    assert_eq!(p.expect_disconnect(WAIT).await, 0x88, "clients of the lost shard are told it is unavailable");
    echo(&mut by, &by_topic, 1, "still here").await;
    let (_, ack) = RawClient::handshake(c.front(0), &persistent_v5(&victim)).await;
    assert_eq!(ack.code, 0x88, "refused while its shard is down (policy refuse)");

    c.shards[0].restart();
    let (mut v, present) = connect_when_back(c.front(0), &persistent_v5(&victim)).await;
    assert!(present, "the stored session survives the shard's crash");
    for n in 0..5 {
        let m = v.read_publish(WAIT).await;
        assert_eq!(m.payload, format!("kept-{n}").as_bytes());
        v.send(&wire::puback(m.pid.unwrap_or(0))).await;
    }
    echo(&mut by, &by_topic, 1, "and still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_next_shard_policy_a_client_of_a_lost_shard_gets_a_fresh_session_elsewhere() {
    let mut c = Cluster::start(2, 1, "[cluster]\non_shard_loss = \"next_shard\"\n");
    let nomad = id_on_shard(&c, 0, "nomad").await;
    c.shards[0].kill9();
    let (mut cl, present) = connect_when_back(c.front(0), &persistent_v5(&nomad)).await;
    assert!(!present, "a fresh session on the next shard");
    assert!(c.shards[1].stderr().contains(&format!("client_id={nomad} ")), "served by the other shard");
    let topic = format!("echo/{nomad}");
    assert_eq!(cl.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    echo(&mut cl, &topic, 1, "elsewhere").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_front_sends_its_clients_to_the_other_front() {
    let mut c = Cluster::start(1, 2, "");
    let mut cl = RawClient::v5(c.front(0), "drained").await;
    c.fronts[0].sigterm();
    let p = cl.next_of_kind(kind::DISCONNECT, WAIT).await;
    let (reason, props) = fleetmq_tests::parse::disconnect(&p).unwrap_or_else(|e| panic!("bad DISCONNECT: {e}"));
    assert_eq!(reason, 0x8B, "server shutting down");
    let other = c.front(1).to_string();
    assert_eq!(props.str(prop::SERVER_REFERENCE), Some(other.as_str()), "Server Reference names the other front");
    cl.expect_closed(WAIT).await;
    assert!(c.fronts[0].wait_exit(WAIT).is_some_and(|s| s.success()), "the front exits cleanly");
    let (mut again, ack) = RawClient::handshake(c.front(1), &Connect::v5("drained")).await;
    assert_eq!(ack.code, 0);
    again.send(&wire::pingreq()).await;
    assert_eq!(again.next_of_kind(kind::PINGRESP, WAIT).await.kind(), kind::PINGRESP);
}

/// Reads the next PUBLISH and completes its QoS handshake.
async fn receive(cl: &mut RawClient) -> fleetmq_tests::parse::Publish {
    let p = cl.read_publish(WAIT).await;
    let pid = p.pid.unwrap_or(0);
    match p.qos {
        1 => cl.send(&wire::puback(pid)).await,
        2 => {
            cl.send(&wire::pubrec(pid)).await;
            cl.expect_ack(kind::PUBREL, pid).await;
            cl.send(&wire::pubcomp(pid)).await;
        }
        _ => {}
    }
    p
}

/// Routes travel between shards asynchronously: publishes QoS 0 probes on `topic` until every
/// subscriber has seen one, then lets stragglers drain.
async fn until_routed(publisher: &mut RawClient, topic: &str, subs: &mut [RawClient]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = vec![false; subs.len()];
    while seen.iter().any(|s| !s) {
        assert!(Instant::now() < deadline, "routes did not reach every shard: {seen:?}");
        publisher.publish(&wire::Publish::new(true, topic, "probe")).await;
        for (i, s) in subs.iter_mut().enumerate() {
            while let Ok(p) = s.try_read_packet(Duration::from_millis(100)).await {
                seen[i] |= p.kind() == kind::PUBLISH;
            }
        }
    }
    for s in subs.iter_mut() {
        while s.try_read_packet(Duration::from_millis(300)).await.is_ok() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_wildcard_subscribers_on_every_shard_once_and_in_order_at_each_qos() {
    let c = Cluster::start(3, 2, "");
    let mut subs = Vec::new();
    for shard in 0..3 {
        let id = id_on_shard(&c, shard, &format!("xsub{shard}")).await;
        let mut s = RawClient::v5(c.front(shard % 2), &id).await;
        assert_eq!(s.subscribe(1, &[("fleet/+/telemetry", 2)]).await, vec![2]);
        subs.push(s);
    }
    let mut pubs = Vec::new();
    for shard in 0..3 {
        let id = id_on_shard(&c, shard, &format!("xpub{shard}")).await;
        pubs.push(RawClient::v5(c.front((shard + 1) % 2), &id).await);
    }
    until_routed(&mut pubs[0], "fleet/probe/telemetry", &mut subs).await;
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
            got.push(String::from_utf8_lossy(&receive(s).await.payload).into_owned());
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
    let sub_id = id_on_shard(&c, 0, "eager-sub").await;
    let pub_id = id_on_shard(&c, 1, "eager-pub").await;
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
    assert_eq!(receive(&mut s).await.payload, b"held");
    // Fresh filters each round: a publish right after the SUBACK always finds the route.
    for round in 0..20u16 {
        let topic = format!("eager/{round}/x");
        assert_eq!(s.subscribe(1 + round, &[(&format!("eager/{round}/+"), 1)]).await, vec![1]);
        assert_eq!(p.publish(&wire::Publish::new(true, &topic, format!("r{round}")).qos(1, 1 + round)).await, 0);
        assert_eq!(receive(&mut s).await.payload, format!("r{round}").as_bytes(), "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_one_shard_lose_nothing_on_the_way_to_another() {
    let c = Cluster::start(2, 2, "");
    let sub_id = id_on_shard(&c, 1, "many-sub").await;
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
        got.insert(receive(&mut s).await.payload);
    }
    assert_eq!(got.len(), 2000, "every message once");
}

/// Two durable shards and one front: a persistent QoS 1 subscriber on shard 2 (offline once its
/// route reached shard 1) and a connected publisher on shard 1. Returns the cluster, the
/// subscriber's client id, its topic and the publisher.
async fn offline_subscriber_on_another_shard(prefix: &str) -> (Cluster, String, String, RawClient) {
    let c = Cluster::start(2, 1, "[storage]\nengine = \"rocksdb\"\n");
    let sub_id = id_on_shard(&c, 1, &format!("{prefix}-sub")).await;
    let pub_id = id_on_shard(&c, 0, &format!("{prefix}-pub")).await;
    let topic = format!("{prefix}/{sub_id}");
    let (mut s, _) = RawClient::handshake(c.front(0), &persistent_v5(&sub_id)).await;
    assert_eq!(s.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let mut p = RawClient::v5(c.front(0), &pub_id).await;
    until_routed(&mut p, &topic, std::slice::from_mut(&mut s)).await;
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
    let (mut s, present) = connect_when_back(c.front(0), &persistent_v5(&sub_id)).await;
    assert!(present);
    for n in 0..5 {
        let m = receive(&mut s).await;
        assert_eq!(m.payload, format!("held-{n}").as_bytes(), "acknowledged while the shard was down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_spread_over_shards_gets_each_message_once() {
    let c = Cluster::start(3, 2, "");
    let mut members = Vec::new();
    for shard in 0..3 {
        let id = id_on_shard(&c, shard, &format!("worker{shard}")).await;
        let mut m = RawClient::v5(c.front(shard % 2), &id).await;
        assert_eq!(m.subscribe(1, &[("$share/workers/jobs/#", 1)]).await, vec![1]);
        members.push(m);
    }
    let watcher_id = id_on_shard(&c, 1, "watcher").await;
    let mut watcher = RawClient::v5(c.front(0), &watcher_id).await;
    assert_eq!(watcher.subscribe(1, &[("jobs/#", 1)]).await, vec![1]);
    let mut pubs = Vec::new();
    for shard in 0..3 {
        let id = id_on_shard(&c, shard, &format!("boss{shard}")).await;
        pubs.push(RawClient::v5(c.front(1), &id).await);
    }
    // Every member's shard must know the other members before counting starts.
    for p in pubs.iter_mut() {
        until_routed(p, "jobs/probe", std::slice::from_mut(&mut watcher)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in members.iter_mut() {
        while m.try_read_packet(Duration::from_millis(200)).await.is_ok() {}
    }
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
        seen.push(receive(&mut watcher).await.payload);
    }
    let mut per_member = Vec::new();
    let mut all = Vec::new();
    for m in members.iter_mut() {
        let mut got = 0;
        while let Ok(p) = m.try_read_packet(Duration::from_millis(700)).await {
            if p.kind() == kind::PUBLISH {
                let p = fleetmq_tests::parse::publish(&p, true).unwrap_or_else(|e| panic!("bad PUBLISH: {e}"));
                m.send(&wire::puback(p.pid.unwrap_or(0))).await;
                all.push(p.payload);
                got += 1;
            }
        }
        per_member.push(got);
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
    let (mut s, present) = connect_when_back(c.front(0), &persistent_v5(&sub_id)).await;
    assert!(present);
    for n in 0..5 {
        assert_eq!(receive(&mut s).await.payload, format!("outbox-{n}").as_bytes());
    }
    s.expect_no_publish(Duration::from_millis(800)).await;
}

/// Subscribes a fresh client on `front` to `filter` and collects the retained messages it gets.
async fn retained_seen(front: SocketAddr, id: &str, filter: &str) -> Vec<String> {
    let mut cl = RawClient::v5(front, id).await;
    assert_eq!(cl.subscribe(1, &[(filter, 1)]).await, vec![1]);
    let mut got = Vec::new();
    while let Ok(p) = cl.try_read_packet(Duration::from_millis(600)).await {
        if p.kind() == kind::PUBLISH {
            let p = fleetmq_tests::parse::publish(&p, true).unwrap_or_else(|e| panic!("bad PUBLISH: {e}"));
            assert!(p.retain, "a retained message on subscribe has the retain flag");
            cl.send(&wire::puback(p.pid.unwrap_or(0))).await;
            got.push(format!("{}={}", p.topic, String::from_utf8_lossy(&p.payload)));
        }
    }
    got.sort();
    got
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
        let got = retained_seen(c.front(attempt % 2), &format!("ret-probe-{attempt}"), "ret/#").await;
        if got == want {
            break;
        }
        assert!(Instant::now() < deadline, "wildcard subscribe gathered {got:?}, want {want:?}");
    }
    // Every shard gathers all of them, and an exact topic finds its owner.
    for shard in 0..3 {
        let id = id_on_shard(&c, shard, &format!("ret-sub{shard}")).await;
        assert_eq!(retained_seen(c.front(shard % 2), &id, "ret/#").await, want, "subscriber on shard {shard}");
        assert_eq!(retained_seen(c.front(0), &id, "ret/t7").await, vec!["ret/t7=r7".to_string()]);
    }
    // An exact filter asks only the topic's owner: every topic is found, so each is stored where
    // the ring puts it (not all on the publisher's shard).
    let id = id_on_shard(&c, 2, "ret-exact").await;
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
        let got = retained_seen(c.front(1), &format!("ret-probe-{attempt}"), "ret/#").await;
        if !got.contains(&"ret/t7=r7".to_string()) {
            assert_eq!(got.len(), 11, "only the cleared one is gone: {got:?}");
            break;
        }
        assert!(Instant::now() < deadline, "retained message never cleared");
    }
}

/// Kills HAProxy when the test ends.
struct Haproxy(std::process::Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// HAProxy (Debian's package, installed by `.ci/run`) in TCP mode over both fronts, with PROXY v2
/// from 127.0.0.2 and `/ready` health checks; returns it and its client address.
fn haproxy(c: &Cluster) -> (Haproxy, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cfg = format!(
        "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    \
         timeout server 60s\nfrontend mqtt\n    bind 127.0.0.1:{port}\n    default_backend fronts\n\
         backend fronts\n    balance roundrobin\n    option httpchk GET /ready\n"
    );
    for (i, (front, ops)) in c.front_addrs.iter().zip(&c.front_metrics).enumerate() {
        cfg.push_str(&format!(
            "    server front{i} {front} send-proxy-v2 source 127.0.0.2 check port {} inter 200ms rise 1\n",
            ops.port()
        ));
    }
    let dir = c.fronts[0].dir();
    std::fs::write(dir.join("haproxy.cfg"), cfg).unwrap();
    let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = std::process::Command::new(bin)
        .args(["-db", "-f"])
        .arg(dir.join("haproxy.cfg"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin} (installed by .ci/run): {e}"));
    (Haproxy(child), format!("127.0.0.1:{port}").parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_two_fronts_serve_publish_subscribe_across_shards_with_real_client_addresses() {
    let c = Cluster::start_behind_proxy(3, 2, "");
    let (_haproxy, lb) = haproxy(&c);
    // Until HAProxy's health checks pass, connections may be refused.
    let (mut sub, sub_id) = {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        loop {
            assert!(Instant::now() < deadline, "HAProxy never forwarded a CONNECT");
            n += 1;
            let id = format!("lb-sub-{n}");
            if let Ok(Ok(mut cl)) =
                tokio::time::timeout(Duration::from_secs(2), tokio::spawn(async move { RawClient::connect(lb).await }))
                    .await
            {
                cl.send_connect(&Connect::v5(&id)).await;
                if let Ok(p) = cl.try_read_packet(Duration::from_secs(2)).await {
                    if fleetmq_tests::parse::connack(&p).is_ok_and(|a| a.code == 0) {
                        break (cl, id);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let sub_shard = c.shard_of(&sub_id).expect("subscriber on one shard");
    let mut publisher = None;
    for n in 0..50 {
        let id = format!("lb-pub-{n}");
        let cl = RawClient::v5(lb, &id).await;
        if c.shard_of(&id).is_some_and(|s| s != sub_shard) {
            publisher = Some(cl);
            break;
        }
    }
    let mut publisher = publisher.expect("a publisher on another shard");
    assert_eq!(sub.subscribe(1, &[("lb/+/t", 1)]).await, vec![1]);
    until_routed(&mut publisher, "lb/probe/t", std::slice::from_mut(&mut sub)).await;
    for n in 0..5 {
        let code = publisher.publish(&wire::Publish::new(true, "lb/dev/t", format!("via-lb-{n}")).qos(1, 1 + n)).await;
        assert_eq!(code, 0);
    }
    for n in 0..5 {
        assert_eq!(receive(&mut sub).await.payload, format!("via-lb-{n}").as_bytes());
    }
    // The shard sees the client's own address, carried by PROXY v2 through the front.
    let needle = format!("client_id={sub_id} peer={}", sub.local_addr());
    assert!(c.shards[sub_shard].stderr().contains(&needle), "shard log lacks {needle}");
    for node in c.shards.iter().chain(&c.fronts) {
        assert!(!node.stderr().contains("peer=127.0.0.2:"), "the balancer's address leaked into a log");
    }
    for (i, f) in c.fronts.iter().enumerate() {
        assert!(f.stderr().contains("forwarding session"), "front {i} served no client: round robin over both");
    }
}
