//! Bridge into an external Kafka cluster (`target = "kafka"`) end to end, against a real,
//! independent Kafka-protocol broker (tansu) that the test starts: MQTT publishes through FleetMQ
//! are produced into it by librdkafka and read back per partition with a librdkafka consumer
//! (keyed, in order, with their headers).

use fleetmq_tests::parse::kind;
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
    child: Option<Child>,
    log: PathBuf,
}

impl Tansu {
    fn start(dir: &TempDir) -> Tansu {
        // A port nobody holds: tansu needs it up front for its advertised address.
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut t = Tansu { addr, child: None, log: dir.join("tansu.log") };
        t.restart();
        t
    }

    /// Starts the broker at its address: after [`Tansu::kill`], an empty broker in its place.
    fn restart(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
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
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (SIGKILL): the cluster is gone, with everything it stored.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// FleetMQ bridging `fleet/+/telemetry` into `kafka`; `bridge` adds `[bridge]` settings.
fn config(kafka: SocketAddr, bridge: &str) -> String {
    format!(
        "[bridge]\ntarget = \"kafka\"\nbatch_max_age_ms = 5\n{bridge}\n\
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
    let dir = TempDir::new("fleetmq-tansu");
    let tansu = Tansu::start(&dir);
    let broker = Broker::start(&config(tansu.addr, ""));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_buffers_acknowledged_publishes_refuses_when_full_and_delivers_them_after() {
    let dir = TempDir::new("fleetmq-tansu");
    let mut tansu = Tansu::start(&dir);
    let broker = Broker::start(&config(tansu.addr, "max_buffer_bytes = 1048576"));
    let mut c = RawClient::v5(broker.tcp_addr(), "d9").await;
    let publish = |n: u16| {
        // 60 KiB each: the 1 MiB buffer holds about 17.
        let payload = format!("d9-{n}:{}", "x".repeat(60 << 10));
        wire::Publish::new(true, "fleet/d9/telemetry", payload).qos(1, n + 1)
    };
    assert!(c.publish(&publish(0)).await < 0x80, "accepted while the cluster is up");
    assert_eq!(values_of(&read_all(tansu.addr, 1).await, "d9").0.len(), 1, "tansu: {}", tansu.log());

    tansu.kill();
    // Acknowledged into the buffer while the cluster is gone, until the buffer is full.
    let mut acked = vec![0u16];
    let refused = loop {
        let n = acked.len() as u16;
        assert!(n < 100, "a 1 MiB buffer took {n} publishes of 60 KiB");
        match c.publish(&publish(n)).await {
            r if r < 0x80 => acked.push(n),
            r => break r,
        }
    };
    assert_eq!(refused, 0x97, "quota exceeded once the buffer is full");
    assert!(acked.len() > 10, "acknowledged while buffering: {acked:?}");
    // MQTT 3.1.1 has no negative PUBACK: the publisher is disconnected instead.
    let mut old = RawClient::v4(broker.tcp_addr(), "d8").await;
    old.send(&wire::Publish::new(false, "fleet/d8/telemetry", "d8-0").qos(1, 1).encode()).await;
    let seen = old.expect_closed(Duration::from_secs(10)).await;
    assert!(seen.iter().all(|p| p.kind() != kind::PUBACK), "3.1.1 publish refused, not acknowledged: {seen:?}");

    // An empty cluster at the same address: the bridge recreates the topic and ships the buffer.
    tansu.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    let values = loop {
        let parts = read_all(tansu.addr, acked.len() - 1).await;
        let values: Vec<String> =
            values_of(&parts, "d9").0.iter().map(|v| v.split(':').next().unwrap_or_default().to_string()).collect();
        if values.len() >= acked.len() - 1 || Instant::now() >= deadline {
            break values;
        }
    };
    // The first record went to the cluster that died; every one acknowledged during the outage
    // is in the new one, once and in order.
    let expected: Vec<String> = acked[1..].iter().map(|n| format!("d9-{n}")).collect();
    assert_eq!(values, expected, "fleetmq: {}\ntansu: {}", broker.stderr(), tansu.log());
    let n = acked.len() as u16;
    assert!(c.publish(&publish(n)).await < 0x80, "accepted again once the buffer drained");
}
