//! Capacity search: the highest rate a Redis sustains within an SLO, and
//! what breaks above it.
//!
//! - [`search`]: the rules (climb, descend, bisect, confirm, budget), pure:
//!   no Redis, no clock, driven through the [`search::Steps`] trait;
//! - [`slo`]: the SLO each step is judged by, and whether a failure is the
//!   system's or eventbench's;
//! - [`row`]: `capacity.csv`; [`plot`]: `capacity.svg`; [`page`]: `capacity.html`;
//! - here: a finished search ([`Searched`]), its headline and its JSON.
//!
//! Each step is an ordinary run through the one pipeline (the command in
//! `commands::capacity` runs it and writes its run directory): nothing here
//! knows how a step runs.

pub mod page;
pub mod plot;
pub mod row;
pub mod search;
pub mod slo;

pub use row::CapacityRow;
pub use search::{End, Found, Plan};
pub use slo::Slo;

use crate::report::fmt::{plural, thousands};
use crate::report::plots::fmt_latency;
use crate::rows::SummaryRow;
use serde::Serialize;
use std::time::Duration;

/// One step of a finished search: its `capacity.csv` row and its run's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub row: CapacityRow,
    pub summary: SummaryRow,
}

/// A finished search of one transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    pub transport: String,
    pub plan: Plan,
    pub found: Found,
    /// One per step that ran, in order.
    pub steps: Vec<Step>,
}

/// `1,500 msg/s`.
pub fn msg_rate(rate: f64) -> String {
    if rate >= 1.0 && rate.fract() == 0.0 {
        format!("{} msg/s", thousands(rate as u64))
    } else {
        format!("{rate:.1} msg/s")
    }
}

impl Searched {
    /// The steps at `rate`.
    fn at(&self, rate: f64) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(move |s| s.row.rate == rate)
    }

    /// The worst value of `column` over the tries of the maximum that met
    /// the SLO (a rate passes on its majority: quoting a failed try's value
    /// beside "max sustainable" would read as the SLO broken at the maximum).
    pub fn worst_at_max(&self, column: &str) -> Option<f64> {
        let passed = self.at(self.found.max_rate?).filter(|s| s.row.verdict == search::Verdict::Pass);
        passed.filter_map(|s| slo::column(&s.summary, column)).reduce(f64::max)
    }

    /// The quoted latency at the maximum (the worst of its passing tries),
    /// and how many of its tries passed when not all did: `p99 840 µs`, `p99
    /// 1.77 ms in 3 of 4 tries`.
    fn latency_at_max(&self, slo: &Slo) -> Option<String> {
        let column = slo.quoted_latency();
        let worst = self.worst_at_max(&column)?;
        let tries = self.at(self.found.max_rate?).count();
        let passed = self.found.passes();
        let share = if passed < tries { format!(" in {passed} of {tries} tries") } else { String::new() };
        Some(format!("{} {}{share}", slo::column_label(&column), fmt_latency(worst)))
    }

    /// What failed at the lowest failure, in words: `at 200,000 msg/s p99 was 2.31 ms > 1 ms`.
    pub fn failure_text(&self, slo: &Slo) -> Option<String> {
        let hi = self.found.first_failure?;
        let step = self.at(hi).find(|s| s.row.verdict == search::Verdict::Fail)?;
        Some(format!("at {} {}", msg_rate(hi), slo.reason_text(&step.summary)))
    }

    /// The one line a user reads: the maximum, and what broke above it.
    pub fn headline(&self, slo: &Slo) -> String {
        let f = &self.found;
        let at_max = |max: f64| match self.latency_at_max(slo) {
            Some(l) => format!("{} ({l})", msg_rate(max)),
            None => msg_rate(max),
        };
        let failure = self.failure_text(slo);
        let then = |text: String| match &failure {
            Some(why) => format!("{text}; {why}"),
            None => text,
        };
        let n = self.steps.len();
        match (f.end, f.max_rate) {
            (End::Found, Some(max)) => then(format!("max sustainable rate: {}", at_max(max))),
            (End::MaxRate, Some(max)) => {
                format!("max sustainable rate: at least {}: every rate up to --max-rate met the SLO", at_max(max))
            }
            (End::Harness | End::Inconclusive, _) => self.inconclusive_text(),
            (End::Spread, _) => self.spread_text(),
            (End::Budget, Some(max)) => then(format!(
                "the budget ({}) ran out after {}: best so far {}, {}",
                budget_text(self.plan.budget),
                plural(n as u64, "step"),
                at_max(max),
                if f.within(self.plan.precision) {
                    format!("passed {} of the {} times it must", f.passes(), self.plan.confirm + 1)
                } else {
                    format!("not yet within {}% of a failure", number_pct(self.plan.precision))
                }
            )),
            (End::Budget, None) => then(format!(
                "the budget ({}) ran out after {} before any rate met the SLO",
                budget_text(self.plan.budget),
                plural(n as u64, "step")
            )),
            (End::Halted, Some(max)) => {
                format!("the search stopped after {}: best so far {}", plural(n as u64, "step"), at_max(max))
            }
            (End::Halted, None) => {
                format!("the search stopped after {}, before any rate met the SLO", plural(n as u64, "step"))
            }
            (End::NothingPasses, _) | (End::Found | End::MaxRate, None) => match &failure {
                Some(why) => format!("no rate met the SLO: {why} (the lowest rate, --min-rate)"),
                None => "no rate met the SLO".into(),
            },
        }
    }

    /// What to try when the search gives no maximum (nothing passed, it
    /// could not tell, or it ran out of time first); `None` when it gives one.
    pub fn advice(&self) -> Option<String> {
        if self.found.max_rate.is_some() && !matches!(self.found.end, End::Harness | End::Inconclusive | End::Spread) {
            return None;
        }
        // The machine's floor at its quietest step: a bound below that could hold in no step. (The
        // worst step's floor, often the full-speed ceiling step's, says nothing of the others.)
        let floor = self.steps.iter().filter_map(|s| s.summary.machine_wakeup_p99_us).reduce(f64::min);
        let floor = floor.map_or(String::new(), |f| {
            format!(
                "; this machine alone added at least {} at p99 in every step (machine_wakeup_p99_us in capacity.csv): a bound below that cannot hold here",
                fmt_latency(f)
            )
        });
        let ceiling_unclear =
            self.steps.iter().any(|s| s.row.phase == search::Phase::Ceiling && s.row.verdict.unclear());
        let no_ceiling = if ceiling_unclear {
            "; --no-ceiling skips the first step (as fast as it goes), which could not be judged"
        } else {
            ""
        };
        let text = match self.found.end {
            End::Harness => format!(
                "try more --threads, fewer --consumers, or --workers to spread eventbench over processes{no_ceiling}"
            ),
            // Only tries that disagreed: the system's own hiccups, not the machine's.
            End::Inconclusive if !self.steps.iter().any(|s| s.row.verdict.unclear()) => format!(
                "try longer steps (--step 10s) to average more of the system's hiccups into each try, or more --tries{floor}"
            ),
            End::Inconclusive => format!(
                "try again on a quieter machine (machine_other_cpu_pct and steal_pct in capacity.csv say how busy it was), a looser --slo, or more --tries{no_ceiling}{floor}"
            ),
            End::Spread => format!(
                "try longer steps (--step 10s) to average more of the system's hiccups into each try, or --repeat to see the spread{floor}"
            ),
            End::Budget | End::Halted => "try a longer --budget, or a --rate nearer the answer".to_string(),
            End::NothingPasses | End::Found | End::MaxRate => {
                format!("try a looser --slo, a lower --min-rate, or fewer --consumers{floor}")
            }
        };
        Some(text)
    }

    /// The range the evidence supports: `between 8,000 and 16,000 msg/s`.
    pub fn range_text(&self) -> String {
        match self.found.range() {
            (Some(lo), Some(hi)) => format!("between {} and {}", thousands(lo as u64), msg_rate(hi)),
            (Some(lo), None) => format!("at least {}", msg_rate(lo)),
            (None, Some(hi)) => format!("below {}", msg_rate(hi)),
            (None, None) => "no rate could be judged".into(),
        }
    }

    /// An inconclusive end in words: the range, and how many steps could not
    /// be judged and why (the last such step's evidence).
    fn inconclusive_text(&self) -> String {
        let unclear: Vec<&Step> = self.steps.iter().filter(|s| s.row.verdict.unclear()).collect();
        let why = unclear.last().map_or(String::new(), |s| {
            let judged = &s.row;
            let last = judged.failed.rsplit("; ").next().unwrap_or_default();
            format!(": {}", last.trim_start_matches("harness: ").trim_start_matches("machine: "))
        });
        let whose = match self.found.end {
            End::Harness => "eventbench may have been the limit",
            _ => "the machine may have been what failed",
        };
        let disagreed = self.disagreed_text();
        if unclear.is_empty() {
            // No step's failure was the machine's or eventbench's: the range
            // comes from tries of one rate that disagreed, and says so.
            return format!("inconclusive: {}{disagreed}", self.range_text());
        }
        format!(
            "inconclusive: {}; in {} of {} {whose}{why}{disagreed}",
            self.range_text(),
            unclear.len(),
            plural(self.steps.len() as u64, "step"),
        )
    }

    /// The rates inside the range whose tries both met and missed the SLO:
    /// `; the tries disagreed at 411 msg/s (the SLO held in 1 of 4)`.
    fn disagreed_text(&self) -> String {
        let (lo, hi) = self.found.range();
        let inside = |r: f64| r > lo.unwrap_or(0.0) && r < hi.unwrap_or(f64::INFINITY);
        let mut rates: Vec<f64> = self.found.tried.iter().map(|t| t.rate).filter(|&r| inside(r)).collect();
        rates.sort_by(f64::total_cmp);
        rates.dedup();
        let parts: Vec<String> = rates
            .into_iter()
            .filter_map(|r| {
                let (p, f, _) = self.found.tally(r);
                (p > 0 && f > 0).then(|| format!("{} (the SLO held in {p} of {})", msg_rate(r), p + f))
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("; the tries disagreed at {}", parts.join(", "))
        }
    }

    /// A knee wider than the precision, in words: the range, and the tries
    /// that met the SLO above a rate that failed.
    fn spread_text(&self) -> String {
        let f = &self.found;
        let above = f.passed_above.map_or(String::new(), |r| {
            let (p, fails, _) = f.tally(r);
            let low = f.first_failure.map_or(String::new(), |hi| format!(", above {} where most failed", msg_rate(hi)));
            format!("; the SLO held in {p} of {} tries at {}{low}", p + fails, msg_rate(r))
        });
        format!("inconclusive: {}{above}: on this machine the limit is a range, not one rate", self.range_text())
    }

    /// The search for `--format json`.
    pub fn json(&self, slo: &Slo) -> SearchJson {
        let (range_low, range_high) = self.found.range();
        SearchJson {
            transport: self.transport.clone(),
            max_rate: self.found.figure(),
            end: self.found.end,
            headline: self.headline(slo),
            advice: self.advice(),
            best_pass: self.found.max_rate,
            first_failure: self.found.first_failure,
            range_low,
            range_high,
            ceiling_rate: self.found.ceiling,
            passes_at_max: self.found.passes() as u32,
            spent_s: self.found.spent.as_secs_f64(),
            slo: slo.gates().iter().map(ToString::to_string).collect(),
            steps: self.steps.iter().map(|s| s.row.clone()).collect(),
        }
    }
}

/// A budget for people: whole seconds from 10 s up, tenths below (a
/// transport's share of `--budget` is what was left of it, to the nanosecond).
pub fn budget_text(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    let rounded = if ms >= 10_000 { (ms + 500) / 1000 * 1000 } else { (ms + 50) / 100 * 100 };
    crate::clock::fmt_duration(&Duration::from_millis(rounded))
}

/// How serde names a unit variant (`climb`, `fail`, `found`).
pub fn word(v: impl Serialize) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `5` for 0.05.
fn number_pct(fraction: f64) -> String {
    crate::report::fmt::number(fraction * 100.0)
}

/// A search as `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SearchJson {
    pub transport: String,
    /// The maximum the search stands behind (found, or at `--max-rate`); null otherwise.
    pub max_rate: Option<f64>,
    /// How the search ended.
    pub end: End,
    pub headline: String,
    /// What to try when there is no maximum ([`Searched::advice`]); null with one.
    pub advice: Option<String>,
    /// The highest rate that passed by its tries' majority below every rate that failed so.
    pub best_pass: Option<f64>,
    pub first_failure: Option<f64>,
    /// The range the evidence supports (from the best pass to the lowest failure; null: unbounded).
    pub range_low: Option<f64>,
    pub range_high: Option<f64>,
    /// What the `--rate 0` step delivered a second.
    pub ceiling_rate: Option<f64>,
    pub passes_at_max: u32,
    pub spent_s: f64,
    pub slo: Vec<String>,
    pub steps: Vec<CapacityRow>,
}

/// `capacity.json`: what the page needs beyond `capacity.csv` and the steps'
/// own directories (the SLO, each search's plan and end), so that
/// `eventbench report` can rebuild `capacity.html` and `capacity.svg`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Saved {
    pub slo: Vec<String>,
    /// The whole command's budget.
    pub budget: Duration,
    pub searches: Vec<SavedSearch>,
}

/// One transport's search in `capacity.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SavedSearch {
    pub transport: String,
    pub plan: Plan,
    pub found: Found,
}

impl Saved {
    pub fn of(searches: &[Searched], slo: &Slo, budget: Duration) -> Saved {
        Saved {
            slo: slo.user_gates().iter().map(ToString::to_string).collect(),
            budget,
            searches: searches
                .iter()
                .map(|s| SavedSearch { transport: s.transport.clone(), plan: s.plan.clone(), found: s.found.clone() })
                .collect(),
        }
    }

    /// The searches again, with their rows (from `capacity.csv`) and each step's summary (`summary`).
    pub fn searches(
        self,
        rows: &[CapacityRow],
        summary: impl Fn(&CapacityRow) -> anyhow::Result<SummaryRow>,
    ) -> anyhow::Result<(Vec<Searched>, Slo)> {
        let gates = self.slo.iter().map(|g| g.parse::<crate::assertion::Assertion>());
        let gates = gates.collect::<Result<Vec<_>, _>>().map_err(|e| anyhow::anyhow!("capacity.json: a gate: {e}"))?;
        let mut out = Vec::new();
        for s in self.searches {
            let mut steps = Vec::new();
            for row in rows.iter().filter(|r| r.transport == s.transport) {
                steps.push(Step { row: row.clone(), summary: summary(row)? });
            }
            out.push(Searched { transport: s.transport, plan: s.plan, found: s.found, steps });
        }
        Ok((out, Slo::new(gates)))
    }
}

/// The plan's step bound from the step's phases: warmup, measured phase,
/// drain, and a second for setting up and writing the run.
pub fn step_max(warmup: Duration, step: Duration, drain: Duration) -> Duration {
    warmup + step + drain + Duration::from_secs(1)
}

#[cfg(test)]
mod tests {
    use super::search::{Phase, Tried, Verdict};
    use super::*;

    fn step(n: u32, rate: f64, p99_us: f64, verdict: Verdict) -> (Step, Tried) {
        let summary = SummaryRow {
            transport: "pubsub".into(),
            target_rate: rate,
            send_rate: rate,
            sustained: true,
            p99_us: Some(p99_us),
            raw_p99_us: Some(p99_us),
            ..SummaryRow::default()
        };
        let slo = Slo::new(["p99_us<1000".parse().unwrap()]);
        let judged = slo.judge(&summary);
        assert_eq!(judged.verdict, verdict, "{summary:?}");
        let row = CapacityRow::new(n, Phase::Climb, &summary, &judged, 3.0, "d");
        let tried = Tried { step: n, rate, phase: Phase::Climb, verdict, elapsed: Duration::from_secs(3) };
        (Step { row, summary }, tried)
    }

    fn searched(end: End, max_rate: Option<f64>, first_failure: Option<f64>, steps: Vec<(Step, Tried)>) -> Searched {
        let (steps, tried): (Vec<Step>, Vec<Tried>) = steps.into_iter().unzip();
        let plan = Plan {
            start: 1000.0,
            min_rate: 10.0,
            max_rate: None,
            precision: 0.05,
            confirm: 2,
            tries: 3,
            ceiling: false,
            budget: Duration::from_secs(60),
            step_max: Duration::from_secs(5),
        };
        let found = Found {
            end,
            max_rate,
            first_failure,
            ceiling: None,
            passed_above: None,
            tried,
            spent: Duration::from_secs(9),
        };
        Searched { transport: "pubsub".into(), plan, found, steps }
    }

    #[test]
    fn a_budget_reads_as_a_person_would_give_it() {
        assert_eq!(budget_text(Duration::from_nanos(29_999_999_860)), "30s");
        assert_eq!(budget_text(Duration::from_millis(299_600)), "5m");
        assert_eq!(budget_text(Duration::from_millis(7_449)), "7s400ms");
    }

    #[test]
    fn with_no_maximum_the_search_says_what_to_try() {
        let slo = Slo::new(["p99_us<1000".parse().unwrap()]);
        let mut slow = step(1, 10.0, 5000.0, Verdict::Fail);
        slow.0.summary.machine_wakeup_p99_us = Some(2100.0);
        // A step whose machine was worse does not raise the floor every step had.
        let mut worse = step(2, 20.0, 9000.0, Verdict::Fail);
        worse.0.summary.machine_wakeup_p99_us = Some(8000.0);
        let none = searched(End::NothingPasses, None, Some(10.0), vec![slow, worse]);
        let advice = none.advice().unwrap();
        assert!(advice.starts_with("try a looser --slo, a lower --min-rate, or fewer --consumers"), "{advice}");
        let floor = format!("this machine alone added at least {} at p99 in every step", fmt_latency(2100.0));
        assert!(advice.contains(&floor), "{advice}");
        assert!(!none.headline(&slo).contains("figure"));
        let found = searched(End::Found, Some(1000.0), Some(2000.0), vec![step(1, 1000.0, 100.0, Verdict::Pass)]);
        assert_eq!(found.advice(), None);
        let budget = searched(End::Budget, None, None, vec![step(1, 1000.0, 5000.0, Verdict::Fail)]);
        assert_eq!(budget.advice().as_deref(), Some("try a longer --budget, or a --rate nearer the answer"));
    }

    #[test]
    fn tries_that_disagree_are_named_not_blamed_on_the_machine() {
        let slo = Slo::new(["p99_us<1000".parse().unwrap()]);
        let s = searched(
            End::Inconclusive,
            Some(356.0),
            Some(474.0),
            vec![
                step(1, 356.0, 800.0, Verdict::Pass),
                step(2, 474.0, 5000.0, Verdict::Fail),
                step(3, 474.0, 5000.0, Verdict::Fail),
                step(4, 411.0, 5000.0, Verdict::Fail),
                step(5, 411.0, 900.0, Verdict::Pass),
                step(6, 411.0, 5000.0, Verdict::Fail),
                step(7, 411.0, 5000.0, Verdict::Fail),
            ],
        );
        assert_eq!(
            s.headline(&slo),
            "inconclusive: between 356 and 474 msg/s; the tries disagreed at 411 msg/s (the SLO held in 1 of 4)"
        );
    }

    #[test]
    fn the_headline_says_the_maximum_and_what_broke_above_it() {
        let slo = Slo::new(["p99_us<1000".parse().unwrap()]);
        let s = searched(
            End::Found,
            Some(182_000.0),
            Some(200_000.0),
            vec![
                step(1, 182_000.0, 810.0, Verdict::Pass),
                step(2, 200_000.0, 2310.0, Verdict::Fail),
                step(3, 182_000.0, 840.0, Verdict::Pass),
            ],
        );
        assert_eq!(
            s.headline(&slo),
            "max sustainable rate: 182,000 msg/s (p99 840 µs); at 200,000 msg/s p99 was 2.31 ms > 1 ms"
        );
        let json = serde_json::to_value(s.json(&slo)).unwrap();
        assert_eq!(json["max_rate"], 182_000.0);
        assert_eq!(json["end"], "found");
        assert_eq!(json["steps"].as_array().unwrap().len(), 3);
        assert_eq!(json["steps"][1]["failed"], "p99_us<1000 (p99_us = 2310)");
        assert_eq!(json["steps"][1]["verdict"], "fail");

        let none = searched(End::NothingPasses, None, Some(10.0), vec![step(1, 10.0, 5000.0, Verdict::Fail)]);
        assert_eq!(
            none.headline(&slo),
            "no rate met the SLO: at 10 msg/s p99 was 5 ms > 1 ms (the lowest rate, --min-rate)"
        );
        let budget = searched(End::Budget, Some(1000.0), None, vec![step(1, 1000.0, 100.0, Verdict::Pass)]);
        assert_eq!(
            budget.headline(&slo),
            "the budget (1m) ran out after 1 step: best so far 1,000 msg/s (p99 100 µs), not yet within 5% of a failure"
        );
    }
}
