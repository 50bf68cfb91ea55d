//! Bridge: publishes on bridged topics land in the embedded log with their MQTT fields, keyed and
//! in order per key, readable with `fleetmq log`; a broker killed while bridging QoS 1 has every
//! acknowledged message in the log after its restart (repeats bounded and marked).

use fleetmq_tests::cluster::qos1_load;
use fleetmq_tests::wire::{self, prop, Props};
use fleetmq_tests::{cli, Broker, RawClient};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RULES: &str = "[storage]\nengine = \"rocksdb\"\n\
    [bridge]\nbatch_max_age_ms = 5\nbatch_max_bytes = 16384\n\
    [[bridge.rule]]\nfilter = \"fleet/+/telemetry\"\nlog_topic = \"telemetry\"\npartitions = 3\nkey = \"client_id\"\n";

/// One `fleetmq log tail` line, parsed.
#[derive(Debug, Clone)]
struct Line {
    partition: u32,
    offset: i64,
    key: String,
    headers: String,
    value: String,
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let start =
        line.find(&format!("{name}=")).map(|i| i + name.len() + 1).unwrap_or_else(|| panic!("{name} in {line}"));
    let rest = &line[start..];
    if let Some(inner) = rest.strip_prefix('[') {
        return &inner[..inner.find("] ").unwrap_or(inner.len())];
    }
    &rest[..rest.find(' ').unwrap_or(rest.len())]
}

fn tail(broker: &Broker) -> Vec<Line> {
    cli::log(broker.dir(), &["tail", "--topic", "telemetry"])
        .lines()
        .map(|l| Line {
            partition: field(l, "partition").parse().unwrap(),
            offset: field(l, "offset").parse().unwrap(),
            key: field(l, "key").to_string(),
            headers: field(l, "headers").to_string(),
            value: l[l.find(" value=").unwrap() + 7..].to_string(),
        })
        .collect()
}

/// The log's records once it holds at least `n` (bounded wait).
fn tail_until(broker: &Broker, n: usize) -> Vec<Line> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = tail(broker);
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "only {} of {n} records reached the log", lines.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridged_publishes_land_in_the_log_with_their_mqtt_fields_keyed_and_in_order() {
    let broker = Broker::start(RULES);
    for dev in ["d1", "d2", "d3", "d4"] {
        let mut c = RawClient::v5(broker.tcp_addr(), dev).await;
        for n in 0..5u16 {
            let props = Props::new().str(prop::CONTENT_TYPE, "text/plain").pair(prop::USER_PROPERTY, "unit", "C");
            let publish = wire::Publish::new(true, format!("fleet/{dev}/telemetry"), format!("{dev}-{n}")).props(props);
            assert!(c.publish(&publish.qos(1, n + 1)).await < 0x80);
        }
        assert!(
            c.publish(&wire::Publish::new(true, format!("fleet/{dev}/status"), "not bridged").qos(1, 9)).await < 0x80
        );
    }
    let lines = tail_until(&broker, 20);
    assert_eq!(lines.len(), 20, "only bridged topics, each publish once");
    for dev in ["d1", "d2", "d3", "d4"] {
        let mine: Vec<&Line> = lines.iter().filter(|l| l.key == dev).collect();
        let values: Vec<&str> = mine.iter().map(|l| l.value.as_str()).collect();
        let expected: Vec<String> = (0..5).map(|n| format!("{dev}-{n}")).collect();
        assert_eq!(values, expected, "{dev}: keyed by client id, in publish order");
        assert!(mine.iter().all(|l| l.partition == mine[0].partition), "{dev}: one partition");
        assert!(mine.windows(2).all(|w| w[0].offset < w[1].offset));
        let h = &mine[0].headers;
        for want in [format!("mqtt.topic=fleet/{dev}/telemetry"), format!("mqtt.client_id={dev}")] {
            assert!(h.contains(&want), "{h} lacks {want}");
        }
        for want in ["mqtt.qos=1", "mqtt.retain=false", "mqtt.content_type=text/plain", "unit=C", "fleetmq.node=e2e"] {
            assert!(h.contains(want), "{h} lacks {want}");
        }
    }
    let topics = cli::log(broker.dir(), &["topics"]);
    assert!(topics.starts_with("telemetry partitions=3 offsets="), "{topics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_while_bridging_qos1_has_every_acknowledged_message_in_the_log() {
    let mut broker = Broker::start(RULES);
    let progress = Arc::new(AtomicUsize::new(0));
    let mut loads = Vec::new();
    for dev in ["k1", "k2"] {
        let (addr, progress) = (broker.tcp_addr(), progress.clone());
        loads.push(tokio::spawn(async move {
            let mut c = RawClient::v5(addr, dev).await;
            qos1_load(&mut c, &format!("fleet/{dev}/telemetry"), dev, 3000, 16, &progress).await
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::Relaxed) < 500 {
        assert!(Instant::now() < deadline, "the load never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    broker.kill9();
    let mut acked = HashMap::new();
    for (dev, load) in ["k1", "k2"].into_iter().zip(loads) {
        let end = load.await.unwrap();
        assert!(end.acked.len() < 3000, "the broker died mid-load");
        acked.insert(dev, end.acked);
    }
    broker.restart();
    // Shipping resumes by itself: wait (bounded) until the log holds every acknowledged message.
    let deadline = Instant::now() + Duration::from_secs(15);
    let lines = loop {
        let lines = tail(&broker);
        let seen: HashSet<&str> = lines.iter().map(|l| l.value.as_str()).collect();
        if acked.values().flatten().all(|v| seen.contains(v.as_str())) || Instant::now() >= deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let seen: HashSet<&str> = lines.iter().map(|l| l.value.as_str()).collect();
    for (dev, values) in &acked {
        let lost: Vec<&String> = values.iter().filter(|v| !seen.contains(v.as_str())).collect();
        assert!(
            lost.is_empty(),
            "{dev}: {} acknowledged messages missing from the log, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        );
        // Per key, first occurrences keep the publish order.
        let mut firsts: Vec<u32> = Vec::new();
        let mut have = HashSet::new();
        for l in lines.iter().filter(|l| l.key == *dev) {
            if have.insert(l.value.clone()) {
                firsts.push(l.value.rsplit('-').next().unwrap().parse().unwrap());
            }
        }
        assert!(firsts.windows(2).all(|w| w[0] < w[1]), "{dev}: order per key broken");
    }
    // Repeats are only the last unconfirmed shipment (16 KiB of records, each over 100 bytes
    // buffered), and each repeat carries the same node and sequence as its first copy.
    let repeats = lines.len() - seen.len();
    assert!(repeats <= 16384 / 100 + 1, "{repeats} repeats: more than one shipment");
    let mut marks: HashMap<&str, &str> = HashMap::new();
    for l in &lines {
        let seq = l.headers.split(',').find(|h| h.starts_with("fleetmq.seq=")).expect("sequence header");
        assert_eq!(*marks.entry(l.value.as_str()).or_insert(seq), seq, "a repeat keeps its sequence");
    }
    // Repeats come only from what the restart found buffered, which it logs and counts.
    let recovered: usize = broker
        .log()
        .lines()
        .filter(|l| l.contains("bridge records to ship again after a restart"))
        .filter_map(|l| l.split("records=").nth(1)?.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(repeats <= recovered, "{repeats} repeats, {recovered} records recovered at the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_ships_what_the_memory_buffer_holds() {
    // Shipments wait a minute to fill, so acknowledged records sit in the (memory) buffer when
    // the node is asked to stop: the drain at shutdown must put them in the log.
    let mut broker = Broker::start(
        "[storage]\nengine = \"memory\"\n\
         [bridge]\nbatch_max_age_ms = 60000\nshutdown_drain_ms = 10000\n\
         [[bridge.rule]]\nfilter = \"fleet/+/telemetry\"\nlog_topic = \"telemetry\"\npartitions = 3\n",
    );
    let mut c = RawClient::v5(broker.tcp_addr(), "d1").await;
    for n in 0..10u16 {
        let p = wire::Publish::new(true, "fleet/d1/telemetry", format!("d1-{n}")).qos(1, n + 1);
        assert!(c.publish(&p).await < 0x80, "accepted");
    }
    assert!(tail(&broker).is_empty(), "nothing shipped yet: the shipment is still filling");
    broker.sigterm();
    assert!(broker.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "clean exit");
    let values: Vec<String> = tail(&broker).into_iter().map(|l| l.value).collect();
    assert_eq!(values, (0..10).map(|n| format!("d1-{n}")).collect::<Vec<_>>(), "every acknowledged record, in order");
}
