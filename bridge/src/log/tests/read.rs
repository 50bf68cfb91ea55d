//! Reads: index lookups from every offset, max_bytes (KIP-74), range errors, time lookups.

use super::*;

/// A log whose partition `t-0` holds 60 batches of 1..=4 records over many small segments with
/// a dense index. Returns the offset ranges of the batches.
fn multi_segment(dir: &Path, index_interval_bytes: u32) -> (Log, Vec<(i64, i64)>) {
    let log = open_with_topic(LogConfig { segment_bytes: 1024, index_interval_bytes, ..config(dir) });
    let mut batches = Vec::new();
    for b in 0..60i64 {
        let recs: Vec<Record> = (0..(b % 4 + 1)).map(|i| rec(b * 10 + i, &format!("b{b}r{i}"))).collect();
        let info = log.append("t", 0, &recs, None).unwrap();
        batches.push((info.base_offset, info.last_offset));
    }
    (log, batches)
}

fn check_every_offset(log: &Log, batches: &[(i64, i64)]) {
    for &(base, last) in batches {
        for offset in base..=last {
            let got = log.read("t", 0, offset, 1).unwrap();
            let recs = decode_batches(&got.records).unwrap();
            let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, (base..=last).collect::<Vec<_>>(), "read at {offset}");
        }
    }
}

#[test]
fn read_from_every_offset_returns_its_batch() {
    for interval in [0, 100, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let (log, batches) = multi_segment(dir.path(), interval);
        assert!(files(&dir.path().join("t-0"), "log").len() >= 4);
        check_every_offset(&log, &batches);
        // Same after reopen, when sealed indexes come from disk.
        let cfg = log.config().clone();
        drop(log);
        check_every_offset(&Log::open(cfg).unwrap(), &batches);
    }
}

#[test]
fn max_bytes_takes_whole_batches_but_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(LogConfig { segment_bytes: 1000, ..config(dir.path()) });
    for i in 0..20 {
        log.append("t", 0, &[rec(i, &format!("{i:04}"))], None).unwrap();
    }
    let one = log.read("t", 0, 0, 1).unwrap().records.len();
    assert!(one > 61);
    let batches_in = |max: usize, from: i64| {
        let got = log.read("t", 0, from, max).unwrap();
        assert_eq!(got.records.len() % one, 0, "whole batches only");
        got.records.len() / one
    };
    assert_eq!(batches_in(0, 0), 1, "at least one batch even with max_bytes 0");
    assert_eq!(batches_in(one - 1, 0), 1);
    assert_eq!(batches_in(one, 0), 1);
    assert_eq!(batches_in(3 * one + one / 2, 0), 3);
    // Crosses segment boundaries (1000-byte segments hold fewer than 20 batches).
    assert_eq!(batches_in(usize::MAX, 0), 20);
    assert_eq!(batches_in(12 * one, 5), 12);
    assert_eq!(batches_in(usize::MAX, 19), 1);

    // A batch bigger than max_bytes still comes back whole.
    let big = "x".repeat(5000);
    log.append("t", 0, &[rec(99, &big)], None).unwrap();
    let got = log.read("t", 0, 20, 100).unwrap();
    assert_eq!(values(&decode_batches(&got.records).unwrap()), vec![big]);
}

#[test]
fn out_of_range_offsets_are_distinct_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with_topic(config(dir.path()));
    let empty = log.read("t", 0, 0, 100).unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.high_watermark, 0);
    log.append("t", 0, &[rec(0, "a"), rec(0, "b")], None).unwrap();
    for bad in [-1, 3, i64::MAX] {
        match log.read("t", 0, bad, 100) {
            Err(Error::OffsetOutOfRange { offset, log_start_offset: 0, high_watermark: 2, .. }) => {
                assert_eq!(offset, bad)
            }
            other => panic!("offset {bad}: {other:?}"),
        }
    }
    let at_hw = log.read("t", 0, 2, 100).unwrap();
    assert!(at_hw.records.is_empty());
    assert_eq!((at_hw.high_watermark, at_hw.log_start_offset), (2, 0));
    // Mid-batch offsets return the whole containing batch.
    let mid = log.read("t", 0, 1, 100).unwrap();
    assert_eq!(values(&decode_batches(&mid.records).unwrap()), vec!["a", "b"]);
    assert!(matches!(log.read("t", 1, 0, 1), Err(Error::UnknownPartition { .. })));
    assert!(matches!(log.read("u", 0, 0, 1), Err(Error::UnknownTopic(_))));
}

#[test]
fn offset_for_timestamp_finds_earliest_offset_at_or_after() {
    for interval in [0, 64, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let log =
            open_with_topic(LogConfig { segment_bytes: 700, index_interval_bytes: interval, ..config(dir.path()) });
        // Roughly increasing timestamps with local disorder, like devices with skewed clocks.
        let mut seed: u64 = 42;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as i64
        };
        let mut all = Vec::new();
        for b in 0..50 {
            let recs: Vec<Record> = (0..(b % 3 + 1)).map(|_| rec(1000 + b * 20 + next() % 50 - 25, "v")).collect();
            log.append("t", 0, &recs, None).unwrap();
            all.extend(recs.iter().map(|r| r.timestamp_ms));
        }
        assert!(files(&dir.path().join("t-0"), "log").len() > 3);
        let brute = |ts: i64| all.iter().enumerate().find(|(_, t)| **t >= ts).map(|(o, t)| (o as i64, *t));
        let max = *all.iter().max().unwrap();
        for ts in 900..=max + 2 {
            assert_eq!(log.offset_for_timestamp("t", 0, ts).unwrap(), brute(ts), "ts {ts}");
        }
        assert_eq!(log.offset_for_timestamp("t", 0, max + 1).unwrap(), None);
        // After reopen the sealed segments' time indexes come from disk.
        let cfg = log.config().clone();
        drop(log);
        let log = Log::open(cfg).unwrap();
        for ts in (900..=max).step_by(7) {
            assert_eq!(log.offset_for_timestamp("t", 0, ts).unwrap(), brute(ts), "ts {ts}");
        }
    }
}
