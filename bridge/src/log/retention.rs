//! Retention: deleting a partition's oldest sealed segments by age and by total size.
//!
//! Invariants: only whole sealed segments are deleted, always a prefix (oldest first), never the
//! active segment, so the log start offset only moves forward onto a segment boundary and the
//! remaining offsets stay dense. Readers holding a snapshot of a deleted segment keep reading it
//! through their open file handle.

use super::partition::{sync_dir, Partition};
use super::{PartitionRetention, Result};

/// The retention limits that apply to every partition.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Maximum age of a sealed segment's newest record.
    pub retention_ms: Option<u64>,
    /// Maximum total bytes of a partition.
    pub retention_bytes: Option<u64>,
}

impl Partition {
    /// Deletes sealed segments whose newest record is older than `retention_ms` before `now_ms`,
    /// then more while the partition is larger than `retention_bytes`. Returns what was deleted,
    /// or `None` when nothing was.
    pub(crate) fn enforce_retention(&mut self, now_ms: i64, limits: Limits) -> Result<Option<PartitionRetention>> {
        let cutoff = limits.retention_ms.map(|ms| now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)));
        let mut total: u64 = self.sealed.iter().map(|s| s.size()).sum::<u64>() + self.active.size();
        let mut doomed = 0;
        for seg in &self.sealed {
            // A segment with no records holds nothing worth keeping.
            let expired = match (cutoff, seg.max_timestamp()) {
                (Some(cutoff), Some(newest)) => newest < cutoff,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let oversized = limits.retention_bytes.is_some_and(|max| total > max);
            if !expired && !oversized {
                break;
            }
            total -= seg.size();
            doomed += 1;
        }
        if doomed == 0 {
            return Ok(None);
        }
        let mut report = PartitionRetention {
            topic: self.topic.clone(),
            partition: self.id,
            deleted_segments: 0,
            deleted_bytes: 0,
            log_start_offset: self.log_start_offset(),
        };
        let mut failure = None;
        for _ in 0..doomed {
            let Some(seg) = self.sealed.first() else {
                break;
            };
            if let Err(e) = seg.delete_files() {
                failure = Some(e);
                break;
            }
            let seg = self.sealed.remove(0);
            report.deleted_segments += 1;
            report.deleted_bytes += seg.size();
        }
        report.log_start_offset = self.log_start_offset();
        if report.deleted_segments > 0 {
            sync_dir(&self.dir)?;
            tracing::info!(
                topic = %self.topic,
                partition = self.id,
                segments = report.deleted_segments,
                bytes = report.deleted_bytes,
                log_start_offset = report.log_start_offset,
                "retention deleted segments"
            );
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(Some(report)),
        }
    }
}
