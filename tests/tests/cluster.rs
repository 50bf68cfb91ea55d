//! Cluster: front nodes forward each client's session to the shard that owns its client id; every
//! node is a real `fleetmq` process started from TOML on its own loopback address. Sessions,
//! takeover, keepalive, shard loss, drain, and the whole cluster behind HAProxy; routing between
//! shards is in `cluster_routing.rs`.

use fleetmq_tests::cluster::{collect_qos1, connect_when_back, persistent, qos1_load, Cluster};
use fleetmq_tests::haproxy::Haproxy;
use fleetmq_tests::parse::kind;
use fleetmq_tests::raw::Error as RawError;
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::{cli, RawClient, TempDir};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// Publishes at `qos` and reads the copy the client's own subscription brings back.
async fn echo(c: &mut RawClient, topic: &str, qos: u8, payload: &str) {
    let code = c.publish(&wire::Publish::new(c.is_v5(), topic, payload).qos(qos, 100 + u16::from(qos))).await;
    assert_eq!(code, 0, "publish at QoS {qos} refused");
    let p = c.receive().await;
    assert_eq!((p.topic.as_str(), p.payload.as_slice()), (topic, payload.as_bytes()));
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
    let roamer = c.id_on_shard(1, "roamer").await;
    let publisher = c.id_on_shard(1, "roam-pub").await;
    let topic = format!("roam/{roamer}");
    let (mut a, ack) = RawClient::handshake(c.front(0), &persistent(&roamer)).await;
    assert_eq!((ack.code, ack.session_present), (0, false));
    assert_eq!(a.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    a.send(&wire::disconnect_v5(0, &Props::new())).await;
    a.expect_closed(WAIT).await;

    let mut p = RawClient::v5(c.front(1), &publisher).await;
    for n in 0..3 {
        let code = p.publish(&wire::Publish::new(true, &topic, format!("q{n}")).qos(1, 1 + n)).await;
        assert_eq!(code, 0);
    }
    let (mut b, ack) = RawClient::handshake(c.front(1), &persistent(&roamer)).await;
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
        let connect = if round % 2 == 0 { persistent(&id) } else { Connect::v5(&id) };
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
async fn a_shard_killed_under_qos1_load_disconnects_its_clients_refuses_them_until_back_and_loses_nothing_acknowledged()
{
    let mut c = Cluster::start(2, 1, "[storage]\nengine = \"rocksdb\"\n");
    let victim = c.id_on_shard(0, "victim").await;
    let near = c.id_on_shard(0, "near-pub").await;
    let far = c.id_on_shard(1, "far-pub").await;
    let bystander = c.id_on_shard(1, "bystander").await;
    let topic = format!("loss/{victim}");
    let (mut v, _) = RawClient::handshake(c.front(0), &persistent(&victim)).await;
    assert_eq!(v.subscribe(1, &[(&topic, 1)]).await, vec![1]);
    let mut by = RawClient::v5(c.front(0), &bystander).await;
    let by_topic = format!("echo/{bystander}");
    assert_eq!(by.subscribe(1, &[(&by_topic, 1)]).await, vec![1]);

    // The victim's shard stores what its own publisher sends; the far publisher's copies go
    // through its shard's durable outbox. The subscriber is online, acknowledging as it reads.
    let subscriber = tokio::spawn(async move { collect_qos1(&mut v, Duration::from_secs(20)).await });
    let (near_done, far_done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = |id: String, tag: &'static str, count: u32, done: Arc<AtomicUsize>| {
        let (front, topic) = (c.front(0), topic.clone());
        tokio::spawn(async move {
            let mut p = RawClient::v5(front, &id).await;
            qos1_load(&mut p, &topic, tag, count, 16, &done).await
        })
    };
    let near_load = load(near, "near", 3000, near_done.clone());
    let far_load = load(far, "far", 3000, far_done.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while near_done.load(Ordering::Relaxed) < 200 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    c.shards[0].kill9();
    let far_at_kill = far_done.load(Ordering::Relaxed);
    let near_end = near_load.await.unwrap();
    assert_eq!(near_end.disconnect, Some(0x88), "clients of the lost shard are told it is unavailable");
    assert!(near_end.acked.len() < 3000, "the shard died mid-load");
    let before = subscriber.await.unwrap();
    echo(&mut by, &by_topic, 1, "still here").await;
    let (_, ack) = RawClient::handshake(c.front(0), &persistent(&victim)).await;
    assert_eq!(ack.code, 0x88, "refused while its shard is down (policy refuse)");
    let far_end = far_load.await.unwrap();
    assert_eq!(far_end.acked.len(), 3000, "the other shard's publisher is not affected: all acknowledged");
    assert!(far_at_kill < 3000, "the far publisher was still publishing when the shard died");

    c.shards[0].restart();
    let (mut v, present) = connect_when_back(c.front(0), &persistent(&victim)).await;
    assert!(present, "the stored session survives the shard's crash");
    let after = collect_qos1(&mut v, Duration::from_secs(3)).await;
    // Repeats are bounded: the victim's unacknowledged in-flight window (128) redelivered, and
    // the near publisher's stored but unacknowledged window (16).
    let acked = near_end.acked.len() + far_end.acked.len();
    assert!(
        before.len() + after.len() <= acked + 128 + 16,
        "{} deliveries for {acked} messages",
        before.len() + after.len()
    );
    let got: HashSet<&String> = before.iter().chain(&after).collect();
    let lost: Vec<&String> = near_end.acked.iter().chain(&far_end.acked).filter(|p| !got.contains(p)).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    echo(&mut by, &by_topic, 1, "and still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_goes_silent_is_declared_lost_by_heartbeats() {
    let c = Cluster::start(2, 1, "");
    let id = c.id_on_shard(0, "silent").await;
    let mut cl = RawClient::v5(c.front(0), &id).await;
    // Stopped, not killed: no connection resets, only missing heartbeats (timeout 1 s here).
    c.shards[0].signal("STOP");
    let reason = tokio::time::timeout(WAIT, cl.expect_disconnect(WAIT)).await;
    c.shards[0].signal("CONT");
    assert_eq!(reason.expect("disconnected within the heartbeat timeout"), 0x88);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_next_shard_policy_a_client_of_a_lost_shard_gets_a_fresh_session_elsewhere() {
    let mut c = Cluster::start(2, 1, "[cluster]\non_shard_loss = \"next_shard\"\n");
    let nomad = c.id_on_shard(0, "nomad").await;
    c.shards[0].kill9();
    let (mut cl, present) = connect_when_back(c.front(0), &persistent(&nomad)).await;
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

/// HAProxy in TCP mode over both fronts, with PROXY v2 from 127.0.0.2 and `/ready` health
/// checks, listening on the cluster's own loopback address; returns it and its client address.
fn haproxy(c: &Cluster) -> (Haproxy, SocketAddr) {
    let lb = c.spare_addr();
    let mut cfg = format!(
        "{}frontend mqtt\n    bind {lb}\n    default_backend fronts\n\
         backend fronts\n    balance roundrobin\n    option httpchk GET /ready\n",
        Haproxy::preamble()
    );
    for (i, (front, ops)) in c.front_addrs.iter().zip(&c.front_metrics).enumerate() {
        cfg.push_str(&format!(
            "    server front{i} {front} send-proxy-v2 source 127.0.0.2 check port {} inter 200ms rise 1\n",
            ops.port()
        ));
    }
    (Haproxy::start(c.fronts[0].dir(), &cfg), lb)
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
    assert_eq!(sub.subscribe(1, &[("lb/+/t", 2)]).await, vec![2]);
    for n in 0..5 {
        let code = publisher.publish(&wire::Publish::new(true, "lb/dev/t", format!("via-lb-{n}")).qos(1, 1 + n)).await;
        assert_eq!(code, 0);
    }
    for n in 0..5 {
        assert_eq!(sub.receive().await.payload, format!("via-lb-{n}").as_bytes());
    }
    for qos in [0u8, 2] {
        let payload = format!("at-qos-{qos}");
        let code =
            publisher.publish(&wire::Publish::new(true, "lb/dev/t", &payload).qos(qos, 10 + u16::from(qos))).await;
        assert_eq!(code, 0);
        let m = sub.receive().await;
        assert_eq!((m.payload.as_slice(), m.qos), (payload.as_bytes(), qos));
    }
    // A shared group whose members came in through the balancer gets each message once.
    let mut members = Vec::new();
    for n in 0..2 {
        let mut m = RawClient::v5(lb, &format!("lb-share-{n}")).await;
        assert_eq!(m.subscribe(1, &[("$share/lbg/lb/shared", 1)]).await, vec![1]);
        members.push(m);
    }
    for n in 0..10u16 {
        let code = publisher.publish(&wire::Publish::new(true, "lb/shared", format!("s{n}")).qos(1, 20 + n)).await;
        assert_eq!(code, 0);
    }
    let mut shared = Vec::new();
    for m in &mut members {
        shared.extend(m.receive_until_quiet(Duration::from_millis(500)).await.into_iter().map(|p| p.payload));
    }
    shared.sort();
    let mut expected: Vec<Vec<u8>> = (0..10).map(|n| format!("s{n}").into_bytes()).collect();
    expected.sort();
    assert_eq!(shared, expected, "each message to exactly one member of the group");
    // Retained through the balancer, found by a wildcard subscriber that also came through it.
    let code = publisher.publish(&wire::Publish::new(true, "lb/ret/a", "kept").qos(1, 40).retain()).await;
    assert_eq!(code, 0x10, "accepted, no matching subscribers (yet)");
    let mut late = RawClient::v5(lb, "lb-late").await;
    assert_eq!(late.subscribe(1, &[("lb/ret/#", 1)]).await, vec![1]);
    let m = late.receive().await;
    assert_eq!((m.topic.as_str(), m.payload.as_slice(), m.retain), ("lb/ret/a", &b"kept"[..], true));
    // The shard sees the client's own address, carried by PROXY v2 through the front.
    let needle = format!("client_id={sub_id} peer={}", sub.local_addr());
    assert!(c.shards[sub_shard].stderr().contains(&needle), "shard log lacks {needle}");
    for node in c.shards.iter().chain(&c.fronts) {
        assert!(!node.stderr().contains("peer=127.0.0.2:"), "the balancer's address leaked into a log");
    }
    for (i, f) in c.fronts.iter().enumerate() {
        assert!(f.stderr().contains("forwarding session"), "front {i} served no client: round robin over both");
    }
    // Takeover through the balancer: the next connection (the other front, by round robin or
    // not) ends the first with 0x8E.
    let (_again, ack) = RawClient::handshake(lb, &Connect::v5(&sub_id)).await;
    assert_eq!(ack.code, 0);
    assert_eq!(sub.expect_disconnect(WAIT).await, 0x8E, "session taken over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cluster_tls_nodes_link_over_mutual_tls_and_a_plain_front_is_refused() {
    let certs = TempDir::new("fleetmq-cluster-certs");
    cli::certs(certs.path(), None);
    let d = certs.path().display();
    let tls = format!(
        "[cluster.tls]\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nca = \"{d}/ca.pem\"\n\
         client_cert = \"{d}/client.pem\"\nclient_key = \"{d}/client.key\"\nserver_name = \"localhost\"\n"
    );
    let mut c = Cluster::start(2, 2, &tls);
    // Shard ↔ shard (route, forward) and front → shard links all run over TLS here.
    let sub_id = c.id_on_shard(0, "tls-sub").await;
    let pub_id = c.id_on_shard(1, "tls-pub").await;
    let mut sub = RawClient::v5(c.front(0), &sub_id).await;
    assert_eq!(sub.subscribe(1, &[("tls/+", 1)]).await, vec![1]);
    let mut publisher = RawClient::v5(c.front(1), &pub_id).await;
    assert_eq!(publisher.publish(&wire::Publish::new(true, "tls/a", "sealed").qos(1, 7)).await, 0);
    let got = sub.receive().await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("tls/a", &b"sealed"[..]));

    // A front restarted without [cluster.tls] cannot link: the shards refuse its plain TCP.
    let path = c.fronts[1].dir().join("fleetmq.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    config["cluster"].as_table_mut().unwrap().remove("tls");
    c.fronts[1].rewrite_config(&config.to_string());
    c.fronts[1].restart();
    let (_, ack) = RawClient::handshake(c.front(1), &Connect::v5(&sub_id)).await;
    assert_eq!(ack.code, 0x88, "no link to the shard without TLS: server unavailable");
    let deadline = Instant::now() + WAIT;
    while !c.shards.iter().any(|s| s.log().contains("internal link refused")) {
        assert!(Instant::now() < deadline, "no shard logged the refused plain link");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
