//! Bridge into an external Kafka cluster (`target = "kafka"`) end to end, against a real,
//! independent Kafka-protocol broker (tansu) that the test starts: MQTT publishes through FleetMQ
//! are produced into it by librdkafka and read back per partition with a librdkafka consumer
//! (keyed, in order, with their headers).

use fleetmq_tests::wire::{self, prop, Props};
use fleetmq_tests::{Broker, RawClient, TempDir};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tansu binary: `$FLEETMQ_TANSU`, else the one `.ci/run` caches, else `tansu` on PATH.
fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FLEETMQ_TANSU") {
        return p.into();
    }
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/fleetmq-tools/bin/tansu");
    if cached.exists() {
        return cached;
    }
    "tansu".into()
}

/// A tansu broker on a fixed loopback port with in-memory storage (its data dies with it).
struct Tansu {
    addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl Tansu {
    fn start(dir: TempDir) -> Tansu {
        // A port nobody holds: tansu needs it up front for its advertised address.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let url = format!("tcp://{addr}");
        let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run tansu ({e}): cargo install tansu --features dynostore (or set FLEETMQ_TANSU)")
            });
        let t = Tansu { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen: {}", t.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        t
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(kafka: SocketAddr) -> String {
    format!(
        "[bridge]\ntarget = \"kafka\"\nbatch_max_age_ms = 5\n\
         [bridge.producer]\nbrokers = [\"{kafka}\"]\nmessage_timeout_ms = 2000\n\
         [[bridge.rule]]\nfilter = \"fleet/+/telemetry\"\nlog_topic = \"telemetry\"\npartitions = 3\nkey = \"client_id\"\n"
    )
}

/// `key|value|k=v,k=v` lines of one partition of `telemetry`, from the beginning to the high
/// watermark, read with librdkafka (the same client stream processors use).
fn read_partition(kafka: SocketAddr, partition: u32) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.to_string())
        .set("group.id", "fleetmq-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a librdkafka consumer");
    let timeout = Duration::from_secs(5);
    // Before the topic exists this fails; that reads as "nothing yet".
    let Ok((low, high)) = consumer.fetch_watermarks("telemetry", partition as i32, timeout) else {
        return Vec::new();
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("telemetry", partition as i32, Offset::Offset(low)).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut next = low;
    // Polls past the high watermark until the partition goes quiet: tansu advances its watermark
    // by one per batch, not per record, so the last batch's later records sit beyond it.
    while Instant::now() < deadline {
        let m = match consumer.poll(Duration::from_millis(300)) {
            Some(Ok(m)) => m,
            None if next >= high => break,
            _ => continue,
        };
        next = m.offset() + 1;
        let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
        let headers: Vec<String> =
            m.headers().map(|h| h.iter().map(|h| format!("{}={}", h.key, text(h.value))).collect()).unwrap_or_default();
        lines.push(format!("{}|{}|{}", text(m.key()), text(m.payload()), headers.join(",")));
    }
    lines
}

/// Every partition's lines once they hold `n` records together (bounded wait).
async fn read_all(kafka: SocketAddr, n: usize) -> Vec<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let parts = tokio::task::spawn_blocking(move || (0..3).map(|p| read_partition(kafka, p)).collect::<Vec<_>>())
            .await
            .unwrap();
        if parts.iter().map(Vec::len).sum::<usize>() >= n || Instant::now() >= deadline {
            return parts;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Values of `dev`'s records, in log order, and the partitions they are in.
fn values_of(parts: &[Vec<String>], dev: &str) -> (Vec<String>, Vec<usize>) {
    let mut values = Vec::new();
    let mut partitions = Vec::new();
    for (p, lines) in parts.iter().enumerate() {
        for l in lines.iter().filter(|l| l.starts_with(&format!("{dev}|"))) {
            values.push(l.split('|').nth(1).unwrap_or_default().to_string());
            if !partitions.contains(&p) {
                partitions.push(p);
            }
        }
    }
    (values, partitions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_reach_an_external_kafka_keyed_in_order_with_their_headers() {
    let tansu = Tansu::start(TempDir::new("fleetmq-tansu"));
    let broker = Broker::start(&config(tansu.addr));
    let devs = ["d1", "d2", "d3", "d4", "d5", "d6"];
    for dev in devs {
        let mut c = RawClient::v5(broker.tcp_addr(), dev).await;
        for n in 0..5u16 {
            let props = Props::new().pair(prop::USER_PROPERTY, "unit", "C");
            let p = wire::Publish::new(true, format!("fleet/{dev}/telemetry"), format!("{dev}-{n}")).props(props);
            assert!(c.publish(&p.qos(1, n + 1)).await < 0x80, "accepted while the cluster is up");
        }
    }
    let parts = read_all(tansu.addr, 30).await;
    assert_eq!(parts.iter().map(Vec::len).sum::<usize>(), 30, "{parts:?}\ntansu: {}", tansu.log());
    for dev in devs {
        let (values, partitions) = values_of(&parts, dev);
        assert_eq!(values, (0..5).map(|n| format!("{dev}-{n}")).collect::<Vec<_>>(), "{dev}: in order");
        assert_eq!(partitions.len(), 1, "{dev}: one key, one partition");
        let first = parts[partitions[0]].iter().find(|l| l.starts_with(&format!("{dev}|"))).unwrap();
        for h in [format!("mqtt.client_id={dev}"), "unit=C".into(), format!("mqtt.topic=fleet/{dev}/telemetry")] {
            assert!(first.contains(&h), "{h} in {first}");
        }
    }
}
