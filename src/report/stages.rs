//! How a run met each stage of its rate profile, from `timeseries.csv`:
//! what was scheduled and sent, whether the backlog grew, how latency
//! behaved, and after a spike, when latency was back to its level before.

use super::fmt::{latency, number, pct, plural, rate, thousands};
use super::rundir::RunData;
use crate::rows::TimeseriesRow;
use crate::scenario::{Rate, Stage};

/// Latency is back to its level before a spike once the p99 of a second is
/// within this factor of that level (the median p99 of the stage before).
pub const RECOVERED_FACTOR: f64 = 1.5;
/// Stages told one by one; a longer profile is summed up after these.
const MAX_TOLD: usize = 12;

/// One stage as the run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageOutcome {
    pub stage: Stage,
    /// Its measured seconds, `[first, end)` (a second belongs to the stage it starts in).
    pub seconds: std::ops::Range<usize>,
    /// Messages its schedule held (the integral of its rate).
    pub scheduled: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    /// Deliveries on their way at its start and at its end (stream backlog or in flight).
    pub in_flight_start: u64,
    pub in_flight_end: u64,
    /// The median and the worst of its seconds' p99, µs.
    pub p99_median_us: Option<f64>,
    pub p99_max_us: Option<f64>,
    /// A stage above the rates on both sides of it.
    pub spike: bool,
    /// After a spike: seconds from its end until a second's p99 is within
    /// [`RECOVERED_FACTOR`] of the stage before's median p99 (`None`: not
    /// within the run).
    pub recovered_after_s: Option<Option<usize>>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

fn p99s(rows: &[TimeseriesRow]) -> Vec<f64> {
    rows.iter().filter(|r| r.delivered > 0).filter_map(|r| r.p99_us).collect()
}

/// The stages of `rate` against the run's seconds (empty for one rate).
pub fn outcomes(run: &RunData, rate: &Rate) -> Vec<StageOutcome> {
    let ts = &run.timeseries;
    let stages = rate.stages();
    let mut out: Vec<StageOutcome> = Vec::with_capacity(stages.len());
    let mut at = 0.0f64;
    for (i, stage) in stages.iter().enumerate() {
        let len = stage.length.as_secs_f64();
        let seconds = (at.ceil() as usize).min(ts.len())..((at + len).ceil() as usize).min(ts.len());
        let rows = &ts[seconds.clone()];
        let in_flight = |r: &TimeseriesRow| r.in_flight.max(r.backlog);
        let before = i.checked_sub(1).map(|j| &stages[j]);
        let after = stages.get(i + 1);
        let spike =
            stage.is_hold() && before.is_some_and(|b| b.to < stage.from) && after.is_some_and(|a| a.from < stage.to);
        out.push(StageOutcome {
            stage: *stage,
            scheduled: stage.messages(),
            sent: rows.iter().map(|r| r.sent).sum(),
            expected: rows.iter().map(|r| r.delivered + r.lost + r.undelivered).sum(),
            delivered: rows.iter().map(|r| r.delivered).sum(),
            in_flight_start: seconds.start.checked_sub(1).and_then(|s| ts.get(s)).map_or(0, in_flight),
            in_flight_end: rows.last().map_or(0, in_flight),
            p99_median_us: median(p99s(rows)),
            p99_max_us: p99s(rows).into_iter().reduce(f64::max),
            spike,
            recovered_after_s: None,
            seconds,
        });
        at += len;
    }
    for i in 1..out.len() {
        if !out[i].spike {
            continue;
        }
        // The level before: the last stage before it that delivered (a silence has none).
        let Some(level) = out[..i].iter().rev().find_map(|o| o.p99_median_us) else { continue };
        let end = out[i].seconds.end;
        let back =
            ts[end..].iter().position(|r| r.delivered > 0 && r.p99_us.is_some_and(|p| p <= level * RECOVERED_FACTOR));
        out[i].recovered_after_s = Some(back);
    }
    out
}

/// What the stage asked for, as the page says it.
fn shape(s: &Stage) -> String {
    if s.is_hold() && s.from == 0.0 {
        "silence".into()
    } else if s.is_hold() {
        format!("hold at {}", rate(s.from))
    } else {
        format!("ramp {} → {}", rate(s.from), rate(s.to))
    }
}

/// A sentence per stage, and one for each spike's recovery (escaped HTML).
pub fn story(run: &RunData, rate: &Rate) -> Vec<String> {
    let all = outcomes(run, rate);
    if all.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "The rate followed a profile of {} over {} s: {}.",
        plural(all.len() as u64, "stage"),
        number(rate.length().unwrap_or_default().as_secs_f64()),
        super::fmt::escape(&rate.to_string())
    )];
    for (i, o) in all.iter().enumerate().take(MAX_TOLD) {
        let mut text = format!(
            "Stage {} (seconds {}–{}, {}): sent {} of {} scheduled, delivered {} of {} expected",
            i + 1,
            o.seconds.start,
            o.seconds.end,
            shape(&o.stage),
            thousands(o.sent),
            thousands(o.scheduled.round() as u64),
            thousands(o.delivered),
            thousands(o.expected),
        );
        if o.expected > 0 {
            text.push_str(&format!(" ({})", pct(o.delivered, o.expected)));
        }
        if o.in_flight_end > o.in_flight_start.max(1) * 2 && o.in_flight_end > 100 {
            text.push_str(&format!(
                "; <strong class=\"bad\">the backlog grew</strong> from {} to {}",
                thousands(o.in_flight_start),
                thousands(o.in_flight_end)
            ));
        } else if o.expected > 0 {
            text.push_str("; the backlog did not grow");
        }
        if let (Some(mid), Some(max)) = (o.p99_median_us, o.p99_max_us) {
            text.push_str(&format!("; p99 {} (worst second {})", latency(mid), latency(max)));
        }
        text.push('.');
        let level_before = all[..i].iter().rev().find_map(|o| o.p99_median_us);
        if let (Some(back), Some(level)) = (o.recovered_after_s.as_ref(), level_before) {
            match back {
                Some(s) => text.push_str(&format!(
                    " After this spike, p99 was back within {RECOVERED_FACTOR}× of its level before ({}) {}.",
                    latency(level),
                    if *s == 0 { "in the first second after it".to_string() } else { format!("{s} s after it") }
                )),
                None => text.push_str(&format!(
                    " <strong class=\"bad\">After this spike, p99 did not come back</strong> within \
                     {RECOVERED_FACTOR}× of its level before ({}) by the end of the run.",
                    latency(level)
                )),
            }
        }
        out.push(text);
    }
    if all.len() > MAX_TOLD {
        out.push(format!("… and {} more stages (timeseries.csv has every second).", all.len() - MAX_TOLD));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(sent: u64, delivered: u64, in_flight: u64, p99: f64) -> TimeseriesRow {
        TimeseriesRow { sent, delivered, in_flight, p99_us: Some(p99), ..TimeseriesRow::default() }
    }

    #[test]
    fn a_spike_and_its_recovery() {
        let rate: Rate = "100/3s,1000/2s,100/4s".parse().unwrap();
        let mut ts: Vec<TimeseriesRow> = vec![
            second(100, 100, 1, 80.0),
            second(100, 100, 1, 100.0),
            second(100, 100, 1, 90.0),
            second(1000, 600, 400, 5000.0),
            second(1000, 900, 500, 9000.0),
            second(100, 400, 200, 4000.0),
            second(100, 300, 0, 400.0),
            second(100, 100, 0, 120.0),
            second(100, 100, 0, 95.0),
        ];
        ts.iter_mut().enumerate().for_each(|(i, r)| r.second = i as u32);
        let run = RunData::for_tests(ts);
        let o = outcomes(&run, &rate);
        assert_eq!(o.len(), 3);
        assert_eq!(o[1].seconds, 3..5);
        assert!(o[1].spike && !o[0].spike && !o[2].spike);
        assert_eq!((o[1].sent, o[1].scheduled), (2000, 2000.0));
        assert_eq!((o[1].in_flight_start, o[1].in_flight_end), (1, 500));
        assert_eq!(o[1].recovered_after_s, Some(Some(2)), "120 µs ≤ 1.5 × 90 µs two seconds after the spike");
        let story = story(&run, &rate).join(" ");
        assert!(story.contains("the backlog grew"), "{story}");
        assert!(story.contains("2 s after it"), "{story}");
        // Never back: the level is not reached again.
        let mut slow = run.timeseries.clone();
        slow[7].p99_us = Some(1000.0);
        slow[8].p99_us = Some(1000.0);
        let o = outcomes(&RunData::for_tests(slow), &rate);
        assert_eq!(o[1].recovered_after_s, Some(None));
        assert!(outcomes(&run, &Rate::Constant(100.0)).is_empty(), "one rate has no stages");
    }
}
