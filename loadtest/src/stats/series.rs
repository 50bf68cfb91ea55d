//! Per-second event counts since the run's common start time (`t0`), for throughput-over-time.
//!
//! Invariants: bucket `i` counts events with `t0 + i s <= time < t0 + (i + 1) s`; events before
//! `t0` go to bucket 0; the series grows on demand up to [`MAX_SECONDS`] (later events land in the
//! last bucket), so a runaway clock cannot exhaust memory.

use serde::{Deserialize, Serialize};

/// Longest series kept (one week of seconds).
pub const MAX_SECONDS: usize = 7 * 24 * 3600;

/// Event counts per second.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Series {
    /// Count per second since `t0`.
    pub per_second: Vec<u64>,
}

impl Series {
    /// Bucket index for an event at `at_ns` given the start `t0_ns` (both ns since the epoch).
    pub fn bucket(t0_ns: u64, at_ns: u64) -> usize {
        let secs = at_ns.saturating_sub(t0_ns) / 1_000_000_000;
        usize::try_from(secs).unwrap_or(usize::MAX).min(MAX_SECONDS - 1)
    }

    /// Adds `n` events to bucket `idx` (clamped to [`MAX_SECONDS`]).
    pub fn add(&mut self, idx: usize, n: u64) {
        let idx = idx.min(MAX_SECONDS - 1);
        if self.per_second.len() <= idx {
            self.per_second.resize(idx + 1, 0);
        }
        if let Some(slot) = self.per_second.get_mut(idx) {
            *slot += n;
        }
    }

    /// Adds another series bucket by bucket.
    pub fn merge(&mut self, other: &Series) {
        for (i, n) in other.per_second.iter().enumerate() {
            if *n > 0 {
                self.add(i, *n);
            }
        }
    }

    /// Sum of all buckets.
    pub fn total(&self) -> u64 {
        self.per_second.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketing_by_whole_seconds_since_t0() {
        let t0 = 1_000_000_000_000;
        assert_eq!(Series::bucket(t0, t0), 0);
        assert_eq!(Series::bucket(t0, t0 + 999_999_999), 0);
        assert_eq!(Series::bucket(t0, t0 + 1_000_000_000), 1);
        assert_eq!(Series::bucket(t0, t0 - 5), 0);
        assert_eq!(Series::bucket(0, u64::MAX), MAX_SECONDS - 1);
    }

    #[test]
    fn add_and_merge_sum_per_bucket() {
        let mut a = Series::default();
        a.add(0, 2);
        a.add(3, 1);
        let mut b = Series::default();
        b.add(1, 5);
        b.add(3, 4);
        b.add(5, 1);
        a.merge(&b);
        assert_eq!(a.per_second, vec![2, 5, 0, 5, 0, 1]);
        assert_eq!(a.total(), 13);
    }
}
