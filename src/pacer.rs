//! The open-loop schedule of intended send times.
//!
//! Message `i` of a producer is due at `start + i / rate`, an absolute deadline,
//! so a slow write never stretches the schedule and rounding never accumulates
//! (the approach of wrk2 and oha). Everything that is due is sent in one
//! batch; the latency of each message is measured from its deadline.
//!
//! A rate profile generalizes `i / rate`: message `i` is due when the
//! integral of the rate since the start reaches `i`, piece by piece (a hold,
//! or a linear ramp: the root of a quadratic). Every stage sends its integral
//! to within one message per producer, and the schedule never drifts across
//! stages, whatever they are.

#[cfg(test)]
use crate::clock::Clock;
use crate::clock::Timer;
use crate::scenario::Rate;

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

/// What a pacer does next (see `Pacer::poll_batch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Release(Batch),
    Sleep { until_ns: u64, spin: bool },
    Ended,
}

/// Produces the intended send times of one producer's messages.
#[derive(Debug, Clone)]
pub struct Pacer {
    /// The schedule, piece by piece; empty means as fast as possible.
    segments: Vec<Segment>,
    /// Messages whose deadline is at or after this are not sent.
    end_ns: u64,
    next: u64,
    /// Least time between two releases (see [`Pacer::coalescing`]); 0: none.
    coalesce_ns: u64,
    /// When the last batch was released, ns since the epoch.
    released_ns: Option<u64>,
    /// From when nothing more is sent, however far behind the schedule
    /// (see [`Pacer::cut_off_after`]); `u64::MAX`: never.
    cut_off_ns: u64,
}

/// A piece of the schedule over which the rate holds or changes linearly.
/// Message `i` is due when the integral of the rate from the start of the
/// schedule reaches `i`: within a segment, when `per_ns·t + accel·t²/2`
/// reaches `i - first`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start_ns: u64,
    /// Messages scheduled before the segment (fractional: an integral).
    first: f64,
    /// Messages within it; infinite for a rate that holds to the end.
    count: f64,
    /// Its length, ns (infinite for a rate that holds to the end).
    len_ns: f64,
    /// The rate at its start, messages per ns.
    per_ns: f64,
    /// How fast the rate changes, messages per ns².
    accel: f64,
    /// `1 / per_ns` for a hold: exact arithmetic for the common case of one rate.
    period_ns: f64,
}

impl Segment {
    fn new(start_ns: u64, first: f64, len_ns: f64, from_per_s: f64, to_per_s: f64) -> Segment {
        let per_ns = from_per_s / 1e9;
        let accel = if len_ns.is_finite() { (to_per_s - from_per_s) / 1e9 / len_ns } else { 0.0 };
        let count = if len_ns.is_finite() { (per_ns + accel * len_ns / 2.0) * len_ns } else { f64::INFINITY };
        Segment { start_ns, first, count, len_ns, per_ns, accel, period_ns: 1.0 / per_ns }
    }

    /// Nanoseconds after its start at which `n` messages of the segment are due.
    #[inline]
    fn time_of(&self, n: f64) -> f64 {
        if self.accel == 0.0 {
            n * self.period_ns
        } else if n == 0.0 {
            0.0
        } else {
            // The root of accel·t²/2 + per_ns·t = n, in the form that stays
            // exact for a ramp from 0 and never cancels for a ramp down.
            let disc = (self.per_ns * self.per_ns + 2.0 * self.accel * n).max(0.0);
            2.0 * n / (self.per_ns + disc.sqrt())
        }
    }

    /// Messages of the segment due `dt` ns after its start.
    fn messages_by(&self, dt: f64) -> f64 {
        let dt = dt.min(self.len_ns);
        (self.per_ns * dt + self.accel * dt * dt / 2.0).min(self.count)
    }
}

impl Pacer {
    /// A schedule of `rate` messages per second from `start_ns` until `end_ns`
    /// (`rate == 0.0` means unlimited).
    pub fn new(start_ns: u64, end_ns: u64, rate: f64) -> Pacer {
        let segments =
            if rate > 0.0 { vec![Segment::new(start_ns, 0.0, f64::INFINITY, rate, rate)] } else { Vec::new() };
        Pacer { segments, end_ns, next: 0, coalesce_ns: 0, released_ns: None, cut_off_ns: u64::MAX }
    }

    /// Releases a batch at most once every `window_ns`: what falls due in
    /// between waits for the next release and goes out with it, in one write.
    /// A wake-up costs tens of microseconds of CPU (timer, scheduler, the
    /// write, and the reply and delivery it sets off), so a producer that woke
    /// for every message of a short period spent a core on waking up. Every
    /// message keeps its deadline: what the wait adds (less than the window
    /// and the timer's own lateness) counts in its latency, honestly. A
    /// period longer than the window is paced message by message, as before.
    pub fn coalescing(mut self, window_ns: u64) -> Pacer {
        self.coalesce_ns = window_ns;
        self
    }

    /// Stops sending `grace_ns` after the end of the schedule, however much
    /// of it is still due: a producer that fell behind (a rate beyond what it
    /// can write) would otherwise send its backlog long after the measured
    /// phase, and the run would outlive its length by as much. What it did
    /// not send by then is [`Pacer::unsent`].
    pub fn cut_off_after(mut self, grace_ns: u64) -> Pacer {
        self.cut_off_ns = self.end_ns.saturating_add(grace_ns);
        self
    }

    /// One producer's share of `rate` among `producers`: the warmup from
    /// `warmup_start_ns` holds the rate the measured phase starts with, and
    /// the measured phase from `measure_start_ns` follows the profile, stage
    /// by stage, until `end_ns`.
    pub fn for_producer(
        rate: &Rate,
        producers: u32,
        warmup_start_ns: u64,
        measure_start_ns: u64,
        end_ns: u64,
    ) -> Pacer {
        let share = 1.0 / f64::from(producers.max(1));
        let stages = match rate {
            Rate::Constant(r) => return Pacer::new(warmup_start_ns, end_ns, r * share),
            Rate::Profile(stages) => stages,
        };
        let mut segments = Vec::with_capacity(stages.len() + 1);
        let mut first = 0.0;
        let mut at = warmup_start_ns;
        let mut push = |at: u64, len_ns: u64, from: f64, to: f64| {
            let seg = Segment::new(at, first, len_ns as f64, from * share, to * share);
            first += seg.count;
            segments.push(seg);
        };
        if measure_start_ns > warmup_start_ns {
            push(at, measure_start_ns - warmup_start_ns, rate.first(), rate.first());
        }
        at = measure_start_ns;
        for s in stages {
            let len_ns = s.length.as_nanos() as u64;
            push(at, len_ns, s.from, s.to);
            at = at.saturating_add(len_ns);
        }
        Pacer { segments, end_ns, next: 0, coalesce_ns: 0, released_ns: None, cut_off_ns: u64::MAX }
    }

    /// The intended send time of message `i`, or `None` if the rate is unlimited
    /// (then it is the moment its batch is released). `u64::MAX` past the
    /// end of a profile: never due.
    #[inline]
    pub fn deadline_ns(&self, i: u64) -> Option<u64> {
        let x = i as f64;
        let seg = match self.segments.as_slice() {
            [] => return None,
            [one] => one,
            all => &all[all.partition_point(|s| s.first <= x).saturating_sub(1)],
        };
        let n = x - seg.first;
        if n >= seg.count {
            return Some(u64::MAX);
        }
        // Saturating: a deadline past the end of time is never due.
        Some(seg.start_ns.saturating_add(seg.time_of(n).round() as u64))
    }

    /// Messages of the schedule due by `ns` (fractional: the rate's integral).
    fn messages_by(&self, ns: u64) -> f64 {
        let i = self.segments.partition_point(|s| s.start_ns <= ns);
        match i.checked_sub(1).map(|i| &self.segments[i]) {
            None => 0.0,
            Some(seg) => seg.first + seg.messages_by((ns - seg.start_ns) as f64),
        }
    }

    /// How many messages after those already taken are due at `now_ns`, at most `max`.
    pub fn due_at(&self, now_ns: u64, max: u64) -> u64 {
        if self.segments.is_empty() {
            return if now_ns < self.end_ns { max } else { 0 };
        }
        let limit = now_ns.min(self.end_ns.saturating_sub(1));
        self.due_by(limit).saturating_sub(self.next).min(max)
    }

    /// How many of the schedule's messages are due at or before `limit` (a
    /// limited rate: the indices `0..n`).
    fn due_by(&self, limit: u64) -> u64 {
        if self.segments.is_empty() || limit < self.segments[0].start_ns {
            return 0;
        }
        // Index of the last message due, corrected for float rounding at the
        // edge: a step or two at a rate validation accepts. Bounded, so that a
        // period below what f64 tells apart from the next index never spins.
        let mut last = self.messages_by(limit).floor() as u64;
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
        if self.deadline_ns(last).is_some_and(|d| d > limit) {
            // Not even the first message is due (a profile that starts silent).
            return 0;
        }
        last.saturating_add(1)
    }

    /// The messages due from `from_ns` to the end of the schedule that were
    /// not taken: what a producer cut off (see [`Pacer::cut_off_after`]) did
    /// not send of the measured phase that starts at `from_ns`.
    pub fn unsent(&self, from_ns: u64) -> u64 {
        let due = self.due_by(self.end_ns.saturating_sub(1));
        let before = match from_ns.checked_sub(1) {
            Some(t) => self.due_by(t),
            None => 0,
        };
        due.saturating_sub(self.next.max(before))
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
            match self.poll_batch(timer.clock().now_ns(), max) {
                Step::Release(batch) => return Some(batch),
                Step::Ended => return None,
                Step::Sleep { until_ns, spin: true } => timer.sleep_until_ns(until_ns).await,
                // The end of a window: no message is due at that instant, so
                // spinning to meet it precisely would buy nothing.
                Step::Sleep { until_ns, spin: false } => timer.sleep_until_ns_unspun(until_ns).await,
            }
        }
    }

    /// What to do at `now_ns`: release a batch (up to `max` messages), or
    /// sleep until when (spinning the last stretch if a message's own deadline
    /// is that moment), or nothing, the schedule has ended.
    fn poll_batch(&mut self, now_ns: u64, max: u64) -> Step {
        if self.finished(now_ns) || now_ns >= self.cut_off_ns {
            return Step::Ended;
        }
        let count = self.due_at(now_ns, max);
        // Not before the window since the last release is over, unless a batch
        // is full, where messages come closer together than the window. Where
        // they do not, a window would only hold the next message back by the
        // last one's lateness: 50,000/s in 20 µs windows had a p50 10 µs
        // higher than message by message, for the same CPU.
        let window_end = match self.released_ns {
            Some(r) if self.period_ns(self.next) < self.coalesce_ns => self.tick_after(r),
            _ => 0,
        };
        if count > 0 && (now_ns >= window_end || count == max) {
            let batch = Batch { first: self.next, count, now_ns };
            self.next += count;
            self.released_ns = Some(now_ns);
            return Step::Release(batch);
        }
        let due = self.deadline_ns(self.next).expect("limited rate has deadlines");
        if window_end > due {
            Step::Sleep { until_ns: window_end, spin: false }
        } else {
            Step::Sleep { until_ns: due, spin: true }
        }
    }

    /// The first end of a window after `ns`. Windows end on a grid of ticks
    /// from the schedule's start, one window apart: a release that came late
    /// does not push the later ones back, so a producer wakes once a window
    /// whatever its lateness, and no wait grows by the lateness before it.
    fn tick_after(&self, ns: u64) -> u64 {
        let origin = self.segments.first().map_or(0, |s| s.start_ns).min(ns);
        let w = self.coalesce_ns.max(1);
        origin.saturating_add(((ns - origin) / w + 1).saturating_mul(w))
    }

    /// How long after message `i - 1` message `i` is due (`u64::MAX` for the first, or past the end).
    fn period_ns(&self, i: u64) -> u64 {
        match (i.checked_sub(1).and_then(|p| self.deadline_ns(p)), self.deadline_ns(i)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => u64::MAX,
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

    /// Every message of a schedule run on the paused clock, with slow writes:
    /// (intended send time, release time) per message.
    async fn drain(mut p: Pacer) -> Vec<(u64, u64)> {
        let mut timer = Timer::coarse(Clock::start());
        let mut sent = Vec::new();
        while let Some(b) = p.next_batch(&mut timer, 64).await {
            assert_eq!(b.first, sent.len() as u64);
            for i in b.first..b.first + b.count {
                let d = p.deadline_ns(i).unwrap();
                assert!(d <= b.now_ns, "message {i} released before its deadline");
                sent.push((d, b.now_ns));
            }
            tokio::time::sleep(Duration::from_micros(700)).await;
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn each_stage_sends_its_integral() {
        let rate: Rate = "0..1000/2s,1000/3s,1000..0/2s,0/1s,500/2s,250..750/1500ms".parse().unwrap();
        for producers in [1, 3] {
            let (warmup, start) = (500_000_000, 1_000_000_000);
            let end = start + rate.length().unwrap().as_nanos() as u64;
            let sent = drain(Pacer::for_producer(&rate, producers, warmup, start, end)).await;
            let share = 1.0 / f64::from(producers);
            // The warmup holds the first rate: a ramp from 0 sends nothing before it.
            assert_eq!(sent.iter().filter(|(d, _)| *d < start).count(), 0);
            let mut at = start;
            for stage in rate.stages() {
                let until = at + stage.length.as_nanos() as u64;
                let n = sent.iter().filter(|(d, _)| (at..until).contains(d)).count() as f64;
                let want = stage.messages() * share;
                assert!((n - want).abs() <= 1.0, "{producers} producers, stage {stage}: {n} messages, integral {want}");
                at = until;
            }
            let total = rate.messages_between(0.0, 100.0) * share;
            assert!((sent.len() as f64 - total).abs() <= 1.0, "{} of {total}", sent.len());
            assert!(sent.iter().all(|(d, _)| *d < end), "nothing after the last stage");
            assert!(sent.windows(2).all(|w| w[0].0 <= w[1].0), "deadlines never go back");
        }
    }

    #[test]
    fn stages_do_not_drift() {
        // 9 holds of 333 ms at 3/s and 10/s alternately: each boundary is exact,
        // whatever fraction of a message the stages before it left over.
        let rate: Rate = ["3/333ms"; 9].join(",").replacen("3/", "10/", 1).parse().unwrap();
        let p = Pacer::for_producer(&rate, 1, 0, 0, 3_000_000_000);
        let mut first = 0.0f64;
        let mut at = 0u64;
        for stage in rate.stages() {
            let period = 1e9 / stage.from;
            let i = first.ceil();
            let want = at + ((i - first) * period).round() as u64;
            assert_eq!(p.deadline_ns(i as u64), Some(want), "the first message of the stage at {at}");
            first += stage.messages();
            at += stage.length.as_nanos() as u64;
        }
        // One long hold as stages, or as one rate: the same deadlines.
        let split: Rate = ["7/1s"; 10].join(",").parse().unwrap();
        let p = Pacer::for_producer(&split, 1, 0, 0, 10_000_000_000);
        let one = Pacer::new(0, 10_000_000_000, 7.0);
        for i in 0..70 {
            assert!(p.deadline_ns(i).unwrap().abs_diff(one.deadline_ns(i).unwrap()) <= 1, "message {i}");
        }
    }

    #[test]
    fn ramps_from_and_to_zero() {
        // 0 → 200/s over 1 s: message i is due when 100·t² reaches i.
        let up: Rate = "0..200/1s".parse().unwrap();
        let p = Pacer::for_producer(&up, 1, 0, 0, 1_000_000_000);
        for i in [0u64, 1, 4, 25, 99] {
            let want = (i as f64 / 100.0).sqrt() * 1e9;
            assert!((p.deadline_ns(i).unwrap() as f64 - want).abs() <= 1.0, "message {i}");
        }
        assert_eq!(p.deadline_ns(100), Some(u64::MAX), "100 messages in all, the 101st never due");
        assert_eq!(p.due_at(999_999_999, u64::MAX), 100);
        // 200/s → 0 over 1 s: the mirror image, front-loaded, the last one just before the end.
        let down: Rate = "200..0/1s".parse().unwrap();
        let p = Pacer::for_producer(&down, 1, 0, 0, 1_000_000_000);
        for i in [0u64, 1, 50, 75, 99] {
            let want = 1e9 - ((100.0 - i as f64) / 100.0).sqrt() * 1e9;
            assert!((p.deadline_ns(i).unwrap() as f64 - want).abs() <= 2.0, "message {i}");
        }
        assert_eq!(p.due_at(999_999_999, u64::MAX), 100);
        // A silence first: nothing is due until it ends.
        let quiet: Rate = "0/1s,10/1s".parse().unwrap();
        let p = Pacer::for_producer(&quiet, 1, 0, 0, 2_000_000_000);
        assert_eq!(p.due_at(999_999_999, u64::MAX), 0);
        assert_eq!(p.deadline_ns(0), Some(1_000_000_000));
        assert_eq!(p.due_at(1_000_000_000, u64::MAX), 1);
    }

    /// Runs a schedule on a virtual clock: each sleep ends `late_ns` after
    /// its target. Every release as (time, first, count), and the sleeps that spun.
    fn simulate(mut p: Pacer, max: u64, late_ns: u64) -> (Vec<Batch>, u64) {
        let (mut now, mut batches, mut spun) = (0, Vec::new(), 0);
        loop {
            match p.poll_batch(now, max) {
                Step::Release(b) => batches.push(b),
                Step::Sleep { until_ns, spin } => {
                    assert!(until_ns > now, "a sleep into the past at {now}");
                    spun += spin as u64;
                    now = until_ns + if spin { 0 } else { late_ns };
                }
                Step::Ended => return (batches, spun),
            }
        }
    }

    #[test]
    fn a_short_period_is_released_once_a_window_never_early_never_dropped() {
        // 100,000/s for 1 s in windows of 50 µs: batches of about 5, each message
        // released after its deadline and within the window (plus the timer's lateness).
        for late in [0, 20_000] {
            let p = Pacer::new(0, 1_000_000_000, 100_000.0).coalescing(50_000);
            let (batches, spun) = simulate(p.clone(), 1024, late);
            assert_eq!(spun, 0, "{late}: every sleep ends a window, none spins");
            let mut next = 0;
            for b in &batches {
                assert_eq!(b.first, next, "consecutive");
                next += b.count;
                for i in b.first..b.first + b.count {
                    let d = p.deadline_ns(i).unwrap();
                    assert!(
                        d <= b.now_ns && b.now_ns < d + 50_000 + late,
                        "{late}: message {i} due {d} released {}",
                        b.now_ns
                    );
                }
            }
            assert_eq!(next, 100_000, "{late}: the rate is exact");
            assert!(batches.windows(2).all(|w| w[1].now_ns - w[0].now_ns >= 50_000), "{late}: one release a window");
            assert!(batches.iter().skip(1).all(|b| b.now_ns % 50_000 == late), "{late}: windows end on the grid");
            // Lateness does not stretch the windows: one release per window of the second.
            let wakes = batches.len() as f64;
            let most = 1e9 / 50_000.0;
            assert!(wakes <= most + 2.0 && wakes >= most * 0.9, "{late}: {wakes} releases, about {most}");
        }
    }

    #[test]
    fn a_period_as_long_as_the_window_is_paced_message_by_message() {
        // 50,000/s in 20 µs windows, every wake-up 10 µs late (a spin of 2 µs
        // does not make up for it): each message is released alone, as late
        // as its own wake-up and no later, never held back by the last one's lateness.
        let mut p = Pacer::new(0, 10_000_000, 50_000.0).coalescing(20_000);
        let (mut now, mut released) = (0, 0);
        loop {
            match p.poll_batch(now, 1024) {
                Step::Release(b) => {
                    let due = p.deadline_ns(b.first).unwrap();
                    assert_eq!(b.count, 1, "message {} alone", b.first);
                    assert!(b.now_ns <= due + 10_000, "message {} due {due} released {}", b.first, b.now_ns);
                    released += 1;
                }
                Step::Sleep { until_ns, spin } => {
                    assert!(spin, "at {now}: a sleep to a deadline, not to the end of a window");
                    now = until_ns + 10_000;
                }
                Step::Ended => break,
            }
        }
        assert_eq!(released, 500);
    }

    #[test]
    fn a_long_period_is_paced_message_by_message_and_a_full_batch_waits_for_nothing() {
        let p = Pacer::new(0, 1_000_000_000, 1_000.0).coalescing(50_000);
        let (batches, spun) = simulate(p.clone(), 1024, 30_000);
        assert_eq!(batches.len(), 1000);
        assert_eq!(spun, 999, "each deadline but the first is slept to, with a spin");
        for b in &batches {
            assert_eq!((b.count, Some(b.now_ns)), (1, p.deadline_ns(b.first)), "on the deadline, alone");
        }
        // 10,000,000/s: 500 messages a window, past the batch limit of 64: no waiting.
        let p = Pacer::new(0, 1_000_000, 1e7).coalescing(50_000);
        let (batches, _) = simulate(p, 64, 0);
        assert_eq!(batches.iter().map(|b| b.count).sum::<u64>(), 10_000);
        assert!(batches.iter().filter(|b| b.count == 64).count() >= 150, "full batches go at once");
    }

    #[test]
    fn a_producer_far_behind_stops_at_the_cut_off_and_counts_what_it_did_not_send() {
        // 1,000/s over [1 s, 2 s) after a 1 s warmup; the producer can write 10 a wake-up and wakes every 100 ms.
        let p = Pacer::new(0, 2_000_000_000, 1_000.0).cut_off_after(250_000_000);
        let mut q = p.clone();
        let (mut now, mut taken) = (0, 0);
        loop {
            match q.poll_batch(now, 10) {
                Step::Release(b) => taken += b.count,
                Step::Sleep { .. } => {}
                Step::Ended => break,
            }
            now += 100_000_000;
        }
        assert!((2_250_000_000..2_400_000_000).contains(&now), "ended at the cut-off, {now}");
        assert_eq!(q.taken(), taken);
        // 2,000 were due; none of the measured 1,000 past the taken ones were sent.
        assert_eq!(q.unsent(1_000_000_000), 1000 - taken.saturating_sub(1000));
        assert_eq!(q.unsent(0), 2000 - taken);
        // One that kept up sent everything.
        let (batches, _) = simulate(p.clone(), 1024, 0);
        let mut done = p;
        done.next = batches.iter().map(|b| b.count).sum();
        assert_eq!((done.next, done.unsent(1_000_000_000)), (2000, 0));
    }

    #[test]
    fn the_warmup_holds_the_first_rate() {
        let rate: Rate = "100..200/1s".parse().unwrap();
        let p = Pacer::for_producer(&rate, 2, 0, 1_000_000_000, 2_000_000_000);
        // 50/s per producer in the warmup: message 10 at 200 ms.
        assert_eq!(p.deadline_ns(10), Some(200_000_000));
        assert_eq!(p.deadline_ns(50), Some(1_000_000_000), "the measured phase starts with message 50");
        assert_eq!(p.due_at(1_999_999_999, u64::MAX), 50 + 75);
    }
}
