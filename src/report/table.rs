//! The short, aligned summary printed on stdout after a run.

use super::fmt::{latency, pct, plural, rate};
use crate::rows::SummaryRow;
use std::fmt::Write;

/// Whether the system kept up, in one line: `sustained`, with the figures
/// behind it (the offered rate is on the `rate` line).
pub fn kept_up(s: &SummaryRow) -> String {
    let per_s = if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 };
    let verdict = if s.sustained { "yes" } else { "no" };
    format!(
        "{verdict} · {} in flight at the end ({:.2} s worth) · drain {:.2} s",
        s.in_flight_end,
        if per_s > 0.0 { s.in_flight_end as f64 / per_s } else { 0.0 },
        s.drain_s
    )
}

/// Renders the summary as label/value lines, each within 80 columns for a
/// run of ordinary size.
pub fn render(s: &SummaryRow) -> String {
    let target = if s.target_rate > 0.0 { rate(s.target_rate) } else { "unlimited".into() };
    let mut rows: Vec<(&str, String)> = vec![
        ("run", format!("{} ({})", s.run_id, s.status)),
        (
            "workload",
            format!(
                "{} · {} → {} → {} · {} B",
                s.transport,
                plural(s.producers, "producer"),
                plural(s.channels, "channel"),
                plural(s.consumers, "consumer"),
                s.payload_bytes
            ),
        ),
        ("rate", format!("target {target} · sent {} · delivered {}", rate(s.send_rate), rate(s.delivery_rate))),
        (
            "messages",
            format!("sent {} · expected {} · reached {} · delivered {}", s.sent, s.expected, s.reached, s.delivered),
        ),
        (
            "lost",
            format!(
                "{} ({}) · undelivered {} · duplicates {} · out of order {}",
                s.lost,
                pct(s.lost, s.expected),
                s.undelivered,
                s.duplicates,
                s.out_of_order
            ),
        ),
    ];
    if s.lost > 0 {
        rows.push(("lost to", loss_causes(s)));
    }
    if s.transport == "streams" {
        rows.push(("streams", streams_line(s)));
    }
    // No delivery, no latency: a dash, not 0.0 µs.
    let latency = |us: f64| if s.delivered == 0 { "—".to_string() } else { latency(us) };
    rows.extend([
        ("kept up", kept_up(s)),
        (
            "latency",
            format!(
                "p50 {} · p90 {} · p99 {} · p99.9 {}",
                latency(s.p50_us),
                latency(s.p90_us),
                latency(s.p99_us),
                latency(s.p999_us),
            ),
        ),
        ("max latency", format!("{} (raw {})", latency(s.max_us), latency(s.raw_max_us))),
        (
            "raw latency",
            format!("p50 {} · p99 {} (from actual send time)", latency(s.raw_p50_us), latency(s.raw_p99_us)),
        ),
    ]);
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{label:>12}  {value}");
    }
    if s.nodes > 1 {
        let recover = s.recover_ms.map(|ms| format!(" · recovered in {}", latency(ms * 1e3))).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>12}  {} masters · redirections {} · write errors {}{recover}",
            "cluster", s.nodes, s.redirections, s.write_errors
        );
    }
    if s.workers > 1 {
        let _ = writeln!(
            out,
            "{:>12}  {} processes · clock uncertainty ±{} · {} latencies below it",
            "workers",
            s.workers,
            latency(s.clock_uncertainty_us),
            s.latency_below_uncertainty
        );
    }
    let _ = writeln!(out, "{:>12}  {}", "server", server_line(s));
    if !s.reason.is_empty() {
        let _ = writeln!(out, "{:>12}  {}", "reason", s.reason);
    }
    out
}

/// Where the lost messages went, one figure per cause (`lost_*` in summary.csv),
/// so that they add up to `lost` on screen. A cause that is 0 and does not
/// apply to the transport is left out; `other`, which should be 0, always shows.
pub fn loss_causes(s: &SummaryRow) -> String {
    let streams = s.transport == "streams";
    let causes = [
        ("unsubscribed", s.lost_unsubscribed, true),
        ("in buffer", s.lost_in_buffer, !streams),
        ("trimmed", s.lost_trimmed, streams),
        ("unanswered", s.lost_unanswered, false),
        ("other", s.lost_other, true),
    ];
    causes
        .iter()
        .filter(|(_, n, usual)| *usual || *n > 0)
        .map(|(what, n, _)| format!("{what} {n}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// What a Streams run kept for its consumers: the backlog at its peak,
/// redeliveries, acknowledgements and a replay's catch-up.
pub fn streams_line(s: &SummaryRow) -> String {
    let mut line = format!("backlog max {} · redelivered {} · acked {}", s.backlog_max, s.redelivered, s.acked);
    if let Some(catchup) = s.replay_catchup_s {
        line.push_str(&format!(" · replay caught up in {catchup:.2} s"));
    }
    line
}

/// Which server ran, its CPU, and which side limited the run.
fn server_line(s: &SummaryRow) -> String {
    let name = match s.server.as_str() {
        "" => "unknown".to_string(),
        name => format!("{name} {}", s.server_version),
    };
    let cpu = match (s.server_cpu_pct, s.server_cpu_max_pct) {
        (Some(mean), Some(max)) => format!(" · CPU {mean:.0}% of a core (max {max:.0}%)"),
        _ => String::new(),
    };
    format!("{name}{cpu} · limit {}", s.limit.as_str())
}

/// How one line of the comparison shows a run.
type Cell<'a> = Box<dyn Fn(&SummaryRow) -> String + 'a>;

/// Renders several runs side by side, one column per run (transport).
pub fn render_comparison(rows: &[SummaryRow]) -> String {
    let lines: Vec<(&str, Cell<'_>)> = vec![
        ("transport", Box::new(|s| s.transport.clone())),
        ("status", Box::new(|s| s.status.to_string())),
        ("sent", Box::new(|s| s.sent.to_string())),
        ("expected", Box::new(|s| s.expected.to_string())),
        ("delivered", Box::new(|s| s.delivered.to_string())),
        ("lost", Box::new(|s| s.lost.to_string())),
        ("loss", Box::new(|s| pct(s.lost, s.expected))),
        ("undelivered", Box::new(|s| s.undelivered.to_string())),
        ("kept up", Box::new(|s| if s.sustained { "yes".into() } else { "no".into() })),
        ("duplicates", Box::new(|s| s.duplicates.to_string())),
        ("redelivered", Box::new(|s| s.redelivered.to_string())),
        ("p50", Box::new(|s| latency(s.p50_us))),
        ("p99", Box::new(|s| latency(s.p99_us))),
        ("p99.9", Box::new(|s| latency(s.p999_us))),
        ("max", Box::new(|s| latency(s.max_us))),
        ("delivery rate", Box::new(|s| rate(s.delivery_rate))),
        ("backlog max", Box::new(|s| s.backlog_max.to_string())),
        ("nodes", Box::new(|s| s.nodes.to_string())),
        ("redirections", Box::new(|s| s.redirections.to_string())),
        ("recover", Box::new(|s| s.recover_ms.map_or_else(|| "–".into(), |ms| latency(ms * 1e3)))),
        ("harness limited", Box::new(|s| if s.harness_limited { "yes".into() } else { "no".into() })),
        ("server", Box::new(|s| if s.server.is_empty() { "–".into() } else { s.server.clone() })),
        ("version", Box::new(|s| if s.server_version.is_empty() { "–".into() } else { s.server_version.clone() })),
        ("server CPU", Box::new(|s| s.server_cpu_pct.map_or_else(|| "–".into(), |p| format!("{p:.0}%")))),
        ("limit", Box::new(|s| s.limit.as_str().into())),
    ];
    let mut out = String::new();
    for (label, value) in &lines {
        let _ = write!(out, "{label:>16}");
        for row in rows {
            let _ = write!(out, "  {:>14}", value(row));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_consumer() -> SummaryRow {
        SummaryRow {
            run_id: "slow-consumer-20250101T000000Z".into(),
            transport: "pubsub".into(),
            producers: 1,
            consumers: 4,
            channels: 1,
            payload_bytes: 64,
            target_rate: 20_000.0,
            duration_s: 10.0,
            sent: 200_000,
            expected: 800_000,
            reached: 651_935,
            delivered: 631_463,
            lost: 168_537,
            lost_unsubscribed: 147_987,
            lost_in_buffer: 20_550,
            sustained: true,
            in_flight_end: 8113,
            drain_s: 2.01,
            send_rate: 20_000.0,
            delivery_rate: 63_146.3,
            p50_us: 227.8,
            p90_us: 312.4,
            p99_us: 1_540_000.0,
            p999_us: 12_340_000.0,
            max_us: 123_450_000.0,
            raw_p50_us: 227.8,
            raw_p99_us: 1_540_000.0,
            raw_max_us: 123_450_000.0,
            ..SummaryRow::default()
        }
    }

    #[test]
    fn the_summary_names_the_causes_of_loss_and_fits_80_columns() {
        let s = slow_consumer();
        let text = render(&s);
        assert!(text.contains("lost to  unsubscribed 147987 · in buffer 20550 · other 0"), "{text}");
        assert!(text.contains("168537 (21.067%)"), "{text}");
        assert!(text.contains("1 producer → 1 channel → 4 consumers"), "{text}");
        assert!(text.contains("target 20.0k/s"), "{text}");
        assert!(!text.contains("streams"), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
        }
        let clean = render(&SummaryRow { lost: 0, lost_unsubscribed: 0, lost_in_buffer: 0, ..s });
        assert!(!clean.contains("lost to") && clean.contains("lost  0 (0%)"), "{clean}");
    }

    #[test]
    fn a_streams_summary_shows_its_backlog_and_redeliveries() {
        let s = SummaryRow {
            transport: "streams".into(),
            backlog_max: 20_022,
            redelivered: 2,
            acked: 160_000,
            lost: 3,
            lost_trimmed: 3,
            lost_unsubscribed: 0,
            lost_in_buffer: 0,
            ..slow_consumer()
        };
        let text = render(&s);
        assert!(text.contains("streams  backlog max 20022 · redelivered 2 · acked 160000"), "{text}");
        assert!(text.contains("lost to  unsubscribed 0 · trimmed 3 · other 0"), "{text}");
        let sum: u64 = text
            .lines()
            .find(|l| l.contains("lost to"))
            .unwrap()
            .split(" · ")
            .map(|part| part.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, s.lost);
    }
}
