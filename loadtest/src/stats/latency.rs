//! Latency distributions: an HDR histogram in microseconds with a JSON form that merges exactly.
//!
//! Invariants: values are recorded in microseconds, clamped into [`LOWEST_US`, `HIGHEST_US`] (a
//! negative or zero latency from clock adjustments counts as 1 µs, anything above an hour as an
//! hour); three significant digits. [`LatencyData`] lists (bucket value, count) pairs; rebuilding a
//! histogram from it lands every count in the same bucket, so merging worker results is lossless.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Smallest trackable latency, in microseconds.
pub const LOWEST_US: u64 = 1;
/// Largest trackable latency (one hour), in microseconds.
pub const HIGHEST_US: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;

/// Why a histogram could not be built or merged.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The histogram parameters were rejected.
    #[error("cannot create latency histogram: {0:?}")]
    Create(hdrhistogram::CreationError),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// A latency histogram (microseconds).
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

/// Percentiles of one distribution, in microseconds (all 0 when nothing was recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of recorded values.
    pub count: u64,
    /// Smallest value.
    pub min_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
}

/// Serializable, mergeable form of a [`Latency`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LatencyData {
    /// (bucket value in µs, count) pairs for every non-empty bucket.
    pub buckets: Vec<(u64, u64)>,
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Result<Self> {
        Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).map(|hist| Latency { hist }).map_err(Error::Create)
    }

    /// Records one latency in microseconds (clamped to the trackable range).
    pub fn record_us(&mut self, us: u64) {
        self.hist.saturating_record(us.clamp(LOWEST_US, HIGHEST_US));
    }

    /// Records a latency given as send and receive times in nanoseconds.
    pub fn record_ns_span(&mut self, sent_ns: u64, received_ns: u64) {
        self.record_us(received_ns.saturating_sub(sent_ns) / 1_000);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        for v in other.hist.iter_recorded() {
            self.hist.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    /// Adds every value of a serialized histogram.
    pub fn merge_data(&mut self, data: &LatencyData) {
        for &(value, count) in &data.buckets {
            self.hist.saturating_record_n(value.clamp(LOWEST_US, HIGHEST_US), count);
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The serializable form.
    pub fn data(&self) -> LatencyData {
        LatencyData {
            buckets: self.hist.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect(),
        }
    }

    /// Percentile summary.
    pub fn summary(&self) -> Summary {
        if self.hist.is_empty() {
            return Summary::default();
        }
        let h = &self.hist;
        Summary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    /// Points of the percentile curve for plotting: (`x`, latency µs) where `x = -log10(1 - q)`
    /// (0 = p0, 1 = p90, 2 = p99, 3 = p99.9 …), from q = 0 up to `decades` nines, `steps` per decade.
    pub fn percentile_curve(&self, decades: u32, steps: u32) -> Vec<(f64, u64)> {
        if self.hist.is_empty() || steps == 0 {
            return Vec::new();
        }
        let total = decades * steps;
        (0..=total)
            .map(|i| {
                let x = f64::from(i) / f64::from(steps);
                let q = 1.0 - 10f64.powf(-x);
                (x, self.hist.value_at_quantile(q.clamp(0.0, 1.0)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(a: u64, b: u64) -> bool {
        a.abs_diff(b) * 1000 <= b.max(1)
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut l = Latency::new().unwrap();
        for us in 1..=10_000 {
            l.record_us(us);
        }
        let s = l.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        assert!(within(s.p50_us, 5_000), "{s:?}");
        assert!(within(s.p90_us, 9_000), "{s:?}");
        assert!(within(s.p99_us, 9_900), "{s:?}");
        assert!(within(s.p999_us, 9_990), "{s:?}");
        assert!(within(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5_000.5).abs() < 10.0);
    }

    #[test]
    fn out_of_range_values_are_clamped_not_dropped() {
        let mut l = Latency::new().unwrap();
        l.record_us(0);
        l.record_ns_span(2_000, 1_000);
        l.record_us(u64::MAX);
        let s = l.summary();
        assert_eq!(s.count, 3);
        assert_eq!(s.min_us, 1);
        assert!(within(s.max_us, HIGHEST_US));
    }

    #[test]
    fn data_roundtrip_and_merge_are_exact() {
        let mut a = Latency::new().unwrap();
        let mut b = Latency::new().unwrap();
        for us in [10, 20, 30, 1_000, 123_456] {
            a.record_us(us);
            b.record_us(us * 3);
        }
        let mut rebuilt = Latency::new().unwrap();
        rebuilt.merge_data(&a.data());
        assert_eq!(rebuilt.summary(), a.summary());
        let json = serde_json::to_string(&b.data()).unwrap();
        rebuilt.merge_data(&serde_json::from_str(&json).unwrap());
        let mut direct = a.clone();
        direct.merge(&b);
        assert_eq!(rebuilt.summary(), direct.summary());
        assert_eq!(direct.count(), 10);
    }

    #[test]
    fn empty_histogram_summarizes_to_zero_and_has_no_curve() {
        let l = Latency::new().unwrap();
        assert_eq!(l.summary(), Summary::default());
        assert!(l.percentile_curve(4, 10).is_empty());
    }

    #[test]
    fn percentile_curve_is_monotonic_and_spans_the_range() {
        let mut l = Latency::new().unwrap();
        for us in 1..=100_000 {
            l.record_us(us);
        }
        let c = l.percentile_curve(3, 4);
        assert_eq!(c.len(), 13);
        assert!(c.windows(2).all(|w| w[0].1 <= w[1].1));
        assert!(within(c[4].1, 90_000), "{:?}", c[4]);
        assert!(within(c[8].1, 99_000), "{:?}", c[8]);
    }
}
