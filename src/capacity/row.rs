//! `capacity.csv`: one row per step of a search (the README documents each column).

use super::search::{Phase, Verdict};
use super::slo::Judgement;
use crate::live::Status;
use crate::rows::SummaryRow;
use serde::{Deserialize, Serialize};

/// `capacity.csv`: one row per step, in the order they ran (transport after transport).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapacityRow {
    pub step: u32,
    pub transport: String,
    pub phase: Phase,
    pub rate: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub undelivered: u64,
    pub send_rate: f64,
    pub delivery_rate: f64,
    /// Empty when nothing was delivered, as in `summary.csv`.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub send_lag_p99_us: f64,
    pub sustained: bool,
    pub harness_limited: bool,
    pub status: Status,
    pub passed: bool,
    pub verdict: Verdict,
    /// Which try of its rate this step was (1, 2, ...).
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub threads: u32,
    #[serde(default)]
    pub harness_cpu_pct: f64,
    #[serde(default)]
    pub harness_thread_max_pct: f64,
    #[serde(default)]
    pub machine_wakeup_p99_us: Option<f64>,
    #[serde(default)]
    pub machine_other_cpu_pct: Option<f64>,
    #[serde(default)]
    pub steal_pct: Option<f64>,
    /// How the step was run differently from the search's scenario, and why (a harness-limited step retried).
    #[serde(default)]
    pub note: String,
    pub failed: String,
    pub elapsed_s: f64,
    pub dir: String,
}

impl CapacityRow {
    /// The row of a step: its summary, how it was judged, where its run directory is.
    pub fn new(step: u32, phase: Phase, s: &SummaryRow, judged: &Judgement, elapsed_s: f64, dir: &str) -> CapacityRow {
        let mut failed: Vec<String> = judged.failed.iter().map(|(_, line)| line.clone()).collect();
        if let Some(why) = &judged.harness {
            failed.push(format!("harness: {why}"));
        }
        if let Some(why) = &judged.machine {
            failed.push(format!("machine: {why}"));
        }
        CapacityRow {
            step,
            transport: s.transport.clone(),
            phase,
            rate: s.target_rate,
            sent: s.sent,
            expected: s.expected,
            delivered: s.delivered,
            lost: s.lost,
            undelivered: s.undelivered,
            send_rate: s.send_rate,
            delivery_rate: s.delivery_rate,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            p999_us: s.p999_us,
            max_us: s.max_us,
            send_lag_p99_us: s.send_lag_p99_us,
            sustained: s.sustained,
            harness_limited: s.harness_limited,
            status: s.status,
            passed: judged.verdict == Verdict::Pass,
            verdict: judged.verdict,
            attempt: 1,
            threads: s.threads,
            harness_cpu_pct: s.harness_cpu_pct,
            harness_thread_max_pct: s.harness_thread_max_pct,
            machine_wakeup_p99_us: s.machine_wakeup_p99_us,
            machine_other_cpu_pct: s.machine_other_cpu_pct,
            steal_pct: s.steal_pct,
            note: String::new(),
            failed: failed.join("; "),
            elapsed_s,
            dir: dir.to_string(),
        }
    }

    /// Messages delivered per second, each counted once however many
    /// deliveries it makes (fan-out, groups): comparable with the rate offered.
    pub fn delivered_messages_rate(&self) -> f64 {
        if self.expected == 0 || self.sent == 0 {
            return self.delivery_rate;
        }
        self.delivery_rate * self.sent as f64 / self.expected as f64
    }
}
