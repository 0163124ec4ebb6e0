//! The sequence ledger: exactly which messages a consumer got, missed, got twice
//! or got out of order.
//!
//! Each (producer, channel) pair numbers its messages 0, 1, 2, ... with no
//! gaps, so a consumer needs only the next sequence it expects and the list of
//! holes below it. Memory grows with the number of loss events, never with the
//! number of messages.

/// What one arrival turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next message in order.
    InOrder,
    /// A message past the next expected one: the `n` in between are missing (for now).
    AfterGap(u64),
    /// A first delivery that fills a hole left earlier.
    Late,
    /// A message that was already delivered.
    Duplicate,
}

/// The ledger of one (consumer, producer, channel) sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeqLedger {
    /// One past the highest sequence seen.
    next: u64,
    /// Holes `[start, end)` below `next`, sorted and disjoint.
    gaps: Vec<(u64, u64)>,
}

impl SeqLedger {
    /// Records the arrival of sequence number `seq`.
    #[inline]
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq == self.next {
            self.next += 1;
            return Arrival::InOrder;
        }
        if seq > self.next {
            let skipped = seq - self.next;
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return Arrival::AfterGap(skipped);
        }
        self.fill(seq)
    }

    #[cold]
    fn fill(&mut self, seq: u64) -> Arrival {
        // The hole containing seq, if any: the last one starting at or before it.
        let idx = self.gaps.partition_point(|&(start, _)| start <= seq);
        if idx == 0 {
            return Arrival::Duplicate;
        }
        let (start, end) = self.gaps[idx - 1];
        if seq >= end {
            return Arrival::Duplicate;
        }
        match (seq == start, seq + 1 == end) {
            (true, true) => {
                self.gaps.remove(idx - 1);
            }
            (true, false) => self.gaps[idx - 1].0 = seq + 1,
            (false, true) => self.gaps[idx - 1].1 = seq,
            (false, false) => {
                self.gaps[idx - 1].1 = seq;
                self.gaps.insert(idx, (seq + 1, end));
            }
        }
        Arrival::Late
    }

    /// How many sequence numbers in `[lo, hi)` were never delivered.
    pub fn missing_in(&self, lo: u64, hi: u64) -> u64 {
        let overlap = |s: u64, e: u64| e.min(hi).saturating_sub(s.max(lo));
        let holes: u64 = self.gaps.iter().map(|&(s, e)| overlap(s, e)).sum();
        holes + overlap(self.next, u64::MAX)
    }

    /// Whether `seq` has been delivered.
    pub fn has(&self, seq: u64) -> bool {
        seq < self.next && self.missing_in(seq, seq + 1) == 0
    }

    /// One past the highest sequence seen.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Number of holes currently tracked (memory use is proportional to this).
    pub fn gap_count(&self) -> usize {
        self.gaps.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_loss() {
        let mut l = SeqLedger::default();
        for s in 0..1000 {
            assert_eq!(l.record(s), Arrival::InOrder);
        }
        assert_eq!(l.missing_in(0, 1000), 0);
        assert_eq!(l.missing_in(0, 1010), 10, "the tail that never came is lost");
        assert_eq!(l.gap_count(), 0);
    }

    #[test]
    fn gaps_late_fills_and_duplicates() {
        let mut l = SeqLedger::default();
        let arrivals: Vec<_> = [0, 1, 5, 6, 10].into_iter().map(|s| l.record(s)).collect();
        use Arrival::*;
        assert_eq!(arrivals, [InOrder, InOrder, AfterGap(3), InOrder, AfterGap(3)]);
        // holes: [2,5) and [7,10)
        assert_eq!(l.missing_in(0, 11), 6);
        assert_eq!(l.record(3), Arrival::Late); // splits [2,5) into [2,3) [4,5)
        assert_eq!(l.record(3), Arrival::Duplicate);
        assert_eq!(l.record(2), Arrival::Late);
        assert_eq!(l.record(4), Arrival::Late);
        assert_eq!(l.record(9), Arrival::Late);
        assert_eq!(l.record(6), Arrival::Duplicate);
        assert_eq!(l.record(0), Arrival::Duplicate);
        assert_eq!(l.missing_in(0, 11), 2); // 7 and 8
        assert_eq!(l.missing_in(8, 11), 1);
        assert!(l.has(9) && !l.has(8) && !l.has(11));
    }

    #[test]
    fn matches_a_naive_set_on_a_shuffled_stream() {
        let mut l = SeqLedger::default();
        let mut seen = std::collections::HashSet::new();
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = x % 3000;
            let expect = if seen.insert(seq) { "new" } else { "dup" };
            let got = match l.record(seq) {
                Arrival::Duplicate => "dup",
                _ => "new",
            };
            assert_eq!(got, expect, "seq {seq}");
        }
        let missing = (0..3000).filter(|s| !seen.contains(s)).count() as u64;
        assert_eq!(l.missing_in(0, 3000), missing);
    }
}
