//! `fleetmq log topics` and `fleetmq log tail`: print the bridge's embedded log without writing to
//! it, so they are safe next to a running broker.

use anyhow::{bail, Context};
use fleetmq_bridge::log::inspect;
use fleetmq_bridge::log::StoredRecord;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// One line per topic: name, partitions, and per partition the first and next offset.
pub fn topics(dir: &Path) -> anyhow::Result<()> {
    let topics = inspect::topics(dir).with_context(|| format!("log {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    for t in topics {
        let mut ranges = Vec::new();
        for p in 0..t.partitions {
            let (first, next) = bounds(dir, &t.name, p)?;
            ranges.push(format!("{p}:{first}..{next}"));
        }
        let _ = writeln!(out, "{} partitions={} offsets={}", t.name, t.partitions, ranges.join(","));
    }
    Ok(())
}

/// First offset and next offset (high watermark) readable in a partition.
fn bounds(dir: &Path, topic: &str, partition: u32) -> anyhow::Result<(i64, i64)> {
    Ok(inspect::offsets(dir, topic, partition)?)
}

/// Prints the records of `topic` (one partition or all) from `from`; with `follow`, keeps polling.
pub fn tail(dir: &Path, topic: &str, partition: Option<u32>, from: &str, follow: bool) -> anyhow::Result<()> {
    let Some(info) = inspect::topics(dir)?.into_iter().find(|t| t.name == topic) else {
        bail!("no topic {topic} in {}", dir.display());
    };
    let partitions: Vec<u32> = match partition {
        Some(p) if p < info.partitions => vec![p],
        Some(p) => bail!("{topic} has {} partitions; there is no partition {p}", info.partitions),
        None => (0..info.partitions).collect(),
    };
    let mut next = Vec::new();
    for &p in &partitions {
        next.push(match from {
            "earliest" => 0,
            "latest" => bounds(dir, topic, p)?.1,
            n => n.parse::<i64>().with_context(|| format!("--from {n}: earliest, latest or an offset"))?,
        });
    }
    let mut out = std::io::stdout().lock();
    loop {
        for (i, &p) in partitions.iter().enumerate() {
            let mut closed = false;
            inspect::records(dir, topic, p, next[i], &mut |r| {
                next[i] = r.offset + 1;
                closed = writeln!(out, "{}", line(p, &r)).is_err();
                !closed
            })?;
            if closed {
                return Ok(());
            }
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn text(b: &Option<bytes::Bytes>) -> String {
    b.as_ref().map_or_else(|| "-".to_string(), |b| String::from_utf8_lossy(b).into_owned())
}

fn line(partition: u32, r: &StoredRecord) -> String {
    let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
    format!(
        "partition={partition} offset={} timestamp={} key={} headers=[{}] value={}",
        r.offset,
        r.timestamp_ms,
        text(&r.key),
        headers.join(","),
        text(&r.value)
    )
}
