//! The SLO a step is judged by, and whose failure a failed step is.
//!
//! The SLO is what the user asked (`--slo`, and the scenario's `--assert`)
//! plus what always holds: nothing lost (`lost==0`) and the system kept up
//! (`sustained==1`). A step that fails it is the system's failure, unless
//! eventbench ([`harness_fault`]) or the machine under both
//! ([`machine_fault`]) may be what failed: then the step says nothing of
//! the system, and the search tries it again rather than blame Redis.

use super::search::Verdict;
use crate::assertion::Assertion;
use crate::report::fmt::{number, thousands};
use crate::report::plots::fmt_latency;
use crate::results::summarize::{HARNESS_CPU_LIMIT_PCT, HARNESS_LAG_LIMIT_US};
use crate::rows::SummaryRow;

/// Part of every SLO.
pub const ALWAYS: [&str; 2] = ["lost==0", "sustained==1"];

/// The gates of a search, the implicit ones first.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    gates: Vec<Assertion>,
}

/// How one step fared against the SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The gates that failed, with the measured values (`p99_us<1000 (p99_us = 2310)`).
    pub failed: Vec<(Assertion, String)>,
    /// Why eventbench may be what failed, when it may.
    pub harness: Option<String>,
    /// Why the machine may be what failed, when it may (and eventbench had CPU to spare).
    pub machine: Option<String>,
}

/// A gate of the simple form `COLUMN OP NUMBER`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    pub column: String,
    pub op: &'static str,
    pub value: f64,
}

impl Bound {
    /// A bound on a latency column from above (`p99_us<1000`): one the plots can draw.
    pub fn is_latency_ceiling(&self) -> bool {
        self.column.ends_with("_us") && matches!(self.op, "<" | "<=")
    }

    /// `p99 < 1 ms`.
    pub fn label(&self) -> String {
        format!("{} {} {}", column_label(&self.column), self.op, value_text(&self.column, self.value))
    }
}

/// `p99_us` → `p99`, `p999_us` → `p99.9`, `send_rate` stays.
pub fn column_label(column: &str) -> String {
    match column {
        "p999_us" => "p99.9".into(),
        "raw_p99_us" => "raw p99".into(),
        c => c.strip_suffix("_us").unwrap_or(c).to_string(),
    }
}

/// A column's value for people: latencies as `2.31 ms`, other numbers grouped.
fn value_text(column: &str, v: f64) -> String {
    if column.ends_with("_us") {
        fmt_latency(v)
    } else {
        number(v)
    }
}

/// Reads `text` (an assertion as written) as `COLUMN OP NUMBER`, if it is one.
pub fn bound(gate: &Assertion) -> Option<Bound> {
    let text = gate.to_string();
    let ops = ["<=", ">=", "==", "!=", "<", ">"];
    let (at, op) =
        text.char_indices().find_map(|(i, _)| ops.iter().find(|o| text[i..].starts_with(*o)).map(|o| (i, *o)))?;
    let (left, right) = (&text[..at], &text[at + op.len()..]);
    let column_like = !left.is_empty() && left.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let value: f64 = right.parse().ok()?;
    (column_like && left.starts_with(|c: char| c.is_ascii_alphabetic())).then(|| Bound {
        column: left.to_string(),
        op,
        value,
    })
}

/// A numeric (or true/false) column of a summary row by name.
pub fn column(row: &SummaryRow, name: &str) -> Option<f64> {
    match serde_json::to_value(row).ok()?.get(name)? {
        serde_json::Value::Bool(b) => Some(u8::from(*b) as f64),
        v => v.as_f64(),
    }
}

impl Slo {
    /// The implicit gates, then `user`'s (a gate given twice counts once).
    pub fn new(user: impl IntoIterator<Item = Assertion>) -> Slo {
        let mut gates: Vec<Assertion> = ALWAYS.iter().map(|a| a.parse().expect("the implicit gates parse")).collect();
        for g in user {
            if !gates.contains(&g) {
                gates.push(g);
            }
        }
        Slo { gates }
    }

    pub fn gates(&self) -> &[Assertion] {
        &self.gates
    }

    /// The gates the user added to the implicit ones.
    pub fn user_gates(&self) -> &[Assertion] {
        &self.gates[ALWAYS.len()..]
    }

    /// The latency ceilings of the SLO (`p99_us<1000`), for the plots and the headline.
    pub fn latency_ceilings(&self) -> Vec<Bound> {
        self.gates.iter().filter_map(bound).filter(Bound::is_latency_ceiling).collect()
    }

    /// The latency column the headline quotes: the SLO's first latency bound, else p99.
    pub fn quoted_latency(&self) -> String {
        self.latency_ceilings().first().map_or_else(|| "p99_us".to_string(), |b| b.column.clone())
    }

    /// Judges a completed step.
    pub fn judge(&self, row: &SummaryRow) -> Judgement {
        let failed: Vec<(Assertion, String)> = self
            .gates
            .iter()
            .map(|g| (g, g.check(row)))
            .filter(|(_, v)| !v.passed)
            .map(|(g, v)| (g.clone(), v.line))
            .collect();
        let gates: Vec<&Assertion> = failed.iter().map(|(g, _)| g).collect();
        let busy = cpu_bound(row, &gates);
        let machine = if busy.is_some() { None } else { machine_fault(row, &gates) };
        let harness = if machine.is_some() { None } else { busy.or_else(|| harness_fault(row, &gates)) };
        let verdict = match (&harness, &machine, failed.is_empty()) {
            (Some(_), _, _) => Verdict::Harness,
            (None, Some(_), _) => Verdict::Machine,
            (None, None, true) => Verdict::Pass,
            (None, None, false) => Verdict::Fail,
        };
        Judgement { verdict, failed, harness, machine }
    }

    /// Why a step failed, in one sentence: each failed gate (`p99 was 2.31
    /// ms > 1 ms`), joined by `and`, then whose failure it may be after a `;`
    /// when eventbench or the machine may be what failed. Empty for a pass.
    pub fn reason_text(&self, row: &SummaryRow) -> String {
        let judged = self.judge(row);
        let gates: Vec<String> = judged.failed.iter().map(|(g, _)| describe(g, row)).collect();
        let mut text = and_list(&gates);
        if let Some(h) = judged.harness {
            text += &format!("; eventbench may be what failed: {h}");
        } else if let Some(m) = judged.machine {
            text += &format!("; the machine may be what failed: {m}");
        }
        text
    }

    /// A step's failure in a few words, for its line on the terminal, which
    /// shows the `shown` column's value already: `p99 ≥ 1 ms`, `12 lost`,
    /// `did not keep up`, then whose failure it may be.
    pub fn short_reason(&self, row: &SummaryRow, shown: &str) -> String {
        let judged = self.judge(row);
        let gates: Vec<String> = judged
            .failed
            .iter()
            .map(|(g, _)| match (g.to_string().as_str(), bound(g)) {
                ("lost==0", _) => format!("{} lost", thousands(row.lost)),
                ("sustained==1", _) => "did not keep up".into(),
                (_, Some(b)) if b.column == shown && column(row, shown).is_some() => {
                    let not = match b.op {
                        "<" => "≥",
                        "<=" => ">",
                        ">" => "≤",
                        ">=" => "<",
                        "==" => "≠",
                        _ => "=",
                    };
                    format!("{} {not} {}", column_label(&b.column), value_text(&b.column, b.value))
                }
                _ => describe(g, row),
            })
            .collect();
        let mut text = and_list(&gates);
        if let Some(why) = judged.harness.or(judged.machine) {
            text += &format!("; {why}");
        }
        text
    }
}

/// Why eventbench, not the system, may be what failed a step; `None` when
/// the step stands as the system's. Only a failed run marked
/// `harness_limited` can be the harness's:
///
/// - it failed while eventbench had no CPU to spare (the whole process, or
///   one thread): its consumers or producers may be what fell behind;
/// - it failed with messages sent late (send lag p99 over 1 ms) and a failed
///   gate holds when latencies are taken from the actual send times instead
///   (p50, p99 and max from the raw histogram; p90 and p99.9 less the send
///   lag p99): the lateness alone may have broken it. That lateness is the
///   harness's (or the machine's under it) or Redis's for not taking the
///   writes that fast; the run cannot tell, so the search does not claim it.
///
/// A step that met the SLO with the harness's delays counted against it
/// (latency runs from the intended send time, and `sustained` counts what
/// was due, sent or not) passes: the system did at least that well. A
/// failure that stands from the actual send times too (the backlog grew,
/// messages were lost) is the system's.
pub fn harness_fault(row: &SummaryRow, failed: &[&Assertion]) -> Option<String> {
    if let Some(busy) = cpu_bound(row, failed) {
        return Some(busy);
    }
    if !row.harness_limited || failed.is_empty() {
        return None;
    }
    if row.send_lag_p99_us > HARNESS_LAG_LIMIT_US {
        let actual = from_actual_send_times(row);
        if let Some(g) = failed.iter().find(|g| g.check(&actual).passed) {
            return Some(format!(
                "messages went out late (send lag p99 {}), and from their actual send times {}",
                fmt_latency(row.send_lag_p99_us),
                held(g, &actual)
            ));
        }
    }
    None
}

/// The harness's part of [`harness_fault`] that no machine explains: the SLO
/// forbids the harness being the limit, or eventbench had no CPU to spare.
fn cpu_bound(row: &SummaryRow, failed: &[&Assertion]) -> Option<String> {
    if !row.harness_limited || failed.is_empty() {
        return None;
    }
    if let Some(g) = failed.iter().find(|g| g.to_string().contains("harness_") || g.to_string().contains("send_lag")) {
        return Some(format!("the SLO asks that the harness not be the limit ({g})"));
    }
    if row.harness_cpu_pct > HARNESS_CPU_LIMIT_PCT {
        return Some(format!("eventbench used {:.0}% of the CPU it may use", row.harness_cpu_pct));
    }
    if row.harness_thread_max_pct > HARNESS_CPU_LIMIT_PCT {
        return Some(format!("one eventbench thread was busy {:.0}% of the step", row.harness_thread_max_pct));
    }
    None
}

/// The machine's own wake-up floor at the percentile of a latency column, when measured.
pub fn floor_for(row: &SummaryRow, column: &str) -> Option<f64> {
    match column {
        "p50_us" | "raw_p50_us" => row.machine_wakeup_p50_us,
        "p90_us" | "p99_us" | "raw_p99_us" => row.machine_wakeup_p99_us,
        "p999_us" => row.machine_wakeup_p999_us,
        "max_us" | "raw_max_us" => row.machine_wakeup_max_us,
        _ => None,
    }
}

/// Why the machine, not the system, may be what failed a step; `None` when
/// the evidence does not say so. The probe beside the step (`probe`) measured:
///
/// - a latency bound the machine's own floor explains: a thread that only
///   sleeps and wakes was late by at least half the bound at that
///   percentile, and the step's latency less that floor is within the bound;
/// - a disturbed machine: other processes took more than 30% of a core, or
///   the hypervisor stole more than 5% of the CPU time, and a gate failed,
///   with nothing lost and every latency within 3× its bound (a disturbance
///   slows what shares the CPU; it does not make a latency ten times over);
/// - messages sent late (send lag p99 over 1 ms) with a wake-up floor of at
///   least half that lag, and a gate that holds from the actual send times:
///   a sleeping thread was as late as the messages, so the lateness is the
///   machine's, not the harness's.
pub fn machine_fault(row: &SummaryRow, failed: &[&Assertion]) -> Option<String> {
    if failed.is_empty() {
        return None;
    }
    let rate = super::msg_rate(row.target_rate);
    for b in failed.iter().filter_map(|g| bound(g)).filter(Bound::is_latency_ceiling) {
        let (Some(floor), Some(v)) = (floor_for(row, &b.column), column(row, &b.column)) else { continue };
        if floor >= b.value / 2.0 && v - floor <= b.value {
            return Some(format!(
                "this machine alone adds {} {} at {rate} (a thread that only sleeps and wakes), against a bound of {}",
                column_label(&b.column),
                fmt_latency(floor),
                fmt_latency(b.value)
            ));
        }
    }
    let machine = crate::probe::Machine {
        other_cpu_pct: row.machine_other_cpu_pct,
        steal_pct: row.steal_pct,
        ..Default::default()
    };
    // A disturbance slows what it shares the CPU with; it does not make a
    // latency many times its bound, nor lose messages.
    let near = |g: &&&Assertion| {
        bound(g)
            .filter(Bound::is_latency_ceiling)
            .is_none_or(|b| column(row, &b.column).is_some_and(|v| v <= 3.0 * b.value))
    };
    if machine.disturbed() && row.lost == 0 && failed.iter().all(|g| near(&g)) {
        return Some(format!(
            "other processes used {:.1} cores and the hypervisor stole {:.0}% of the CPU over the step",
            row.machine_other_cpu_pct.unwrap_or(0.0) / 100.0,
            row.steal_pct.unwrap_or(0.0)
        ));
    }
    let floor = row.machine_wakeup_p99_us.unwrap_or(0.0);
    if row.send_lag_p99_us > HARNESS_LAG_LIMIT_US && floor >= row.send_lag_p99_us / 2.0 {
        let actual = from_actual_send_times(row);
        if let Some(g) = failed.iter().find(|g| g.check(&actual).passed) {
            return Some(format!(
                "messages went out late (send lag p99 {}), as late as a thread that only sleeps and wakes on this \
                 machine (p99 {}), and from their actual send times {}",
                fmt_latency(row.send_lag_p99_us),
                fmt_latency(floor),
                held(g, &actual)
            ));
        }
    }
    None
}

/// The row with its latencies taken from the actual send times, as far as
/// the summary knows them.
fn from_actual_send_times(row: &SummaryRow) -> SummaryRow {
    // Less the lag, but never below the raw percentile beneath it.
    let less_lag = |v: Option<f64>, floor: Option<f64>| {
        v.map(|v| (v - row.send_lag_p99_us).max(floor.unwrap_or(f64::NEG_INFINITY)))
    };
    SummaryRow {
        p50_us: row.raw_p50_us,
        p90_us: less_lag(row.p90_us, row.raw_p50_us),
        p99_us: row.raw_p99_us,
        p999_us: less_lag(row.p999_us, row.raw_p99_us),
        max_us: row.raw_max_us,
        harness_limited: false,
        ..row.clone()
    }
}

/// A failed gate in words: `p99 was 2.31 ms > 1 ms`, `12 deliveries were lost`.
pub fn describe(gate: &Assertion, row: &SummaryRow) -> String {
    match gate.to_string().as_str() {
        "lost==0" => return format!("{} deliveries were lost", thousands(row.lost)),
        "sustained==1" => {
            return format!(
                "the system did not keep up ({} deliveries on their way at the end, {} undelivered after the drain)",
                thousands(row.in_flight_end),
                thousands(row.undelivered)
            )
        }
        _ => {}
    }
    let Some(b) = bound(gate) else { return format!("{} failed", gate.check(row).line) };
    let Some(v) = column(row, &b.column) else {
        return format!("{} has no value: no message was delivered", column_label(&b.column));
    };
    let relation = match v.partial_cmp(&b.value) {
        Some(std::cmp::Ordering::Less) => "<",
        Some(std::cmp::Ordering::Greater) => ">",
        _ => "=",
    };
    format!(
        "{} was {} {relation} {}",
        column_label(&b.column),
        value_text(&b.column, v),
        value_text(&b.column, b.value)
    )
}

/// A gate that held on `row`, in words: `p99 was 700 µs, within 1 ms`, or `p99_us<1000 held`.
fn held(gate: &Assertion, row: &SummaryRow) -> String {
    match bound(gate).and_then(|b| column(row, &b.column).map(|v| (b, v))) {
        Some((b, v)) if b.is_latency_ceiling() => format!(
            "{} was {}, within {}",
            column_label(&b.column),
            value_text(&b.column, v),
            value_text(&b.column, b.value)
        ),
        _ => format!("{gate} held"),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slo(user: &[&str]) -> Slo {
        Slo::new(user.iter().map(|s| s.parse().unwrap()))
    }

    fn ok_row() -> SummaryRow {
        SummaryRow {
            target_rate: 1000.0,
            send_rate: 1000.0,
            sustained: true,
            p50_us: Some(100.0),
            p99_us: Some(800.0),
            raw_p50_us: Some(90.0),
            raw_p99_us: Some(700.0),
            ..SummaryRow::default()
        }
    }

    #[test]
    fn the_slo_always_holds_nothing_lost_and_kept_up() {
        let s = slo(&["p99_us<1000", "lost==0"]);
        let texts: Vec<String> = s.gates().iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["lost==0", "sustained==1", "p99_us<1000"]);
        assert_eq!(s.user_gates().len(), 1);
        assert_eq!(s.judge(&ok_row()).verdict, Verdict::Pass);
        let j = s.judge(&SummaryRow { lost: 3, sustained: false, ..ok_row() });
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(j.failed.len(), 2);
        assert_eq!(describe(&j.failed[0].0, &SummaryRow { lost: 3, ..ok_row() }), "3 deliveries were lost");
        // Nothing delivered: no latency, and a latency gate fails on it.
        let silent = SummaryRow { p50_us: None, p99_us: None, raw_p50_us: None, raw_p99_us: None, ..ok_row() };
        let j = s.judge(&silent);
        assert_eq!(j.verdict, Verdict::Fail);
        assert_eq!(s.reason_text(&silent), "p99 has no value: no message was delivered");
        assert_eq!(s.short_reason(&silent, "p99_us"), "p99 has no value: no message was delivered");
    }

    #[test]
    fn a_failure_reads_like_the_headline() {
        let s = slo(&["p99_us<1000", "delivery_rate>=0.99*target_rate"]);
        let row = SummaryRow { p99_us: Some(2310.0), delivery_rate: 900.0, ..ok_row() };
        let j = s.judge(&row);
        let words: Vec<String> = j.failed.iter().map(|(g, _)| describe(g, &row)).collect();
        assert_eq!(words[0], "p99 was 2.31 ms > 1 ms");
        assert!(words[1].starts_with("delivery_rate>=0.99*target_rate (delivery_rate = 900"), "{}", words[1]);
        assert_eq!(s.latency_ceilings()[0].label(), "p99 < 1 ms");
        assert_eq!(s.quoted_latency(), "p99_us");
        assert_eq!(slo(&[]).quoted_latency(), "p99_us");
        assert_eq!(slo(&["p999_us<=5000"]).latency_ceilings()[0].label(), "p99.9 <= 5 ms");
        assert!(bound(&"2000>p99_us".parse().unwrap()).is_none());
        assert!(slo(&["p99_us>10"]).latency_ceilings().is_empty());
    }

    #[test]
    fn whose_failure_a_harness_limited_step_is() {
        let s = slo(&["p99_us<1000"]);
        let late = SummaryRow { harness_limited: true, send_lag_p99_us: 2500.0, ..ok_row() };
        // Met the SLO with the lateness counted against it: a pass.
        assert_eq!(s.judge(&late).verdict, Verdict::Pass);
        // Failed on the intended send times, held on the actual ones: the harness's.
        let j = s.judge(&SummaryRow { p99_us: Some(3200.0), raw_p99_us: Some(700.0), ..late.clone() });
        assert_eq!(j.verdict, Verdict::Harness);
        assert!(j.harness.unwrap().contains("send lag p99 2.5 ms"));
        // Said once, gate first: what failed, then whose failure it may be.
        let row = SummaryRow { p99_us: Some(3200.0), raw_p99_us: Some(700.0), ..late.clone() };
        assert_eq!(
            s.reason_text(&row),
            "p99 was 3.2 ms > 1 ms; eventbench may be what failed: messages went out late (send lag p99 2.5 ms), \
             and from their actual send times p99 was 700 µs, within 1 ms"
        );
        assert_eq!(
            s.short_reason(&row, "p99_us"),
            "p99 ≥ 1 ms; messages went out late (send lag p99 2.5 ms), and from their actual send times p99 was \
             700 µs, within 1 ms"
        );
        // Failed on both: a backlog of the system's.
        let j = s.judge(&SummaryRow { p99_us: Some(500_000.0), raw_p99_us: Some(497_000.0), ..late.clone() });
        assert_eq!(j.verdict, Verdict::Fail);
        // Lost messages with the harness only late: the system's.
        assert_eq!(s.judge(&SummaryRow { lost: 5, ..late.clone() }).verdict, Verdict::Fail);
        // No CPU to spare: any failure may be the harness's.
        let busy = SummaryRow { harness_thread_max_pct: 97.0, lost: 5, ..late.clone() };
        assert_eq!(s.judge(&busy).verdict, Verdict::Harness);
        // Not harness-limited: every failure is the system's.
        assert_eq!(s.judge(&SummaryRow { p99_us: Some(3200.0), ..ok_row() }).verdict, Verdict::Fail);
        // An SLO that forbids the harness being the limit.
        let strict = slo(&["harness_limited==0"]);
        assert_eq!(strict.judge(&late).verdict, Verdict::Harness);
    }
}
