//! The short, aligned summary printed on stdout after a run.

use super::fmt::{latency, rate};
use crate::rows::SummaryRow;
use std::fmt::Write;

/// Whether the system kept up, in one line: `sustained`, with the figures behind it.
pub fn kept_up(s: &SummaryRow) -> String {
    let per_s = if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 };
    let verdict = if s.sustained { "yes" } else { "no" };
    format!(
        "{verdict} · {} on their way at the end ({:.2} s of the offered {}) · drain {:.2} s",
        s.in_flight_end,
        if per_s > 0.0 { s.in_flight_end as f64 / per_s } else { 0.0 },
        rate(per_s),
        s.drain_s
    )
}

/// Renders the summary as label/value lines.
pub fn render(s: &SummaryRow) -> String {
    let loss_pct = if s.expected > 0 { 100.0 * s.lost as f64 / s.expected as f64 } else { 0.0 };
    let target = if s.target_rate > 0.0 { rate(s.target_rate) } else { "unlimited".into() };
    let rows: Vec<(&str, String)> = vec![
        ("run", format!("{} ({})", s.run_id, s.status)),
        (
            "workload",
            format!(
                "{} · {} producers → {} channels → {} consumers · {} B",
                s.transport, s.producers, s.channels, s.consumers, s.payload_bytes
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
                "{} ({loss_pct:.3}%) · undelivered {} · duplicates {} · out of order {}",
                s.lost, s.undelivered, s.duplicates, s.out_of_order
            ),
        ),
        ("kept up", kept_up(s)),
        (
            "latency",
            format!(
                "p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
                latency(s.p50_us),
                latency(s.p90_us),
                latency(s.p99_us),
                latency(s.p999_us),
                latency(s.max_us)
            ),
        ),
        (
            "raw latency",
            format!(
                "p50 {} · p99 {} · max {} (from actual send time)",
                latency(s.raw_p50_us),
                latency(s.raw_p99_us),
                latency(s.raw_max_us)
            ),
        ),
    ];
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
    let loss_pct = |s: &SummaryRow| if s.expected > 0 { 100.0 * s.lost as f64 / s.expected as f64 } else { 0.0 };
    let lines: Vec<(&str, Cell<'_>)> = vec![
        ("transport", Box::new(|s| s.transport.clone())),
        ("status", Box::new(|s| s.status.to_string())),
        ("sent", Box::new(|s| s.sent.to_string())),
        ("expected", Box::new(|s| s.expected.to_string())),
        ("delivered", Box::new(|s| s.delivered.to_string())),
        ("lost", Box::new(|s| s.lost.to_string())),
        ("loss", Box::new(|s| format!("{:.3}%", loss_pct(s)))),
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
