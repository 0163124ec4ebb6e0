//! The open-loop schedule of intended send times.
//!
//! Message `i` of a producer is due at `start + i / rate`, an absolute deadline,
//! so a slow write never stretches the schedule and rounding never accumulates
//! (the approach of wrk2 and oha). Everything that is due is sent in one
//! batch; the latency of each message is measured from its deadline.

#[cfg(test)]
use crate::clock::Clock;
use crate::clock::Timer;

/// Most steps the float-rounding correction of [`Pacer::due_at`] takes.
const EDGE_STEPS: u32 = 8;

/// A batch of consecutive message indices that are due now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Index of the first message of the batch.
    pub first: u64,
    /// Number of messages in the batch (at least 1).
    pub count: u64,
    /// When the batch was released, ns since the epoch; the intended send time
    /// of every message when the rate is unlimited.
    pub now_ns: u64,
}

/// Produces the intended send times of one producer's messages.
#[derive(Debug, Clone)]
pub struct Pacer {
    start_ns: u64,
    /// Nanoseconds between two messages; `None` means as fast as possible.
    period_ns: Option<f64>,
    /// Messages whose deadline is at or after this are not sent.
    end_ns: u64,
    next: u64,
}

impl Pacer {
    /// A schedule of `rate` messages per second from `start_ns` until `end_ns`
    /// (`rate == 0.0` means unlimited).
    pub fn new(start_ns: u64, end_ns: u64, rate: f64) -> Pacer {
        let period_ns = (rate > 0.0).then(|| 1e9 / rate);
        Pacer { start_ns, period_ns, end_ns, next: 0 }
    }

    /// The intended send time of message `i`, or `None` if the rate is unlimited
    /// (then it is the moment its batch is released).
    #[inline]
    pub fn deadline_ns(&self, i: u64) -> Option<u64> {
        // Saturating: a deadline past the end of time is never due.
        self.period_ns.map(|p| self.start_ns.saturating_add((i as f64 * p).round() as u64))
    }

    /// How many messages after those already taken are due at `now_ns`, at most `max`.
    pub fn due_at(&self, now_ns: u64, max: u64) -> u64 {
        let limit = now_ns.min(self.end_ns.saturating_sub(1));
        match self.period_ns {
            None if now_ns < self.end_ns => max,
            None => 0,
            Some(_) if limit < self.start_ns => 0,
            Some(p) => {
                // Index of the last message due, corrected for float rounding at the
                // edge: a step or two at a rate validation accepts. Bounded, so that a
                // period below what f64 tells apart from the next index never spins.
                let mut last = ((limit - self.start_ns) as f64 / p).floor() as u64;
                for _ in 0..EDGE_STEPS {
                    if self.deadline_ns(last.saturating_add(1)).is_none_or(|d| d > limit) {
                        break;
                    }
                    last = last.saturating_add(1);
                }
                for _ in 0..EDGE_STEPS {
                    if !(last > 0 && self.deadline_ns(last).is_some_and(|d| d > limit)) {
                        break;
                    }
                    last -= 1;
                }
                last.saturating_add(1).saturating_sub(self.next).min(max)
            }
        }
    }

    /// Whether every message of the schedule has been taken.
    pub fn finished(&self, now_ns: u64) -> bool {
        match self.deadline_ns(self.next) {
            Some(d) => d >= self.end_ns,
            None => now_ns >= self.end_ns,
        }
    }

    /// Waits until at least one message is due and takes up to `max` of them;
    /// `None` once the schedule has ended.
    pub async fn next_batch(&mut self, timer: &mut Timer, max: u64) -> Option<Batch> {
        loop {
            let now_ns = timer.clock().now_ns();
            if self.finished(now_ns) {
                return None;
            }
            let count = self.due_at(now_ns, max);
            if count > 0 {
                let batch = Batch { first: self.next, count, now_ns };
                self.next += count;
                return Some(batch);
            }
            let wake = self.deadline_ns(self.next).expect("limited rate has deadlines");
            timer.sleep_until_ns(wake).await;
        }
    }

    /// Index of the next message to be taken (the number taken so far).
    pub fn taken(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Duration;

    #[test]
    fn deadlines_are_absolute_and_do_not_drift() {
        let p = Pacer::new(1_000, u64::MAX, 3.0); // period 333_333_333.33 ns
        assert_eq!(p.deadline_ns(0), Some(1_000));
        assert_eq!(p.deadline_ns(3), Some(1_000 + 1_000_000_000));
        assert_eq!(p.deadline_ns(3_000_000), Some(1_000 + 1_000_000_000_000_000));
    }

    #[test]
    fn due_counts_every_deadline_up_to_now() {
        let p = Pacer::new(0, u64::MAX, 1000.0);
        assert_eq!(p.due_at(0, 100), 1);
        assert_eq!(p.due_at(999_999, 100), 1);
        assert_eq!(p.due_at(1_000_000, 100), 2);
        assert_eq!(p.due_at(1_000_000_000, 5000), 1001);
        assert_eq!(p.due_at(1_000_000_000, 10), 10, "capped at the batch size");
    }

    #[test]
    fn nothing_due_before_start_or_after_end() {
        let p = Pacer::new(5_000, 10_000, 1e9); // one per ns
        assert_eq!(p.due_at(4_999, 100_000), 0);
        assert_eq!(p.due_at(50_000, 100_000), 5_000, "only [5000, 10000) are scheduled");
    }

    #[tokio::test(start_paused = true)]
    async fn schedule_sends_exact_count_in_time() {
        let mut timer = Timer::coarse(Clock::start());
        // 10 s at 1234.5/s, starting 1 s in: the schedule has ceil(12345) messages.
        let mut p = Pacer::new(1_000_000_000, 11_000_000_000, 1234.5);
        let mut total = 0;
        let mut last_now = 0;
        while let Some(b) = p.next_batch(&mut timer, 64).await {
            assert_eq!(b.first, total);
            for i in b.first..b.first + b.count {
                assert!(p.deadline_ns(i).unwrap() <= b.now_ns, "never sent early");
            }
            total += b.count;
            last_now = b.now_ns;
            // A slow write: the schedule must not stretch, batches just get bigger.
            tokio::time::sleep(Duration::from_micros(2500)).await;
        }
        assert_eq!(total, 12345);
        assert!(last_now < 11_000_000_000 + 3_000_000);
    }

    #[test]
    fn absurd_rates_never_spin() {
        // Periods below a nanosecond, and far below what f64 tells apart at these indices.
        for rate in [1e10, 1e12, 1e19, 1e20, 1e30, f64::MAX] {
            let p = Pacer::new(1_000, 10_000_000_000, rate);
            let started = std::time::Instant::now();
            assert!(p.due_at(5_000_000_000, 1024) == 1024, "{rate}");
            assert!(started.elapsed() < std::time::Duration::from_millis(100), "{rate}");
        }
        // A period past the end of time: the first message, then nothing.
        let p = Pacer::new(1_000, u64::MAX, 1e-300);
        assert_eq!(p.due_at(u64::MAX / 2, 10), 1);
        assert_eq!(p.deadline_ns(1), Some(u64::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn unlimited_rate_stops_at_end() {
        let mut timer = Timer::coarse(Clock::start());
        let mut p = Pacer::new(0, 1_000_000, 0.0);
        let b = p.next_batch(&mut timer, 256).await.unwrap();
        assert_eq!((b.first, b.count), (0, 256));
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(p.next_batch(&mut timer, 256).await, None);
    }
}
