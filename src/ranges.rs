//! Sets of half-open time ranges `[start, end)`, kept sorted, disjoint and merged.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RangeSet(Vec<(i64, i64)>);

impl RangeSet {
    pub fn new() -> Self {
        RangeSet(Vec::new())
    }

    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `[start, end)`, merging with overlapping or touching ranges.
    pub fn insert(&mut self, start: i64, end: i64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let first = self.0.partition_point(|&(_, re)| re < s);
        let mut last = first;
        while last < self.0.len() && self.0[last].0 <= e {
            s = s.min(self.0[last].0);
            e = e.max(self.0[last].1);
            last += 1;
        }
        self.0.splice(first..last, [(s, e)]);
    }

    pub fn union(&mut self, other: &RangeSet) {
        for &(s, e) in &other.0 {
            self.insert(s, e);
        }
    }

    /// The parts of `[start, end)` not in the set.
    pub fn missing(&self, start: i64, end: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut cursor = start;
        for &(s, e) in &self.0 {
            if e <= cursor {
                continue;
            }
            if s >= end {
                break;
            }
            if s > cursor {
                out.push((cursor, s.min(end)));
            }
            cursor = cursor.max(e);
            if cursor >= end {
                break;
            }
        }
        if cursor < end {
            out.push((cursor, end));
        }
        out
    }

    /// The set cut to `[start, end)`.
    pub fn within(&self, start: i64, end: i64) -> RangeSet {
        RangeSet(
            self.0
                .iter()
                .filter(|&&(s, e)| e > start && s < end)
                .map(|&(s, e)| (s.max(start), e.min(end)))
                .collect(),
        )
    }

    /// Takes `[start, end)` out of the set.
    pub fn remove(&mut self, start: i64, end: i64) {
        if start >= end {
            return;
        }
        let mut kept = self.within(i64::MIN, start);
        kept.union(&self.within(end, i64::MAX));
        *self = kept;
    }

    /// True when `[start, end)` is wholly in the set.
    pub fn covers(&self, start: i64, end: i64) -> bool {
        start >= end || self.missing(start, end).is_empty()
    }

    /// The smallest and largest bound, if any.
    pub fn span(&self) -> Option<(i64, i64)> {
        Some((self.0.first()?.0, self.0.last()?.1))
    }

    /// Total length of the ranges.
    pub fn total(&self) -> i64 {
        self.0.iter().map(|&(s, e)| e - s).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inserts_merge_touching_ranges() {
        let mut r = RangeSet::new();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 30);
        assert_eq!(r.ranges(), &[(10, 40)]);
        r.insert(50, 60);
        r.insert(0, 5);
        assert_eq!(r.ranges(), &[(0, 5), (10, 40), (50, 60)]);
        assert_eq!(r.missing(0, 70), vec![(5, 10), (40, 50), (60, 70)]);
        assert_eq!(r.missing(12, 38), vec![]);
        assert!(r.covers(12, 38));
        assert_eq!(r.within(3, 55).ranges(), &[(3, 5), (10, 40), (50, 55)]);
        r.remove(20, 52);
        assert_eq!(r.ranges(), &[(0, 5), (10, 20), (52, 60)]);
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_points(ops in proptest::collection::vec((0i64..100, 0i64..30), 0..20), q in (0i64..100, 0i64..60)) {
            let mut r = RangeSet::new();
            let mut points = std::collections::BTreeSet::new();
            for (s, len) in ops {
                r.insert(s, s + len);
                points.extend(s..s + len);
            }
            // Sorted, disjoint, not touching.
            for w in r.ranges().windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
            let (qs, qe) = (q.0, q.0 + q.1);
            let missing: std::collections::BTreeSet<i64> =
                r.missing(qs, qe).into_iter().flat_map(|(s, e)| s..e).collect();
            let expected: std::collections::BTreeSet<i64> = (qs..qe).filter(|p| !points.contains(p)).collect();
            prop_assert_eq!(missing, expected);
            prop_assert_eq!(r.total() as usize, points.len());
        }
    }
}
