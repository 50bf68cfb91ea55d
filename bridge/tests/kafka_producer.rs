//! The external Kafka target against librdkafka's in-process mock cluster: records land in the
//! chosen partitions in order with their keys, headers and timestamps; an unreachable cluster
//! fails the append (nothing reported done) and a later append delivers once it is back; topics
//! with too few partitions or missing ones are reported; reserved settings are refused.

use bytes::Bytes;
use fleetmq_bridge::log::Record;
use fleetmq_bridge::producer::{Error, KafkaProducer, ProducerConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

fn config(brokers: String) -> ProducerConfig {
    ProducerConfig { brokers: vec![brokers], message_timeout_ms: 1500, create_topics: false, ..Default::default() }
}

fn record(key: &str, value: &str, ts: i64) -> Record {
    Record {
        timestamp_ms: ts,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![("mqtt.topic".into(), Some(Bytes::from_static(b"fleet/a"))), ("p".into(), None)],
    }
}

/// (key, value, timestamp, header names) of everything in `topic`/`partition`, waiting for `n`.
fn read(bootstrap: &str, topic: &str, partition: i32, n: usize) -> Vec<(String, String, i64, Vec<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < n && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            let names = m.headers().map(|h| h.iter().map(|h| h.key.to_owned()).collect()).unwrap_or_default();
            out.push((text(m.key()), text(m.payload()), m.timestamp().to_millis().unwrap_or(-1), names));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_in_the_chosen_partitions_in_order() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("telemetry", 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = KafkaProducer::new(config(bootstrap.clone())).unwrap();
    producer.ensure_topics(&[("telemetry".into(), 3)]).await.unwrap();
    let groups = vec![
        ("telemetry".to_string(), 2, (0..50).map(|i| record("dev-a", &format!("a{i}"), 1_000 + i)).collect()),
        ("telemetry".to_string(), 0, (0..30).map(|i| record("dev-b", &format!("b{i}"), 2_000 + i)).collect()),
    ];
    let (done, result) = producer.append(&groups, 0).await;
    result.unwrap();
    assert_eq!(done, 2);
    let p2 = read(&bootstrap, "telemetry", 2, 50);
    let values: Vec<_> = p2.iter().map(|r| r.1.clone()).collect();
    assert_eq!(values, (0..50).map(|i| format!("a{i}")).collect::<Vec<_>>());
    assert!(p2.iter().all(|r| r.0 == "dev-a"));
    assert_eq!(p2[7].2, 1_007, "the record's own timestamp is kept");
    assert_eq!(p2[0].3, vec!["mqtt.topic".to_string(), "p".to_string()], "headers in order, null values kept");
    let p0 = read(&bootstrap, "telemetry", 0, 30);
    assert_eq!(
        p0.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        (0..30).map(|i| format!("b{i}")).collect::<Vec<_>>()
    );
    assert!(read(&bootstrap, "telemetry", 1, 1).is_empty(), "nothing went to the partition nobody chose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_fails_the_append_and_a_later_one_delivers() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("t", 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let producer = KafkaProducer::new(config(bootstrap.clone())).unwrap();
    let first = vec![("t".to_string(), 0, vec![record("k", "before", 1)])];
    producer.append(&first, 0).await.1.unwrap();

    cluster.broker_down(-1).unwrap();
    let during = vec![("t".to_string(), 0, vec![record("k", "during-1", 2), record("k", "during-2", 3)])];
    let (done, result) = producer.append(&during, 0).await;
    assert!(result.is_err(), "an append the cluster never acknowledged must fail");
    assert_eq!(done, 0);

    cluster.broker_up(-1).unwrap();
    let mut delivered = false;
    for _ in 0..10 {
        if producer.append(&during, 0).await.1.is_ok() {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "appends deliver again once the cluster is back");
    let values: Vec<String> = read(&bootstrap, "t", 0, 3).into_iter().map(|r| r.1).collect();
    assert_eq!(values.first().map(String::as_str), Some("before"));
    let pos = |v: &str| values.iter().rposition(|x| x == v);
    assert!(pos("during-1").is_some() && pos("during-1") < pos("during-2"), "order kept: {values:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_missing_or_with_too_few_partitions_are_reported() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("small", 2, 1).unwrap();
    let producer = KafkaProducer::new(config(cluster.bootstrap_servers())).unwrap();
    match producer.ensure_topics(&[("small".into(), 4)]).await {
        Err(Error::Partitions { topic, actual: 2, wanted: 4 }) => assert_eq!(topic, "small"),
        other => panic!("expected a partition-count error, got {other:?}"),
    }
    producer.ensure_topics(&[("small".into(), 2)]).await.unwrap();
    assert!(matches!(producer.ensure_topics(&[("absent".into(), 1)]).await, Err(Error::Topic { .. })));
}

#[test]
fn settings_that_carry_the_guarantees_or_are_unknown_are_refused() {
    let mut c = ProducerConfig { brokers: vec!["127.0.0.1:1".into()], ..Default::default() };
    c.properties = vec![("acks".into(), "1".into())];
    let e = KafkaProducer::new(c.clone()).err().expect("acks is reserved");
    assert!(e.to_string().contains("`acks`"), "{e}");
    c.properties = vec![("no.such.property".into(), "1".into())];
    let e = KafkaProducer::new(c.clone()).err().expect("unknown property");
    assert!(e.to_string().contains("no.such.property"), "{e}");
    c.properties = vec![("security.protocol".into(), "sasl_ssl".into()), ("sasl.mechanism".into(), "PLAIN".into())];
    let e = KafkaProducer::new(c.clone()).err().expect("PLAIN without credentials");
    assert!(e.to_string().contains("sasl.username"), "{e}");
    c.properties.push(("sasl.username".into(), "fleet".into()));
    c.properties.push(("sasl.password".into(), "secret".into()));
    KafkaProducer::new(c).unwrap();
}
