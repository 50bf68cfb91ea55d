//! Read-only inspection of a log directory, safe while a broker appends to it (`fleetmq log`).
//!
//! Invariants: nothing here writes, truncates or locks: segments are read front to back and the
//! scan of a partition stops at the first batch that is incomplete or fails its checks (a batch
//! still being written looks like a torn tail). Memory is bounded by one batch at a time.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use super::{decode, io_err, topic, Result, StoredRecord, TopicInfo};

/// Largest batch the inspector accepts; anything larger is treated as damage.
const MAX_BATCH: usize = 64 << 20;

/// The topics in `dir`, sorted by name.
pub fn topics(dir: &Path) -> Result<Vec<TopicInfo>> {
    let mut out: Vec<TopicInfo> =
        topic::list_topics(dir)?.into_iter().map(|(name, partitions)| TopicInfo { name, partitions }).collect();
    out.sort();
    Ok(out)
}

/// Calls `f` with every record of `partition` of `topic` at or after offset `from`, in offset
/// order, until `f` returns false or the readable end is reached.
pub fn records(
    dir: &Path,
    topic: &str,
    partition: u32,
    from: i64,
    f: &mut dyn FnMut(StoredRecord) -> bool,
) -> Result<()> {
    let pdir = topic::partition_dir(dir, topic, partition);
    let mut segments: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(&pdir)
        .map_err(io_err(&pdir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| Some((p.file_stem()?.to_str()?.parse::<i64>().ok()?, p)))
        .collect();
    segments.sort();
    // Start at the last segment whose base offset is at or below `from`.
    let start = segments.iter().rposition(|(base, _)| *base <= from).unwrap_or(0);
    for (_, path) in &segments[start..] {
        let file = File::open(path).map_err(io_err(path))?;
        let mut reader = BufReader::new(file);
        loop {
            let mut head = [0u8; 12];
            match reader.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(io_err(path)(e)),
            }
            let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            let Ok(len) = usize::try_from(len) else { return Ok(()) };
            if len > MAX_BATCH {
                return Ok(());
            }
            let mut batch = BytesMut::zeroed(12 + len);
            batch[..12].copy_from_slice(&head);
            match reader.read_exact(&mut batch[12..]) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(io_err(path)(e)),
            }
            let Ok(records) = decode::decode_batches(&Bytes::from(batch)) else { return Ok(()) };
            for r in records.into_iter().filter(|r| r.offset >= from) {
                if !f(r) {
                    return Ok(());
                }
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
        assert_eq!(std::fs::metadata(&last).unwrap().len(), len - 3, "nothing was truncated");
    }
}
