//! Robustness: will semantics on server-side closes, resume limits, stalled peers, queue memory
//! bounds, session ownership across users, and packets after a protocol violation.

use fleetmq_tests::parse::{self, kind};
use fleetmq_tests::wire::{self, prop, Connect, Props, Will};
use fleetmq_tests::{unique, Broker, RawClient};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn will(topic: &str) -> Option<Will> {
    Some(Will { topic: topic.into(), payload: b"gone".to_vec(), qos: 0, retain: false, props: Props::new() })
}

/// F2: a protocol violation detected by the session (here QoS 2 with max_qos = 1) closes the
/// connection as CloseCause::Server, which suppresses the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_server_closes_for_a_violation() {
    let b = Broker::start("[mqtt]\nmax_qos = 1\n");
    let will_topic = unique("w");
    let mut watcher = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watcher.subscribe(1, &[(&will_topic, 0)]).await;
    let mut c = Connect::v5(&unique("bad"));
    c.will = will(&will_topic);
    let mut s = RawClient::connect_ok(b.tcp_addr(), &c).await;
    s.send(&wire::Publish::new(true, "x/y", b"p").qos(2, 1).encode()).await;
    let reason = s.expect_disconnect(WAIT).await;
    assert_eq!(reason, 0x9B);
    let got = watcher.try_read_packet(Duration::from_secs(2)).await;
    assert!(got.is_ok(), "will not published after server-side protocol-error close: {got:?}");
}

/// F3: DISCONNECT with a reason other than 0x00 must not suppress the will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_disconnect_with_an_error_reason() {
    let b = Broker::start("");
    let will_topic = unique("w");
    let mut watcher = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watcher.subscribe(1, &[(&will_topic, 0)]).await;
    let mut c = Connect::v5(&unique("err"));
    c.will = will(&will_topic);
    let mut s = RawClient::connect_ok(b.tcp_addr(), &c).await;
    s.send(&wire::disconnect_v5(0x80, &Props::new())).await;
    s.expect_closed(WAIT).await;
    let got = watcher.try_read_packet(Duration::from_secs(2)).await;
    assert!(got.is_ok(), "will not published after DISCONNECT 0x80: {got:?}");
}

/// F4: on resume, every in-flight PUBLISH is resent regardless of the new connection's Receive
/// Maximum and Maximum Packet Size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_respects_new_receive_maximum_and_max_packet_size() {
    let b = Broker::start("");
    let topic = unique("t");
    let id = unique("resume");
    let mut c = Connect::v5(&id);
    c.clean = false;
    c.props = Props::new().u32(prop::SESSION_EXPIRY, 300);
    let mut s = RawClient::connect_ok(b.tcp_addr(), &c).await;
    s.subscribe(1, &[(&topic, 1)]).await;
    let mut p = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    for i in 1..=20u16 {
        p.send(&wire::Publish::new(false, &topic, vec![b'x'; 500]).qos(1, i).encode()).await;
    }
    for _ in 0..20 {
        s.read_publish(WAIT).await;
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.props =
        Props::new().u32(prop::SESSION_EXPIRY, 300).u16(prop::RECEIVE_MAXIMUM, 2).u32(prop::MAXIMUM_PACKET_SIZE, 100);
    let (mut s, ack) = RawClient::handshake(b.tcp_addr(), &c).await;
    assert!(ack.session_present);
    let mut n = 0;
    let mut largest = 0;
    while let Ok(pk) = s.try_read_packet(Duration::from_millis(1000)).await {
        if pk.kind() == kind::PUBLISH {
            n += 1;
            largest = largest.max(pk.body.len() + 3);
        }
    }
    assert!(n <= 2 && largest <= 100, "resumed {n} PUBLISH (receive maximum 2), largest ~{largest} bytes (max 100)");
}

/// F5: a client that half-closes (FIN) while not reading pins its connection task forever: the
/// writer is blocked on a write and nothing asks it to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_stalled_client_releases_its_connection() {
    let b = Broker::start("[limits]\nmax_connections = 3\n");
    let topic = unique("t");
    let mut s = RawClient::v4(b.tcp_addr(), &unique("sub")).await;
    s.subscribe(1, &[(&topic, 0)]).await;
    let mut p = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    let payload = vec![b'x'; 64 * 1024];
    for _ in 0..400 {
        p.send(&wire::Publish::new(false, &topic, &payload).encode()).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.shutdown_write().await; // FIN; never read
    drop(p);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Slots: s (pinned) + 2 new ones should fit in 3 only if s's slot was freed.
    let _a = RawClient::v4(b.tcp_addr(), &unique("a")).await;
    let _b2 = RawClient::v4(b.tcp_addr(), &unique("b")).await;
    let (_c, ack) = RawClient::handshake(b.tcp_addr(), &Connect::v4(&unique("c"))).await;
    let pinned = ack.code != 0;
    drop(s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_d, ack2) = RawClient::handshake(b.tcp_addr(), &Connect::v4(&unique("d"))).await;
    eprintln!("while half-closed client open: code {}, after it closed: code {}", ack.code, ack2.code);
    assert!(!pinned, "connection slot of the half-closed client still held");
}

fn rss_kb(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// F6: Message::cost() ignores properties, so max_queued_bytes does not bound an offline queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_byte_limit_counts_properties() {
    // The in-memory engine, so the RSS measured is the queue's, not a storage engine's memtables.
    let b = Broker::start("[limits]\nmax_queued_bytes = 1048576\n[storage]\nengine = \"memory\"\n");
    let topic = unique("t");
    let mut c = Connect::v4(&unique("offline"));
    c.clean = false;
    let mut s = RawClient::connect_ok(b.tcp_addr(), &c).await;
    s.subscribe(1, &[(&topic, 1)]).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kb(b.pid());
    let mut p = RawClient::v5(b.tcp_addr(), &unique("pub")).await;
    let big = "v".repeat(60_000);
    for i in 1..=400u16 {
        let mut props = Props::new();
        for _ in 0..8 {
            props = props.pair(prop::USER_PROPERTY, "k", &big);
        }
        p.publish(&wire::Publish::new(true, &topic, b"x").qos(1, i).props(props)).await;
    }
    let after = rss_kb(b.pid());
    eprintln!("RSS before {before} kB, after {after} kB (queue limit 1 MiB)");
    assert!(
        after - before < 64 * 1024,
        "offline queue grew by {} MiB with max_queued_bytes = 1 MiB",
        (after - before) / 1024
    );
}

/// F7: a different user resumes another user's persistent session (client id takeover) and receives
/// messages on topics its own ACL does not let it subscribe to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_does_not_inherit_a_session() {
    let dir = fleetmq_tests::TempDir::new("fleetmq-review");
    dir.write("acl", "allow subscribe user:alice secret/#\nallow publish all #\n");
    let b = Broker::start_in(dir, "[auth]\nallow_anonymous = true\nacl_file = \"$DIR/acl\"\n");
    let id = unique("shared-id");
    let mut c = Connect::v4(&id);
    c.clean = false;
    c.username = Some("alice".into());
    let mut a = RawClient::connect_ok(b.tcp_addr(), &c).await;
    assert_eq!(a.subscribe(1, &[("secret/#", 1)]).await, vec![1]);
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.username = Some("bob".into());
    let mut bob = RawClient::connect_ok(b.tcp_addr(), &c).await;
    assert_eq!(bob.subscribe(2, &[("secret/#", 1)]).await, vec![0x80], "bob may not subscribe himself");
    let mut p = RawClient::v4(b.tcp_addr(), &unique("pub")).await;
    p.publish(&wire::Publish::new(false, "secret/plans", b"top secret").qos(1, 1)).await;
    let got = bob.try_read_packet(Duration::from_secs(2)).await;
    assert!(got.is_err(), "bob received alice's subscription traffic: {:?}", got.map(|p| parse::publish(&p, false)));
}

/// F8: packets queued behind a packet that the session rejects as a protocol violation are still
/// processed (routed) after the DISCONNECT was decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_after_a_violation_are_not_routed() {
    let b = Broker::start("[mqtt]\nmax_qos = 1\n");
    let topic = unique("t");
    let mut watcher = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watcher.subscribe(1, &[(&topic, 0)]).await;
    let mut s = RawClient::v5(b.tcp_addr(), &unique("bad")).await;
    let mut bytes = wire::Publish::new(true, "x/y", b"p").qos(2, 1).encode();
    for _ in 0..5 {
        bytes.extend(wire::Publish::new(true, &topic, b"after-violation").encode());
    }
    s.send(&bytes).await;
    assert_eq!(s.expect_disconnect(WAIT).await, 0x9B);
    let got = watcher.try_read_packet(Duration::from_secs(1)).await;
    assert!(
        got.is_err(),
        "message sent after the violating packet was routed: {:?}",
        got.map(|p| parse::publish(&p, false))
    );
}

/// F9: a takeover that overtakes the old connection's DISCONNECT(0x00) publishes the will anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn normal_disconnect_then_fast_reconnect_publishes_no_will() {
    let b = Broker::start("");
    let will_topic = unique("w");
    let mut watcher = RawClient::v4(b.tcp_addr(), &unique("watch")).await;
    watcher.subscribe(1, &[(&will_topic, 0)]).await;
    let mut wills = 0;
    for _ in 0..40 {
        let id = unique("fast");
        let mut c = Connect::v4(&id);
        c.clean = false;
        c.will = will(&will_topic);
        let mut old = RawClient::connect_ok(b.tcp_addr(), &c).await;
        let mut new = RawClient::connect(b.tcp_addr()).await;
        let mut c2 = c.clone();
        c2.will = None;
        let connect = c2.encode();
        let disc = wire::disconnect();
        old.send(&disc).await;
        // Long enough for the old connection to have read its DISCONNECT (a server cannot act on bytes
        // it has not read), short enough that the session may not have applied it yet.
        tokio::time::sleep(Duration::from_millis(2)).await;
        new.send(&connect).await;
        let _ = new.expect_connack(WAIT).await;
        while watcher.try_read_packet(Duration::from_millis(200)).await.is_ok() {
            wills += 1;
        }
        drop(old);
        new.send(&wire::disconnect()).await;
    }
    assert_eq!(wills, 0, "{wills}/40 wills published after a normal DISCONNECT");
}
