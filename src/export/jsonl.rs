//! The per-second lines of `--format jsonl`: each a [`LiveRow`] made from
//! two readings of the live counters a second apart. The command prints
//! them (and the summary object after them).

use super::phase_of;
use crate::live::Live;
use crate::meters::{Snapshot, PHASES};
use crate::rows::LiveRow;

/// Makes one row per call from what changed since the previous call.
#[derive(Default)]
pub struct Lines {
    last: Snapshot,
}

impl Lines {
    /// The row for the second that just ended; `None` before the run is named.
    pub fn next(&mut self, live: &Live, transport: &str) -> Option<LiveRow> {
        let run_id = live.meters.run_id()?;
        live.meters.sample_cpu();
        let now = live.snapshot();
        let last = std::mem::replace(&mut self.last, now);
        let second = live
            .now_ns()
            .zip(live.measured_phase())
            .map(|(now, (start, _))| (now as i64 - start as i64).div_euclid(1_000_000_000));
        let latency = now.latency.since(&last.latency);
        let us = |q: f64| latency.quantile_ns(q).map(|ns| (ns / 1e3).round());
        let sum = |a: [u64; 3]| a.iter().sum::<u64>();
        Some(LiveRow {
            run_id,
            transport: transport.to_string(),
            phase: PHASES[phase_of(live)].to_string(),
            second,
            sent: now.sent_total().saturating_sub(last.sent_total()),
            delivered: now.delivered_total().saturating_sub(last.delivered_total()),
            duplicates: sum(now.duplicates).saturating_sub(sum(last.duplicates)),
            out_of_order: sum(now.out_of_order).saturating_sub(sum(last.out_of_order)),
            missing: now.missing,
            undelivered: now.undelivered(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            connected_consumers: now.connected,
            backlog: now.backlog,
            harness_cpu_pct: (now.cpu_ratio * 1000.0).round() / 10.0,
            sent_total: now.sent_total(),
            sent_measured_total: now.sent[1],
            delivered_total: now.delivered_total(),
            expected_total: now.expected,
            duplicates_total: sum(now.duplicates),
            out_of_order_total: sum(now.out_of_order),
        })
    }
}
