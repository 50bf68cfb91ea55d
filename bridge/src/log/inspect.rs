//! Read-only inspection of a log directory, safe while a broker appends to it (`fleetmq log`).
//!
//! Invariants: nothing here writes, truncates or locks: segments are read front to back and the
//! scan of a partition stops at the first batch that is incomplete or fails its checks (a batch
//! still being written looks like a torn tail); a segment deleted by retention meanwhile is
//! skipped. Memory is bounded by one batch at a time, and batches before the wanted offset are
//! skipped by their header.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::{decode, io_err, topic, Result, StoredRecord, TopicInfo};

/// The topics in `dir`, sorted by name.
pub fn topics(dir: &Path) -> Result<Vec<TopicInfo>> {
    let mut out: Vec<TopicInfo> =
        topic::list_topics(dir, false)?.into_iter().map(|(name, partitions)| TopicInfo { name, partitions }).collect();
    out.sort();
    Ok(out)
}

/// Calls `f` with every record of `partition` of `topic` at or after offset `from`, in offset
/// order, until `f` returns false or the readable end is reached. Batches wholly below `from`
/// are skipped by their header, not decoded.
pub fn records(
    dir: &Path,
    topic: &str,
    partition: u32,
    from: i64,
    f: &mut dyn FnMut(StoredRecord) -> bool,
) -> Result<()> {
    walk(dir, topic, partition, from, &mut |_, _, batch| {
        let Some(batch) = batch else { return Some(true) };
        let Ok(records) = decode::decode_batches(&batch) else { return None };
        Some(records.into_iter().filter(|r| r.offset >= from).all(&mut *f))
    })
}

/// The first readable offset of a partition and the next offset to be written (its high
/// watermark), from batch headers only.
pub fn offsets(dir: &Path, topic: &str, partition: u32) -> Result<(i64, i64)> {
    // Segments are named after their first offset; only the newest one's headers are walked.
    let segments = segments(dir, topic, partition)?;
    let first = segments.first().map(|(base, _)| *base);
    // An empty newest segment (just rolled) starts at the next offset.
    let mut next = segments.last().map_or(0, |(base, _)| *base);
    walk(dir, topic, partition, i64::MAX, &mut |_, last, _| {
        next = last + 1;
        Some(true)
    })?;
    Ok((first.unwrap_or(next).min(next), next))
}

/// The segment files of a partition with their base offsets, oldest first.
fn segments(dir: &Path, topic: &str, partition: u32) -> Result<Vec<(i64, std::path::PathBuf)>> {
    let pdir = topic::partition_dir(dir, topic, partition);
    let mut segments: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&pdir)
        .map_err(io_err(&pdir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse::<i64>().ok()?, p)))
        .collect();
    segments.sort();
    Ok(segments)
}

/// Size of the batch header fields up to and including `lastOffsetDelta`.
const HEAD: usize = 27;

/// Visits the batches of a partition in order: `visit(base offset, last offset, bytes)` gets the
/// whole batch only when its last offset is at or after `from`. `Some(false)` stops the walk,
/// `None` marks the batch unreadable (the walk ends there, as at a torn tail).
fn walk(
    dir: &Path,
    topic: &str,
    partition: u32,
    from: i64,
    visit: &mut dyn FnMut(i64, i64, Option<Bytes>) -> Option<bool>,
) -> Result<()> {
    let segments = segments(dir, topic, partition)?;
    // Start at the last segment whose base offset is at or below `from`.
    let start = segments.iter().rposition(|(base, _)| *base <= from).unwrap_or(0);
    for (_, path) in &segments[start..] {
        let file = match File::open(path) {
            Ok(f) => f,
            // Deleted by retention since the listing: its records are gone.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        let mut left = file.metadata().map_err(io_err(path))?.len();
        let mut reader = BufReader::new(file);
        loop {
            let mut head = [0u8; HEAD];
            if left < HEAD as u64 {
                break;
            }
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io_err(path)(e)),
            }
            let base = i64::from_be_bytes(head[..8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(head[8..12].try_into().unwrap_or_default());
            let last = base + i64::from(i32::from_be_bytes(head[23..27].try_into().unwrap_or_default()));
            // A length past the end of the file is a batch still being written (or damage).
            let total = usize::try_from(len).ok().map(|l| l + 12).filter(|t| *t >= HEAD && *t as u64 <= left);
            let Some(total) = total else { return Ok(()) };
            left -= total as u64;
            let batch = if last < from {
                reader.seek_relative((total - HEAD) as i64).map_err(io_err(path))?;
                None
            } else {
                let mut batch = BytesMut::zeroed(total);
                batch[..HEAD].copy_from_slice(&head);
                match reader.read_exact(&mut batch[HEAD..]) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(io_err(path)(e)),
                }
                Some(batch.freeze())
            };
            match visit(base, last, batch) {
                Some(true) => {}
                Some(false) | None => return Ok(()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Log, LogConfig, Record};

    #[test]
    fn reads_topics_and_records_from_an_offset_and_stops_at_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = LogConfig::new(dir.path());
        config.segment_bytes = 300;
        let log = Log::open(config).unwrap();
        log.ensure_topic("t", 2).unwrap();
        for n in 0..20 {
            let r = Record { timestamp_ms: n, value: Some(Bytes::from(format!("v{n}"))), ..Default::default() };
            log.append("t", 1, &[r], None).unwrap();
        }
        assert_eq!(topics(dir.path()).unwrap(), vec![TopicInfo { name: "t".into(), partitions: 2 }]);
        let mut got = Vec::new();
        records(dir.path(), "t", 1, 7, &mut |r| {
            got.push((r.offset, r.value.unwrap()));
            true
        })
        .unwrap();
        let expected: Vec<(i64, Bytes)> = (7..20).map(|n| (n, Bytes::from(format!("v{n}")))).collect();
        assert_eq!(got, expected, "across segments, from offset 7");
        assert_eq!(offsets(dir.path(), "t", 1).unwrap(), (0, 20));
        assert_eq!(offsets(dir.path(), "t", 0).unwrap(), (0, 0), "an empty partition");
        // A batch being written (torn) ends the scan without an error or a write.
        let pdir = dir.path().join("t-1");
        let last = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .max()
            .unwrap();
        let len = std::fs::metadata(&last).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 3).unwrap();
        let mut n = 0;
        records(dir.path(), "t", 1, 0, &mut |_| {
            n += 1;
            true
        })
        .unwrap();
        assert_eq!(n, 19, "the torn last batch is not shown");
        assert_eq!(offsets(dir.path(), "t", 1).unwrap(), (0, 19));
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len - 3, "nothing was truncated");
    }
}
