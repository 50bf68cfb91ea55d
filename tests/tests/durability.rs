//! Durable state with the RocksDB engine, tested by killing the real broker process: every
//! message whose PUBACK/PUBCOMP a publisher saw reaches persistent subscribers after a restart
//! (QoS 2 exactly once, in publisher order); retained messages and session expiry survive restarts;
//! a second broker on the same data directory refuses to start.

use fleetmq_tests::parse::{self, kind};
use fleetmq_tests::wire::{self, prop, Connect, Props};
use fleetmq_tests::{unique, Broker, RawClient};
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
                        let (p, n) = text.split_once(':').expect("payload p:n");
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
            assert!(last >= next[p] - 1);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let broker = Broker::start(DURABLE);
    let (status, stderr) = broker.run_second_instance(Duration::from_secs(15));
    let status = status.expect("second broker kept running on a data dir in use");
    assert!(!status.success(), "second broker exited successfully");
    assert!(stderr.contains("in use") || stderr.contains("lock"), "unclear error: {stderr}");
    fleetmq_tests::assert_roundtrip(broker.tcp_addr()).await;
}
