//! What live export reads beyond the live view's counters: message counts
//! by phase, a live latency histogram in fixed buckets, the backlog and the
//! harness's CPU, and [`Snapshot`], one reading of all of it (what a worker
//! process publishes to its coordinator once a second).
//!
//! The counters are updated once per write or read batch, like
//! [`crate::live::Live`]'s. The latency histogram costs the per-message path
//! nothing: each worker thread owns a [`LatencyBuckets`] into which it copies,
//! four times a second, the HDR histogram it records into anyway (the one the
//! results come from); readers sum over threads when they look.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The phases of a run, in order, as labels read them.
pub const PHASES: [&str; 3] = ["warmup", "measure", "drain"];

/// Which of [`PHASES`] the run is in at `now_ns` (ns since the run's epoch),
/// given the measured phase `[start_ns, end_ns)`: 0 warmup (and connecting), 1 measure, 2 drain.
#[inline]
pub fn phase_at(now_ns: u64, start_ns: u64, end_ns: u64) -> usize {
    if now_ns < start_ns {
        0
    } else if now_ns < end_ns {
        1
    } else {
        2
    }
}

/// Upper bounds of the live latency buckets in ns: 1-2-5 steps from 10 µs
/// to 10 s. A latency above the last one goes to the overflow (`+Inf`) bucket.
pub const BUCKET_BOUNDS_NS: [u64; 19] = [
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets, the overflow included.
pub const BUCKETS: usize = BUCKET_BOUNDS_NS.len() + 1;

/// The live latency histogram of one worker thread; only that thread records.
#[derive(Debug, Default)]
pub struct LatencyBuckets {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl LatencyBuckets {
    /// Adds what these buckets hold to `into`.
    fn add_to(&self, into: &mut LatencySnapshot) {
        for (sum, c) in into.counts.iter_mut().zip(&self.counts) {
            *sum += c.load(Relaxed);
        }
        into.sum_ns = into.sum_ns.wrapping_add(self.sum_ns.load(Relaxed));
    }

    /// Replaces what these buckets hold: by the thread that owns them, with
    /// its histogram so far, or by a `--workers` coordinator, with its
    /// workers' sum. One writer each; a reader may see a bucket a
    /// publication behind its neighbours, never a torn count.
    pub fn set(&self, to: &LatencySnapshot) {
        for (c, v) in self.counts.iter().zip(&to.counts) {
            c.store(*v, Relaxed);
        }
        self.sum_ns.store(to.sum_ns, Relaxed);
    }
}

/// One reading of a live latency histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    /// Per bucket (not cumulative), the overflow last.
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl LatencySnapshot {
    /// The buckets of an HDR histogram of ns latencies. A recorded value
    /// counts by its HDR bucket's lowest equivalent value (3 significant
    /// digits: a latency within 0.1% above a bound may count below it);
    /// the sum is the HDR mean times the count, as exact as that.
    pub fn of(h: &hdrhistogram::Histogram<u64>) -> LatencySnapshot {
        let mut s = LatencySnapshot::default();
        for v in h.iter_recorded() {
            let ns = h.lowest_equivalent(v.value_iterated_to());
            s.counts[BUCKET_BOUNDS_NS.partition_point(|&b| b < ns)] += v.count_at_value();
        }
        s.sum_ns = (h.mean() * h.len() as f64).round() as u64;
        s
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What was recorded since `earlier`.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        let mut d = *self;
        d.counts.iter_mut().zip(&earlier.counts).for_each(|(a, b)| *a = a.saturating_sub(*b));
        d.sum_ns = d.sum_ns.wrapping_sub(earlier.sum_ns);
        d
    }

    fn add(&mut self, o: &LatencySnapshot) {
        self.counts.iter_mut().zip(&o.counts).for_each(|(a, b)| *a += b);
        self.sum_ns = self.sum_ns.wrapping_add(o.sum_ns);
    }

    /// The `q` quantile (0..=1) in ns, interpolated linearly inside its
    /// bucket as Prometheus's `histogram_quantile` does (the overflow bucket
    /// answers with the highest bound); `None` when empty. Coarse by design:
    /// the exact percentiles are in the run's files.
    pub fn quantile_ns(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                let Some(&upper) = BUCKET_BOUNDS_NS.get(i) else {
                    return Some(BUCKET_BOUNDS_NS[BUCKETS - 2] as f64);
                };
                let lower = if i == 0 { 0 } else { BUCKET_BOUNDS_NS[i - 1] };
                let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(lower as f64 + (upper - lower) as f64 * within);
            }
            below += c;
        }
        Some(BUCKET_BOUNDS_NS[BUCKETS - 2] as f64)
    }
}

/// Counters beside [`crate::live::Live`]'s, for live export. Per phase
/// (indexed as [`PHASES`]): `sent` by the phase a message was scheduled in,
/// the others by the phase they were counted in. Like summary.csv, the
/// receiving side counts measured messages only.
#[derive(Debug, Default)]
pub struct Meters {
    pub sent: [AtomicU64; 3],
    pub delivered: [AtomicU64; 3],
    pub duplicates: [AtomicU64; 3],
    pub out_of_order: [AtomicU64; 3],
    /// Deliveries the measured messages sent so far should make (each
    /// message times the consumers or groups that should get it).
    pub expected: AtomicU64,
    /// Streams: entries not yet acknowledged, summed over groups (last sample).
    pub backlog: AtomicU64,
    /// The harness's CPU use over the last second, as a share of the CPUs it may use (f64 bits).
    cpu_ratio: AtomicU64,
    cpu_last: Mutex<Option<(Instant, u64)>>,
    /// Every worker thread's latency buckets (registered once per thread).
    threads: Mutex<Vec<Arc<LatencyBuckets>>>,
    /// The run's id, once the pipeline has named it (a label of every exported series).
    run_id: std::sync::OnceLock<String>,
    /// Set once these counters are a `--workers` coordinator's sum of its
    /// workers': the CPU shown is then theirs, not this process's.
    summed: std::sync::atomic::AtomicBool,
}

/// One reading of a process's live counters: what a `--workers` worker
/// publishes once a second, and what export and `--format jsonl` show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub sent: [u64; 3],
    pub delivered: [u64; 3],
    pub duplicates: [u64; 3],
    pub out_of_order: [u64; 3],
    pub expected: u64,
    /// Messages missing so far (gaps seen by consumers, less those filled late).
    pub missing: u64,
    pub connected: u64,
    pub backlog: u64,
    pub cpu_ratio: f64,
    pub latency: LatencySnapshot,
}

fn load3(a: &[AtomicU64; 3]) -> [u64; 3] {
    [a[0].load(Relaxed), a[1].load(Relaxed), a[2].load(Relaxed)]
}

fn store3(a: &[AtomicU64; 3], v: [u64; 3]) {
    a.iter().zip(v).for_each(|(a, v)| a.store(v, Relaxed));
}

fn sum3(a: [u64; 3], b: [u64; 3]) -> [u64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

impl Snapshot {
    /// Messages sent, all phases.
    pub fn sent_total(&self) -> u64 {
        self.sent.iter().sum()
    }

    pub fn delivered_total(&self) -> u64 {
        self.delivered.iter().sum()
    }

    /// Deliveries still due: expected so far, neither delivered nor missing.
    pub fn undelivered(&self) -> u64 {
        self.expected.saturating_sub(self.delivered_total() + self.missing)
    }

    /// Two processes' readings together (the CPU: the busier one's, as summary.csv takes the busiest share's).
    pub fn add(&mut self, o: &Snapshot) {
        self.sent = sum3(self.sent, o.sent);
        self.delivered = sum3(self.delivered, o.delivered);
        self.duplicates = sum3(self.duplicates, o.duplicates);
        self.out_of_order = sum3(self.out_of_order, o.out_of_order);
        self.expected += o.expected;
        self.missing += o.missing;
        self.connected += o.connected;
        self.backlog += o.backlog;
        self.cpu_ratio = self.cpu_ratio.max(o.cpu_ratio);
        self.latency.add(&o.latency);
    }
}

impl Meters {
    /// Names the run (once; later calls are ignored).
    pub fn set_run_id(&self, run_id: &str) {
        let _ = self.run_id.set(run_id.to_string());
    }

    pub fn run_id(&self) -> Option<String> {
        self.run_id.get().cloned()
    }

    /// Gives a worker thread's latency buckets to the readers (once per thread).
    pub fn register(&self, buckets: Arc<LatencyBuckets>) {
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).push(buckets);
    }

    /// The latency recorded so far, all threads.
    pub fn latency(&self) -> LatencySnapshot {
        let mut out = LatencySnapshot::default();
        for t in self.threads.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            t.add_to(&mut out);
        }
        out
    }

    /// Samples the process's CPU time; from the second call on, the share of
    /// the CPUs it may use since the previous call becomes [`Meters::cpu_ratio`].
    /// Whoever watches the run calls it about once a second.
    pub fn sample_cpu(&self) {
        if self.summed.load(Relaxed) {
            return;
        }
        let (now, cpu) = (Instant::now(), crate::sys::process_cpu_ns());
        let mut last = self.cpu_last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, before)) = *last {
            let wall = now.duration_since(at).as_nanos() as f64 * crate::sys::cpus_available() as f64;
            if wall > 0.0 {
                let ratio = cpu.saturating_sub(before) as f64 / wall;
                self.cpu_ratio.store(ratio.to_bits(), Relaxed);
            }
        }
        *last = Some((now, cpu));
    }

    pub fn cpu_ratio(&self) -> f64 {
        f64::from_bits(self.cpu_ratio.load(Relaxed))
    }

    /// This process's counters (the live view's `missing` and `connected` given by the caller).
    pub fn snapshot(&self, missing: u64, connected: u64) -> Snapshot {
        Snapshot {
            sent: load3(&self.sent),
            delivered: load3(&self.delivered),
            duplicates: load3(&self.duplicates),
            out_of_order: load3(&self.out_of_order),
            expected: self.expected.load(Relaxed),
            missing,
            connected,
            backlog: self.backlog.load(Relaxed),
            cpu_ratio: self.cpu_ratio(),
            latency: self.latency(),
        }
    }

    /// Makes these counters read `s` (a `--workers` coordinator, whose own
    /// swarm is empty, with the sum of its workers' readings).
    pub fn set(&self, s: &Snapshot) {
        self.summed.store(true, Relaxed);
        store3(&self.sent, s.sent);
        store3(&self.delivered, s.delivered);
        store3(&self.duplicates, s.duplicates);
        store3(&self.out_of_order, s.out_of_order);
        self.expected.store(s.expected, Relaxed);
        self.backlog.store(s.backlog, Relaxed);
        self.cpu_ratio.store(s.cpu_ratio.to_bits(), Relaxed);
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        if threads.is_empty() {
            threads.push(Arc::default());
        }
        threads[0].set(&s.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(values: &[u64]) -> hdrhistogram::Histogram<u64> {
        let mut h = crate::stats::latency_histogram();
        values.iter().for_each(|&ns| crate::stats::record(&mut h, ns));
        h
    }

    #[test]
    fn buckets_take_each_latency_at_or_below_their_bound() {
        let s = LatencySnapshot::of(&hdr(&[1, 10_000, 10_020, 3_000_000, 10_000_000_000, 10_100_000_000]));
        assert_eq!(s.counts[0], 2, "1 ns and exactly 10 µs");
        assert_eq!(s.counts[1], 1, "just above 10 µs");
        assert_eq!(s.counts[8], 1, "3 ms is in (2 ms, 5 ms]");
        assert_eq!(s.counts[18], 1, "10 s");
        assert_eq!(s.counts[19], 1, "above 10 s: the overflow");
        assert_eq!(s.count(), 6);
        let sum = 1 + 10_000 + 10_020 + 3_000_000 + 10_000_000_000 + 10_100_000_000u64;
        assert!((s.sum_ns as f64 - sum as f64).abs() < sum as f64 * 0.001, "{} vs {sum}", s.sum_ns);
        let b = LatencyBuckets::default();
        b.set(&s);
        let mut read = LatencySnapshot::default();
        b.add_to(&mut read);
        assert_eq!(read, s);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_like_histogram_quantile() {
        let mut h = hdr(&[150_000; 100]); // (100 µs, 200 µs]
        let s = LatencySnapshot::of(&h);
        assert_eq!(s.quantile_ns(0.5), Some(150_000.0));
        assert_eq!(s.quantile_ns(1.0), Some(200_000.0));
        assert_eq!(LatencySnapshot::default().quantile_ns(0.99), None);
        let later = {
            crate::stats::record(&mut h, 20_000_000_000);
            LatencySnapshot::of(&h)
        };
        let d = later.since(&s);
        assert_eq!((d.count(), d.quantile_ns(0.99)), (1, Some(10_000_000_000.0)), "the overflow reads the top bound");
    }

    #[test]
    fn snapshots_add_and_a_coordinator_reads_the_sum() {
        let m = Meters::default();
        let t = Arc::new(LatencyBuckets::default());
        m.register(t.clone());
        t.set(&LatencySnapshot::of(&hdr(&[1_000])));
        m.sent[1].fetch_add(5, Relaxed);
        let mut a = m.snapshot(1, 2);
        assert_eq!((a.sent_total(), a.latency.count(), a.missing, a.connected), (5, 1, 1, 2));
        a.add(&a.clone());
        let coordinator = Meters::default();
        a.cpu_ratio = 0.25;
        coordinator.set(&a);
        coordinator.sample_cpu();
        coordinator.sample_cpu();
        let read = coordinator.snapshot(a.missing, a.connected);
        assert_eq!(read, a, "the workers' CPU, not the coordinator's own");
        assert_eq!(phase_at(5, 10, 20), 0);
        assert_eq!(phase_at(10, 10, 20), 1);
        assert_eq!(phase_at(20, 10, 20), 2);
    }
}
