//! The external Kafka target: ships bridge records into a Kafka cluster the operator already runs,
//! through librdkafka (the `rdkafka` crate). The only module that imports `rdkafka`.
//!
//! Invariants: the producer is idempotent with `acks=all`, so librdkafka's own retries neither
//! duplicate nor reorder a partition's records; [`KafkaProducer::append`] reports a batch group
//! done only when every record of it was acknowledged by the cluster; every record goes to the
//! partition the bridge chose (the same murmur2 choice as the embedded log), so per-key order is
//! the bridge's order. Properties that carry these guarantees ([`RESERVED`]) cannot be
//! overridden. A producer that hit a fatal error, or whose producer id the cluster no longer
//! knows or whose delivery timed out ([`PRODUCER_STATE_LOST`]), is replaced before the next append.

use crate::log::Record;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use std::time::Duration;

/// Errors of the external target.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting librdkafka refused (its message names the property).
    #[error("producer settings: {0}")]
    Config(String),
    /// The cluster or the client failed an operation.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// A topic the bridge writes exists with fewer partitions than its rule asks for.
    #[error("topic `{topic}` has {actual} partitions in the cluster; the bridge rule needs {wanted}")]
    Partitions { topic: String, actual: usize, wanted: u32 },
    /// A topic the bridge writes is missing or could not be created.
    #[error("topic `{topic}`: {message}")]
    Topic { topic: String, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// librdkafka properties fixed by the bridge: they carry its delivery guarantees.
pub const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
];

/// Errors meaning the cluster no longer knows this idempotent producer (it was restarted empty,
/// or expired the producer id): retrying with the same producer id can never succeed, so the
/// producer is replaced and the bridge sends the unacknowledged groups again with a new one. A
/// delivery that timed out counts too: librdkafka's idempotent producer then waits to bump its
/// epoch for the producer id, which a cluster restarted empty never grants (seen with tansu:
/// every later shipment timed out until the process restarted).
const PRODUCER_STATE_LOST: &[RDKafkaErrorCode] = &[
    RDKafkaErrorCode::MessageTimedOut,
    RDKafkaErrorCode::ProducerFenced,
    RDKafkaErrorCode::InvalidProducerEpoch,
    RDKafkaErrorCode::UnknownProducerId,
    RDKafkaErrorCode::OutOfOrderSequenceNumber,
    RDKafkaErrorCode::InvalidProducerIdMapping,
];

/// Settings of the producer (`[bridge.producer]`).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Shown in the cluster's logs and quotas.
    pub client_id: String,
    /// librdkafka `compression.type`: none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    /// How long librdkafka waits to fill a batch.
    pub linger_ms: u64,
    /// How long a record may take to be acknowledged before its append fails (and is retried by
    /// the bridge, which keeps it buffered meanwhile).
    pub message_timeout_ms: u64,
    /// Create missing topics with the rule's partition count.
    pub create_topics: bool,
    /// Replicas of created topics (-1: the cluster's default).
    pub replication_factor: i32,
    /// Further librdkafka properties: TLS (`security.protocol`, `ssl.*`), SASL (`sasl.*`) and
    /// tuning. None of [`RESERVED`].
    pub properties: Vec<(String, String)>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            brokers: Vec::new(),
            client_id: "fleetmq".into(),
            compression: "none".into(),
            linger_ms: 5,
            message_timeout_ms: 30_000,
            create_topics: true,
            replication_factor: -1,
            properties: Vec::new(),
        }
    }
}

impl ProducerConfig {
    /// The librdkafka configuration: the user's properties, then the fixed guarantees.
    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", self.brokers.join(","))
            .set("client.id", &self.client_id)
            .set("compression.type", &self.compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5");
        c
    }
}

/// One append unit: the records of one shipment for one partition, in order.
pub type Group = (String, u32, Vec<Record>);

/// A producer into an external Kafka cluster. Cheap to share; creates its librdkafka client
/// lazily and again after a fatal error.
pub struct KafkaProducer {
    config: ProducerConfig,
    producer: Mutex<Option<FutureProducer>>,
}

impl KafkaProducer {
    /// Checks the settings with librdkafka (an unknown or bad property fails here, at startup);
    /// does not connect.
    pub fn new(config: ProducerConfig) -> Result<KafkaProducer> {
        if let Some((k, _)) = config.properties.iter().find(|(k, _)| RESERVED.contains(&k.as_str())) {
            return Err(Error::Config(format!("`{k}` is set by the bridge and cannot be changed")));
        }
        let p = KafkaProducer { config, producer: Mutex::new(None) };
        drop(p.producer()?);
        Ok(p)
    }

    /// The live librdkafka producer, created if there is none or the last one failed fatally.
    fn producer(&self) -> Result<FutureProducer> {
        let mut slot = self.producer.lock();
        if let Some(p) = slot.as_ref() {
            match p.client().fatal_error() {
                None => return Ok(p.clone()),
                Some((code, reason)) => {
                    tracing::warn!(?code, %reason, "kafka producer failed fatally; starting a new one");
                }
            }
        }
        let p: FutureProducer = self.config.client_config().create().map_err(|e| Error::Config(e.to_string()))?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Makes sure every `(topic, partitions)` exists with at least that many partitions, creating
    /// missing ones when allowed. The metadata request blocks, so it runs on the blocking pool.
    pub async fn ensure_topics(&self, topics: &[(String, u32)]) -> Result<()> {
        let timeout = Duration::from_millis(self.config.message_timeout_ms.min(10_000));
        let producer = self.producer()?;
        // (topic, partition count) of every topic the cluster has.
        let existing: Vec<(String, usize)> = tokio::task::spawn_blocking(move || {
            let m = producer.client().fetch_metadata(None, timeout)?;
            Ok::<_, KafkaError>(
                m.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_owned(), t.partitions().len()))
                    .collect(),
            )
        })
        .await
        .map_err(|e| Error::Config(e.to_string()))??;
        let mut missing = Vec::new();
        for (topic, wanted) in topics {
            match existing.iter().find(|(t, _)| t == topic) {
                Some((_, actual)) if *actual < *wanted as usize => {
                    return Err(Error::Partitions { topic: topic.clone(), actual: *actual, wanted: *wanted })
                }
                Some(_) => {}
                None if self.config.create_topics => missing.push((topic.as_str(), *wanted)),
                None => return Err(Error::Topic { topic: topic.clone(), message: "does not exist".into() }),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> =
            self.config.client_config().create().map_err(|e| Error::Config(e.to_string()))?;
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|(t, n)| NewTopic::new(t, *n as i32, TopicReplication::Fixed(self.config.replication_factor)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
        let results = admin.create_topics(&new, &opts).await?;
        for r in results {
            match r {
                Ok(topic) => tracing::info!(%topic, "created bridge topic in the kafka cluster"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(Error::Topic { topic, message: code.to_string() }),
            }
        }
        Ok(())
    }

    /// Produces `groups[skip..]` and waits for every acknowledgement. Returns how many groups are
    /// done (all of their records acknowledged, counting from the start) and the first error.
    /// Groups after a failed one may have been written too; the bridge sends them again, which
    /// is the bounded, marked duplication its at-least-once contract allows.
    pub async fn append(&self, groups: &[Group], skip: usize) -> (usize, Result<()>) {
        let producer = match self.producer() {
            Ok(p) => p,
            Err(e) => return (skip, Err(e)),
        };
        let mut pending: Vec<(usize, DeliveryFuture)> = Vec::new();
        let mut failed: Option<(usize, Error)> = None;
        'groups: for (i, (topic, partition, records)) in groups.iter().enumerate().skip(skip) {
            for r in records {
                match self.enqueue(&producer, topic, *partition, r).await {
                    Ok(f) => pending.push((i, f)),
                    Err(e) => {
                        failed = Some((i, e));
                        break 'groups;
                    }
                }
            }
        }
        for (i, delivery) in pending {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((e, _))) => {
                    if e.rdkafka_error_code().is_some_and(|c| PRODUCER_STATE_LOST.contains(&c)) {
                        self.discard(&producer, &e);
                    }
                    Error::Kafka(e)
                }
                Err(_) => Error::Kafka(KafkaError::Canceled),
            };
            if failed.as_ref().is_none_or(|(j, _)| i < *j) {
                failed = Some((i, error));
            }
        }
        match failed {
            Some((i, e)) => (i, Err(e)),
            None => (groups.len(), Ok(())),
        }
    }

    /// Drops `failed` as the live producer (if it still is), so the next append starts a new one
    /// with a new producer id.
    fn discard(&self, failed: &FutureProducer, error: &KafkaError) {
        let mut slot = self.producer.lock();
        if slot.as_ref().is_some_and(|p| std::ptr::eq(p.client(), failed.client())) {
            tracing::warn!(%error, "kafka cluster lost this producer's state; starting a new producer");
            *slot = None;
        }
    }

    /// Queues one record, waiting while librdkafka's queue is full.
    async fn enqueue(
        &self,
        producer: &FutureProducer,
        topic: &str,
        partition: u32,
        r: &Record,
    ) -> Result<DeliveryFuture> {
        let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
        for (key, value) in &r.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(partition as i32).timestamp(r.timestamp_ms).headers(headers);
        if let Some(k) = &r.key {
            record = record.key(k.as_ref());
        }
        if let Some(v) = &r.value {
            record = record.payload(v.as_ref());
        }
        loop {
            match producer.send_result(record) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(Error::Kafka(e)),
            }
        }
    }
}
