//! The short, aligned summary printed on stdout after a run.

use super::fmt::{latency, rate};
use super::rows::SummaryRow;
use std::fmt::Write;

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
            format!("{} ({loss_pct:.3}%) · duplicates {} · out of order {}", s.lost, s.duplicates, s.out_of_order),
        ),
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
    if !s.reason.is_empty() {
        let _ = writeln!(out, "{:>12}  {}", "reason", s.reason);
    }
    out
}
