//! Bridge end to end with real Kafka clients: MQTT publishes through a FleetMQ node are read from
//! its Kafka-protocol listener by `kcat` (each partition, keyed, in order) and by `kafka-python`
//! consumer groups — one member, and two members splitting the partitions — that resume from their
//! committed offsets after the broker is killed and restarted.

use fleetmq_tests::wire::{self, prop, Props};
use fleetmq_tests::{Broker, RawClient, TempDir};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The node's config; `delay_ms` is how long a new group waits for more members.
fn config(delay_ms: u32) -> String {
    format!(
        "[storage]\nengine = \"rocksdb\"\n\
         [bridge]\nbatch_max_age_ms = 5\n\
         [bridge.kafka]\nbind = \"127.0.0.1:0\"\ngroup_initial_rebalance_delay_ms = {delay_ms}\n\
         [[bridge.rule]]\nfilter = \"fleet/+/telemetry\"\nlog_topic = \"telemetry\"\npartitions = 3\nkey = \"client_id\"\n"
    )
}

/// Runs a client to completion (killed after 60 s); panics with its stderr if it fails, saying
/// how to install it if it is missing.
async fn run(cmd: &mut Command, what: &str) -> String {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} timed out"))
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): apt-get install kcat; pip install kafka-python"));
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `key|value` lines of one partition, via kcat, from the beginning to the end.
async fn kcat(addr: SocketAddr, partition: u32) -> Vec<String> {
    let out = run(
        Command::new("kcat")
            .args(["-C", "-b", &addr.to_string(), "-t", "telemetry", "-p", &partition.to_string()])
            .args(["-o", "beginning", "-e", "-f", "%k|%s|%h\n"]),
        "kcat",
    )
    .await;
    out.lines().map(str::to_owned).collect()
}

async fn publish(addr: SocketAddr, dev: &str, range: std::ops::Range<u16>) {
    let mut c = RawClient::v5(addr, dev).await;
    for n in range {
        let props = Props::new().pair(prop::USER_PROPERTY, "unit", "C");
        let p = wire::Publish::new(true, format!("fleet/{dev}/telemetry"), format!("{dev}-{n}")).props(props);
        assert!(c.publish(&p.qos(1, n + 1)).await < 0x80);
    }
}

/// Every partition's `key|value|headers` lines once the log holds `n` records (bounded wait).
async fn kcat_all(addr: SocketAddr, n: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut parts = Vec::new();
        for p in 0..3 {
            parts.push(kcat(addr, p).await);
        }
        if parts.iter().map(Vec::len).sum::<usize>() >= n || Instant::now() >= deadline {
            return parts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One kafka-python member of `group`: reads until idle, commits, prints `partition|key|value`.
const CONSUMER: &str = r#"
import sys, time
from kafka import KafkaConsumer
bootstrap, group = sys.argv[1:3]
c = KafkaConsumer('telemetry', group_id=group, bootstrap_servers=bootstrap, auto_offset_reset='earliest',
                  enable_auto_commit=False, consumer_timeout_ms=3000, fetch_max_wait_ms=200)
deadline = time.time() + 30
while not c.assignment() and time.time() < deadline:
    for batch in c.poll(timeout_ms=200).values():
        for m in batch:
            print('%d|%s|%s' % (m.partition, m.key.decode(), m.value.decode()))
for m in c:
    print('%d|%s|%s' % (m.partition, m.key.decode(), m.value.decode()))
c.commit()
c.close()
"#;

/// What one member of `group` read: `(partition, "key|value")`, sorted.
async fn member(addr: SocketAddr, dir: &TempDir, group: &str) -> Vec<(u32, String)> {
    let script = dir.join("consumer.py");
    std::fs::write(&script, CONSUMER).unwrap();
    let out = run(Command::new("python3").arg(&script).args([&addr.to_string(), group]), "kafka-python").await;
    let mut lines: Vec<(u32, String)> = out
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(p, rest)| (p.parse().expect("partition"), rest.to_owned()))
        .collect();
    lines.sort();
    lines
}

/// `key|value` lines one member of `group` read, sorted.
async fn consume(addr: SocketAddr, dir: &TempDir, group: &str) -> Vec<String> {
    let mut lines: Vec<String> = member(addr, dir, group).await.into_iter().map(|(_, l)| l).collect();
    lines.sort();
    lines
}

/// Two members of `group` started together: what each read.
async fn two_members(addr: SocketAddr, dir: &TempDir, group: &str) -> [Vec<(u32, String)>; 2] {
    let (a, b) = tokio::join!(member(addr, dir, group), member(addr, dir, group));
    [a, b]
}

/// `key|value` lines `devs` published with numbers in `range`, sorted.
fn published(devs: &[&str], range: std::ops::Range<u16>) -> Vec<String> {
    let mut want: Vec<String> = devs.iter().flat_map(|d| range.clone().map(move |n| format!("{d}|{d}-{n}"))).collect();
    want.sort();
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_read_bridged_publishes_and_a_group_resumes_after_a_broker_restart() {
    let mut broker = Broker::start(&config(100));
    let devs = ["d1", "d2", "d3", "d4", "d5", "d6"];
    for dev in devs {
        publish(broker.tcp_addr(), dev, 0..5).await;
    }
    // kcat, partition by partition: each device's records in one partition, in publish order.
    let parts = kcat_all(broker.kafka_addr(), 30).await;
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 30, "{parts:?}");
    let mut home: HashMap<&str, usize> = HashMap::new();
    for dev in devs {
        let (p, lines) = parts
            .iter()
            .enumerate()
            .find(|(_, l)| l.iter().any(|x| x.starts_with(&format!("{dev}|"))))
            .unwrap_or_else(|| panic!("{dev} not in the log"));
        let mine: Vec<&String> = lines.iter().filter(|x| x.starts_with(&format!("{dev}|"))).collect();
        let values: Vec<String> = mine.iter().map(|x| x.split('|').nth(1).unwrap().to_string()).collect();
        assert_eq!(values, (0..5).map(|n| format!("{dev}-{n}")).collect::<Vec<_>>(), "{dev}: in order");
        assert!(mine[0].contains("unit=C") && mine[0].contains(&format!("mqtt.client_id={dev}")), "{}", mine[0]);
        home.insert(dev, p);
    }
    assert!(home.values().collect::<std::collections::HashSet<_>>().len() > 1, "keys spread over partitions");

    // A consumer group reads everything and commits; after a kill -9 and restart of the broker
    // it resumes from the committed offsets: only what was published since.
    let dir = TempDir::new("fleetmq-kafka-python");
    let first = consume(broker.kafka_addr(), &dir, "dashboards").await;
    assert_eq!(first.len(), 30, "{first:?}");
    broker.kill9();
    broker.restart();
    for dev in devs {
        publish(broker.tcp_addr(), dev, 5..7).await;
    }
    kcat_all(broker.kafka_addr(), 42).await;
    let second = consume(broker.kafka_addr(), &dir, "dashboards").await;
    assert_eq!(second, published(&devs, 5..7), "resumed from the committed offsets");
}

/// Checks that two members split the partitions between them (each has some, none has one the
/// other has) and together read exactly `want`.
fn assert_split(members: &[Vec<(u32, String)>; 2], want: &[String]) {
    let parts = |m: &Vec<(u32, String)>| m.iter().map(|(p, _)| *p).collect::<std::collections::BTreeSet<u32>>();
    let (a, b) = (parts(&members[0]), parts(&members[1]));
    assert!(!a.is_empty() && !b.is_empty(), "both members got partitions: {a:?} / {b:?}");
    assert!(a.is_disjoint(&b), "no partition read by both: {a:?} / {b:?}");
    let mut all: Vec<String> = members.iter().flatten().map(|(_, l)| l.clone()).collect();
    all.sort();
    assert_eq!(all, want, "together, every record once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_two_consumers_splits_the_partitions_and_resumes_after_a_broker_restart() {
    // Both members start within the group's initial delay, so the first assignment splits.
    let mut broker = Broker::start(&config(3000));
    let devs = ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8"];
    for dev in devs {
        publish(broker.tcp_addr(), dev, 0..4).await;
    }
    kcat_all(broker.kafka_addr(), 32).await;
    let dir = TempDir::new("fleetmq-kafka-split");
    let first = two_members(broker.kafka_addr(), &dir, "pipeline").await;
    assert_split(&first, &published(&devs, 0..4));

    broker.kill9();
    broker.restart();
    for dev in devs {
        publish(broker.tcp_addr(), dev, 4..6).await;
    }
    kcat_all(broker.kafka_addr(), 48).await;
    let second = two_members(broker.kafka_addr(), &dir, "pipeline").await;
    assert_split(&second, &published(&devs, 4..6));
}
