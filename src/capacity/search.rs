//! The search for the highest rate that meets the SLO, with no Redis and no
//! clock: a [`Steps`] runs one step at a rate and says how it went (and how
//! long it took); [`search`] decides every next rate from what was tried so
//! far ([`next`]), so the same rules drive a real Redis and a simulated one.
//!
//! The rules:
//!
//! - **Climb**: from the starting rate, double after every pass until the
//!   first failure (or `--max-rate`).
//! - **Descend**: when nothing has passed yet, halve below the lowest failure,
//!   down to `--min-rate`; a failure there ends the search (nothing passes).
//!   A pass below a failure starts the bisection, so the search climbs back
//!   up from wherever it went down: it never stays at a floor.
//! - **Bisect**: halfway between the best pass and the lowest failure, until
//!   they are within `--precision` of each other.
//! - **Confirm**: the best pass must pass `--confirm` more times. A failure
//!   there makes it a failure like any other, so the search moves down (the
//!   next best pass, bisecting again if the gap has grown) and confirms anew.
//! - **Never a rate that failed**: the best pass is the highest rate whose
//!   every try passed and that lies below every rate that failed, once or
//!   always. A failure is never retried: the answer may be low, never high.
//! - **Within the budget**: a step starts only if it can end within the budget
//!   at its longest (the longer of the plan's bound and the longest step so far).
//! - A step that failed because of eventbench, not Redis ([`Verdict::Harness`]),
//!   or that did not complete ([`Verdict::Halt`]) ends the search at once.

use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// Why a step runs at its rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Doubling from the start until the first failure.
    #[default]
    Climb,
    /// Halving below a failure while nothing has passed.
    Descend,
    /// Halfway between the best pass and the lowest failure.
    Bisect,
    /// The best pass, again.
    Confirm,
}

/// How a step went, as the search reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The system met the SLO at this rate.
    #[default]
    Pass,
    /// The system did not meet the SLO at this rate.
    Fail,
    /// The step failed, and eventbench itself may be what failed: its figure
    /// would be the harness's, not the system's, so the search stops.
    Harness,
    /// The step did not complete (interrupted, aborted): the search stops.
    Halt,
}

impl Verdict {
    /// A failure, whoever's: no rate at or above it is reported.
    fn failed(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Harness)
    }
}

/// The next step to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// 1, 2, ...
    pub step: u32,
    /// Messages per second.
    pub rate: f64,
    pub phase: Phase,
}

/// What a step gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// How long the step took, start to end (set-up and writing included).
    pub elapsed: Duration,
}

/// Runs steps: a real run against Redis, or a simulated system.
pub trait Steps {
    /// Runs `plan.rate` for one step and judges it. An error ends the search.
    fn step(&mut self, plan: StepPlan) -> impl Future<Output = anyhow::Result<Outcome>>;
}

/// The search's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The first step's rate.
    pub start: f64,
    /// The lowest rate tried; a failure there ends the search.
    pub min_rate: f64,
    /// The highest rate tried, if any.
    pub max_rate: Option<f64>,
    /// Bisection ends when the lowest failure is within this fraction above the best pass (0.05).
    pub precision: f64,
    /// Passes the best rate needs beyond its first.
    pub confirm: u32,
    /// The whole search.
    pub budget: Duration,
    /// The longest a step can take (warmup, measured phase, drain, set-up).
    pub step_max: Duration,
}

/// One step that ran.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tried {
    pub step: u32,
    pub rate: f64,
    pub phase: Phase,
    pub verdict: Verdict,
    pub elapsed: Duration,
}

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The maximum is within the precision of the lowest failure and passed every confirmation.
    Found,
    /// Every rate up to `--max-rate` passed, and it passed its confirmations.
    #[serde(rename = "at_max_rate")]
    MaxRate,
    /// Even the lowest rate failed.
    NothingPasses,
    /// A step failed because of eventbench: the figure is the harness's limit.
    Harness,
    /// The budget left no time for another step.
    Budget,
    /// A step was interrupted or aborted.
    Halted,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub end: End,
    /// The highest rate that passed every try and lies below every failure.
    pub max_rate: Option<f64>,
    /// The lowest rate that failed (the system's failure or the harness's).
    pub first_failure: Option<f64>,
    /// Every step, in order.
    pub tried: Vec<Tried>,
    /// The steps' time together.
    pub spent: Duration,
}

impl Found {
    /// How many times the maximum passed (every try at it did).
    pub fn passes(&self) -> usize {
        self.max_rate.map_or(0, |r| self.tried.iter().filter(|t| t.rate == r).count())
    }

    /// Whether the maximum is within `precision` of the lowest failure (or
    /// the next whole rate above it failed).
    pub fn within(&self, precision: f64) -> bool {
        matches!((self.max_rate, self.first_failure), (Some(lo), Some(hi)) if hi <= lo * (1.0 + precision) + 1e-9 || hi - lo <= 1.0)
    }
}

/// Rates are whole messages per second, at least 1.
pub fn round_rate(rate: f64) -> f64 {
    rate.round().max(1.0)
}

/// The lowest rate that failed, once or always.
fn lowest_failure(tried: &[Tried]) -> Option<f64> {
    tried.iter().filter(|t| t.verdict.failed()).map(|t| t.rate).min_by(f64::total_cmp)
}

/// The highest rate below every failure whose every try passed.
fn best_pass(tried: &[Tried]) -> Option<f64> {
    let below = lowest_failure(tried).unwrap_or(f64::INFINITY);
    tried
        .iter()
        .filter(|t| t.verdict == Verdict::Pass && t.rate < below)
        .map(|t| t.rate)
        .filter(|&r| tried.iter().all(|t| t.rate != r || t.verdict == Verdict::Pass))
        .max_by(f64::total_cmp)
}

/// What the search does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Step(f64, Phase),
    Done(End),
}

/// The next step from everything tried so far (the budget aside).
pub fn next(plan: &Plan, tried: &[Tried]) -> Next {
    let max = plan.max_rate.map_or(f64::INFINITY, round_rate);
    let min = round_rate(plan.min_rate);
    let passes = |rate: f64| tried.iter().filter(|t| t.rate == rate).count() as u32;
    let confirmed_or = |rate: f64, end: End| {
        if passes(rate) > plan.confirm {
            Next::Done(end)
        } else {
            Next::Step(rate, Phase::Confirm)
        }
    };
    match (best_pass(tried), lowest_failure(tried)) {
        (None, None) => Next::Step(round_rate(plan.start).clamp(min, max), Phase::Climb),
        (Some(lo), None) if lo >= max => confirmed_or(lo, End::MaxRate),
        (Some(lo), None) => Next::Step(round_rate(lo * 2.0).min(max), Phase::Climb),
        (None, Some(hi)) if hi <= min => Next::Done(End::NothingPasses),
        (None, Some(hi)) => Next::Step(round_rate(hi / 2.0).max(min), Phase::Descend),
        (Some(lo), Some(hi)) => {
            let mid = round_rate((lo + hi) / 2.0);
            if hi <= lo * (1.0 + plan.precision) || mid <= lo || mid >= hi {
                confirmed_or(lo, End::Found)
            } else {
                Next::Step(mid, Phase::Bisect)
            }
        }
    }
}

/// Runs the search: steps as [`next`] says, while the budget allows.
pub async fn search(plan: &Plan, steps: &mut impl Steps) -> anyhow::Result<Found> {
    let mut tried: Vec<Tried> = Vec::new();
    let mut spent = Duration::ZERO;
    let end = loop {
        let (rate, phase) = match next(plan, &tried) {
            Next::Done(end) => break end,
            Next::Step(rate, phase) => (rate, phase),
        };
        let longest = tried.iter().map(|t| t.elapsed).max().unwrap_or_default().max(plan.step_max);
        if spent + longest > plan.budget {
            break End::Budget;
        }
        let step = tried.len() as u32 + 1;
        let outcome = steps.step(StepPlan { step, rate, phase }).await?;
        spent += outcome.elapsed;
        tried.push(Tried { step, rate, phase, verdict: outcome.verdict, elapsed: outcome.elapsed });
        match outcome.verdict {
            Verdict::Harness => break End::Harness,
            Verdict::Halt => break End::Halted,
            Verdict::Pass | Verdict::Fail => {}
        }
    };
    Ok(Found { end, max_rate: best_pass(&tried), first_failure: lowest_failure(&tried), tried, spent })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    /// Polls a future that never waits on anything (the simulations don't).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn plan() -> Plan {
        Plan {
            start: 1000.0,
            min_rate: 10.0,
            max_rate: None,
            precision: 0.05,
            confirm: 2,
            budget: Duration::from_secs(600),
            step_max: Duration::from_secs(6),
        }
    }

    /// A simulated system: `passes(rate, step)` says whether a step passes.
    struct Sim<F: FnMut(f64, u32) -> Verdict> {
        passes: F,
        step_time: Duration,
        log: Vec<StepPlan>,
    }

    impl<F: FnMut(f64, u32) -> Verdict> Steps for Sim<F> {
        async fn step(&mut self, plan: StepPlan) -> anyhow::Result<Outcome> {
            self.log.push(plan);
            Ok(Outcome { verdict: (self.passes)(plan.rate, plan.step), elapsed: self.step_time })
        }
    }

    fn run(plan: &Plan, passes: impl FnMut(f64, u32) -> Verdict) -> Found {
        let mut sim = Sim { passes, step_time: Duration::from_secs(5), log: Vec::new() };
        let found = block_on(search(plan, &mut sim)).unwrap();
        assert_eq!(found.tried.len(), sim.log.len());
        check_rules(plan, &found);
        found
    }

    /// What every search must hold, whatever the system did.
    fn check_rules(plan: &Plan, found: &Found) {
        assert!(found.spent <= plan.budget, "over budget: {found:?}");
        if let Some(max) = found.max_rate {
            let at_max: Vec<_> = found.tried.iter().filter(|t| t.rate == max).collect();
            assert!(at_max.iter().all(|t| t.verdict == Verdict::Pass), "reported a rate that failed: {found:?}");
            let failures = found.tried.iter().filter(|t| t.verdict.failed());
            assert!(failures.clone().all(|t| t.rate > max), "a failure at or below the maximum: {found:?}");
            if matches!(found.end, End::Found | End::MaxRate) {
                assert_eq!(at_max.len() as u32, 1 + plan.confirm, "confirmed exactly: {found:?}");
            }
            if found.end == End::Found {
                assert!(found.within(plan.precision), "{found:?}");
            }
        }
        assert!(found.tried.iter().all(|t| t.rate >= plan.min_rate && t.rate == round_rate(t.rate)));
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert!(rates.iter().all(|r| r.is_finite()), "{rates:?}");
    }

    fn sharp(knee: f64) -> impl FnMut(f64, u32) -> Verdict {
        move |rate, _| if rate <= knee { Verdict::Pass } else { Verdict::Fail }
    }

    #[test]
    fn a_sharp_knee_is_found_within_the_precision_and_confirmed() {
        let found = run(&plan(), sharp(182_000.0));
        assert_eq!(found.end, End::Found);
        let max = found.max_rate.unwrap();
        assert!((182_000.0 / 1.05..=182_000.0).contains(&max), "{max}");
        assert_eq!(found.passes(), 3);
        let phases: Vec<Phase> = found.tried.iter().map(|t| t.phase).collect();
        // 1k..256k doubling (9 steps), bisection, then two confirmations at the end.
        assert_eq!(&phases[..9], &[Phase::Climb; 9]);
        assert_eq!(&phases[phases.len() - 2..], &[Phase::Confirm; 2]);
        assert!(phases[9..phases.len() - 2].iter().all(|&p| p == Phase::Bisect), "{phases:?}");
        assert!(found.tried.len() <= 9 + 5 + 2, "{}", found.tried.len());
        assert_eq!(
            found.first_failure,
            Some(found.tried.iter().map(|t| t.rate).filter(|&r| r > 182_000.0).fold(f64::MAX, f64::min))
        );
    }

    #[test]
    fn a_start_above_the_knee_descends_and_climbs_back() {
        // Nothing passes at the start: halve until something does, then bisect up.
        let found = run(&plan(), sharp(70.0));
        assert_eq!(found.end, End::Found);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(&rates[..5], &[1000.0, 500.0, 250.0, 125.0, 63.0]);
        assert_eq!(found.tried[1].phase, Phase::Descend);
        let max = found.max_rate.unwrap();
        assert!((66.0..=70.0).contains(&max), "{rates:?}");
        assert!(found.tried.iter().any(|t| t.phase == Phase::Bisect && t.rate > 63.0), "it climbed back: {rates:?}");
    }

    #[test]
    fn a_noisy_system_gets_an_answer_near_its_knee_that_never_failed() {
        // Capacity varies ±5% from step to step (a fixed pseudo-random sequence per seed).
        for seed in 1..200u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let found = run(&plan(), move |rate, _| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let capacity = 50_000.0 * (0.95 + 0.1 * (x % 1000) as f64 / 1000.0);
                if rate <= capacity {
                    Verdict::Pass
                } else {
                    Verdict::Fail
                }
            });
            assert!(matches!(found.end, End::Found), "seed {seed}: {found:?}");
            let max = found.max_rate.unwrap();
            assert!((47_500.0 / 1.05 / 1.1..=52_500.0).contains(&max), "seed {seed}: {max}");
        }
    }

    #[test]
    fn a_failed_confirmation_moves_the_search_down() {
        // 3,000 passes its first try only; everything up to 2,500 always passes.
        let mut tries_at_3000 = 0;
        let found = run(&plan(), move |rate, _| {
            if rate == 3000.0 {
                tries_at_3000 += 1;
            }
            match rate {
                r if r <= 2500.0 => Verdict::Pass,
                r if r == 3000.0 && tries_at_3000 == 1 => Verdict::Pass,
                _ => Verdict::Fail,
            }
        });
        assert_eq!(found.end, End::Found);
        let at_3000: Vec<_> = found.tried.iter().filter(|t| t.rate == 3000.0).map(|t| (t.phase, t.verdict)).collect();
        assert_eq!(at_3000, [(Phase::Bisect, Verdict::Pass), (Phase::Confirm, Verdict::Fail)]);
        let max = found.max_rate.unwrap();
        assert!((2500.0..3000.0).contains(&max), "{:?}", found.tried);
        let hi = found.first_failure.unwrap();
        assert!(hi > 2500.0 && hi < 3000.0, "the bisection went on below 3,000: {:?}", found.tried);
    }

    #[test]
    fn an_intermittently_failing_system_is_never_reported_above_a_failure() {
        // Below a knee of 40,000, one step in five fails anyway, at any rate.
        let mut ends = std::collections::BTreeMap::new();
        let mut maxima = Vec::new();
        for seed in 1..300u64 {
            let mut x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
            let plan = Plan { budget: Duration::from_secs(300), ..plan() };
            let found = run(&plan, move |rate, _| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if rate > 40_000.0 || x % 5 == 0 {
                    Verdict::Fail
                } else {
                    Verdict::Pass
                }
            });
            // A failure at a low rate pulls the answer down: it is never above what failed.
            assert!(matches!(found.end, End::Found | End::NothingPasses | End::Budget), "seed {seed}: {found:?}");
            assert!(found.max_rate.is_none_or(|m| m <= 40_000.0), "seed {seed}: {found:?}");
            *ends.entry(format!("{:?}", found.end)).or_insert(0) += 1;
            maxima.extend(found.max_rate);
        }
        // Never stuck: each search ends with a confirmed answer (a low one: every failure counts).
        assert_eq!(ends.get("Found"), Some(&299), "{ends:?}");
        assert_eq!(maxima.len(), 299);
        // Every third step fails: still an answer, below every failure, confirmed.
        let found =
            run(&plan(), |rate, step| if rate > 40_000.0 || step % 3 == 0 { Verdict::Fail } else { Verdict::Pass });
        assert!(matches!(found.end, End::Found | End::NothingPasses), "{found:?}");
    }

    #[test]
    fn an_impossible_slo_descends_to_the_lowest_rate_and_ends() {
        let found = run(&plan(), |_, _| Verdict::Fail);
        assert_eq!(found.end, End::NothingPasses);
        assert_eq!(found.max_rate, None);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [1000.0, 500.0, 250.0, 125.0, 63.0, 32.0, 16.0, 10.0]);
        assert_eq!(found.first_failure, Some(10.0));
        // The lowest rate may be the start: one step.
        let found = run(&Plan { min_rate: 1000.0, ..plan() }, |_, _| Verdict::Fail);
        assert_eq!((found.end, found.tried.len()), (End::NothingPasses, 1));
    }

    #[test]
    fn a_budget_that_runs_out_stops_before_a_step_could_overrun_it() {
        // 5 s steps, at most 6 s each by the plan: 28 s leaves room for 5.
        let plan = Plan { budget: Duration::from_secs(28), ..plan() };
        let found = run(&plan, sharp(182_000.0));
        assert_eq!(found.end, End::Budget);
        assert_eq!(found.tried.len(), 5);
        assert_eq!(found.max_rate, Some(16_000.0), "the best so far, unconfirmed");
        assert!(!found.within(plan.precision));
        // Steps longer than the plan's bound count at their length.
        let mut sim = Sim { passes: sharp(182_000.0), step_time: Duration::from_secs(10), log: Vec::new() };
        let found = block_on(search(&plan, &mut sim)).unwrap();
        assert_eq!((found.end, found.tried.len()), (End::Budget, 2));
        // Not even one step fits.
        let found = run(&Plan { budget: Duration::from_secs(5), ..plan.clone() }, sharp(1e9));
        assert_eq!((found.end, found.tried.len(), found.max_rate), (End::Budget, 0, None));
    }

    #[test]
    fn the_harness_as_the_limit_stops_the_search() {
        let found = run(&plan(), |rate, _| if rate >= 8000.0 { Verdict::Harness } else { Verdict::Pass });
        assert_eq!(found.end, End::Harness);
        assert_eq!((found.max_rate, found.first_failure), (Some(4000.0), Some(8000.0)));
        let found = run(&plan(), |_, _| Verdict::Halt);
        assert_eq!((found.end, found.max_rate, found.tried.len()), (End::Halted, None, 1));
    }

    #[test]
    fn a_max_rate_caps_the_climb_and_is_confirmed() {
        let plan = Plan { max_rate: Some(5000.0), ..plan() };
        let found = run(&plan, sharp(1e9));
        assert_eq!(found.end, End::MaxRate);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [1000.0, 2000.0, 4000.0, 5000.0, 5000.0, 5000.0]);
        // A start above the cap starts at the cap.
        let found = run(&Plan { start: 9000.0, ..plan }, sharp(1e9));
        assert_eq!(found.tried[0].rate, 5000.0);
    }

    #[test]
    fn no_confirmation_and_low_rates_still_end() {
        let plan = Plan { start: 1.0, min_rate: 1.0, confirm: 0, precision: 0.01, ..plan() };
        let found = run(&plan, sharp(3.0));
        assert_eq!((found.end, found.max_rate), (End::Found, Some(3.0)));
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [1.0, 2.0, 4.0, 3.0], "whole rates: no bisection between 3 and 4");
    }
}
