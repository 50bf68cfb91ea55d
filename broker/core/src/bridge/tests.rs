use super::shipper::{self, Sink};
use super::*;
use crate::config::BridgeRuleConfig;
use crate::ids::ClientId;
use crate::metrics::Stats;
use crate::store::commit::{Committer, SyncMode};
use crate::store::MemoryStore;
use fleetmq_codec::QoS;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

fn config(max_buffer_bytes: u64, policy: BufferFullPolicy) -> BridgeConfig {
    BridgeConfig {
        max_buffer_bytes,
        on_buffer_full: policy,
        batch_max_age_ms: 5,
        rules: vec![BridgeRuleConfig {
            filter: "fleet/+/telemetry".into(),
            log_topic: "telemetry".into(),
            partitions: 4,
            key: "client_id".into(),
        }],
        ..Default::default()
    }
}

fn durable(store: &Arc<MemoryStore>) -> Arc<Durability> {
    let store: Arc<dyn Store> = store.clone();
    Arc::new(Durability::new(store.clone(), Some(Committer::start(store, SyncMode::Always).unwrap())))
}

fn msg(client: &str, n: u32, qos: QoS) -> Message {
    Message {
        topic: Arc::from(format!("fleet/{client}/telemetry").as_str()),
        payload: Bytes::from(format!("{client}-{n}")),
        qos,
        retain: false,
        properties: Default::default(),
        publisher: ClientId::new(client),
        expires_at: None,
        uid: crate::ids::MessageUid::next(),
    }
}

/// A sink that keeps what it is given and refuses while `failing` is set.
#[derive(Default)]
struct FakeSink {
    got: parking_lot::Mutex<Vec<(String, u32, String)>>,
    failing: std::sync::atomic::AtomicBool,
    attempts: AtomicUsize,
}

impl Sink for FakeSink {
    fn append(&self, topic: &str, partition: u32, records: &[fleetmq_bridge::log::Record]) -> Result<(), String> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err("log unavailable".into());
        }
        let mut got = self.got.lock();
        for r in records {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            got.push((topic.to_string(), partition, value));
        }
        Ok(())
    }
}

async fn commit(d: &Durability, batch: Batch) {
    if let Some(c) = d.submit(batch) {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn buffered_records_survive_a_restart_and_the_sequence_never_goes_back() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    let stats = Stats::new();
    let mut batch = Batch::new();
    assert!(matches!(
        bridge.capture(&msg("d1", 0, QoS::AtLeastOnce), &mut batch, &stats, true),
        Capture::Buffered { .. }
    ));
    assert!(matches!(
        bridge.capture(&msg("d1", 1, QoS::AtLeastOnce), &mut batch, &stats, true),
        Capture::Buffered { .. }
    ));
    let mut other = Batch::new();
    let unmatched = Message { topic: Arc::from("other/x"), ..msg("d1", 2, QoS::AtLeastOnce) };
    assert_eq!(bridge.capture(&unmatched, &mut other, &stats, true), Capture::Passed);
    assert!(other.is_empty(), "nothing buffered for an unbridged topic");
    commit(&d, batch).await;
    drop(bridge);

    // Restarted on the same store: both records are still there, in order.
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    let pending = bridge.oldest(1 << 20).unwrap();
    let values: Vec<&[u8]> = pending.iter().map(|(_, p)| p.value.as_ref()).collect();
    assert_eq!(values, [&b"d1-0"[..], b"d1-1"]);
    let mut batch = Batch::new();
    bridge.capture(&msg("d1", 3, QoS::AtLeastOnce), &mut batch, &stats, true);
    let seq_of = |p: &Pending| p.headers.iter().find(|(k, _)| k == record::HEADER_SEQ).map(|(_, v)| v.to_vec());
    commit(&d, batch).await;
    let pending = bridge.oldest(1 << 20).unwrap();
    let seq = |p: &Pending| -> u64 { String::from_utf8(seq_of(p).unwrap()).unwrap().parse().unwrap() };
    assert!(seq(&pending[2].1) > seq(&pending[1].1), "the sequence continues past the buffered ones");
    bridge.shipped(&pending).await.unwrap();
    drop(bridge);
    // Everything shipped: the sequence still does not go back (reserved in the store).
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    assert!(bridge.oldest(1 << 20).unwrap().is_empty());
    let mut batch = Batch::new();
    bridge.capture(&msg("d1", 4, QoS::AtLeastOnce), &mut batch, &stats, true);
    commit(&d, batch).await;
    let last = seq(&pending[2].1);
    let next = seq(&bridge.oldest(1 << 20).unwrap()[0].1);
    assert!(next > last, "sequence {next} reused after a restart (last {last})");
}

#[tokio::test]
async fn a_full_buffer_refuses_qos1_and_drops_qos0_copies_or_drops_by_policy() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let stats = Stats::new();
    let big = |client: &str, qos| Message { payload: Bytes::from(vec![0u8; 600 << 10]), ..msg(client, 0, qos) };
    let refusing = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    let mut batch = Batch::new();
    assert!(matches!(
        refusing.capture(&big("d1", QoS::AtLeastOnce), &mut batch, &stats, true),
        Capture::Buffered { .. }
    ));
    assert!(matches!(
        refusing.capture(&big("d1", QoS::AtLeastOnce), &mut batch, &stats, true),
        Capture::Buffered { .. }
    ));
    assert!(refusing.buffered_bytes() >= 1 << 20);
    assert_eq!(refusing.capture(&msg("d1", 1, QoS::AtLeastOnce), &mut batch, &stats, true), Capture::Refused);
    assert_eq!(refusing.capture(&msg("d1", 1, QoS::ExactlyOnce), &mut batch, &stats, true), Capture::Refused);
    let will = refusing.capture(&msg("d1", 1, QoS::AtLeastOnce), &mut batch, &stats, false);
    assert_eq!(will, Capture::Passed, "a will is never refused: its bridge copy is dropped");
    // A batch that fails to commit gives its records back.
    let fresh = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n3", d.clone()).unwrap();
    let captured = fresh.capture(&msg("d9", 0, QoS::AtLeastOnce), &mut Batch::new(), &stats, true);
    let Capture::Buffered { seq, cost, records } = captured else { panic!("not buffered: {captured:?}") };
    assert_eq!(fresh.buffered_bytes(), cost);
    fresh.abandon(seq, cost, records);
    assert_eq!(fresh.buffered_bytes(), 0);
    assert_eq!(refusing.capture(&msg("d1", 1, QoS::AtMostOnce), &mut batch, &stats, true), Capture::Passed);
    let dropping =
        Bridge::open(&config(1 << 20, BufferFullPolicy::Drop), "n2", Arc::new(Durability::new(store.clone(), None)))
            .unwrap();
    let mut batch = Batch::new();
    dropping.capture(&big("d1", QoS::AtLeastOnce), &mut batch, &stats, true);
    dropping.capture(&big("d1", QoS::AtLeastOnce), &mut batch, &stats, true);
    assert_eq!(dropping.capture(&msg("d1", 1, QoS::AtLeastOnce), &mut batch, &stats, true), Capture::Passed);
    assert_eq!(dropping.oldest(usize::MAX).unwrap().len(), 2, "the third copy was dropped");
}

#[test]
fn on_the_memory_engine_a_new_process_never_reuses_a_sequence() {
    let memory = || Arc::new(Durability::new(Arc::new(MemoryStore::new()), None));
    let stats = Stats::new();
    let seq_of = |b: &Bridge| -> u64 {
        let p = &b.oldest(usize::MAX).unwrap()[0].1;
        let v = &p.headers.iter().find(|(k, _)| k == record::HEADER_SEQ).unwrap().1;
        String::from_utf8(v.to_vec()).unwrap().parse().unwrap()
    };
    let first = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", memory()).unwrap();
    for n in 0..1000 {
        first.capture(&msg("d1", n, QoS::AtLeastOnce), &mut Batch::new(), &stats, true);
    }
    let last = seq_of(&first) + 999;
    std::thread::sleep(std::time::Duration::from_millis(2));
    let second = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", memory()).unwrap();
    second.capture(&msg("d1", 0, QoS::AtLeastOnce), &mut Batch::new(), &stats, true);
    assert!(seq_of(&second) > last, "the log outlives the memory buffer: sequences must not repeat");
}

#[tokio::test]
async fn the_shipper_keeps_order_per_key_buffers_while_the_log_refuses_and_drains_after() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let bridge = Arc::new(Bridge::open(&config(64 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap());
    let sink = Arc::new(FakeSink::default());
    sink.failing.store(true, Ordering::Relaxed);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(shipper::run(bridge.clone(), shipper::Target::Blocking(sink.clone()), shutdown));
    let stats = Stats::new();
    for n in 0..50 {
        for client in ["d1", "d2", "d3"] {
            let mut batch = Batch::new();
            assert!(matches!(
                bridge.capture(&msg(client, n, QoS::AtLeastOnce), &mut batch, &stats, true),
                Capture::Buffered { .. }
            ));
            commit(&d, batch).await;
        }
    }
    // The log refuses: attempts are made, nothing leaves the buffer.
    tokio::time::timeout(Duration::from_secs(5), async {
        while sink.attempts.load(Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(bridge.oldest(usize::MAX).unwrap().len(), 150, "kept while the log is unavailable");
    sink.failing.store(false, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(10), async {
        while bridge.buffered_bytes() > 0 || sink.got.lock().len() < 150 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the buffer drains once the log is back");
    assert!(bridge.oldest(usize::MAX).unwrap().is_empty(), "shipped records leave the durable buffer");
    let got = sink.got.lock().clone();
    assert_eq!(got.len(), 150, "each record shipped once");
    for client in ["d1", "d2", "d3"] {
        let mine: Vec<&(String, u32, String)> = got.iter().filter(|(_, _, v)| v.starts_with(client)).collect();
        let partition = fleetmq_bridge::log::partition_for_key(client.as_bytes(), 4);
        assert!(mine.iter().all(|(t, p, _)| t == "telemetry" && *p == partition), "{client}: one partition");
        let order: Vec<String> = mine.iter().map(|(_, _, v)| v.clone()).collect();
        let expected: Vec<String> = (0..50).map(|n| format!("{client}-{n}")).collect();
        assert_eq!(order, expected, "{client}: publish order kept");
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[tokio::test]
async fn two_rules_writing_one_log_topic_make_one_record_and_other_topics_get_theirs() {
    let d = Arc::new(Durability::new(Arc::new(MemoryStore::new()), None));
    let rule = |filter: &str, log_topic: &str| BridgeRuleConfig {
        filter: filter.into(),
        log_topic: log_topic.into(),
        partitions: 4,
        key: "client_id".into(),
    };
    let mut c = config(1 << 20, BufferFullPolicy::Refuse);
    c.rules = vec![rule("fleet/#", "telemetry"), rule("fleet/+/telemetry", "telemetry"), rule("fleet/+/+", "audit")];
    let bridge = Bridge::open(&c, "n1", d).unwrap();
    let captured = bridge.capture(&msg("d1", 0, QoS::AtLeastOnce), &mut Batch::new(), &Stats::new(), true);
    let Capture::Buffered { cost, records, .. } = captured else { panic!("not buffered: {captured:?}") };
    assert_eq!((cost, records), (bridge.buffered_bytes(), 2));
    let topics: Vec<String> = bridge.oldest(usize::MAX).unwrap().into_iter().map(|(_, p)| p.log_topic).collect();
    assert_eq!(topics, ["telemetry", "audit"], "one record per log topic, in rule order");
}

#[tokio::test]
async fn the_drain_at_shutdown_ships_what_is_buffered_and_gives_up_at_its_deadline() {
    let d = Arc::new(Durability::new(Arc::new(MemoryStore::new()), None));
    let mut c = config(1 << 20, BufferFullPolicy::Refuse);
    c.batch_max_age_ms = 60_000;
    let bridge = Arc::new(Bridge::open(&c, "n1", d).unwrap());
    for n in 0..5 {
        bridge.capture(&msg("d1", n, QoS::AtLeastOnce), &mut Batch::new(), &Stats::new(), true);
    }
    let sink = Arc::new(FakeSink::default());
    sink.failing.store(true, Ordering::Relaxed);
    let started = std::time::Instant::now();
    shipper::drain(bridge.clone(), shipper::Target::Blocking(sink.clone()), Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(5), "a log that refuses cannot hold the shutdown up");
    assert_eq!(bridge.oldest(usize::MAX).unwrap().len(), 5, "kept: the log never took them");
    sink.failing.store(false, Ordering::Relaxed);
    // A shipment that would wait a minute to fill goes at once when draining.
    tokio::time::timeout(
        Duration::from_secs(5),
        shipper::drain(bridge.clone(), shipper::Target::Blocking(sink.clone()), Duration::from_secs(30)),
    )
    .await
    .expect("the drain ends once the buffer is empty");
    assert_eq!(sink.got.lock().len(), 5);
    assert_eq!(bridge.buffered_bytes(), 0);
}

/// Ships everything buffered, one shipment at a time, and returns the values in shipping order.
async fn ship_all(bridge: &Bridge) -> Vec<String> {
    let mut values = Vec::new();
    for _ in 0..64 {
        let got = bridge.oldest(1 << 20).unwrap();
        if got.is_empty() {
            break;
        }
        values.extend(got.iter().map(|(_, p)| String::from_utf8_lossy(&p.value).into_owned()));
        bridge.shipped(&got).await.unwrap();
    }
    values
}

#[tokio::test]
async fn a_record_committed_after_a_later_one_was_shipped_ships_before_its_keys_later_records() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    let stats = Stats::new();
    // Two publishers: d1 takes the lower sequence, but d2's commit lands first.
    let (mut early, mut late) = (Batch::new(), Batch::new());
    bridge.capture(&msg("d1", 0, QoS::AtLeastOnce), &mut late, &stats, true);
    bridge.capture(&msg("d2", 0, QoS::AtLeastOnce), &mut early, &stats, true);
    commit(&d, early).await;
    let first = bridge.oldest(1 << 20).unwrap();
    assert_eq!(first.len(), 1);
    bridge.shipped(&first).await.unwrap();
    commit(&d, late).await;
    // d1 publishes again: its first record must still go out before its second.
    for n in 1..=3 {
        let mut batch = Batch::new();
        bridge.capture(&msg("d1", n, QoS::AtLeastOnce), &mut batch, &stats, true);
        commit(&d, batch).await;
    }
    assert_eq!(ship_all(&bridge).await, ["d1-0", "d1-1", "d1-2", "d1-3"]);
    assert_eq!(bridge.records.load(Ordering::Relaxed), 0, "nothing left in the buffer");
    // The gap closed: scans start past everything shipped.
    let c = bridge.cursor.lock();
    assert!(c.ahead.is_empty(), "{c:?}");
    assert!(!c.recovered);
}

#[tokio::test]
async fn a_failed_commit_does_not_hold_scans_back_and_recovered_records_ship_first() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let stats = Stats::new();
    {
        let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
        for n in 0..3 {
            let mut batch = Batch::new();
            bridge.capture(&msg("d1", n, QoS::AtLeastOnce), &mut batch, &stats, true);
            commit(&d, batch).await;
        }
    }
    // A restart: the three records are recovered and ship before anything new.
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", d.clone()).unwrap();
    assert!(bridge.cursor.lock().recovered);
    let lost = bridge.capture(&msg("d1", 3, QoS::AtLeastOnce), &mut Batch::new(), &stats, true);
    let Capture::Buffered { seq, cost, records } = lost else { panic!("not buffered: {lost:?}") };
    let mut batch = Batch::new();
    bridge.capture(&msg("d1", 4, QoS::AtLeastOnce), &mut batch, &stats, true);
    commit(&d, batch).await;
    assert_eq!(ship_all(&bridge).await, ["d1-0", "d1-1", "d1-2", "d1-4"]);
    assert_eq!(bridge.cursor.lock().upto, seq, "the failed commit's sequence is still open");
    // Its commit failed: the sequence settles and scans start past both.
    bridge.abandon(seq, cost, records);
    {
        let c = bridge.cursor.lock();
        assert_eq!((c.upto, c.ahead.len(), c.recovered), (seq + 2, 0, false));
    }
    // The next publish ships from there, and nothing is counted as buffered any more.
    let mut batch = Batch::new();
    bridge.capture(&msg("d1", 5, QoS::AtLeastOnce), &mut batch, &stats, true);
    commit(&d, batch).await;
    assert_eq!(ship_all(&bridge).await, ["d1-5"]);
    assert_eq!(bridge.buffered_bytes(), 0);
}

#[tokio::test]
async fn a_scan_never_splits_the_records_of_one_publish() {
    let store = Arc::new(MemoryStore::new());
    let d = durable(&store);
    let mut c = config(1 << 20, BufferFullPolicy::Refuse);
    let mut audit = c.rules[0].clone();
    audit.log_topic = "audit".into();
    c.rules.push(audit);
    let bridge = Bridge::open(&c, "n1", d.clone()).unwrap();
    let stats = Stats::new();
    for n in 0..2 {
        let mut batch = Batch::new();
        bridge.capture(&msg("d1", n, QoS::AtLeastOnce), &mut batch, &stats, true);
        commit(&d, batch).await;
    }
    // A 1-byte limit: the first publish's two records come together, the next publish waits.
    let got = bridge.oldest(1).unwrap();
    let values: Vec<String> =
        got.iter().map(|(_, p)| format!("{}:{}", p.log_topic, String::from_utf8_lossy(&p.value))).collect();
    assert_eq!(values, ["telemetry:d1-0", "audit:d1-0"]);
}

#[tokio::test]
async fn a_gap_that_never_closes_is_skipped_once_too_many_later_sequences_settle() {
    let store = Arc::new(MemoryStore::new());
    let bridge = Bridge::open(&config(1 << 20, BufferFullPolicy::Refuse), "n1", durable(&store)).unwrap();
    let start = bridge.cursor.lock().upto;
    let cap = MAX_AHEAD as u64;
    bridge.settle(start + 1..=start + cap);
    {
        let c = bridge.cursor.lock();
        assert_eq!((c.upto, c.ahead.len()), (start, MAX_AHEAD), "at the cap the gap still holds scans");
    }
    // One more, past another gap: the first gap is skipped, the run behind it settles, and the
    // newest gap (one sequence settled past it) still holds.
    bridge.settle([start + cap + 2]);
    let c = bridge.cursor.lock();
    assert_eq!((c.upto, c.ahead.len()), (start + cap + 1, 1));
}

#[test]
fn shipped_keys_are_deleted_in_runs_that_never_cover_a_gap() {
    let keys: Vec<Bytes> =
        [(5, 0), (5, 1), (6, 0), (8, 0), (8, 1), (9, 0), (9, 2)].into_iter().map(|(s, i)| buffer_key(s, i)).collect();
    let got = runs(keys.iter());
    let after = |s, i| Bytes::from([buffer_key(s, i).as_ref(), &[0]].concat());
    assert_eq!(
        got,
        [(buffer_key(5, 0), after(6, 0)), (buffer_key(8, 0), after(9, 0)), (buffer_key(9, 2), after(9, 2)),],
        "7 may still be committing and (9, 1) was not shipped: both stay outside every range"
    );
    // Applied to a store holding the gaps too, only the shipped keys go.
    let store = MemoryStore::new();
    let mut b = Batch::new();
    for k in keys.iter().chain([&buffer_key(7, 0), &buffer_key(9, 1), &buffer_key(10, 0)]) {
        b.put(Cf::Bridge, k.clone(), &b"r"[..]);
    }
    store.write(b).unwrap();
    let mut b = Batch::new();
    for (from, to) in got {
        b.delete_range(Cf::Bridge, from, to);
    }
    store.write(b).unwrap();
    let mut left = Vec::new();
    store
        .scan_prefix(Cf::Bridge, b"", &mut |k, _| {
            left.push(Bytes::copy_from_slice(k));
            true
        })
        .unwrap();
    assert_eq!(left, [buffer_key(7, 0), buffer_key(9, 1), buffer_key(10, 0)]);
}
