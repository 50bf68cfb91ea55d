//! Changing the shard set of a running cluster: adding a shard moves only the client ids whose
//! owner changed (measured over 10k ids with `fleetmq plan-shards` on the nodes' own configs), and
//! each moved persistent session keeps its subscriptions and its queued QoS 1 and QoS 2 messages;
//! retained messages move to their topic's new owner. A leaving shard hands everything over.
//! Real processes on RocksDB, restarted the documented way (kill -9, new member list).

use fleetmq_tests::broker::fleetmq_bin;
use fleetmq_tests::cluster::{persistent, retained_seen, Cluster};
use fleetmq_tests::wire::{self, Props};
use fleetmq_tests::RawClient;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

/// Persistent sessions, each subscribed to `{prefix}/{id}/q1` (QoS 1) and `{prefix}/{id}/q2`
/// (QoS 2), offline with three QoS 1 and two QoS 2 messages sent once and unacknowledged (in
/// flight); and `retained` retained
/// messages on `{prefix}/retained/{n}`. Returns the client ids.
async fn offline_sessions_with_queues(c: &Cluster, prefix: &str, sessions: usize, retained: u16) -> Vec<String> {
    let ids: Vec<String> = (0..sessions).map(|i| format!("{prefix}-{i}")).collect();
    for id in &ids {
        let (mut s, ack) = RawClient::handshake(c.front(0), &persistent(id)).await;
        assert_eq!(ack.code, 0);
        let (q1, q2) = (format!("{prefix}/{id}/q1"), format!("{prefix}/{id}/q2"));
        assert_eq!(s.subscribe(1, &[(&q1, 1), (&q2, 2)]).await, vec![1, 2]);
        s.send(&wire::disconnect_v5(0, &Props::new())).await;
        s.expect_closed(WAIT).await;
    }
    let mut p = RawClient::v5(c.front(0), &format!("{prefix}-publisher")).await;
    let mut pid = 0u16;
    for id in &ids {
        for (qos, count) in [(1u8, 3), (2u8, 2)] {
            for n in 0..count {
                pid += 1;
                let publish = wire::Publish::new(true, format!("{prefix}/{id}/q{qos}"), format!("{id}-q{qos}-{n}"));
                assert_eq!(p.publish(&publish.qos(qos, pid)).await, 0, "acknowledged to the publisher");
            }
        }
    }
    // Each session comes back once and leaves without acknowledging what it was sent: its
    // messages are in flight (sent, unacknowledged) rather than only queued when it moves.
    for id in &ids {
        let (mut s, ack) = RawClient::handshake(c.front(0), &persistent(id)).await;
        assert!(ack.session_present);
        assert_eq!(s.read_publish(WAIT).await.payload, format!("{id}-q1-0").as_bytes());
        s.send(&wire::disconnect_v5(0, &Props::new())).await;
        s.expect_closed(WAIT).await;
    }
    for n in 0..retained {
        pid += 1;
        let publish = wire::Publish::new(true, format!("{prefix}/retained/{n}"), format!("r{n}")).retain();
        let code = p.publish(&publish.qos(1, pid)).await;
        assert!(code == 0 || code == 0x10, "retained publish refused: {code:#x}");
    }
    // Forwards to the owning shards are asynchronous: wait until they all landed.
    let want = retained_want(prefix, retained);
    let deadline = Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let filter = format!("{prefix}/retained/+");
        if retained_seen(c.front(0), &format!("{prefix}-probe-{attempt}"), &[&filter]).await == want {
            break;
        }
        assert!(Instant::now() < deadline, "retained messages never all stored");
    }
    ids
}

fn retained_want(prefix: &str, count: u16) -> Vec<String> {
    let mut want: Vec<String> = (0..count).map(|n| format!("{prefix}/retained/{n}=r{n}")).collect();
    want.sort();
    want
}

/// Runs `fleetmq plan-shards` on two config files and returns (moved, total).
fn plan(from: &std::path::Path, to: &std::path::Path, args: &[&str]) -> (usize, usize) {
    let out = std::process::Command::new(fleetmq_bin())
        .arg("plan-shards")
        .arg(from)
        .arg(to)
        .args(args)
        .output()
        .expect("run fleetmq plan-shards");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "plan-shards failed: {}", String::from_utf8_lossy(&out.stderr));
    let first = text.lines().next().unwrap_or_default();
    let words: Vec<&str> = first.split_whitespace().collect();
    match words.as_slice() {
        ["moved", moved, "of", total, ..] => (moved.parse().unwrap(), total.parse().unwrap()),
        _ => panic!("unexpected plan-shards output: {text}"),
    }
}

/// Sum of `moved=` over the shards' "sessions handed over" log lines.
fn handed_over(c: &Cluster) -> usize {
    c.shards
        .iter()
        .flat_map(|s| {
            s.log()
                .lines()
                .filter(|l| l.contains("sessions handed over to their new owner"))
                .filter_map(|l| l.split("moved=").nth(1)?.split_whitespace().next()?.parse::<usize>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

/// Waits until the shards logged `want` sessions handed over in all.
fn await_handed_over(c: &Cluster, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while handed_over(c) < want {
        assert!(Instant::now() < deadline, "only {} of {want} sessions handed over", handed_over(c));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(handed_over(c), want, "only sessions whose owner changed move");
}

/// Every session resumes (Session Present) with exactly its queued messages, in order, QoS 2 once.
async fn sessions_resume_with_their_queues(front: SocketAddr, prefix: &str, ids: &[String]) {
    for id in ids {
        let (mut s, ack) = RawClient::handshake(front, &persistent(id)).await;
        assert_eq!(ack.code, 0, "{id} refused");
        assert!(ack.session_present, "{id} lost its session");
        let got: Vec<String> = s
            .receive_until_quiet(Duration::from_millis(400))
            .await
            .into_iter()
            .map(|p| format!("{}:{}", p.qos, String::from_utf8_lossy(&p.payload)))
            .collect();
        let q1: Vec<&String> = got.iter().filter(|m| m.starts_with("1:")).collect();
        let q2: Vec<&String> = got.iter().filter(|m| m.starts_with("2:")).collect();
        let want_q1: Vec<String> = (0..3).map(|n| format!("1:{id}-q1-{n}")).collect();
        let want_q2: Vec<String> = (0..2).map(|n| format!("2:{id}-q2-{n}")).collect();
        assert_eq!(q1, want_q1.iter().collect::<Vec<_>>(), "{id}: QoS 1 queue (in order) in {got:?}");
        assert_eq!(q2, want_q2.iter().collect::<Vec<_>>(), "{id}: QoS 2 queue exactly once, in order");
        // The subscriptions came along: a new message still reaches the session.
        let mut p = RawClient::v5(front, &format!("{id}-after")).await;
        assert_eq!(p.publish(&wire::Publish::new(true, format!("{prefix}/{id}/q1"), "after").qos(1, 1)).await, 0);
        assert_eq!(s.receive().await.payload, b"after");
    }
}

/// A fresh subscriber to every retained topic by its exact name gets it: an exact filter asks
/// only the topic's owner on the current ring, so this finds a message only where it moved.
async fn retained_all_there(front: SocketAddr, prefix: &str, count: u16) {
    let topics: Vec<String> = (0..count).map(|n| format!("{prefix}/retained/{n}")).collect();
    let filters: Vec<&str> = topics.iter().map(String::as_str).collect();
    let got = retained_seen(front, &format!("{prefix}-retained-probe"), &filters).await;
    assert_eq!(got, retained_want(prefix, count), "retained messages after the membership change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_shard_moves_a_quarter_of_the_ids_and_their_sessions_keep_their_queues() {
    let mut c = Cluster::start(3, 1, "[storage]\nengine = \"rocksdb\"\n");
    let ids = offline_sessions_with_queues(&c, "grow", 40, 16).await;
    let before = c.shards[0].dir().join("before.toml");
    std::fs::copy(c.shards[0].dir().join("fleetmq.toml"), &before).unwrap();

    c.add_shard();
    let after = c.shards[0].dir().join("fleetmq.toml");
    let (moved, total) = plan(&before, &after, &["--ids", "10000"]);
    assert_eq!(total, 10_000);
    assert!(moved > 1_000 && moved <= 2_500 + 500, "adding a 4th shard moved {moved} of 10000 ids");
    let ids_file = c.shards[0].dir().join("ids.txt");
    std::fs::write(&ids_file, ids.join("\n")).unwrap();
    let (ours, _) = plan(&before, &after, &["--ids-file", ids_file.to_str().unwrap()]);
    assert!(ours > 0, "none of the test's sessions moves; pick other ids");

    await_handed_over(&c, ours);
    let new_shard = c.shards[3].log();
    let arrived = ids.iter().filter(|id| {
        new_shard.lines().any(|l| l.contains("handed over to this shard") && l.contains(&format!("client_id={id} ")))
    });
    assert_eq!(arrived.count(), ours, "the moved sessions are the ones the new shard took");
    // The old owners deleted their copies: another restart finds nothing to hand over.
    let retained_lines = |c: &Cluster| -> usize {
        c.shards.iter().map(|s| s.log().matches("retained messages handed over to their new owner").count()).sum()
    };
    let retained_moves = retained_lines(&c);
    c.restart_shards();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(handed_over(&c), ours, "a session was handed over again: its old copy was kept");
    assert_eq!(retained_lines(&c), retained_moves, "retained messages were moved again: old copies kept");
    sessions_resume_with_their_queues(c.front(0), "grow", &ids).await;
    retained_all_there(c.front(0), "grow", 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_shard_hands_every_session_and_retained_message_over() {
    let mut c = Cluster::start(3, 1, "[storage]\nengine = \"rocksdb\"\n");
    let ids = offline_sessions_with_queues(&c, "shrink", 24, 12).await;
    let before = c.shards[0].dir().join("before.toml");
    std::fs::copy(c.shards[0].dir().join("fleetmq.toml"), &before).unwrap();

    c.retire_shard(2);
    let ids_file = c.shards[0].dir().join("ids.txt");
    std::fs::write(&ids_file, ids.join("\n")).unwrap();
    let (ours, _) = plan(&before, &c.shards[0].dir().join("fleetmq.toml"), &["--ids-file", ids_file.to_str().unwrap()]);
    assert!(ours > 0, "none of the test's sessions was on the leaving shard; pick other ids");
    await_handed_over(&c, ours);
    sessions_resume_with_their_queues(c.front(0), "shrink", &ids).await;
    retained_all_there(c.front(0), "shrink", 12).await;
    assert!(
        c.shards[2].log().contains("retained messages handed over to their new owner"),
        "the leaving shard gave its retained messages away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_refuses_a_session_a_front_with_another_ring_sends_it() {
    let mut c = Cluster::start(2, 1, "");
    let id = c.id_on_shard(1, "mismatch").await;
    // The shards learn that shard-2 leaves, the front does not yet: it still sends `id` there.
    c.retire_shard_on_shards_only(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ack = loop {
        let (_, ack) = RawClient::handshake(c.front(0), &persistent(&id)).await;
        // 0x88 while the front has not relinked to the restarted shard yet.
        if ack.code != 0x88 || Instant::now() > deadline {
            break ack;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ack.code, 0x9C, "use another server: the shard's ring gives the session to shard-1");
    let mut v4 = RawClient::connect(c.front(0)).await;
    v4.send_connect(&wire::Connect::v4(&id)).await;
    assert_eq!(v4.expect_connack(WAIT).await.code, 0x03, "3.1.1: server unavailable");
    assert!(c.shards[1].log().contains("CONNECT for another shard refused"));
}
