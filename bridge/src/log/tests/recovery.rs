//! Crash recovery: torn tails, CRC damage, lost or corrupt indexes, stray files.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use super::*;

/// Appends five 1-record batches (values b0..b4); returns the log and each batch's size.
fn five_batches(cfg: LogConfig) -> (Log, Vec<u64>) {
    let log = open_with_topic(cfg);
    let mut sizes = Vec::new();
    for i in 0..5 {
        log.append("t", 0, &[rec(i, &format!("b{i}"))], None).unwrap();
        sizes.push(log.read("t", 0, i, 1).unwrap().records.len() as u64);
    }
    (log, sizes)
}

fn active_log(dir: &Path) -> PathBuf {
    files(&dir.join("t-0"), "log").pop().unwrap()
}

fn assert_recovered_to(log: &Log, dir: &Path, kept: usize, sizes: &[u64]) {
    let want: Vec<String> = (0..kept).map(|i| format!("b{i}")).collect();
    assert_eq!(values(&read_all(log, "t", 0)), want);
    assert_eq!(log.offsets("t", 0).unwrap().high_watermark, kept as i64);
    let len = std::fs::metadata(active_log(dir)).unwrap().len();
    assert_eq!(len, sizes[..kept].iter().sum::<u64>(), "file cut to whole batches");
    let info = log.append("t", 0, &[rec(9, "next")], None).unwrap();
    assert_eq!(info.base_offset, kept as i64);
    assert_eq!(values(&read_all(log, "t", 0)).last().unwrap(), "next");
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    for cut in [1, 30, 61] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig { fsync: true, ..config(dir.path()) };
        let (log, sizes) = five_batches(cfg.clone());
        drop(log);
        let path = active_log(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - cut).unwrap();
        let log = Log::open(cfg).unwrap();
        assert_recovered_to(&log, dir.path(), 4, &sizes);
    }
}

#[test]
fn garbage_after_last_batch_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sizes) = five_batches(config(dir.path()));
    drop(log);
    let path = active_log(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 100], len).unwrap();
    let log = Log::open(config(dir.path())).unwrap();
    assert_recovered_to(&log, dir.path(), 5, &sizes);
}

#[test]
fn flipped_byte_fails_crc_and_truncates_from_that_batch() {
    // Last batch damaged: only it goes. Middle batch damaged: it and everything after go.
    for (damaged, kept) in [(4usize, 4usize), (2, 2)] {
        let dir = tempfile::tempdir().unwrap();
        let (log, sizes) = five_batches(config(dir.path()));
        drop(log);
        let path = active_log(dir.path());
        let at = sizes[..damaged].iter().sum::<u64>() + sizes[damaged] - 2; // inside the value
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
        let log = Log::open(config(dir.path())).unwrap();
        assert_recovered_to(&log, dir.path(), kept, &sizes);
    }
}

/// A multi-segment log with a dense index; returns the log and every index file's bytes.
fn indexed_log(dir: &Path) -> (LogConfig, Vec<(PathBuf, Vec<u8>)>) {
    let cfg = LogConfig { segment_bytes: 800, index_interval_bytes: 150, ..config(dir) };
    let log = open_with_topic(cfg.clone());
    for i in 0..60 {
        log.append("t", 0, &[rec(1000 + i * 3, &format!("b{i}"))], None).unwrap();
    }
    drop(log);
    let pdir = dir.join("t-0");
    let mut indexes: Vec<_> = files(&pdir, "index");
    indexes.extend(files(&pdir, "timeindex"));
    let snapshot = indexes
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    (cfg, snapshot)
}

fn assert_indexes_equal(snapshot: &[(PathBuf, Vec<u8>)]) {
    for (path, bytes) in snapshot {
        assert!(!bytes.is_empty() || path.extension().unwrap() == "timeindex");
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
}

fn assert_all_readable(log: &Log) {
    for offset in 0..60 {
        let got = log.read("t", 0, offset, 1).unwrap();
        assert_eq!(values(&decode_batches(&got.records).unwrap()), vec![format!("b{offset}")]);
    }
    assert_eq!(log.offset_for_timestamp("t", 0, 1000 + 31 * 3 - 1).unwrap(), Some((31, 1093)));
}

#[test]
fn missing_indexes_are_rebuilt_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, snapshot) = indexed_log(dir.path());
    assert!(snapshot.len() >= 6, "several segments with indexes");
    for (path, _) in &snapshot {
        std::fs::remove_file(path).unwrap();
    }
    let log = Log::open(cfg).unwrap();
    assert_indexes_equal(&snapshot);
    assert_all_readable(&log);
}

#[test]
fn inconsistent_sealed_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, snapshot) = indexed_log(dir.path());
    let sealed_index = &snapshot[0].0;
    let sealed_time = snapshot.iter().find(|(p, _)| p.extension().unwrap() == "timeindex").unwrap();
    // Offset index: entries pointing at the wrong place. Time index: torn final entry.
    let mut bad = snapshot[0].1.clone();
    bad.reverse();
    std::fs::write(sealed_index, bad).unwrap();
    std::fs::write(&sealed_time.0, &sealed_time.1[..sealed_time.1.len() - 5]).unwrap();
    let log = Log::open(cfg.clone()).unwrap();
    assert_indexes_equal(&snapshot);
    assert_all_readable(&log);
    drop(log);
    // An index whose last entry points into the middle of a batch is caught too.
    let mut shifted = snapshot[0].1.clone();
    let n = shifted.len();
    shifted[n - 1] = shifted[n - 1].wrapping_add(1);
    std::fs::write(sealed_index, shifted).unwrap();
    let log = Log::open(cfg).unwrap();
    assert_indexes_equal(&snapshot);
    assert_all_readable(&log);
}

#[test]
fn torn_sealed_segment_is_served_up_to_its_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = indexed_log(dir.path());
    let logs = files(&dir.path().join("t-0"), "log");
    let next_base: i64 = logs[2].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let len = std::fs::metadata(&logs[1]).unwrap().len();
    OpenOptions::new().write(true).open(&logs[1]).unwrap().set_len(len - 3).unwrap();
    let log = Log::open(cfg).unwrap();
    // The torn batch (offset next_base - 1) is lost; reads step over the gap.
    let lost = next_base - 1;
    let got = log.read("t", 0, lost, 1).unwrap();
    assert_eq!(decode_batches(&got.records).unwrap()[0].offset, next_base);
    let offsets: Vec<i64> = read_all(&log, "t", 0).iter().map(|r| r.offset).collect();
    let want: Vec<i64> = (0..60).filter(|o| *o != lost).collect();
    assert_eq!(offsets, want);
    assert_eq!(log.offsets("t", 0).unwrap().high_watermark, 60);
}

#[test]
fn stray_files_and_empty_partition_dirs_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let log = Log::open(cfg.clone()).unwrap();
    log.ensure_topic("t", 2).unwrap();
    log.append("t", 1, &[rec(0, "gone")], None).unwrap();
    drop(log);
    let p1 = dir.path().join("t-1");
    for f in std::fs::read_dir(&p1).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let orphan = dir.path().join("t-0").join("00000000000000000099.index");
    std::fs::write(&orphan, [0u8; 8]).unwrap();
    std::fs::write(dir.path().join("t-0").join("notes.txt"), "kept").unwrap();
    let log = Log::open(cfg).unwrap();
    assert!(!orphan.exists(), "index without a log is removed");
    assert!(dir.path().join("t-0").join("notes.txt").exists());
    assert_eq!(log.offsets("t", 1).unwrap(), PartitionOffsets { log_start_offset: 0, high_watermark: 0 });
    assert_eq!(files(&p1, "log").len(), 1, "empty partition gets an empty segment");
    assert_eq!(log.append("t", 1, &[rec(0, "new")], None).unwrap().base_offset, 0);
}

#[test]
fn corrupt_topic_metadata_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.topic"), "garbage").unwrap();
    let err = Log::open(config(dir.path())).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }));
    assert!(err.to_string().contains("t.topic"), "{err}");
}
