//! `fleetmq-kafka-latency`: the Kafka side of the bridge benchmark (`loadtest/bridge-bench.sh`).
//! It reads a Kafka topic from its end while `fleetmq-loadtest` publishes through a bridging
//! broker, and reports how many records arrived and how long each took from its MQTT publisher
//! (the send time in the payload header) to this consumer: publish → Kafka consumer latency.
//!
//! Works against any Kafka-protocol endpoint (FleetMQ's embedded-log listener or a Kafka
//! cluster). Records whose value is not a `fleetmq-loadtest` payload are counted as foreign and
//! not timed. Prints one JSON object; exits 1 when the topic cannot be read.
#![forbid(unsafe_code)]

use anyhow::{bail, Context};
use clap::Parser;
use fleetmq_loadtest::payload;
use fleetmq_loadtest::stats::latency::Latency;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Reads a Kafka topic for a while and reports publish → consumer latency.
#[derive(Debug, Parser)]
#[command(name = "fleetmq-kafka-latency", version)]
struct Args {
    /// Kafka bootstrap address, host:port
    #[arg(long)]
    bootstrap: String,
    /// Topic to read (every partition, from its end)
    #[arg(long)]
    topic: String,
    /// How long to read
    #[arg(long, value_parser = fleetmq_loadtest::scenario::duration::parse, default_value = "20s")]
    duration: Duration,
    /// Records arriving before this are counted but not timed
    #[arg(long, value_parser = fleetmq_loadtest::scenario::duration::parse, default_value = "3s")]
    warmup: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", "fleetmq-kafka-latency")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "1")
        .create()
        .context("kafka consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {}", args.bootstrap))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic {} has no partitions at {}", args.topic, args.bootstrap);
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&args.topic, p as i32, Offset::End).context("assignment")?;
    }
    consumer.assign(&tpl).context("assign")?;
    let mut latency = Latency::new().context("histogram")?;
    let (mut records, mut timed, mut foreign) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let warm = start + args.warmup;
    let end = start + args.duration;
    while Instant::now() < end {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = m.context("fetch")?;
        let now = payload::now_ns();
        records += 1;
        match payload::decode(m.payload().unwrap_or_default()) {
            Ok(h) if Instant::now() >= warm => {
                latency.record_ns_span(h.sent_ns, now);
                timed += 1;
            }
            Ok(_) => {}
            Err(_) => foreign += 1,
        }
    }
    let measured = args.duration.saturating_sub(args.warmup).as_secs_f64().max(0.001);
    let out = serde_json::json!({
        "topic": args.topic,
        "partitions": partitions,
        "records": records,
        "foreign": foreign,
        "timed_rate": timed as f64 / measured,
        "latency": latency.summary(),
    });
    println!("{out}");
    Ok(())
}
