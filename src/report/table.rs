//! The short, aligned summary printed on stdout after a run.

use super::fmt::{bytes, latency, latency_or_dash, pct, percent, plural, rate, thousands};
use crate::assertion::AssertionRow;
use crate::rows::SummaryRow;
use std::fmt::Write;

/// Whether the system kept up, in one line: `sustained`, with the figures
/// behind it (the offered rate is on the `rate` line).
pub fn kept_up(s: &SummaryRow) -> String {
    let per_s = if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 };
    format!(
        "{} · {} in flight at the end ({:.2} s worth) · drain {:.2} s",
        kept_up_word(s),
        thousands(s.in_flight_end),
        if per_s > 0.0 { s.in_flight_end as f64 / per_s } else { 0.0 },
        s.drain_s
    )
}

/// `yes`, `no`, or, for a run behind when its measured phase ended whose
/// drain brought everything in, `no, caught up in the drain`.
pub fn kept_up_word(s: &SummaryRow) -> &'static str {
    match (s.sustained, s.undelivered, s.status == crate::live::Status::Ok) {
        (true, _, _) => "yes",
        (false, 0, true) => "no, caught up in drain",
        _ => "no",
    }
}

/// Why a run did not keep up (`sustained = false`), what happened to the
/// messages, and what to try: a backlog the drain cleared (a fault's, a
/// spike's) is not a system falling behind, and the two need different advice.
pub fn not_kept_up(s: &SummaryRow) -> String {
    let per_s = if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 };
    let worth = if per_s > 0.0 { s.in_flight_end as f64 / per_s } else { 0.0 };
    let head = format!(
        "the system did not keep up (sustained = false): {} deliveries ({worth:.2} s of the offered {}) were still on \
         their way when the measured phase ended",
        thousands(s.in_flight_end),
        rate(per_s)
    );
    if s.undelivered == 0 {
        format!(
            "{head}, and the drain delivered every one of them within {:.2} s ({} lost): it was still catching up \
             on a backlog (after an outage, a slow consumer or a spike) when the measured phase ended, not losing \
             messages. To measure the recovery too, lengthen --duration past it (or start the fault earlier); to \
             gate on losing nothing, --assert lost==0 --assert undelivered==0",
            s.drain_s,
            thousands(s.lost)
        )
    } else {
        format!(
            "{head}, and {} were still undelivered after a {:.2} s drain (Redis still holds them: not lost): it \
             falls behind at this rate. Lower --rate, add consumers (Streams: --groups shares a stream's work), \
             or lengthen --drain to see whether it catches up",
            thousands(s.undelivered),
            s.drain_s
        )
    }
}

/// The pacing window and its share of the median: a message waits for the
/// end of its window, half a window on average (what falls due is spread
/// evenly over it), and that wait is in every latency figure.
pub fn pacing(s: &SummaryRow) -> String {
    if s.pacing_window_us <= 0.0 {
        return "a wake-up per message (no window)".into();
    }
    let mean_wait = s.pacing_window_us / 2.0;
    let share = match s.p50_us {
        Some(p50) if p50 > 0.0 => format!(", {:.0}% of the p50", 100.0 * mean_wait / p50),
        _ => String::new(),
    };
    format!("released once a {} window: adds {} on average{share}", latency(s.pacing_window_us), latency(mean_wait))
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
        (
            "rate",
            format!(
                "target {target} · sent {} ({}/s) · delivered {}",
                rate(s.send_rate),
                bytes(s.send_bytes_per_s as u64),
                rate(s.delivery_rate)
            ),
        ),
        (
            "messages",
            match s.unsent {
                0 => format!(
                    "sent {} · expected {} · delivered {}",
                    thousands(s.sent),
                    thousands(s.expected),
                    thousands(s.delivered)
                ),
                n => format!(
                    "sent {} ({} due but not sent: behind schedule) · expected {} · delivered {}",
                    thousands(s.sent),
                    thousands(n),
                    thousands(s.expected),
                    thousands(s.delivered)
                ),
            },
        ),
        (
            "lost",
            format!(
                "{} ({}) · undelivered {} · duplicates {} · out of order {}",
                thousands(s.lost),
                pct(s.lost, s.expected),
                thousands(s.undelivered),
                thousands(s.duplicates),
                thousands(s.out_of_order)
            ),
        ),
    ];
    if s.lost > 0 {
        rows.push(("lost to", loss_causes(s)));
    }
    // Redis's own count, where it tells something the others do not.
    if s.reached != s.delivered {
        rows.push(("reached", reached_line(s)));
    }
    if s.transport == "streams" {
        rows.push(("streams", streams_line(s)));
    }
    rows.push(("kept up", kept_up(s)));
    let l = latency_or_dash;
    match s.p50_us {
        // No delivery, no latency: said once, not as 0.0 µs.
        None => rows.push(("latency", "no deliveries".into())),
        Some(_) => rows.extend([
            (
                "latency",
                format!("p50 {} · p90 {} · p99 {} · p99.9 {}", l(s.p50_us), l(s.p90_us), l(s.p99_us), l(s.p999_us),),
            ),
            ("max latency", format!("{} (raw {})", l(s.max_us), l(s.raw_max_us))),
        ]),
    }
    rows.push(("pacing", pacing(s)));
    if s.p50_us.is_some() {
        let raw = format!("p50 {} · p99 {} (from actual send time)", l(s.raw_p50_us), l(s.raw_p99_us));
        rows.push(("raw latency", raw));
    }
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{label:>12}  {value}");
    }
    if s.nodes > 1 {
        let recover = s.recover_ms.map(|ms| format!(" · recovered in {}", latency(ms * 1e3))).unwrap_or_default();
        let _ = writeln!(
            out,
            "{:>12}  {} masters · redirections {} · write errors {}{recover}",
            "cluster",
            s.nodes,
            thousands(s.redirections),
            thousands(s.write_errors)
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

/// The verdict of each `--assert`, one line each under the summary's labels
/// (`✓`/`✗` and the measured values); nothing for a run without assertions.
pub fn assertions(rows: &[AssertionRow]) -> String {
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let label = if i == 0 { "assertions" } else { "" };
        let _ = writeln!(out, "{label:>12}  {}", row.line());
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
        .map(|(what, n, _)| format!("{what} {}", thousands(*n)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// What Redis said it reached: Pub/Sub's subscribers counted by PUBLISH
/// (`expected − reached` had nobody subscribed), Streams' XADDs acknowledged.
fn reached_line(s: &SummaryRow) -> String {
    match s.transport.as_str() {
        "streams" => format!("{} XADDs acknowledged", thousands(s.reached)),
        // On a cluster PUBLISH counts one node's subscribers only.
        _ if s.nodes > 1 => format!("{} (subscribers on the nodes published to)", thousands(s.reached)),
        _ => format!(
            "{} by PUBLISH's count · {} had nobody subscribed",
            thousands(s.reached),
            thousands(s.expected.saturating_sub(s.reached))
        ),
    }
}

/// What a Streams run kept for its consumers: the backlog at its peak,
/// redeliveries, acknowledgements and a replay's catch-up.
pub fn streams_line(s: &SummaryRow) -> String {
    let mut line = format!(
        "backlog max {} · redelivered {} · acked {}",
        thousands(s.backlog_max),
        thousands(s.redelivered),
        thousands(s.acked)
    );
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
        (Some(mean), Some(max)) => format!(" · CPU {} of a core (max {})", percent(mean), percent(max)),
        _ => String::new(),
    };
    format!("{name}{cpu} · limit {}", s.limit.as_str())
}

/// How one line of the comparison shows a run.
type Cell<'a> = Box<dyn Fn(&SummaryRow) -> String + 'a>;

/// What tells the runs of a comparison apart, for the table's head: the
/// transport (`compare --transports`), else the server and its version
/// (`--servers`, `--urls`), else the run's id.
pub fn comparison_heading(rows: &[SummaryRow]) -> (&'static str, Vec<String>) {
    let distinct = |v: &[String]| {
        let mut d = v.to_vec();
        d.sort();
        d.dedup();
        d.len() == v.len()
    };
    let transports: Vec<String> = rows.iter().map(|s| s.transport.clone()).collect();
    let servers: Vec<String> =
        rows.iter().map(|s| format!("{} {}", s.server, s.server_version).trim().to_string()).collect();
    if distinct(&transports) {
        ("transport", transports)
    } else if distinct(&servers) && servers.iter().all(|s| !s.is_empty()) {
        ("server", servers)
    } else {
        ("run", rows.iter().map(|s| s.run_id.clone()).collect())
    }
}

/// Renders several runs side by side, one column per run, headed by what
/// tells them apart; rows that cannot differ between these runs (a
/// cluster's on single servers) are left out.
pub fn render_comparison(rows: &[SummaryRow]) -> String {
    let (heading, names) = comparison_heading(rows);
    let cluster = rows.iter().any(|s| s.nodes > 1);
    let streams = rows.iter().any(|s| s.transport == "streams");
    let count = |f: fn(&SummaryRow) -> u64| -> Cell<'_> { Box::new(move |s| thousands(f(s))) };
    let mut lines: Vec<(&str, Cell<'_>)> = vec![
        ("transport", Box::new(|s| s.transport.clone())),
        ("status", Box::new(|s| s.status.to_string())),
        ("sent", count(|s| s.sent)),
        ("expected", count(|s| s.expected)),
        ("delivered", count(|s| s.delivered)),
        ("lost", count(|s| s.lost)),
        ("loss", Box::new(|s| pct(s.lost, s.expected))),
        ("undelivered", count(|s| s.undelivered)),
        ("kept up", Box::new(|s| kept_up_word(s).into())),
        ("duplicates", count(|s| s.duplicates)),
        ("out of order", count(|s| s.out_of_order)),
        ("p50", Box::new(|s| latency_or_dash(s.p50_us))),
        ("p99", Box::new(|s| latency_or_dash(s.p99_us))),
        ("p99.9", Box::new(|s| latency_or_dash(s.p999_us))),
        ("max", Box::new(|s| latency_or_dash(s.max_us))),
        ("delivery rate", Box::new(|s| rate(s.delivery_rate))),
    ];
    if streams {
        lines.push(("redelivered", count(|s| s.redelivered)));
        lines.push(("backlog max", count(|s| s.backlog_max)));
    }
    if cluster {
        lines.push(("nodes", Box::new(|s| s.nodes.to_string())));
        lines.push(("redirections", count(|s| s.redirections)));
        lines.push(("recover", Box::new(|s| s.recover_ms.map_or_else(|| "–".into(), |ms| latency(ms * 1e3)))));
    }
    lines.extend::<[(&str, Cell<'_>); 5]>([
        ("harness limited", Box::new(|s| if s.harness_limited { "yes".into() } else { "no".into() })),
        ("server", Box::new(|s| if s.server.is_empty() { "–".into() } else { s.server.clone() })),
        ("version", Box::new(|s| if s.server_version.is_empty() { "–".into() } else { s.server_version.clone() })),
        ("server CPU", Box::new(|s| s.server_cpu_pct.map_or_else(|| "–".into(), percent))),
        ("limit", Box::new(|s| s.limit.as_str().into())),
    ]);
    // The heading names what differs; the rows it replaces would repeat it.
    let repeated: &[&str] = match heading {
        "transport" => &["transport"],
        "server" => &["server", "version"],
        _ => &[],
    };
    let width = names.iter().map(|n| n.chars().count()).chain(std::iter::once(14)).max().unwrap_or(14);
    let mut out = format!("{heading:>16}");
    for name in &names {
        let _ = write!(out, "  {name:>width$}");
    }
    out.push('\n');
    for (label, value) in lines.iter().filter(|(label, _)| !repeated.contains(label)) {
        let _ = write!(out, "{label:>16}");
        for row in rows {
            let _ = write!(out, "  {:>width$}", value(row));
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
            p50_us: Some(227.8),
            p90_us: Some(312.4),
            p99_us: Some(1_540_000.0),
            p999_us: Some(12_340_000.0),
            max_us: Some(123_450_000.0),
            raw_p50_us: Some(227.8),
            raw_p99_us: Some(1_540_000.0),
            raw_max_us: Some(123_450_000.0),
            ..SummaryRow::default()
        }
    }

    #[test]
    fn the_summary_names_the_causes_of_loss_and_fits_80_columns() {
        let s = slow_consumer();
        let text = render(&s);
        assert!(text.contains("lost to  unsubscribed 147,987 · in buffer 20,550 · other 0"), "{text}");
        assert!(text.contains("168,537 (21.067%)"), "{text}");
        assert!(text.contains("sent 200,000 · expected 800,000 · delivered 631,463"), "{text}");
        assert!(text.contains("reached  651,935 by PUBLISH's count · 148,065 had nobody subscribed"), "{text}");
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
    fn a_comparison_is_headed_by_what_differs_and_drops_rows_that_cannot() {
        let server = |name: &str, version: &str| SummaryRow {
            server: name.into(),
            server_version: version.into(),
            nodes: 1,
            ..slow_consumer()
        };
        let text = render_comparison(&[server("redis", "7.0.15"), server("valkey", "9.1.2")]);
        let head = text.lines().next().unwrap();
        assert!(head.trim_start().starts_with("server") && head.contains("redis 7.0.15"), "{text}");
        assert!(head.contains("valkey 9.1.2"), "{text}");
        assert!(text.contains("     transport          pubsub          pubsub"), "the transport is a row: {text}");
        for gone in ["nodes", "redirections", "recover", "version", "backlog max"] {
            assert!(!text.lines().any(|l| l.trim_start().starts_with(gone)), "{gone} on single servers: {text}");
        }
        assert!(text.contains("631,463"), "counts grouped as on the page: {text}");
        let transports = render_comparison(&[
            SummaryRow { transport: "pubsub".into(), ..slow_consumer() },
            SummaryRow { transport: "streams".into(), nodes: 3, ..slow_consumer() },
        ]);
        let head = transports.lines().next().unwrap();
        assert!(head.trim_start().starts_with("transport") && head.ends_with("streams"), "{transports}");
        assert!(transports.contains("redirections") && transports.contains("backlog max"), "{transports}");
    }

    #[test]
    fn behind_at_the_end_but_caught_up_in_the_drain_says_so_and_advises() {
        let s = SummaryRow { sustained: false, lost: 0, undelivered: 0, in_flight_end: 20_022, ..slow_consumer() };
        assert!(kept_up(&s).starts_with("no, caught up in drain · 20,022 in flight"), "{}", kept_up(&s));
        let why = not_kept_up(&s);
        assert!(why.contains("delivered every one of them") && why.contains("lengthen --duration"), "{why}");
        let behind = SummaryRow { undelivered: 5, ..s };
        assert!(kept_up(&behind).starts_with("no ·"), "{}", kept_up(&behind));
        assert!(not_kept_up(&behind).contains("Lower --rate"), "{}", not_kept_up(&behind));
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
        assert!(text.contains("streams  backlog max 20,022 · redelivered 2 · acked 160,000"), "{text}");
        assert!(text.contains("lost to  unsubscribed 0 · trimmed 3 · other 0"), "{text}");
        let sum: u64 = text
            .lines()
            .find(|l| l.contains("lost to"))
            .unwrap()
            .split(" · ")
            .map(|part| part.rsplit(' ').next().unwrap().replace(',', "").parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, s.lost);
    }
}
