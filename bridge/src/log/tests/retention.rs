//! Retention by size and by age: whole sealed segments only, oldest first, never the active one.

use super::*;

/// One batch per segment (segment_bytes 1 rolls before every append to a non-empty segment):
/// batch `i` has timestamp `ts(i)` and lands in segment `i`.
fn one_batch_per_segment(cfg: LogConfig, n: i64, ts: impl Fn(i64) -> i64) -> (Log, u64) {
    let log = open_with_topic(LogConfig { segment_bytes: 1, ..cfg });
    for i in 0..n {
        log.append("t", 0, &[rec(ts(i), &format!("{i:03}"))], None).unwrap();
    }
    let seg = log.read("t", 0, 0, 1).unwrap().records.len() as u64;
    (log, seg)
}

fn segment_bases(dir: &Path) -> Vec<i64> {
    files(&dir.join("t-0"), "log").iter().map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap()).collect()
}

#[test]
fn retention_by_size_deletes_oldest_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: None, ..config(dir.path()) };
    let (log, seg) = one_batch_per_segment(cfg.clone(), 10, |i| i);
    drop(log);
    // 10 segments of `seg` bytes; keep at most 3.5 segments' worth.
    let log = Log::open(LogConfig { segment_bytes: 1, retention_bytes: Some(seg * 7 / 2), ..cfg }).unwrap();
    let report = log.enforce_retention(0).unwrap();
    assert_eq!(report.deleted_segments(), 7);
    assert_eq!(report.deleted_bytes(), 7 * seg);
    assert_eq!(report.partitions[0].log_start_offset, 7);
    assert_eq!(segment_bases(dir.path()), vec![7, 8, 9]);
    assert_eq!(files(&dir.path().join("t-0"), "index").len(), 3);
    assert_eq!(files(&dir.path().join("t-0"), "timeindex").len(), 3);
    assert_eq!(log.offsets("t", 0).unwrap(), PartitionOffsets { log_start_offset: 7, high_watermark: 10 });
    assert!(matches!(log.read("t", 0, 6, 100), Err(Error::OffsetOutOfRange { log_start_offset: 7, .. })));
    assert_eq!(values(&read_all(&log, "t", 0)), vec!["007", "008", "009"]);
    // Nothing more to do; a second pass deletes nothing.
    assert_eq!(log.enforce_retention(0).unwrap(), RetentionReport::default());
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_bytes: Some(0), retention_ms: Some(1), ..config(dir.path()) };
    let (log, _) = one_batch_per_segment(cfg, 4, |i| i);
    let report = log.enforce_retention(i64::MAX).unwrap();
    assert_eq!(report.deleted_segments(), 3);
    assert_eq!(segment_bases(dir.path()), vec![3]);
    assert_eq!(values(&read_all(&log, "t", 0)), vec!["003"]);
    assert_eq!(log.enforce_retention(i64::MAX).unwrap().deleted_segments(), 0);
    // Appends continue; offsets stay dense after the start moved.
    assert_eq!(log.append("t", 0, &[rec(9, "004")], None).unwrap().base_offset, 4);
    let log = Log::open(log.config().clone()).unwrap();
    assert_eq!(log.offsets("t", 0).unwrap(), PartitionOffsets { log_start_offset: 3, high_watermark: 5 });
}

#[test]
fn retention_by_age_uses_newest_timestamp_and_injected_now() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: Some(1_000), ..config(dir.path()) };
    // Segment i's newest record is at 10_000 + i * 500.
    let (log, _) = one_batch_per_segment(cfg, 6, |i| 10_000 + i * 500);
    // Cutoff 11_000 - 1_000 = 10_000: nothing strictly older yet.
    assert_eq!(log.enforce_retention(11_000).unwrap().deleted_segments(), 0);
    // Cutoff 11_100: segments 0 (10_000), 1 (10_500) and 2 (11_000) are older.
    let report = log.enforce_retention(12_100).unwrap();
    assert_eq!(report.deleted_segments(), 3);
    assert_eq!(segment_bases(dir.path()), vec![3, 4, 5]);
    assert_eq!(log.offsets("t", 0).unwrap().log_start_offset, 3);
    // Far future: every sealed segment expires, the active one stays.
    log.enforce_retention(1_000_000).unwrap();
    assert_eq!(segment_bases(dir.path()), vec![5]);
    assert_eq!(log.offset_for_timestamp("t", 0, 0).unwrap(), Some((5, 12_500)));
}

#[test]
fn retention_by_age_stops_at_first_young_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { retention_ms: Some(1_000), ..config(dir.path()) };
    // Segment 1 holds a record from the future relative to its neighbours.
    let (log, _) = one_batch_per_segment(cfg, 5, |i| if i == 1 { 50_000 } else { 10_000 + i });
    log.enforce_retention(20_000).unwrap();
    // Only segment 0 goes: deletion is a prefix, so segments 2 and 3 wait behind segment 1.
    assert_eq!(segment_bases(dir.path()), vec![1, 2, 3, 4]);
}

#[test]
fn readers_keep_their_snapshot_across_retention() {
    use super::super::partition::{read_views, Partition};
    use super::super::retention::Limits;

    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig { segment_bytes: 1, ..config(dir.path()) };
    let mut p = Partition::open(dir.path().join("t-0"), "t", 0, &cfg).unwrap();
    for i in 0..3 {
        p.append(&[rec(i, &format!("{i:03}"))], None, &cfg).unwrap();
    }
    // A Fetch snapshots segments under the lock, then reads without it.
    let (views, _) = p.views_from(0).unwrap();
    let limits = Limits { retention_ms: None, retention_bytes: Some(0) };
    let deleted = p.enforce_retention(0, limits).unwrap().unwrap();
    assert_eq!(deleted.deleted_segments, 2);
    assert_eq!(files(&dir.path().join("t-0"), "log").len(), 1);
    let bytes = read_views(&views, 0, usize::MAX).unwrap().freeze();
    assert_eq!(values(&decode_batches(&bytes).unwrap()), vec!["000", "001", "002"]);
}
