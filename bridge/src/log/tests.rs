//! Behavioural tests of the log through its public API, on temporary directories. Shared
//! helpers live here; reads, recovery and retention have their own files.

mod format;
mod read;
mod recovery;
mod retention;

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::*;

/// A config for tests: fsync off (speed), everything else default unless overridden.
pub(super) fn config(dir: &Path) -> LogConfig {
    LogConfig { fsync: false, ..LogConfig::new(dir) }
}

/// A record with a value and no key or headers.
pub(super) fn rec(ts: i64, value: &str) -> Record {
    Record { timestamp_ms: ts, key: None, value: Some(Bytes::from(value.to_owned())), headers: Vec::new() }
}

/// Decodes every retained record of a partition by reading from the log start.
pub(super) fn read_all(log: &Log, topic: &str, partition: u32) -> Vec<StoredRecord> {
    let start = log.offsets(topic, partition).unwrap().log_start_offset;
    let got = log.read(topic, partition, start, usize::MAX).unwrap();
    decode_batches(&got.records).unwrap()
}

/// The values of `records`, as strings.
pub(super) fn values(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()).collect()
}

/// Segment files with extension `ext` in a partition directory, sorted.
pub(super) fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Opens a log with one single-partition topic `t`.
pub(super) fn open_with_topic(cfg: LogConfig) -> Log {
    let log = Log::open(cfg).unwrap();
    log.ensure_topic("t", 1).unwrap();
    log
}

#[test]
fn log_handle_is_send_sync_clone() {
    fn assert_traits<T: Send + Sync + Clone + 'static>() {}
    assert_traits::<Log>();
}

#[test]
fn append_read_roundtrip_with_headers_and_nulls() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(config(dir.path()));
    let records = vec![
        Record {
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"sensor/1")),
            value: Some(Bytes::from_static(b"21.5")),
            headers: vec![
                ("mqtt.topic".into(), Some(Bytes::from_static(b"fleet/1/temp"))),
                ("dup".into(), Some(Bytes::from_static(b"one"))),
                ("dup".into(), Some(Bytes::from_static(b"two"))),
                ("null".into(), None),
                ("empty".into(), Some(Bytes::new())),
            ],
        },
        Record {
            timestamp_ms: 1_699_999_999_000, // older than the first: negative delta
            key: None,
            value: None,
            headers: Vec::new(),
        },
        Record {
            timestamp_ms: 1_700_000_000_500,
            key: Some(Bytes::new()),
            value: Some(Bytes::new()),
            headers: Vec::new(),
        },
    ];
    let info = log.append("t", 0, &records, None).unwrap();
    assert_eq!(info, AppendInfo { base_offset: 0, last_offset: 2 });
    let got = log.read("t", 0, 0, 1 << 20).unwrap();
    assert_eq!(got.high_watermark, 3);
    assert_eq!(got.log_start_offset, 0);
    let decoded = decode_batches(&got.records).unwrap();
    assert_eq!(decoded.len(), 3);
    for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
        assert_eq!(d.offset, i as i64);
        assert_eq!(d.timestamp_ms, r.timestamp_ms);
        assert_eq!(d.key, r.key);
        assert_eq!(d.value, r.value);
        assert_eq!(d.headers, r.headers);
        assert_eq!((d.producer_id, d.producer_epoch, d.sequence), (-1, -1, -1));
    }
}

#[test]
fn producer_stamp_is_stored_and_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(config(dir.path()));
    log.append("t", 0, &[rec(1, "a")], None).unwrap();
    let stamp = ProducerStamp { producer_id: 4242, producer_epoch: 7, base_sequence: i32::MAX - 1 };
    let recs = [rec(2, "b"), rec(3, "c"), rec(4, "d")];
    assert_eq!(log.append("t", 0, &recs, Some(stamp)).unwrap().base_offset, 1);
    let got = log.read("t", 0, 1, 1).unwrap();
    let decoded = decode_batches(&got.records).unwrap();
    let stamps: Vec<_> = decoded.iter().map(|r| (r.offset, r.producer_id, r.producer_epoch, r.sequence)).collect();
    // Sequences wrap from i32::MAX to 0, as in Kafka.
    assert_eq!(stamps, vec![(1, 4242, 7, i32::MAX - 1), (2, 4242, 7, i32::MAX), (3, 4242, 7, 0)]);
}

#[test]
fn offsets_continue_across_roll_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_bytes: 300, ..config(dir.path()) };
    let log = open_with_topic(cfg.clone());
    for i in 0..20 {
        let info = log.append("t", 0, &[rec(i, &format!("v{i}"))], None).unwrap();
        assert_eq!(info.base_offset, i);
    }
    let pdir = dir.path().join("t-0");
    let logs = files(&pdir, "log");
    assert!(logs.len() > 3, "expected several segments, got {}", logs.len());
    for seg in &logs {
        assert!(std::fs::metadata(seg).unwrap().len() <= 300);
    }
    drop(log);

    let log = Log::open(cfg).unwrap();
    assert_eq!(log.offsets("t", 0).unwrap(), PartitionOffsets { log_start_offset: 0, high_watermark: 20 });
    let info = log.append("t", 0, &[rec(20, "v20"), rec(21, "v21")], None).unwrap();
    assert_eq!(info, AppendInfo { base_offset: 20, last_offset: 21 });
    let want: Vec<String> = (0..22).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&read_all(&log, "t", 0)), want);
    // Segment file names are the 20-digit base offsets of their first batch.
    let names: Vec<String> =
        files(&pdir, "log").iter().map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned()).collect();
    assert_eq!(names[0], "00000000000000000000");
    for name in &names {
        let base: i64 = name.parse().unwrap();
        let first = log.read("t", 0, base, 1).unwrap();
        assert_eq!(decode_batches(&first.records).unwrap()[0].offset, base);
    }
}

#[test]
fn segment_ms_rolls_by_record_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_ms: Some(1000), ..config(dir.path()) };
    let log = open_with_topic(cfg);
    for ts in [0, 500, 1000, 1001, 1500, 2500] {
        log.append("t", 0, &[rec(ts, "x")], None).unwrap();
    }
    // Rolls before 1001 (1001 - 0 > 1000) and before 2500 (2500 - 1001 > 1000).
    let bases: Vec<String> = files(&dir.path().join("t-0"), "log")
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().trim_start_matches('0').to_owned())
        .collect();
    assert_eq!(bases, vec!["", "3", "5"]);
}

#[test]
fn ensure_topic_validates_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(config(dir.path())).unwrap();
    for bad in ["", ".", "..", "a/b", "sp ace", &"x".repeat(250)] {
        assert!(matches!(log.ensure_topic(bad, 1), Err(Error::InvalidTopicName { .. })));
    }
    assert!(matches!(log.ensure_topic("zero", 0), Err(Error::InvalidPartitionCount { .. })));
    log.ensure_topic("fleet.telemetry", 3).unwrap();
    log.ensure_topic("alerts", 1).unwrap();
    log.ensure_topic("fleet.telemetry", 3).unwrap();
    let err = log.ensure_topic("fleet.telemetry", 4).unwrap_err();
    assert!(matches!(err, Error::PartitionCountMismatch { existing: 3, requested: 4, .. }));
    assert!(err.to_string().contains("fleet.telemetry"), "{err}");
    let want = vec![
        TopicInfo { name: "alerts".into(), partitions: 1 },
        TopicInfo { name: "fleet.telemetry".into(), partitions: 3 },
    ];
    assert_eq!(log.topics(), want);
    for p in 0..3 {
        assert!(dir.path().join(format!("fleet.telemetry-{p}")).is_dir());
    }
    assert!(matches!(
        log.append("fleet.telemetry", 3, &[rec(0, "x")], None),
        Err(Error::UnknownPartition { partition: 3, .. })
    ));
    assert!(matches!(log.offsets("nope", 0), Err(Error::UnknownTopic(_))));
    assert!(matches!(log.append("alerts", 0, &[], None), Err(Error::EmptyAppend { .. })));
    drop(log);
    let log = Log::open(config(dir.path())).unwrap();
    assert_eq!(log.topics(), want);
    assert!(log.ensure_topic("alerts", 2).is_err());
}

#[test]
fn appended_watch_fires_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(config(dir.path()));
    let mut rx = log.appended();
    assert!(!rx.has_changed().unwrap());
    log.append("t", 0, &[rec(0, "a")], None).unwrap();
    assert!(rx.has_changed().unwrap());
    rx.mark_unchanged();
    // A failed append does not wake waiters.
    assert!(log.append("t", 1, &[rec(0, "a")], None).is_err());
    assert!(!rx.has_changed().unwrap());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let writer = log.clone();
    rt.block_on(async move {
        let waiter = tokio::spawn(async move { rx.changed().await.is_ok() });
        tokio::task::spawn_blocking(move || writer.append("t", 0, &[rec(1, "b")], None)).await.unwrap().unwrap();
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
        assert!(woke.unwrap().unwrap());
    });
}

#[test]
fn concurrent_appends_and_reads_keep_offsets_dense() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_bytes: 2048, index_interval_bytes: 128, ..config(dir.path()) };
    let log = Log::open(cfg).unwrap();
    log.ensure_topic("c", 2).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let v = format!("w{w}-{i}");
                    log.append("c", w % 2, &[rec(i, &v), rec(i, &v)], None).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                let hw = log.offsets("c", 0).unwrap().high_watermark;
                let got = log.read("c", 0, 0, usize::MAX).unwrap();
                let recs = decode_batches(&got.records).unwrap();
                assert!(recs.len() as i64 >= hw);
                assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as i64));
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    for p in 0..2 {
        let recs = read_all(&log, "c", p);
        assert_eq!(recs.len(), 400);
        assert!(recs.iter().enumerate().all(|(i, r)| r.offset == i as i64));
        for w in (p..4).step_by(2) {
            let mine: Vec<_> = values(&recs).into_iter().filter(|v| v.starts_with(&format!("w{w}-"))).collect();
            let want: Vec<_> = (0..100).flat_map(|i| [format!("w{w}-{i}"), format!("w{w}-{i}")]).collect();
            assert_eq!(mine, want, "per-writer order preserved");
        }
    }
}
