//! Bridge end to end with real Kafka clients: MQTT publishes through a FleetMQ node are read from
//! its Kafka-protocol listener by `kcat` (each partition, keyed, in order) and by a `kafka-python`
//! consumer group that resumes from its committed offsets after the broker is killed and restarted.

use fleetmq_tests::wire::{self, prop, Props};
use fleetmq_tests::{Broker, RawClient, TempDir};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::process::Command;

const CONFIG: &str = "[storage]\nengine = \"rocksdb\"\n\
    [bridge]\nbatch_max_age_ms = 5\n\
    [bridge.kafka]\nbind = \"127.0.0.1:0\"\ngroup_initial_rebalance_delay_ms = 100\n\
    [[bridge.rule]]\nfilter = \"fleet/+/telemetry\"\nlog_topic = \"telemetry\"\npartitions = 3\nkey = \"client_id\"\n";

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

/// One kafka-python member of `group`: reads until idle, commits, prints `key|value` lines.
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
            print('%s|%s' % (m.key.decode(), m.value.decode()))
for m in c:
    print('%s|%s' % (m.key.decode(), m.value.decode()))
c.commit()
c.close()
"#;

async fn consume(addr: SocketAddr, dir: &TempDir, group: &str) -> Vec<String> {
    let script = dir.join("consumer.py");
    std::fs::write(&script, CONSUMER).unwrap();
    let out = run(Command::new("python3").arg(&script).args([&addr.to_string(), group]), "kafka-python").await;
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_read_bridged_publishes_and_a_group_resumes_after_a_broker_restart() {
    let mut broker = Broker::start(CONFIG);
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
    let mut want: Vec<String> = devs.iter().flat_map(|d| (5..7).map(move |n| format!("{d}|{d}-{n}"))).collect();
    want.sort();
    assert_eq!(second, want, "resumed from the committed offsets");
}
