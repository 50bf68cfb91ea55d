//! [`Log`]: the handle the bridge and the Kafka listener share.
//!
//! Locking: the topic table sits behind an `RwLock` held only to look a topic up or insert one;
//! each partition has its own `Mutex`, so appends to different partitions never contend. Reads
//! hold the partition mutex only to range-check and snapshot segments, then do their I/O
//! unlocked. Topic creation is serialised by a separate mutex so its disk I/O never blocks the
//! table. All calls are synchronous; async callers use `spawn_blocking`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::partition::{offset_for_timestamp, read_views, Partition};
use super::retention::Limits;
use super::topic::{list_topics, partition_dir, validate_topic_name, write_meta};
use super::{
    io_err, AppendInfo, Error, LogConfig, PartitionOffsets, ProducerStamp, ReadResult, Record, Result, RetentionReport,
    TopicInfo,
};

/// The embedded partitioned log. Cheap to clone (an `Arc` inside), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    create: Mutex<()>,
    appended: watch::Sender<u64>,
}

#[derive(Debug)]
struct Topic {
    partitions: Vec<Mutex<Partition>>,
}

impl Topic {
    fn open(config: &LogConfig, name: &str, partitions: u32) -> Result<Self> {
        let partitions = (0..partitions)
            .map(|p| {
                let dir = partition_dir(&config.dir, name, p);
                Partition::open(dir, name, p, config).map(Mutex::new)
            })
            .collect::<Result<_>>()?;
        Ok(Self { partitions })
    }
}

impl Log {
    /// Opens the log in `config.dir` (created if missing), loading every topic and recovering
    /// every partition: torn or corrupt tails of active segments are truncated, missing or
    /// inconsistent indexes rebuilt.
    pub fn open(config: LogConfig) -> Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(&config.dir).map_err(io_err(&config.dir))?;
        let mut topics = BTreeMap::new();
        for (name, partitions) in list_topics(&config.dir, true)? {
            let topic = Topic::open(&config, &name, partitions)?;
            topics.insert(name, Arc::new(topic));
        }
        let (appended, _) = watch::channel(0);
        Ok(Self { inner: Arc::new(Inner { config, topics: RwLock::new(topics), create: Mutex::new(()), appended }) })
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Creates `name` with `partitions` partitions unless it exists. Existing with the same
    /// count is fine (idempotent bridge start-up); a different count is an error, because
    /// changing it would move keys to other partitions.
    pub fn ensure_topic(&self, name: &str, partitions: u32) -> Result<()> {
        validate_topic_name(name)?;
        if partitions == 0 || partitions > i32::MAX as u32 {
            return Err(Error::InvalidPartitionCount { topic: name.to_owned(), partitions });
        }
        let _creating = self.inner.create.lock();
        if let Some(existing) = self.inner.topics.read().get(name) {
            let existing = existing.partitions.len() as u32;
            return if existing == partitions {
                Ok(())
            } else {
                Err(Error::PartitionCountMismatch { topic: name.to_owned(), existing, requested: partitions })
            };
        }
        let topic = Topic::open(&self.inner.config, name, partitions)?;
        write_meta(&self.inner.config.dir, name, partitions)?;
        self.inner.topics.write().insert(name.to_owned(), Arc::new(topic));
        tracing::info!(topic = name, partitions, "created log topic");
        Ok(())
    }

    /// Every topic with its partition count, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.inner
            .topics
            .read()
            .iter()
            .map(|(name, t)| TopicInfo { name: name.clone(), partitions: t.partitions.len() as u32 })
            .collect()
    }

    fn topic(&self, topic: &str) -> Result<Arc<Topic>> {
        self.inner.topics.read().get(topic).cloned().ok_or_else(|| Error::UnknownTopic(topic.to_owned()))
    }

    /// Runs `f` with the partition locked.
    fn with_partition<T>(&self, topic: &str, partition: u32, f: impl FnOnce(&mut Partition) -> Result<T>) -> Result<T> {
        let t = self.topic(topic)?;
        let p = t
            .partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition { topic: topic.to_owned(), partition })?;
        let mut guard = p.lock();
        f(&mut guard)
    }

    /// Appends `records` as one Kafka batch with consecutive offsets, written with one write
    /// call (and fsynced when configured) before returning; readers see it immediately and
    /// [`Log::appended`] watchers are woken.
    pub fn append(
        &self,
        topic: &str,
        partition: u32,
        records: &[Record],
        producer: Option<ProducerStamp>,
    ) -> Result<AppendInfo> {
        let config = &self.inner.config;
        let info = self.with_partition(topic, partition, |p| p.append(records, producer, config))?;
        self.inner.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok(info)
    }

    /// The retained offset range (ListOffsets earliest / latest).
    pub fn offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        self.with_partition(topic, partition, |p| Ok(p.offsets()))
    }

    /// Earliest `(offset, timestamp)` whose timestamp is >= `ts_ms` (ListOffsets by time);
    /// `None` when every record is older. Searches one segment, chosen by segment max times.
    /// Kafka's sentinel timestamps (-1 latest, -2 earliest) are for the caller to map onto
    /// [`Log::offsets`].
    pub fn offset_for_timestamp(&self, topic: &str, partition: u32, ts_ms: i64) -> Result<Option<(i64, i64)>> {
        let views = self.with_partition(topic, partition, |p| Ok(p.views()))?;
        offset_for_timestamp(&views, ts_ms)
    }

    /// Raw stored batches for a Fetch: from the batch containing `offset`, whole batches while
    /// the total stays within `max_bytes`, but at least one batch if any exists (KIP-74); may
    /// span segments. `offset == high_watermark` gives empty records; outside
    /// `log_start_offset..=high_watermark` is [`Error::OffsetOutOfRange`]. The first batch may
    /// start before `offset`; Kafka clients skip the records below it.
    pub fn read(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let (views, offsets) = self.with_partition(topic, partition, |p| p.views_from(offset))?;
        let records = read_views(&views, offset, max_bytes)?.freeze();
        Ok(ReadResult { records, high_watermark: offsets.high_watermark, log_start_offset: offsets.log_start_offset })
    }

    /// A receiver whose value changes on every successful append to any partition, so a Fetch
    /// long-poll can `changed().await` instead of polling.
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.inner.appended.subscribe()
    }

    /// Applies the configured retention as of `now_ms` (injected so callers and tests control
    /// time). Every partition is attempted; the first error, if any, is returned afterwards.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport> {
        let limits =
            Limits { retention_ms: self.inner.config.retention_ms, retention_bytes: self.inner.config.retention_bytes };
        let mut report = RetentionReport::default();
        let mut first_error = None;
        for topic in self.snapshot_topics() {
            for partition in &topic.partitions {
                match partition.lock().enforce_retention(now_ms, limits) {
                    Ok(Some(p)) => report.partitions.push(p),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed");
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        first_error.map_or(Ok(report), Err)
    }

    /// fsyncs every partition's active segment (for `fsync = false` setups and shutdown).
    pub fn flush(&self) -> Result<()> {
        for topic in self.snapshot_topics() {
            for partition in &topic.partitions {
                partition.lock().flush()?;
            }
        }
        Ok(())
    }

    fn snapshot_topics(&self) -> Vec<Arc<Topic>> {
        self.inner.topics.read().values().cloned().collect()
    }
}
