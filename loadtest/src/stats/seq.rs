//! Per-stream sequence accounting: which sequence numbers of one publisher one receiver has seen.
//!
//! Invariants: [`SeqTracker`] keeps every sequence below `floor` as received and a bit window above
//! it, so memory is O(1) while delivery is in order and O(gap / 8) bytes after a loss; the window is
//! capped at [`MAX_WINDOW_SEQS`] sequence numbers above the floor (later ones are counted as
//! `beyond_window`, never stored). [`RangeSet`] holds sorted, disjoint, non-adjacent half-open ranges.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// How far above the lowest missing sequence number a tracker remembers receptions (2^28 messages,
/// 32 MiB of bits); only reachable when a loss happens and then over 268 million more messages arrive.
pub const MAX_WINDOW_SEQS: u64 = 1 << 28;

/// What one reception was, relative to what the stream had seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time this sequence number arrived, in order (above everything seen before).
    New,
    /// First time this sequence number arrived, but a higher one had already arrived.
    Reordered,
    /// This sequence number had arrived before.
    Duplicate,
    /// Too far above the lowest missing number to be tracked (see [`MAX_WINDOW_SEQS`]).
    BeyondWindow,
}

/// Online tracker for one (receiver, publisher) stream.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    floor_word: u64,
    window: VecDeque<u64>,
    max_seen: Option<u64>,
    /// Every reception, duplicates included.
    pub deliveries: u64,
    /// Receptions of a sequence number already received.
    pub duplicates: u64,
    /// First receptions that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// Receptions ignored because they were beyond the tracking window.
    pub beyond_window: u64,
}

impl SeqTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one reception of `seq` and classifies it.
    pub fn observe(&mut self, seq: u32) -> Seen {
        let seq = u64::from(seq);
        self.deliveries += 1;
        let floor = self.floor_word * 64;
        if seq < floor {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        if seq - floor >= MAX_WINDOW_SEQS {
            self.beyond_window += 1;
            return Seen::BeyondWindow;
        }
        let Ok(word_idx) = usize::try_from((seq - floor) / 64) else {
            self.beyond_window += 1;
            return Seen::BeyondWindow;
        };
        let bit = 1u64 << (seq % 64);
        if self.window.len() <= word_idx {
            self.window.resize(word_idx + 1, 0);
        }
        let Some(word) = self.window.get_mut(word_idx) else {
            self.beyond_window += 1;
            return Seen::BeyondWindow;
        };
        if *word & bit != 0 {
            self.duplicates += 1;
            return Seen::Duplicate;
        }
        *word |= bit;
        while self.window.front() == Some(&u64::MAX) {
            self.window.pop_front();
            self.floor_word += 1;
        }
        let reordered = self.max_seen.is_some_and(|m| seq < m);
        if !reordered {
            self.max_seen = Some(seq);
        }
        if reordered {
            self.out_of_order += 1;
            Seen::Reordered
        } else {
            Seen::New
        }
    }

    /// The distinct sequence numbers received so far.
    pub fn received(&self) -> RangeSet {
        let mut set = RangeSet::default();
        set.push_range(0, self.floor_word * 64);
        let mut word_start = self.floor_word * 64;
        for word in &self.window {
            let mut bits = *word;
            while bits != 0 {
                let lo = u64::from(bits.trailing_zeros());
                let run = u64::from((bits >> lo).trailing_ones());
                set.push_range(word_start + lo, word_start + lo + run);
                bits = if lo + run >= 64 { 0 } else { bits & !(((1u64 << run) - 1) << lo) };
            }
            word_start += 64;
        }
        set
    }
}

/// A set of `u64` as sorted, disjoint, non-adjacent half-open ranges `[start, end)`; compact in
/// JSON (one range for a stream delivered without loss) and mergeable across worker processes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<(u64, u64)>", into = "Vec<(u64, u64)>")]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    /// Builds a set from arbitrary ranges (normalizing order, overlap and adjacency).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Self {
        let mut all: Vec<(u64, u64)> = ranges.into_iter().collect();
        all.sort_unstable();
        let mut set = RangeSet::default();
        for (s, e) in all {
            set.push_range(s, e);
        }
        set
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// Appends a range that starts at or after the end of the last one (internal fast path).
    fn push_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        match self.ranges.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => self.ranges.push((start, end)),
        }
    }

    /// Number of values in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// True when the set holds no value.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of values strictly below `limit`.
    pub fn count_below(&self, limit: u64) -> u64 {
        self.ranges.iter().map(|&(s, e)| e.min(limit).saturating_sub(s)).sum()
    }

    /// Adds `other` to this set and returns how many of its values were already present.
    pub fn union_with(&mut self, other: &RangeSet) -> u64 {
        let before = self.len();
        let merged = RangeSet::from_ranges(self.ranges.iter().chain(other.ranges.iter()).copied());
        let overlap = (before + other.len()).saturating_sub(merged.len());
        *self = merged;
        overlap
    }
}

impl From<Vec<(u64, u64)>> for RangeSet {
    fn from(ranges: Vec<(u64, u64)>) -> Self {
        RangeSet::from_ranges(ranges)
    }
}

impl From<RangeSet> for Vec<(u64, u64)> {
    fn from(set: RangeSet) -> Self {
        set.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(t: &mut SeqTracker, seqs: &[u32]) -> Vec<Seen> {
        seqs.iter().map(|s| t.observe(*s)).collect()
    }

    #[test]
    fn in_order_stream_is_one_range_and_constant_memory() {
        let mut t = SeqTracker::new();
        for s in 0..10_000u32 {
            assert_eq!(t.observe(s), Seen::New);
        }
        assert_eq!(t.received().ranges(), &[(0, 10_000)]);
        assert!(t.window.len() <= 1, "window kept {} words", t.window.len());
        assert_eq!((t.deliveries, t.duplicates, t.out_of_order), (10_000, 0, 0));
    }

    #[test]
    fn gaps_reordering_and_duplicates_are_classified() {
        let mut t = SeqTracker::new();
        let seen = feed(&mut t, &[0, 1, 3, 2, 2, 5, 1, 70, 4]);
        use Seen::*;
        assert_eq!(seen, vec![New, New, New, Reordered, Duplicate, New, Duplicate, New, Reordered]);
        assert_eq!(t.received().ranges(), &[(0, 6), (70, 71)]);
        assert_eq!((t.deliveries, t.duplicates, t.out_of_order), (9, 2, 2));
    }

    #[test]
    fn duplicate_of_a_lost_message_is_not_possible_but_late_arrival_fills_the_gap() {
        let mut t = SeqTracker::new();
        feed(&mut t, &[0, 2, 3]);
        assert_eq!(t.received().count_below(4), 3);
        assert_eq!(t.observe(1), Seen::Reordered);
        assert_eq!(t.observe(1), Seen::Duplicate);
        assert_eq!(t.received().ranges(), &[(0, 4)]);
    }

    #[test]
    fn duplicates_below_the_floor_after_words_are_retired() {
        let mut t = SeqTracker::new();
        for s in 0..200u32 {
            t.observe(s);
        }
        assert_eq!(t.floor_word, 3);
        assert_eq!(t.observe(5), Seen::Duplicate);
        assert_eq!(t.observe(199), Seen::Duplicate);
        assert_eq!(t.duplicates, 2);
    }

    #[test]
    fn word_boundaries_and_full_words_roundtrip_to_ranges() {
        let mut t = SeqTracker::new();
        for s in (64..192u32).chain([1, 63, 300]) {
            t.observe(s);
        }
        assert_eq!(t.received().ranges(), &[(1, 2), (63, 192), (300, 301)]);
    }

    #[test]
    fn sequence_far_beyond_the_window_is_not_stored() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(u32::MAX), Seen::BeyondWindow);
        assert_eq!(t.beyond_window, 1);
        assert!(t.window.is_empty());
        assert_eq!(t.observe(0), Seen::New);
    }

    #[test]
    fn range_set_union_counts_overlap() {
        let mut a = RangeSet::from_ranges([(0, 10), (20, 30)]);
        let b = RangeSet::from_ranges([(5, 25), (40, 41)]);
        assert_eq!(a.union_with(&b), 10);
        assert_eq!(a.ranges(), &[(0, 30), (40, 41)]);
        assert_eq!(a.len(), 31);
        assert_eq!(a.count_below(25), 25);
        assert_eq!(a.count_below(100), 31);
        let adj = RangeSet::from_ranges([(0, 5), (5, 7), (3, 4), (9, 9)]);
        assert_eq!(adj.ranges(), &[(0, 7)]);
    }

    #[test]
    fn range_set_json_is_a_list_of_pairs() {
        let s = RangeSet::from_ranges([(0, 3), (7, 9)]);
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, "[[0,3],[7,9]]");
        assert_eq!(serde_json::from_str::<RangeSet>(&j).unwrap(), s);
        let messy: RangeSet = serde_json::from_str("[[7,9],[0,3],[2,4],[5,5]]").unwrap();
        assert_eq!(messy.ranges(), &[(0, 4), (7, 9)]);
    }
}
