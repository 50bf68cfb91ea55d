//! Durable state with the RocksDB engine, tested by killing the real broker process: every
//! message whose PUBACK/PUBCOMP a publisher saw reaches persistent subscribers after a restart
//! (QoS 2 exactly once, in publisher order); retained messages and session expiry survive restarts;
//! a failing disk is refused rather than acknowledged; a second broker on the same data directory,
//! a damaged data directory and a file in its place all stop the broker at start with a clear error.
//! The embedded default (no `[storage]` in the config) is durable in `./fleetmq-data`.

use fleetmq_tests::parse::{self, kind};
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::{unique, Broker, RawClient, TempDir};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const DURABLE: &str = "[storage]\nengine = \"rocksdb\"\nsync = \"always\"\n";
const WAIT: Duration = Duration::from_secs(5);
const PUBLISHERS: usize = 4;
const CYCLES: usize = 5;

/// Acknowledged message numbers per publisher, as inclusive ranges.
type Acked = HashMap<usize, Vec<(u32, u32)>>;

/// A raw persistent subscriber that keeps its QoS 2 receiver state across reconnects, as a real
/// client must, and records every delivery.
struct Subscriber {
    connect: Connect,
    v5: bool,
    /// QoS 2 packet ids received and acknowledged with PUBREC, awaiting PUBREL.
    awaiting_rel: HashSet<u16>,
    /// Deliveries per publisher, in arrival order.
    got: BTreeMap<usize, Vec<u32>>,
}

impl Subscriber {
    fn new(v5: bool) -> Subscriber {
        let mut connect = if v5 { Connect::v5(&unique("sub5")) } else { Connect::v4(&unique("sub4")) };
        connect.clean = false;
        if v5 {
            connect.props = Props::new().u32(prop::SESSION_EXPIRY, 3600);
        }
        Subscriber { connect, v5, awaiting_rel: HashSet::new(), got: BTreeMap::new() }
    }

    async fn subscribe(&self, addr: SocketAddr, qos: u8) {
        let mut c = RawClient::connect_ok(addr, &self.connect).await;
        assert_eq!(c.subscribe(1, &[("crash/#", qos)]).await, vec![qos]);
        c.send(&wire::disconnect()).await;
    }

    /// Reconnects and reads until every id in `expect` arrived (or the time is up), then a little
    /// longer to catch duplicates, and disconnects.
    async fn drain(&mut self, addr: SocketAddr, expect: &Acked) {
        let (mut c, ack) = RawClient::handshake(addr, &self.connect).await;
        assert_eq!(ack.code, 0);
        assert!(ack.session_present, "persistent session lost across the restart");
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut settle: Option<Instant> = None;
        loop {
            if settle.is_none() && self.has_all(expect) {
                settle = Some(Instant::now() + Duration::from_millis(400));
            }
            let until = settle.unwrap_or(deadline);
            if Instant::now() >= until {
                break;
            }
            let Ok(p) = c.try_read_packet(until.saturating_duration_since(Instant::now())).await else { break };
            match p.kind() {
                kind::PUBLISH => {
                    let publish = parse::publish(&p, self.v5).expect("valid PUBLISH");
                    let pid = publish.pid.unwrap_or(0);
                    let first = publish.qos < 2 || self.awaiting_rel.insert(pid);
                    if first {
                        let text = String::from_utf8(publish.payload).expect("utf-8 payload");
                        let mut fields = text.split(':');
                        let (p, n) = (fields.next().unwrap_or(""), fields.next().expect("payload p:n[:filler]"));
                        self.got.entry(p.parse().unwrap()).or_default().push(n.parse().unwrap());
                    }
                    match publish.qos {
                        1 => c.send(&wire::puback(pid)).await,
                        2 => c.send(&wire::pubrec(pid)).await,
                        _ => {}
                    }
                }
                kind::PUBREL => {
                    let pid = parse::ack(&p).expect("PUBREL").pid;
                    self.awaiting_rel.remove(&pid);
                    c.send(&wire::pubcomp(pid)).await;
                }
                _ => {}
            }
        }
        c.send(&wire::disconnect()).await;
    }

    fn has_all(&self, expect: &Acked) -> bool {
        expect.iter().all(|(p, ranges)| self.missing(*p, ranges).is_empty())
    }

    /// Acknowledged numbers of publisher `p` this subscriber never received.
    fn missing(&self, p: usize, ranges: &[(u32, u32)]) -> Vec<u32> {
        let got: HashSet<u32> = self.got.get(&p).map(|v| v.iter().copied().collect()).unwrap_or_default();
        ranges.iter().flat_map(|&(a, b)| a..=b).filter(|n| !got.contains(n)).collect()
    }
}

/// Publishes `p:n` for n = from.. at `qos` until the connection breaks or `count` are acknowledged;
/// returns the highest n whose PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived.
async fn publish_until_broken(addr: SocketAddr, p: usize, qos: u8, from: u32, count: u32) -> u32 {
    let Ok(mut c) = tokio::time::timeout(WAIT, RawClient::connect(addr)).await else { return from - 1 };
    if c.try_send(&Connect::v4(&unique("pub")).encode()).await.is_err() {
        return from - 1;
    }
    if c.try_read_packet(WAIT).await.is_err() {
        return from - 1;
    }
    let mut acked = from - 1;
    for n in from..from + count {
        let pid = (n % 60_000) as u16 + 1;
        let msg = wire::Publish::new(false, format!("crash/p{p}"), format!("{p}:{n}")).qos(qos, pid).encode();
        if c.try_send(&msg).await.is_err() {
            break;
        }
        let Ok(ack) = c.try_read_packet(WAIT).await else { break };
        if qos == 2 {
            if ack.kind() != kind::PUBREC || c.try_send(&wire::pubrel(pid)).await.is_err() {
                break;
            }
            match c.try_read_packet(WAIT).await {
                Ok(comp) if comp.kind() == kind::PUBCOMP => {}
                _ => break,
            }
        } else if ack.kind() != kind::PUBACK {
            break;
        }
        acked = n;
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_kill_9_exactly_once_for_qos2() {
    let mut broker = Broker::start(DURABLE);
    let mut subs = [Subscriber::new(false), Subscriber::new(true)];
    subs[0].subscribe(broker.tcp_addr(), 1).await;
    subs[1].subscribe(broker.tcp_addr(), 2).await;
    let qos_of = |p: usize| if p.is_multiple_of(2) { 1u8 } else { 2u8 };
    let mut next: Vec<u32> = vec![1; PUBLISHERS];
    let mut acked: Acked = HashMap::new();
    for cycle in 0..CYCLES {
        let addr = broker.tcp_addr();
        let handles: Vec<_> =
            (0..PUBLISHERS).map(|p| tokio::spawn(publish_until_broken(addr, p, qos_of(p), next[p], 100_000))).collect();
        // Kill at a different point each cycle, while every publisher is mid-stream.
        tokio::time::sleep(Duration::from_millis(250 + 150 * cycle as u64)).await;
        broker.kill9();
        for (p, h) in handles.into_iter().enumerate() {
            let last = h.await.expect("publisher task");
            if last >= next[p] {
                acked.entry(p).or_default().push((next[p], last));
            }
            // The message in flight at the kill may or may not be stored: skip its number.
            next[p] = last + 2;
        }
        let total: u32 = acked.values().flatten().map(|(a, b)| b - a + 1).sum();
        eprintln!("cycle {cycle}: {total} acknowledged messages so far");
        broker.restart();
        for s in subs.iter_mut() {
            s.drain(broker.tcp_addr(), &acked).await;
        }
        for (i, s) in subs.iter().enumerate() {
            for (p, ranges) in &acked {
                let got = s.got.get(p).cloned().unwrap_or_default();
                let set: HashSet<u32> = got.iter().copied().collect();
                let missing: Vec<u32> = s.missing(*p, ranges).into_iter().take(10).collect();
                assert!(
                    missing.is_empty(),
                    "cycle {cycle}: subscriber {i} lost acknowledged messages of publisher {p}: {missing:?}"
                );
                // First deliveries arrive in publisher order.
                let mut seen = HashSet::new();
                let firsts: Vec<u32> = got.iter().copied().filter(|n| seen.insert(*n)).collect();
                assert!(
                    firsts.windows(2).all(|w| w[0] < w[1]),
                    "cycle {cycle}: subscriber {i} publisher {p} out of order"
                );
                if i == 1 && qos_of(*p) == 2 {
                    assert_eq!(
                        got.len(),
                        set.len(),
                        "cycle {cycle}: QoS 2 subscriber got duplicates from publisher {p}"
                    );
                }
            }
        }
    }
    let total: u32 = acked.values().flatten().map(|(a, b)| b - a + 1).sum();
    assert!(total > 0, "no message was acknowledged at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_and_sessions_survive_restart_and_expiry_applies() {
    let mut broker = Broker::start(DURABLE);
    let mut p = RawClient::v4(broker.tcp_addr(), &unique("pub")).await;
    p.publish(&wire::Publish::new(false, "state/a", b"kept").qos(1, 1).retain()).await;
    p.publish(&wire::Publish::new(false, "state/b", b"gone").qos(1, 2).retain()).await;
    p.publish(&wire::Publish::new(false, "state/b", b"").qos(1, 3).retain()).await;
    let mut short = Connect::v5(&unique("short"));
    short.clean = false;
    short.props = Props::new().u32(prop::SESSION_EXPIRY, 1);
    let mut long = Connect::v5(&unique("long"));
    long.clean = false;
    long.props = Props::new().u32(prop::SESSION_EXPIRY, 3600);
    for c in [&short, &long] {
        let mut s = RawClient::connect_ok(broker.tcp_addr(), c).await;
        s.subscribe(1, &[("x/#", 1)]).await;
        s.send(&wire::disconnect()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    broker.restart();
    let mut s = RawClient::v4(broker.tcp_addr(), &unique("reader")).await;
    s.subscribe(1, &[("state/#", 1)]).await;
    let got = s.read_publish(WAIT).await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice(), got.retain), ("state/a", &b"kept"[..], true));
    s.expect_no_publish(Duration::from_millis(500)).await;
    let (_c, ack) = RawClient::handshake(broker.tcp_addr(), &long).await;
    assert!(ack.session_present, "a session within its expiry survives the restart");
    let (_c, ack) = RawClient::handshake(broker.tcp_addr(), &short).await;
    assert!(!ack.session_present, "a session whose expiry passed while the broker was down is gone");
}

/// A newcomer's broker: a config naming nothing but a listener (the same defaults as no config at
/// all) stores in RocksDB under `./fleetmq-data`, so kill -9 loses no persistent session, no queued
/// QoS 1 message and no retained message (fails if the default engine were memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_keeps_sessions_queues_and_retained_messages_across_kill_9() {
    let dir = TempDir::new("fleetmq-default");
    let mut broker = Broker::start_exact(dir, "[[listener]]\nbind = \"127.0.0.1:0\"\n", None);
    assert!(broker.dir().join("fleetmq-data").is_dir(), "the default data dir is ./fleetmq-data");
    let mut sub = Connect::v4(&unique("newcomer"));
    sub.clean = false;
    let mut s = RawClient::connect_ok(broker.tcp_addr(), &sub).await;
    assert_eq!(s.subscribe(1, &[("fleet/#", 1)]).await, vec![1]);
    s.send(&wire::disconnect()).await;
    let mut p = RawClient::v4(broker.tcp_addr(), &unique("pub")).await;
    assert_eq!(p.publish(&wire::Publish::new(false, "fleet/queued", b"q").qos(1, 1)).await, 0);
    assert_eq!(p.publish(&wire::Publish::new(false, "status/a", b"r").qos(1, 2).retain()).await, 0);
    broker.kill9();
    broker.restart();
    let (mut s, ack) = RawClient::handshake(broker.tcp_addr(), &sub).await;
    assert!(ack.session_present, "the persistent session survives kill -9 on the default config");
    let got = s.read_publish(WAIT).await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("fleet/queued", &b"q"[..]));
    let mut r = RawClient::v4(broker.tcp_addr(), &unique("reader")).await;
    r.subscribe(1, &[("status/#", 1)]).await;
    let got = r.read_publish(WAIT).await;
    assert_eq!((got.topic.as_str(), got.payload.as_slice(), got.retain), ("status/a", &b"r"[..], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_after_a_restart_behind_stored_ones_arrive_once_in_order() {
    let mut broker = Broker::start(DURABLE);
    let mut connect = Connect::v5(&unique("cold"));
    connect.clean = false;
    connect.props = Props::new().u32(prop::SESSION_EXPIRY, 3600);
    let mut s = RawClient::connect_ok(broker.tcp_addr(), &connect).await;
    assert_eq!(s.subscribe(1, &[("cold/#", 1)]).await, vec![1]);
    s.send(&wire::disconnect()).await;
    async fn publish_range(addr: SocketAddr, range: std::ops::Range<u16>) {
        let mut p = RawClient::v5(addr, &unique("cold-pub")).await;
        for n in range {
            assert_eq!(p.publish(&wire::Publish::new(true, "cold/t", format!("m{n}")).qos(1, n + 1)).await, 0);
        }
    }
    publish_range(broker.tcp_addr(), 0..5).await;
    broker.kill9();
    broker.restart();
    // Stored before the crash (loaded at the first attach) and queued since (in memory and stored).
    publish_range(broker.tcp_addr(), 5..10).await;
    let (mut s, ack) = RawClient::handshake(broker.tcp_addr(), &connect).await;
    assert!(ack.session_present);
    let got: Vec<String> = s
        .receive_until_quiet(Duration::from_millis(800))
        .await
        .into_iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("m{n}")).collect();
    assert_eq!(got, expected, "every message once, stored ones first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let broker = Broker::start(DURABLE);
    let (status, stderr) = broker.run_another(Duration::from_secs(15));
    let status = status.expect("second broker kept running on a data dir in use");
    assert!(!status.success(), "second broker exited successfully");
    assert!(stderr.contains("in use by another FleetMQ process"), "unclear error: {stderr}");
    fleetmq_tests::assert_roundtrip(broker.tcp_addr()).await;
}

/// A write that fails (here: the write-ahead log cannot grow past the file size limit, as on a full
/// disk) is never acknowledged: 5.0 publishers get PUBACK 0x80, 3.1.1 publishers are disconnected,
/// the failure is counted and logged, clients that need no disk keep working, and everything that
/// was acknowledged before the failure is still delivered after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_is_refused_never_acknowledged() {
    let config = format!("{DURABLE}{}", fleetmq_tests::broker::METRICS);
    let mut broker = Broker::start_with_file_size_limit(&config, 512 * 1024);
    let mut keeper = Subscriber::new(true);
    keeper.subscribe(broker.tcp_addr(), 1).await;
    let mut p = RawClient::v5(broker.tcp_addr(), &unique("pub5")).await;
    let filler = "x".repeat(2048);
    let (mut last_ok, mut refused) = (0u32, None);
    for n in 1..=2000u32 {
        let msg = wire::Publish::new(true, "crash/full", format!("0:{n}:{filler}")).qos(1, (n % 60_000) as u16 + 1);
        match p.publish(&msg).await {
            0 | 0x10 => last_ok = n,
            reason => {
                refused = Some(reason);
                break;
            }
        }
    }
    eprintln!("{last_ok} messages acknowledged before the disk filled; then reason {refused:?}");
    assert_eq!(refused, Some(0x80), "no PUBACK 0x80 after the disk filled ({last_ok} messages acknowledged)");
    assert!(last_ok > 0, "the disk was full from the start; the test limit is too small");

    let mut v4 = RawClient::v4(broker.tcp_addr(), &unique("pub4")).await;
    v4.send(&wire::Publish::new(false, "crash/full", "0:0:3.1.1").qos(1, 7).encode()).await;
    let got = v4.expect_closed(WAIT).await;
    assert!(got.iter().all(|p| p.kind() != kind::PUBACK), "3.1.1 publisher got a PUBACK for an unstored message");
    fleetmq_tests::assert_roundtrip(broker.tcp_addr()).await;

    let metrics = fleetmq_tests::metrics::fetch_async(&broker.metrics_url()).await;
    let refusals = fleetmq_tests::metrics::sum(&metrics, "fleetmq_store_refusals_total").unwrap_or(0.0);
    assert!(refusals >= 2.0, "refusals not counted: {refusals}");
    assert!(fleetmq_tests::metrics::sum(&metrics, "fleetmq_store_errors_total").unwrap_or(0.0) >= 1.0);
    let log = broker.stderr();
    assert!(
        log.contains("storage write failed; nothing in it is acknowledged") && log.contains("File too large"),
        "the log does not say why: {log}"
    );

    broker.set_file_size_limit(None);
    broker.restart();
    let acked: Acked = HashMap::from([(0, vec![(1, last_ok)])]);
    keeper.drain(broker.tcp_addr(), &acked).await;
    let missing = keeper.missing(0, &acked[&0]);
    assert!(
        missing.is_empty(),
        "acknowledged before the disk filled but lost: {:?}",
        &missing[..missing.len().min(10)]
    );
}

/// A data directory RocksDB cannot read (a damaged `CURRENT` or `MANIFEST`) or that is not a directory
/// stops the broker at start with an error naming it — no panic, no hang, no silent fresh start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_data_dir_fails_start_with_a_clear_error() {
    let mut broker = Broker::start(DURABLE);
    let mut p = RawClient::v4(broker.tcp_addr(), &unique("pub")).await;
    p.publish(&wire::Publish::new(false, "state/x", b"kept").qos(1, 1).retain()).await;
    broker.sigterm();
    assert!(broker.wait_exit(Duration::from_secs(10)).is_some_and(|s| s.success()), "clean stop failed");
    let data = broker.dir().join("data");
    let manifest = std::fs::read_dir(&data)
        .expect("data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-")))
        .expect("a MANIFEST file");
    let damage: [(&std::path::Path, &[u8]); 3] = [
        (&data.join("CURRENT"), b"no newline"),
        (&data.join("CURRENT"), b"MANIFEST-999999\n"),
        (&manifest, &[0xA5; 4096]),
    ];
    for (file, garbage) in damage {
        let original = std::fs::read(file).expect("read");
        std::fs::write(file, garbage).expect("damage");
        let (status, stderr) = broker.run_another(Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("broker kept running on damaged {}", file.display()));
        assert!(!status.success(), "broker started on damaged {}", file.display());
        assert!(!stderr.contains("panicked"), "panic on damaged {}: {stderr}", file.display());
        assert!(stderr.contains(&data.display().to_string()), "error does not name the data dir: {stderr}");
        std::fs::write(file, original).expect("repair");
    }
    broker.restart();
    let mut s = RawClient::v4(broker.tcp_addr(), &unique("reader")).await;
    s.subscribe(1, &[("state/#", 1)]).await;
    assert_eq!(s.read_publish(WAIT).await.payload, b"kept", "data lost after the repair");
    broker.kill9();
    std::fs::remove_dir_all(&data).expect("remove data dir");
    std::fs::write(&data, b"a file").expect("file in place of the data dir");
    let (status, stderr) = broker.run_another(Duration::from_secs(20));
    assert!(status.is_some_and(|s| !s.success()), "broker started with a file as its data dir");
    assert!(stderr.contains("not a directory"), "unclear error: {stderr}");
}

/// A client that first connected without a persistent session and then takes its client id over
/// asking for one gets a stored session: it survives a kill -9 with its subscription and queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_made_persistent_by_a_takeover_is_stored() {
    let mut broker = Broker::start(DURABLE);
    let id = unique("upgrade");
    let mut transient = Connect::v5(&id);
    transient.props = Props::new().u32(prop::SESSION_EXPIRY, 0);
    let _first = RawClient::connect_ok(broker.tcp_addr(), &transient).await;
    let mut lasting = Connect::v5(&id);
    lasting.clean = false;
    lasting.props = Props::new().u32(prop::SESSION_EXPIRY, 3600);
    let (mut c, ack) = RawClient::handshake(broker.tcp_addr(), &lasting).await;
    assert_eq!((ack.code, ack.session_present), (0, false));
    assert_eq!(c.subscribe(1, &[("up/#", 1)]).await, vec![1]);
    c.send(&wire::disconnect()).await;
    let mut p = RawClient::v4(broker.tcp_addr(), &unique("pub")).await;
    assert_eq!(p.publish(&wire::Publish::new(false, "up/1", b"queued").qos(1, 1)).await, 0);
    broker.kill9();
    broker.restart();
    let (mut c, ack) = RawClient::handshake(broker.tcp_addr(), &lasting).await;
    assert!(ack.session_present, "the upgraded session was not stored");
    assert_eq!(c.read_publish(WAIT).await.payload, b"queued");
}

/// QoS 2 flows caught mid-way by a kill -9 resume with the same packet ids: a publisher's PUBLISH
/// acknowledged with PUBREC but not yet released is not delivered again when it is retried after
/// the restart, and a subscriber gets the PUBREL it was owed and the unacknowledged PUBLISH again
/// with DUP set, under the packet ids it saw before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_flows_in_flight_at_a_kill_resume_with_the_same_packet_ids() {
    let mut broker = Broker::start(DURABLE);
    let persistent = |id: &str| {
        let mut c = Connect::v5(&unique(id));
        c.clean = false;
        c.props = Props::new().u32(prop::SESSION_EXPIRY, 3600);
        c
    };
    let (pub_c, sub_c, late_c) = (persistent("q2pub"), persistent("q2sub"), persistent("q2late"));
    let mut late = RawClient::connect_ok(broker.tcp_addr(), &late_c).await;
    assert_eq!(late.subscribe(1, &[("q2/in", 2)]).await, vec![2]);
    late.send(&wire::disconnect()).await;
    let mut sub = RawClient::connect_ok(broker.tcp_addr(), &sub_c).await;
    assert_eq!(sub.subscribe(1, &[("q2/out", 2)]).await, vec![2]);

    let mut publ = RawClient::connect_ok(broker.tcp_addr(), &pub_c).await;
    publ.send(&wire::Publish::new(true, "q2/in", b"once").qos(2, 7).encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBREC, 7).await, 0, "PUBREC for a stored message");
    let mut other = RawClient::v5(broker.tcp_addr(), &unique("q2src")).await;
    for (pid, payload) in [(1u16, &b"released"[..]), (2, &b"unacked"[..])] {
        assert_eq!(other.publish(&wire::Publish::new(true, "q2/out", payload).qos(2, pid)).await, 0);
    }
    let first = sub.read_publish(WAIT).await;
    let second = sub.read_publish(WAIT).await;
    let first_pid = first.pid.expect("QoS 2 packet id");
    sub.send(&wire::pubrec(first_pid)).await;
    assert_eq!(parse::ack(&sub.next_of_kind(kind::PUBREL, WAIT).await).expect("PUBREL").pid, first_pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.kill9();
    broker.restart();

    let (mut publ, ack) = RawClient::handshake(broker.tcp_addr(), &pub_c).await;
    assert!(ack.session_present);
    publ.send(&wire::Publish::new(true, "q2/in", b"once").qos(2, 7).dup().encode()).await;
    assert_eq!(publ.expect_ack(kind::PUBREC, 7).await, 0, "the retried PUBLISH is recognised");
    publ.send(&wire::pubrel(7)).await;
    assert_eq!(publ.expect_ack(kind::PUBCOMP, 7).await, 0, "the id awaiting PUBREL survived the restart");
    let (mut late, ack) = RawClient::handshake(broker.tcp_addr(), &late_c).await;
    assert!(ack.session_present);
    assert_eq!(late.read_publish(WAIT).await.payload, b"once");
    late.expect_no_publish(Duration::from_millis(500)).await;

    let (mut sub, ack) = RawClient::handshake(broker.tcp_addr(), &sub_c).await;
    assert!(ack.session_present);
    let rel = parse::ack(&sub.next_of_kind(kind::PUBREL, WAIT).await).expect("PUBREL");
    assert_eq!(rel.pid, first_pid, "PUBREL again for the message the subscriber had acknowledged with PUBREC");
    let again = sub.read_publish(WAIT).await;
    assert_eq!((again.payload.as_slice(), again.pid, again.dup), (&b"unacked"[..], second.pid, true));
}
