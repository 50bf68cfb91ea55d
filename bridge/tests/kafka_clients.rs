//! FleetMQ's Kafka listener against real Kafka clients: `kcat` (librdkafka) reading partitions
//! and replaying from an offset, and a `kafka-python` consumer group splitting partitions,
//! committing, and resuming from its committed offsets after the listener, the group service and
//! the offset store were restarted on the same directories.
//!
//! The listener runs in-process on 127.0.0.1 port 0 over a temporary log with one 3-partition
//! topic of known records (keys, values, headers, several batches per partition). Clients run as
//! subprocesses bounded by timeouts and killed when they overrun. A missing client fails the
//! test with the command that installs it; nothing is skipped.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use fleetmq_bridge::group::{GroupConfig, GroupService, OffsetStore, OffsetStoreConfig};
use fleetmq_bridge::kafka::{KafkaConfig, KafkaListener};
use fleetmq_bridge::log::{Log, LogConfig, Record};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TOPIC: &str = "fleet.telemetry";
/// Records per partition in the first phase.
const COUNTS: [usize; 3] = [5, 3, 4];
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// One record as a client prints it: partition, offset, key, value, headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    partition: u32,
    offset: i64,
    key: String,
    value: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    /// kcat's `-f '%p|%o|%k|%s|%h\n'` rendering.
    fn kcat_line(&self) -> String {
        let headers: Vec<String> = self.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}|{}|{}|{}|{}", self.partition, self.offset, self.key, self.value, headers.join(","))
    }
}

fn record(partition: u32, seq: usize, round: &str) -> Record {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Record {
        timestamp_ms: now,
        key: Some(Bytes::from(format!("dev-{partition}-{seq}"))),
        value: Some(Bytes::from(format!("{round} reading {partition}/{seq}"))),
        headers: vec![
            ("source".into(), Some(Bytes::from_static(b"mqtt"))),
            ("seq".into(), Some(Bytes::from(seq.to_string()))),
        ],
    }
}

/// Appends `counts[p]` records to each partition, in two batches where there are enough, and
/// returns what clients must see, in partition and offset order.
fn append(log: &Log, counts: [usize; 3], round: &str) -> Result<Vec<Seen>> {
    let mut expected = Vec::new();
    for (partition, count) in (0u32..).zip(counts) {
        let records: Vec<Record> = (0..count).map(|seq| record(partition, seq, round)).collect();
        let (first, second) = records.split_at(count.min(3));
        let base = log.append(TOPIC, partition, first, None)?.base_offset;
        if !second.is_empty() {
            log.append(TOPIC, partition, second, None)?;
        }
        for (offset, r) in (base..).zip(&records) {
            let text = |b: &Option<Bytes>| String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned();
            let headers = r.headers.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            expected.push(Seen { partition, offset, key: text(&r.key), value: text(&r.value), headers });
        }
    }
    Ok(expected)
}

/// A running listener with its log.
struct Server {
    addr: SocketAddr,
    log: Log,
    stop: watch::Sender<bool>,
    task: JoinHandle<fleetmq_bridge::kafka::Result<()>>,
}

impl Server {
    /// Opens (or reopens) the log, the offset store and the group service on `dir`, and serves.
    async fn start(dir: &Path) -> Result<Server> {
        let log = Log::open(LogConfig { fsync: false, ..LogConfig::new(dir.join("log")) })?;
        log.ensure_topic(TOPIC, 3)?;
        let store = OffsetStore::open(dir.join("offsets"), OffsetStoreConfig::default())?;
        let config =
            GroupConfig { initial_rebalance_delay_ms: 3_000, min_session_timeout_ms: 1_000, ..Default::default() };
        let groups = GroupService::start(config, store)?;
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = KafkaListener::bind(KafkaConfig { bind, ..KafkaConfig::default() }, log.clone(), groups)?;
        let addr = listener.local_addr();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listener.run(stopped));
        Ok(Server { addr, log, stop, task })
    }

    /// Signals shutdown and waits for the listener and all its connections to end.
    async fn shutdown(self) -> Result<()> {
        self.stop.send(true)?;
        tokio::time::timeout(Duration::from_secs(10), self.task).await.context("listener did not stop")???;
        Ok(())
    }
}

/// Runs a client to completion within [`CLIENT_TIMEOUT`], killing it if it overruns.
async fn run(cmd: &mut Command) -> Result<Output> {
    let child = cmd.kill_on_drop(true).stdin(std::process::Stdio::null()).output();
    let out = tokio::time::timeout(CLIENT_TIMEOUT, child).await.context("client timed out and was killed")??;
    if !out.status.success() {
        bail!("client failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(out)
}

/// Fails (never skips) when a client is missing, saying how to install it.
async fn require_clients() {
    let kcat = Command::new("kcat").arg("-V").output().await;
    assert!(
        kcat.is_ok_and(|o| o.status.success()),
        "kcat is required for these tests: install it with `apt-get install -y kcat`"
    );
    let python = Command::new("python3").args(["-c", "import kafka"]).output().await;
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "python3 with kafka-python is required for these tests: install it with `pip install kafka-python`"
    );
}

/// `kcat -C` on one partition from `offset` ("beginning" or a number) to the end.
async fn kcat(addr: SocketAddr, partition: u32, offset: &str) -> Result<Vec<String>> {
    let out = run(Command::new("kcat").args([
        "-C",
        "-b",
        &addr.to_string(),
        "-t",
        TOPIC,
        "-p",
        &partition.to_string(),
        "-o",
        offset,
        "-e",
        "-f",
        "%p|%o|%k|%s|%h\n",
    ]))
    .await?;
    Ok(String::from_utf8(out.stdout)?.lines().map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_reads_partitions_and_replays_from_an_offset() -> Result<()> {
    require_clients().await;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let expected = append(&server.log, COUNTS, "first")?;
    for partition in 0..3 {
        let want: Vec<String> = expected.iter().filter(|s| s.partition == partition).map(Seen::kcat_line).collect();
        let got = kcat(server.addr, partition, "beginning").await?;
        assert_eq!(got, want, "partition {partition} from the beginning");
    }
    // Offset 2 lies inside partition 0's first batch: the client must skip offsets 0 and 1.
    let want: Vec<String> =
        expected.iter().filter(|s| s.partition == 0 && s.offset >= 2).map(Seen::kcat_line).collect();
    assert_eq!(kcat(server.addr, 0, "2").await?, want, "replay of partition 0 from offset 2");
    server.shutdown().await
}

/// A kafka-python group member: consumes until idle, commits, waits for `peers` members to be
/// done (so nobody's leaving triggers a rebalance mid-consumption), closes, and writes its
/// assignment and records, the latter in kcat's `%p|%o|%k|%s|%h` form.
const CONSUMER: &str = r#"
import os, sys, time
from kafka import KafkaConsumer

bootstrap, topic, group, out_path, peers = sys.argv[1:6]
me = os.path.basename(out_path)
consumer = KafkaConsumer(
    topic, group_id=group, bootstrap_servers=bootstrap, client_id=me,
    auto_offset_reset='earliest', enable_auto_commit=False, consumer_timeout_ms=2500,
    session_timeout_ms=10000, heartbeat_interval_ms=500, fetch_max_wait_ms=200)
lines = []
def keep(m):
    headers = ','.join('%s=%s' % (k, v.decode()) for k, v in m.headers)
    lines.append('%d|%d|%s|%s|%s' % (m.partition, m.offset, m.key.decode(), m.value.decode(), headers))
def poll():
    for batch in consumer.poll(timeout_ms=200).values():
        for m in batch:
            keep(m)
deadline = time.time() + 30
while not consumer.assignment():
    if time.time() > deadline:
        sys.exit('no partitions assigned')
    poll()
for m in consumer:
    keep(m)
consumer.commit()
assignment = sorted(tp.partition for tp in consumer.assignment())
done_dir = os.path.dirname(out_path)
open(os.path.join(done_dir, me + '.done'), 'w').close()
while len([f for f in os.listdir(done_dir) if f.endswith('.done')]) < int(peers):
    if time.time() > deadline:
        sys.exit('peers did not finish')
    poll()
consumer.close()
with open(out_path, 'w') as f:
    f.write(','.join(map(str, assignment)) + '\n')
    f.write(''.join(line + '\n' for line in lines))
"#;

/// What one consumer reported: its partitions and the records it read, as kcat lines.
struct Member {
    assignment: Vec<u32>,
    lines: Vec<String>,
}

/// Runs `names.len()` consumers of `group` concurrently in `dir` and collects their reports.
async fn consume(addr: SocketAddr, group: &str, dir: &Path, names: &[&str]) -> Result<Vec<Member>> {
    let script = dir.join("consumer.py");
    std::fs::write(&script, CONSUMER)?;
    let runs: Vec<JoinHandle<Result<Member>>> = names
        .iter()
        .map(|name| {
            let mut cmd = Command::new("python3");
            cmd.arg(&script).args([addr.to_string().as_str(), TOPIC, group]).arg(dir.join(name));
            cmd.arg(names.len().to_string());
            let out = dir.join(name);
            tokio::spawn(async move {
                run(&mut cmd).await?;
                let report = std::fs::read_to_string(&out)?;
                let mut lines = report.lines().map(str::to_owned);
                let assignment = lines.next().context("assignment line")?;
                let assignment =
                    assignment.split(',').filter(|p| !p.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
                Ok(Member { assignment, lines: lines.collect() })
            })
        })
        .collect();
    let mut members = Vec::new();
    for run in runs {
        members.push(run.await??);
    }
    Ok(members)
}

/// `lines` sorted, for order-insensitive comparison across members.
fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_group_splits_partitions_and_resumes_after_restart() -> Result<()> {
    require_clients().await;
    let dir = tempfile::tempdir()?;
    let server = Server::start(dir.path()).await?;
    let first = append(&server.log, COUNTS, "first")?;

    let phase1 = tempfile::tempdir()?;
    let members = consume(server.addr, "dashboards", phase1.path(), &["a", "b"]).await?;
    let assigned: Vec<&Vec<u32>> = members.iter().map(|m| &m.assignment).collect();
    ensure!(assigned.iter().all(|a| !a.is_empty()), "both members must get partitions: {assigned:?}");
    let union: BTreeSet<u32> = members.iter().flat_map(|m| m.assignment.iter().copied()).collect();
    assert_eq!(union, BTreeSet::from([0, 1, 2]), "every partition assigned: {assigned:?}");
    assert_eq!(members[0].assignment.len() + members[1].assignment.len(), 3, "no partition twice: {assigned:?}");
    for m in &members {
        let own = |line: &String| m.assignment.iter().any(|p| line.starts_with(&format!("{p}|")));
        assert!(m.lines.iter().all(own), "a member read only its own partitions");
    }
    let seen = sorted(members.into_iter().flat_map(|m| m.lines).collect());
    let want = sorted(first.iter().map(Seen::kcat_line).collect());
    assert_eq!(seen, want, "every record consumed exactly once across the group");

    // Restart listener, group service and offset store on the same directories; then new data.
    server.shutdown().await?;
    let server = Server::start(dir.path()).await?;
    let second = append(&server.log, [2, 1, 2], "second")?;
    let phase2 = tempfile::tempdir()?;
    let members = consume(server.addr, "dashboards", phase2.path(), &["c"]).await?;
    let seen = sorted(members.into_iter().flat_map(|m| m.lines).collect());
    let want = sorted(second.iter().map(Seen::kcat_line).collect());
    assert_eq!(seen, want, "the group resumes from its committed offsets: only new records");
    server.shutdown().await
}
