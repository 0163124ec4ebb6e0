//! The search for the highest rate that meets the SLO, with no Redis and no
//! clock: a [`Steps`] runs one step at a rate and says how it went (and how
//! long it took); [`search`] decides every next rate from what was tried so
//! far ([`next`]), so the same rules drive a real Redis and a simulated one.
//!
//! The rules:
//!
//! - **Ceiling**: first, one step at `--rate 0` (as fast as it goes): the
//!   messages it delivered a second cap the coarse pass (with `ceiling`).
//! - **A verdict per rate, from its tries**: a step that passes is a pass; a
//!   step that does not is tried again, up to `--tries`, until a majority
//!   of the tries passed or failed ([`rate_verdict`]). A step the machine or
//!   the harness may have failed ([`Verdict::Machine`], [`Verdict::Harness`])
//!   says nothing of the system: a rate whose tries are mostly those is
//!   *unclear*, and never caps the search.
//! - **Climb**: by decades from the starting rate (×10) up to the ceiling,
//!   then doubling, until a rate fails (or `--max-rate`). An unclear rate
//!   does not stop the climb below the ceiling: the machine's floor can be
//!   worst at low rates.
//! - **Descend**: when nothing has passed yet, by decades below the lowest
//!   failure, down to `--min-rate`; a failure there ends the search (nothing passes).
//! - **Bisect**: at the geometric mean of the highest rate that passed or was
//!   unclear and the lowest failure, until they are within `--precision`.
//! - **Confirm**: both sides of the knee: the best pass must pass `--confirm`
//!   more times, and the lowest failure fail as often. A confirmation that
//!   goes the other way is one more try of that rate: the rate's verdict may
//!   turn, and the search goes on from there.
//! - **Inconclusive**: when an unclear rate lies between the best pass and the
//!   lowest failure once they are within the precision, the answer is the range.
//! - **Within the budget**: a step starts only if it can end within the budget
//!   at its longest (the longer of the plan's bound and the longest step so far).
//! - A step that did not complete ([`Verdict::Halt`]) ends the search at once.

use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// Why a step runs at its rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `--rate 0`: as fast as it goes, to cap the coarse pass.
    Ceiling,
    /// By decades (then doubling) from the start until the first failure.
    #[default]
    Climb,
    /// By decades below a failure while nothing has passed.
    Descend,
    /// Between the best pass (or unclear rate) and the lowest failure.
    Bisect,
    /// A side of the knee, again.
    Confirm,
    /// A rate whose tries have no majority yet, again.
    Retry,
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
    /// The step failed, and eventbench itself may be what failed (it had no
    /// CPU to spare, or fell behind its schedule): no verdict on the system.
    Harness,
    /// The step failed, and the machine may be what failed (its own wake-up
    /// floor was above a latency bound, or other processes or the hypervisor
    /// took its CPU): no verdict on the system.
    Machine,
    /// The step did not complete (interrupted, aborted): the search stops.
    Halt,
}

impl Verdict {
    /// A failure that may not be the system's.
    pub fn unclear(self) -> bool {
        matches!(self, Verdict::Harness | Verdict::Machine)
    }
}

/// The next step to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepPlan {
    /// 1, 2, ...
    pub step: u32,
    /// Messages per second (0 for the ceiling: as fast as it goes).
    pub rate: f64,
    pub phase: Phase,
}

/// What a step gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// How long the step took, start to end (set-up and writing included).
    pub elapsed: Duration,
    /// Messages delivered a second (each counted once): what the ceiling reads.
    pub delivered_rate: f64,
}

/// Runs steps: a real run against Redis, or a simulated system.
pub trait Steps {
    /// Runs `plan.rate` for one step and judges it. An error ends the search.
    fn step(&mut self, plan: StepPlan) -> impl Future<Output = anyhow::Result<Outcome>>;
}

/// The search's settings.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Plan {
    /// The first step's rate.
    pub start: f64,
    /// The lowest rate tried; a failure there ends the search.
    pub min_rate: f64,
    /// The highest rate tried, if any.
    pub max_rate: Option<f64>,
    /// Bisection ends when the lowest failure is within this fraction above the best pass (0.05).
    pub precision: f64,
    /// Tries each side of the knee needs beyond its first.
    pub confirm: u32,
    /// Tries of a rate whose first try failed, at most (before confirmations).
    pub tries: u32,
    /// Whether the search starts with a step at `--rate 0`.
    pub ceiling: bool,
    /// The whole search.
    pub budget: Duration,
    /// The longest a step can take (warmup, measured phase, drain, set-up).
    pub step_max: Duration,
}

/// One step that ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct Tried {
    pub step: u32,
    pub rate: f64,
    pub phase: Phase,
    pub verdict: Verdict,
    pub elapsed: Duration,
}

/// How the search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// The maximum is within the precision of the lowest failure, and both were confirmed.
    Found,
    /// Every rate up to `--max-rate` passed, and it passed its confirmations.
    #[serde(rename = "at_max_rate")]
    MaxRate,
    /// Even the lowest rate failed.
    NothingPasses,
    /// Near the knee, the harness may have been what failed: the answer is a range.
    Harness,
    /// Near the knee, the machine may have been what failed: the answer is a range.
    Inconclusive,
    /// A knee was found, but tries above it met the SLO too, at rates whose
    /// majority failed: on this system the limit is a range wider than the
    /// precision, not a rate, and one figure from it would be a coin toss.
    Spread,
    /// The budget left no time for another step.
    Budget,
    /// A step was interrupted or aborted.
    Halted,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Found {
    pub end: End,
    /// The highest rate that passed by its tries' majority and lies below every rate that failed so.
    pub max_rate: Option<f64>,
    /// The lowest rate that failed by its tries' majority.
    pub first_failure: Option<f64>,
    /// What the `--rate 0` step delivered a second.
    pub ceiling: Option<f64>,
    /// The highest rate above the lowest failure where a try met the SLO (a
    /// [`End::Spread`] knee's upper end).
    #[serde(default)]
    pub passed_above: Option<f64>,
    /// Every step, in order.
    pub tried: Vec<Tried>,
    /// The steps' time together.
    pub spent: Duration,
}

impl Found {
    /// How many times the maximum passed.
    pub fn passes(&self) -> usize {
        self.max_rate.map_or(0, |r| count(&self.tried, r).0 as usize)
    }

    /// (passes, failures, unclear) among the tries of `rate`.
    pub fn tally(&self, rate: f64) -> (u32, u32, u32) {
        count(&self.tried, rate)
    }

    /// Whether the maximum is within `precision` of the lowest failure (or
    /// the next whole rate above it failed).
    pub fn within(&self, precision: f64) -> bool {
        matches!((self.max_rate, self.first_failure), (Some(lo), Some(hi)) if hi <= lo * (1.0 + precision) + 1e-9 || hi - lo <= 1.0)
    }

    /// The one figure the search stands behind: the maximum, when the search
    /// ended with one (found, or every rate up to `--max-rate`).
    pub fn figure(&self) -> Option<f64> {
        match self.end {
            End::Found | End::MaxRate => self.max_rate,
            _ => None,
        }
    }

    /// The rates the evidence allows the maximum to be between: from the best
    /// pass (or nothing) to the lowest failure (or no bound), or, for a
    /// [`End::Spread`] knee, to the highest rate where a try still passed.
    pub fn range(&self) -> (Option<f64>, Option<f64>) {
        match self.end {
            End::Spread => (self.max_rate, self.passed_above.or(self.first_failure)),
            _ => (self.max_rate, self.first_failure),
        }
    }

    /// The rates between the best pass and the lowest failure whose tries were unclear.
    pub fn unclear_between(&self, plan: &Plan) -> Vec<f64> {
        unclear_between(plan, &self.tried, self.max_rate, self.first_failure)
    }
}

/// Rates are whole messages per second, at least 1.
pub fn round_rate(rate: f64) -> f64 {
    rate.round().max(1.0)
}

/// A rate's tries as the search reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Pass,
    Fail,
    /// Mostly [`Verdict::Machine`] or [`Verdict::Harness`], or no majority after every try it may have.
    Unclear,
    /// No majority yet: try again.
    Open,
}

/// (passes, failures, unclear) among the tries of `rate`.
fn count(tried: &[Tried], rate: f64) -> (u32, u32, u32) {
    let at = tried.iter().filter(|t| t.rate == rate && t.phase != Phase::Ceiling);
    at.fold((0, 0, 0), |(p, f, u), t| match t.verdict {
        Verdict::Pass => (p + 1, f, u),
        Verdict::Fail => (p, f + 1, u),
        Verdict::Harness | Verdict::Machine => (p, f, u + 1),
        Verdict::Halt => (p, f, u),
    })
}

/// The verdict of `rate` from its tries. A try the machine or the harness
/// may have failed is no evidence either way. A pass if every try passed,
/// or a majority of `tries` did and more than failed; a failure if a
/// majority failed and at least four times as many as passed (a failure a
/// retry contradicts does not cap the search on `tries` tries alone);
/// unclear if a majority could not tell, or if no side won within
/// `tries + confirm` tries (and up to `tries` more for the unclear ones).
pub fn rate_verdict(plan: &Plan, tried: &[Tried], rate: f64) -> RateVerdict {
    let (p, f, u) = count(tried, rate);
    let majority = plan.tries.max(1) / 2 + 1;
    if p > 0 && f + u == 0 || p >= majority && p > f {
        RateVerdict::Pass
    } else if f >= majority && f >= 4 * p {
        RateVerdict::Fail
    } else if u >= majority && p < majority && f < majority || p + f + u >= may_try(plan, u) {
        RateVerdict::Unclear
    } else {
        RateVerdict::Open
    }
}

/// How many tries a rate may have, `u` of them unclear.
fn may_try(plan: &Plan, u: u32) -> u32 {
    plan.tries.max(1) + plan.confirm + u.min(plan.tries.max(1))
}

/// The distinct rates tried (the ceiling aside), in the order first tried.
fn rates(tried: &[Tried]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for t in tried.iter().filter(|t| t.phase != Phase::Ceiling) {
        if !out.contains(&t.rate) {
            out.push(t.rate);
        }
    }
    out
}

/// The lowest rate that failed.
fn lowest_failure(plan: &Plan, tried: &[Tried]) -> Option<f64> {
    rates(tried).into_iter().filter(|&r| rate_verdict(plan, tried, r) == RateVerdict::Fail).min_by(f64::total_cmp)
}

/// The highest rate below every failure that passed.
fn best_pass(plan: &Plan, tried: &[Tried]) -> Option<f64> {
    let below = lowest_failure(plan, tried).unwrap_or(f64::INFINITY);
    let passed = rates(tried).into_iter().filter(|&r| rate_verdict(plan, tried, r) == RateVerdict::Pass);
    passed.filter(|&r| r < below).max_by(f64::total_cmp)
}

/// Rates strictly between `lo` (or 0) and `hi` (or no bound) whose tries were unclear.
fn unclear_between(plan: &Plan, tried: &[Tried], lo: Option<f64>, hi: Option<f64>) -> Vec<f64> {
    let (lo, hi) = (lo.unwrap_or(0.0), hi.unwrap_or(f64::INFINITY));
    let unclear = |r: f64| rate_verdict(plan, tried, r) == RateVerdict::Unclear;
    let mut out: Vec<f64> = rates(tried).into_iter().filter(|&r| r > lo && r < hi && unclear(r)).collect();
    out.sort_by(f64::total_cmp);
    out
}

/// What the search does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Step(f64, Phase),
    Done(End),
}

/// The next step from everything tried so far (the budget aside).
pub fn next(plan: &Plan, tried: &[Tried]) -> Next {
    let ceiling_try = tried.iter().find(|t| t.phase == Phase::Ceiling);
    if plan.ceiling && ceiling_try.is_none() {
        return Next::Step(0.0, Phase::Ceiling);
    }
    // A rate with no majority yet is tried again before anything else.
    if let Some(last) = tried.iter().rev().find(|t| t.phase != Phase::Ceiling) {
        if rate_verdict(plan, tried, last.rate) == RateVerdict::Open {
            return Next::Step(last.rate, Phase::Retry);
        }
    }
    let max = plan.max_rate.map_or(f64::INFINITY, round_rate);
    let min = round_rate(plan.min_rate);
    let lo = best_pass(plan, tried);
    let hi = lowest_failure(plan, tried);
    let unclear = unclear_between(plan, tried, lo, hi);
    // Where the search stands: the highest rate below the failure that passed or could not tell.
    let w = unclear.last().copied().into_iter().chain(lo).max_by(f64::total_cmp);
    match (w, hi) {
        (None, None) => Next::Step(round_rate(plan.start).clamp(min, max), Phase::Climb),
        (Some(w), None) => climb(plan, tried, w, lo, max),
        (None, Some(hi)) if hi <= min => Next::Done(End::NothingPasses),
        (None, Some(hi)) => Next::Step(round_rate(hi / 10.0).max(min), Phase::Descend),
        (Some(w), Some(hi)) => {
            let mid = round_rate((w * hi).sqrt());
            if !(hi <= w * (1.0 + plan.precision) || mid <= w || mid >= hi) {
                return Next::Step(mid, Phase::Bisect);
            }
            match lo {
                Some(lo) if lo == w => confirm_both(plan, tried, lo, hi),
                // Below every unclear rate, something may still pass.
                _ if retry_unclear(plan, tried, &unclear).is_some() => {
                    retry_unclear(plan, tried, &unclear).unwrap_or(Next::Done(End::Inconclusive))
                }
                None if unclear[0] > min => Next::Step(round_rate(unclear[0] / 10.0).max(min), Phase::Descend),
                _ => Next::Done(inconclusive(plan, tried, lo, Some(hi))),
            }
        }
    }
}

/// Above `w` with no failure yet: by decades to the ceiling, then doubling on passes only.
fn climb(plan: &Plan, tried: &[Tried], w: f64, lo: Option<f64>, max: f64) -> Next {
    if w >= max {
        return match lo {
            Some(lo) if lo >= max => confirm_side(plan, tried, lo, true).unwrap_or(Next::Done(End::MaxRate)),
            _ => narrow_unclear(plan, tried, lo),
        };
    }
    let next = match ceiling_rate(tried) {
        Some(cap) if w < cap => round_rate((w * 10.0).min(cap)),
        // At or above the ceiling only what passed climbs on.
        Some(_) if lo != Some(w) => return narrow_unclear(plan, tried, lo),
        Some(_) => round_rate(w * 2.0),
        None => round_rate(w * 10.0),
    };
    Next::Step(next.min(max).max(w + 1.0), Phase::Climb)
}

/// The climb is over and no rate failed, but some above the best pass were
/// unclear: where they start, to the precision (the answer stays a range).
fn narrow_unclear(plan: &Plan, tried: &[Tried], lo: Option<f64>) -> Next {
    let above = unclear_between(plan, tried, lo, None);
    if let Some(again) = retry_unclear(plan, tried, &above[..above.len().min(1)]) {
        return again;
    }
    match (lo, above.first()) {
        (Some(lo), Some(&u)) if u > lo * (1.0 + plan.precision) => {
            let mid = round_rate((lo * u).sqrt());
            if mid > lo && mid < u {
                return Next::Step(mid, Phase::Bisect);
            }
            Next::Done(inconclusive(plan, tried, Some(lo), None))
        }
        _ => Next::Done(inconclusive(plan, tried, lo, None)),
    }
}

/// Before the search calls a rate unclear for good, it tries it again while
/// it may (`tries + confirm` tries in all): a machine disturbed for a while
/// may be quiet now. The highest of `unclear` first.
fn retry_unclear(plan: &Plan, tried: &[Tried], unclear: &[f64]) -> Option<Next> {
    let again = unclear.iter().rev().find(|&&r| {
        let (p, f, u) = count(tried, r);
        p + f + u < may_try(plan, u)
    });
    again.map(|&r| Next::Step(r, Phase::Retry))
}

/// What the ceiling step delivered a second, rounded (its [`Tried`] holds that as its rate).
fn ceiling_rate(tried: &[Tried]) -> Option<f64> {
    tried.iter().find(|t| t.phase == Phase::Ceiling).map(|t| t.rate).filter(|&r| r >= 1.0)
}

/// Both sides of the knee confirmed, or the next confirmation.
fn confirm_both(plan: &Plan, tried: &[Tried], lo: f64, hi: f64) -> Next {
    confirm_side(plan, tried, lo, true)
        .or_else(|| confirm_side(plan, tried, hi, false))
        .unwrap_or(Next::Done(End::Found))
}

/// A confirmation of `rate` if its side (passes, or failures) has fewer than `1 + confirm` tries.
fn confirm_side(plan: &Plan, tried: &[Tried], rate: f64, passes: bool) -> Option<Next> {
    let (p, f, _) = count(tried, rate);
    let n = if passes { p } else { f };
    (n <= plan.confirm).then_some(Next::Step(rate, Phase::Confirm))
}

/// How a search that cannot name a maximum ends: the harness's when the
/// unclear tries in its range were mostly the harness's, else the machine's.
fn inconclusive(plan: &Plan, tried: &[Tried], lo: Option<f64>, hi: Option<f64>) -> End {
    let unclear = unclear_between(plan, tried, lo, hi);
    let (h, m) = tried.iter().filter(|t| unclear.contains(&t.rate)).fold((0, 0), |(h, m), t| match t.verdict {
        Verdict::Harness => (h + 1, m),
        Verdict::Machine => (h, m + 1),
        _ => (h, m),
    });
    if h > m {
        End::Harness
    } else {
        End::Inconclusive
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
        // The ceiling's try holds the rate it reached, not the 0 it was asked.
        let rate = if phase == Phase::Ceiling { outcome.delivered_rate.max(0.0).round() } else { rate };
        tried.push(Tried { step, rate, phase, verdict: outcome.verdict, elapsed: outcome.elapsed });
        if outcome.verdict == Verdict::Halt {
            break End::Halted;
        }
    };
    let (max_rate, first_failure) = (best_pass(plan, &tried), lowest_failure(plan, &tried));
    let ceiling = ceiling_rate(&tried);
    let passed_above = first_failure.and_then(|hi| passed_above(&tried, hi));
    // A knee with passes above it is not one rate: the answer is the range.
    let end = if end == End::Found && passed_above.is_some() { End::Spread } else { end };
    Ok(Found { end, max_rate, first_failure, ceiling, passed_above, tried, spent })
}

/// The highest rate above `hi` where any try met the SLO.
fn passed_above(tried: &[Tried], hi: f64) -> Option<f64> {
    let passed = tried.iter().filter(|t| t.phase != Phase::Ceiling && t.rate > hi && t.verdict == Verdict::Pass);
    passed.map(|t| t.rate).max_by(f64::total_cmp)
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
            tries: 3,
            ceiling: false,
            budget: Duration::from_secs(3600),
            step_max: Duration::from_secs(6),
        }
    }

    /// A simulated system: `verdict(rate, step)` says how a step goes; the
    /// ceiling step delivers `ceiling` messages a second.
    struct Sim<F: FnMut(f64, u32) -> Verdict> {
        verdict: F,
        ceiling: f64,
        step_time: Duration,
        log: Vec<StepPlan>,
    }

    impl<F: FnMut(f64, u32) -> Verdict> Steps for Sim<F> {
        async fn step(&mut self, plan: StepPlan) -> anyhow::Result<Outcome> {
            self.log.push(plan);
            if plan.phase == Phase::Ceiling {
                let verdict = Verdict::Fail;
                return Ok(Outcome { verdict, elapsed: self.step_time, delivered_rate: self.ceiling });
            }
            let verdict = (self.verdict)(plan.rate, plan.step);
            Ok(Outcome { verdict, elapsed: self.step_time, delivered_rate: plan.rate })
        }
    }

    fn run_with(plan: &Plan, ceiling: f64, verdict: impl FnMut(f64, u32) -> Verdict) -> Found {
        let mut sim = Sim { verdict, ceiling, step_time: Duration::from_secs(5), log: Vec::new() };
        let found = block_on(search(plan, &mut sim)).unwrap();
        assert_eq!(found.tried.len(), sim.log.len());
        check_rules(plan, &found);
        found
    }

    fn run(plan: &Plan, verdict: impl FnMut(f64, u32) -> Verdict) -> Found {
        run_with(plan, 0.0, verdict)
    }

    /// What every search must hold, whatever the system did.
    fn check_rules(plan: &Plan, found: &Found) {
        assert!(found.spent <= plan.budget, "over budget: {found:?}");
        if let Some(max) = found.max_rate {
            assert_eq!(rate_verdict(plan, &found.tried, max), RateVerdict::Pass, "{found:?}");
            let failed = |r: f64| rate_verdict(plan, &found.tried, r) == RateVerdict::Fail;
            assert!(found.tried.iter().all(|t| !failed(t.rate) || t.rate > max), "a failure below the max: {found:?}");
            if matches!(found.end, End::Found | End::MaxRate) {
                assert!(found.passes() as u32 > plan.confirm, "confirmed: {found:?}");
            }
            if found.end == End::Found {
                assert!(found.within(plan.precision), "{found:?}");
                let (_, f, _) = count(&found.tried, found.first_failure.unwrap());
                assert!(f > plan.confirm, "the failure confirmed too: {found:?}");
            }
        }
        if found.figure().is_some() {
            assert!(found.unclear_between(plan).is_empty(), "a figure over an unclear rate: {found:?}");
        }
        let measured = found.tried.iter().filter(|t| t.phase != Phase::Ceiling);
        assert!(measured.clone().all(|t| t.rate >= plan.min_rate && t.rate == round_rate(t.rate)), "{found:?}");
        assert!(measured.clone().all(|t| plan.max_rate.is_none_or(|m| t.rate <= m)), "{found:?}");
        // No rate gets more tries than it may.
        for t in measured {
            let (p, f, u) = count(&found.tried, t.rate);
            assert!(p + f + u <= 2 * plan.tries + 2 * plan.confirm, "{found:?}");
        }
    }

    fn sharp(knee: f64) -> impl FnMut(f64, u32) -> Verdict {
        move |rate, _| if rate <= knee { Verdict::Pass } else { Verdict::Fail }
    }

    /// xorshift64: the same sequence per seed.
    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000) as f64 / 1e6
        }
    }

    #[test]
    fn a_sharp_knee_is_found_within_the_precision_and_confirmed_on_both_sides() {
        let found = run(&plan(), sharp(182_000.0));
        assert_eq!(found.end, End::Found);
        let max = found.max_rate.unwrap();
        assert!((182_000.0 / 1.05..=182_000.0).contains(&max), "{max}");
        assert_eq!(found.figure(), Some(max));
        assert_eq!(found.passes(), 3);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        // By decades: 1k, 10k, 100k, then 1M fails (twice: a majority of 3).
        assert_eq!(&rates[..5], &[1000.0, 10_000.0, 100_000.0, 1_000_000.0, 1_000_000.0], "{rates:?}");
        assert_eq!(found.tried[4].phase, Phase::Retry);
        assert!(found.tried[5..].iter().all(|t| matches!(t.phase, Phase::Bisect | Phase::Retry | Phase::Confirm)));
        let hi = found.first_failure.unwrap();
        assert!(hi > 182_000.0 && hi <= max * 1.05 + 1.0, "{rates:?}");
        assert!(found.tried.len() <= 30, "{}", found.tried.len());
    }

    /// A system whose SLO holds with a probability that falls slowly over a
    /// wide band (as Pub/Sub's p99 did on the 2-CPU VM between 190,000 and
    /// 330,000 msg/s): where a try above the confirmed knee passed, the
    /// answer is the range up to it, never one figure.
    #[test]
    fn passes_above_a_confirmed_knee_make_the_answer_a_range() {
        // At 100,000 a first try passes; at 1,000,000 a first try passes too, then the majority fails.
        let found = run(&plan(), |rate, step| match rate {
            r if r <= 182_000.0 => Verdict::Pass,
            r if r >= 1_000_000.0 && step == 4 => Verdict::Pass,
            _ => Verdict::Fail,
        });
        assert_eq!(found.end, End::Spread, "{found:?}");
        assert_eq!(found.figure(), None);
        assert_eq!(found.passed_above, Some(1_000_000.0));
        let (lo, hi) = found.range();
        assert!(lo.unwrap() <= 182_000.0 && hi == Some(1_000_000.0), "{:?}", found.range());
        // A sharp knee has no pass above it, and keeps its figure.
        let found = run(&plan(), sharp(182_000.0));
        assert_eq!((found.end, found.passed_above), (End::Found, None));
    }

    #[test]
    fn the_ceiling_caps_the_coarse_pass_and_passes_climb_beyond_it() {
        // --rate 0 delivered 40,000/s: the decades stop there.
        let p = Plan { ceiling: true, ..plan() };
        let found = run_with(&p, 40_000.0, sharp(25_000.0));
        assert_eq!(
            (found.tried[0].phase, found.tried[0].rate, found.ceiling),
            (Phase::Ceiling, 40_000.0, Some(40_000.0))
        );
        let rates: Vec<f64> = found.tried.iter().skip(1).map(|t| t.rate).collect();
        assert_eq!(&rates[..3], &[1000.0, 10_000.0, 40_000.0], "{rates:?}");
        assert_eq!(found.end, End::Found);
        assert!((25_000.0 / 1.05..=25_000.0).contains(&found.max_rate.unwrap()));
        // A ceiling that was low (a bad --rate 0 step) does not hold a system that passes above it.
        let found = run_with(&p, 3_000.0, sharp(50_000.0));
        assert_eq!(found.end, End::Found);
        assert!((50_000.0 / 1.05..=50_000.0).contains(&found.max_rate.unwrap()), "{found:?}");
    }

    #[test]
    fn a_failure_a_retry_contradicts_never_caps_the_search() {
        // 10,000 fails its first try only; the knee is at 60,000.
        let mut tries_at_10k = 0;
        let found = run(&plan(), move |rate, _| {
            if rate == 10_000.0 {
                tries_at_10k += 1;
                if tries_at_10k == 1 {
                    return Verdict::Fail;
                }
            }
            sharp(60_000.0)(rate, 0)
        });
        let at_10k: Vec<_> = found.tried.iter().filter(|t| t.rate == 10_000.0).map(|t| (t.phase, t.verdict)).collect();
        assert_eq!(
            at_10k,
            [(Phase::Climb, Verdict::Fail), (Phase::Retry, Verdict::Pass), (Phase::Retry, Verdict::Pass)]
        );
        assert_eq!(found.end, End::Found);
        assert!((60_000.0 / 1.05..=60_000.0).contains(&found.max_rate.unwrap()), "{found:?}");
    }

    #[test]
    fn a_failed_confirmation_is_one_more_try_and_the_search_goes_on() {
        // The best pass fails its first confirmation: two more passes keep it.
        let mut confirmations = 0;
        let found = run(&plan(), move |rate, _| {
            if rate <= 3000.0 && rate > 2900.0 {
                confirmations += 1;
                if confirmations == 2 {
                    return Verdict::Fail;
                }
            }
            sharp(3000.0)(rate, 0)
        });
        assert_eq!(found.end, End::Found);
        let max = found.max_rate.unwrap();
        let (p, f, _) = count(&found.tried, max);
        assert_eq!((p, f), (3, 1), "{found:?}");
        // A rate that fails its confirmations by a majority is a failure: the search moves below it.
        let found =
            run(&plan(), |rate, step| if rate > 2000.0 && step > 8 { Verdict::Fail } else { sharp(3000.0)(rate, 0) });
        assert!(found.max_rate.is_some_and(|m| m <= 2000.0), "{found:?}");
    }

    #[test]
    fn a_start_above_the_knee_descends_by_decades_and_climbs_back() {
        let found = run(&plan(), sharp(70.0));
        assert_eq!(found.end, End::Found);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(&rates[..4], &[1000.0, 1000.0, 100.0, 100.0], "{rates:?}");
        assert_eq!(found.tried[2].phase, Phase::Descend);
        assert!((67.0..=70.0).contains(&found.max_rate.unwrap()), "{rates:?}");
    }

    #[test]
    fn an_impossible_slo_descends_to_the_lowest_rate_and_ends() {
        let found = run(&plan(), |_, _| Verdict::Fail);
        assert_eq!((found.end, found.max_rate, found.figure()), (End::NothingPasses, None, None));
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [1000.0, 1000.0, 100.0, 100.0, 10.0, 10.0]);
        assert_eq!(found.first_failure, Some(10.0));
        let found = run(&Plan { min_rate: 1000.0, ..plan() }, |_, _| Verdict::Fail);
        assert_eq!((found.end, found.tried.len()), (End::NothingPasses, 2));
        // One try a rate: the old search, a failure at once.
        let found = run(&Plan { tries: 1, ..plan() }, |_, _| Verdict::Fail);
        assert_eq!(found.tried.iter().map(|t| t.rate).collect::<Vec<_>>(), [1000.0, 100.0, 10.0]);
    }

    #[test]
    fn a_machine_that_fails_every_rate_gets_an_inconclusive_answer_not_a_failure() {
        // The machine's own floor above the SLO at every rate: no rate passes, none fails.
        let p = Plan { ceiling: true, ..plan() };
        let found = run_with(&p, 100_000.0, |_, _| Verdict::Machine);
        assert_eq!((found.end, found.figure(), found.first_failure), (End::Inconclusive, None, None), "{found:?}");
        // The same with the harness: its end names it.
        let found = run_with(&p, 100_000.0, |_, _| Verdict::Harness);
        assert_eq!(found.end, End::Harness, "{found:?}");
        // The harness the limit above 8,000: a range, never a figure.
        let found = run_with(&p, 100_000.0, |rate, _| if rate > 8000.0 { Verdict::Harness } else { Verdict::Pass });
        assert_eq!((found.end, found.figure()), (End::Harness, None), "{found:?}");
        assert!(found.max_rate.is_some_and(|m| (8000.0 / 1.05..=8000.0).contains(&m)), "{found:?}");
        let found = run(&plan(), |_, _| Verdict::Halt);
        assert_eq!((found.end, found.max_rate, found.tried.len()), (End::Halted, None, 1));
    }

    #[test]
    fn unclear_rates_below_the_knee_do_not_stop_the_climb() {
        // Latency is worst at low rates: below 5,000 the machine's floor fails every step.
        let found = run(&plan(), |rate, _| if rate < 5000.0 { Verdict::Machine } else { sharp(120_000.0)(rate, 0) });
        assert_eq!(found.end, End::Found, "{found:?}");
        assert!((120_000.0 / 1.05..=120_000.0).contains(&found.max_rate.unwrap()));
    }

    #[test]
    fn a_budget_that_runs_out_stops_before_a_step_could_overrun_it() {
        // 5 s steps, at most 6 s each by the plan: 28 s leaves room for 5.
        let plan = Plan { budget: Duration::from_secs(28), ..plan() };
        let found = run(&plan, sharp(182_000.0));
        assert_eq!((found.end, found.tried.len(), found.figure()), (End::Budget, 5, None));
        assert_eq!(found.max_rate, Some(100_000.0), "the best so far, unconfirmed");
        let mut sim =
            Sim { verdict: sharp(182_000.0), ceiling: 0.0, step_time: Duration::from_secs(10), log: Vec::new() };
        let found = block_on(search(&plan, &mut sim)).unwrap();
        assert_eq!((found.end, found.tried.len()), (End::Budget, 2));
        let found = run(&Plan { budget: Duration::from_secs(5), ..plan.clone() }, sharp(1e9));
        assert_eq!((found.end, found.tried.len(), found.max_rate), (End::Budget, 0, None));
    }

    #[test]
    fn a_max_rate_caps_the_climb_and_is_confirmed() {
        let plan = Plan { max_rate: Some(5000.0), ..plan() };
        let found = run(&plan, sharp(1e9));
        assert_eq!(found.end, End::MaxRate);
        let rates: Vec<f64> = found.tried.iter().map(|t| t.rate).collect();
        assert_eq!(rates, [1000.0, 5000.0, 5000.0, 5000.0]);
        let found = run(&Plan { start: 9000.0, ..plan }, sharp(1e9));
        assert_eq!(found.tried[0].rate, 5000.0);
    }

    #[test]
    fn no_confirmation_and_low_rates_still_end() {
        let plan = Plan { start: 1.0, min_rate: 1.0, confirm: 0, precision: 0.01, tries: 1, ..plan() };
        let found = run(&plan, sharp(3.0));
        assert_eq!((found.end, found.max_rate), (End::Found, Some(3.0)));
    }

    /// How a noisy system answers over 100 seeds: (within the precision of
    /// the knee, inconclusive); panics on a figure off by more than 2×.
    fn over_seeds(knee: f64, noise: impl Fn(&mut dyn FnMut() -> f64, f64, u32) -> Option<Verdict>) -> (u32, u32) {
        let p = Plan { ceiling: true, budget: Duration::from_secs(600), ..plan() };
        let (mut right, mut inconclusive) = (0, 0);
        for seed in 1..=100u64 {
            let mut r = rng(seed);
            let ceiling = knee * (2.0 + 20.0 * r());
            let found = run_with(&p, ceiling, |rate, step| {
                noise(&mut r, rate, step).unwrap_or(if rate <= knee { Verdict::Pass } else { Verdict::Fail })
            });
            match found.figure() {
                Some(f) => {
                    assert!(f <= 2.0 * knee && f >= knee / 2.0, "seed {seed}: {f} for a knee of {knee}: {found:?}");
                    if (knee / (1.0 + p.precision)..=knee).contains(&f) {
                        right += 1;
                    }
                }
                None => {
                    assert!(!matches!(found.end, End::NothingPasses), "seed {seed}: {found:?}");
                    inconclusive += 1;
                }
            }
        }
        (right, inconclusive)
    }

    #[test]
    fn a_noisy_system_gets_its_knee_or_an_honest_inconclusive_over_100_seeds() {
        let knee = 47_000.0;
        // Steps below the knee fail at random, one in ten.
        let random_failures = over_seeds(knee, |r, rate, _| (rate <= knee && r() < 0.1).then_some(Verdict::Fail));
        // The machine disturbed for a stretch of steps (other processes took its CPU).
        let disturbed = over_seeds(knee, |r, _, step| {
            let stretch = (8.0 + 10.0 * r()) as u32;
            (step >= stretch && step < stretch + 4).then_some(Verdict::Machine)
        });
        // The harness lags now and then, at any rate.
        let lagging = over_seeds(knee, |r, _, _| (r() < 0.15).then_some(Verdict::Harness));
        // The machine's latency is worst at low rates: below a tenth of the knee it fails steps half the time.
        let floor = over_seeds(knee, |r, rate, _| (rate < knee / 10.0 && r() < 0.5).then_some(Verdict::Machine));
        // All of them at once, and a knee that is not sharp: just above it, one step in three still passes.
        let all = over_seeds(knee, |r, rate, step| {
            let x = r();
            match () {
                _ if rate < knee / 10.0 && x < 0.3 => Some(Verdict::Machine),
                _ if (12..15).contains(&step) => Some(Verdict::Machine),
                _ if x < 0.05 => Some(Verdict::Harness),
                _ if rate <= knee && x < 0.1 => Some(Verdict::Fail),
                _ if rate > knee && rate < knee * 1.03 && x < 0.33 => Some(Verdict::Pass),
                _ => None,
            }
        });
        let (right, inconclusive) = all;
        eprintln!("all at once: {right} of 100 within the precision, {inconclusive} inconclusive");
        assert!(right >= 80, "all at once: {right} right, {inconclusive} inconclusive, none wrong by 2x");
        for (name, (right, inconclusive)) in
            [("random failures", random_failures), ("disturbed", disturbed), ("lagging", lagging), ("floor", floor)]
        {
            eprintln!("{name}: {right} of 100 within the precision, {inconclusive} inconclusive");
            assert!(right >= 95 && right + inconclusive == 100, "{name}: {right} right, {inconclusive} inconclusive");
        }
    }
}
