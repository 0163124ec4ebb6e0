//! `report.html` for a run and `compare.html` for several: one
//! self-contained page each (styles and SVG plots inline, no script, no
//! network; a Content-Security-Policy forbids loading anything), built from
//! the run directory's files only.

/// In `fmt`, which `stages` (a part of this page) uses too.
pub use super::fmt::escape;
use super::fmt::{bytes, latency, latency_or_dash, number, pct, percent, plural, rate, thousands};
use super::rundir::{RunData, Table};
use crate::assertion::AssertionRow;
use crate::rows::{columns, SummaryRow};
use std::fmt::Write;

/// Consumers shown in the page's table; `consumers.csv` has them all.
const CONSUMER_ROWS: usize = 100;
/// Most rows of the per-second table: past that, only the seconds that had a loss or consumers away.
const MOST_ROWS: usize = 600;

const STYLE: &str = r#"
:root { --ink: #1d2330; --muted: #5b6474; --line: #dde1e8; --bad: #c62828; --good: #2e7d32; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #f6f7f9; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.sub { color: var(--muted); margin: 0 0 8px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600; color: #fff; background: var(--good); }
.badge.interrupted { background: #ef6c00; } .badge.aborted { background: var(--bad); }
.story { background: #f0f5fb; border-left: 4px solid var(--accent); padding: 10px 16px; margin: 16px 0; }
.story p { margin: 4px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(125px, 1fr)); gap: 10px; margin: 16px 0; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .k { color: var(--muted); font-size: 13px; } .card .v { font-size: 20px; font-weight: 600; white-space: nowrap; }
.card .d { color: var(--muted); font-size: 12px; }
.card.bad .v { color: var(--bad); } .card.good .v { color: var(--good); }
figure { margin: 8px 0 0; } figure svg { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.loss td { background: #fdecea; }
.scroll { max-width: 100%; overflow-x: auto; }
.cols { columns: 2 340px; column-gap: 28px; } .cols table { width: 100%; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 13px; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; }
details summary { cursor: pointer; color: var(--accent); margin: 8px 0; }
.note { color: var(--muted); font-size: 13px; }
ul.files { columns: 3 200px; padding-left: 18px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"#;

/// "3", "3–4", "3–4, 7": seconds as ranges.
fn seconds_list(seconds: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seconds.len() {
        let mut j = i;
        while j + 1 < seconds.len() && seconds[j + 1] == seconds[j] + 1 {
            j += 1;
        }
        parts.push(if i == j { seconds[i].to_string() } else { format!("{}–{}", seconds[i], seconds[j]) });
        i = j + 1;
    }
    if parts.len() > 6 {
        let n = parts.len() - 5;
        parts.truncate(5);
        parts.push(format!("and {n} more"));
    }
    parts.join(", ")
}

/// What the run shows, in a few plain sentences (escaped HTML).
pub fn findings(run: &RunData) -> Vec<String> {
    let s = &run.summary;
    let mut out = Vec::new();
    if s.status != "ok" {
        out.push(format!(
            "<strong>The run {}</strong>{}; the figures cover what was measured until then.",
            escape(s.status.as_str()),
            if s.reason.is_empty() { String::new() } else { format!(": {}", escape(&s.reason)) }
        ));
    }
    let target = if s.target_rate > 0.0 { format!(" (target {})", rate(s.target_rate)) } else { String::new() };
    out.push(format!(
        "{} sent {} messages over {} s at {}{target} to {} on {}; {} of {} expected deliveries arrived.",
        plural(s.producers, "producer"),
        thousands(s.sent),
        number(s.duration_s),
        rate(s.send_rate),
        plural(s.consumers, "consumer"),
        plural(s.channels, "channel"),
        thousands(s.delivered),
        thousands(s.expected),
    ));
    if let Some(rate) = run.rate() {
        out.extend(super::stages::story(run, &rate));
    }
    let away: Vec<usize> = (run.timeseries.iter().enumerate())
        .filter(|(_, t)| t.connected_consumers < s.consumers)
        .map(|(i, _)| i)
        .collect();
    let lossy: Vec<usize> = (run.timeseries.iter().enumerate()).filter(|(_, t)| t.lost > 0).map(|(i, _)| i).collect();
    if s.lost == 0 {
        out.push("<strong>Nothing was lost.</strong>".into());
    } else {
        let in_outage: u64 = away.iter().map(|&i| run.timeseries[i].lost).sum();
        let when = match lossy.len() {
            0 => String::new(),
            1 => format!(", in second {}", seconds_list(&lossy)),
            _ => format!(", in seconds {}", seconds_list(&lossy)),
        };
        let mut text = format!(
            "<strong class=\"bad\">{} deliveries were lost ({} of expected)</strong>{when}.",
            thousands(s.lost),
            pct(s.lost, s.expected)
        );
        if !away.is_empty() {
            let fewest = away.iter().map(|&i| run.timeseries[i].connected_consumers).min().unwrap_or(0);
            let _ = write!(
                text,
                " Consumers were disconnected in {} {} (as few as {fewest} of {} connected); {} of the loss \
                 falls in those seconds.",
                if away.len() == 1 { "second" } else { "seconds" },
                seconds_list(&away),
                s.consumers,
                pct(in_outage, s.lost)
            );
        }
        let causes: Vec<String> = [
            (s.lost_unsubscribed, "published while the consumer was not subscribed"),
            (s.lost_in_buffer, "accepted by Redis for a consumer, then dropped (e.g. its output buffer cut off)"),
            (s.lost_trimmed, "trimmed from the stream (MAXLEN) before the group read them"),
            (s.lost_unanswered, "written, but Redis never answered for them (it went away or stalled)"),
            (s.lost_other, "for no cause eventbench could tell"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, why)| format!("{} {why}", thousands(*n)))
        .collect();
        if !causes.is_empty() {
            let _ = write!(text, " By cause: {}.", causes.join("; "));
        }
        // On a cluster, PUBLISH counts only the subscribers of the node it went to.
        let counts_all = s.transport == "sharded" || (s.transport == "pubsub" && s.nodes <= 1);
        if counts_all && s.reached < s.expected {
            let _ = write!(
                text,
                " PUBLISH reached {} subscribers: Redis itself had nobody to send {} of those deliveries to.",
                thousands(s.reached),
                thousands(s.expected - s.reached)
            );
        }
        out.push(text);
    }
    if s.undelivered > 0 {
        out.push(format!(
            "<strong class=\"bad\">{} deliveries ({} of expected) were still on their way when the {} s drain \
             ended</strong> (in the stream or a pending list, in Redis's output buffer, in flight): not lost, \
             not delivered.",
            thousands(s.undelivered),
            pct(s.undelivered, s.expected),
            number(s.drain_s)
        ));
    }
    out.push(if s.sustained {
        format!(
            "<strong>The system kept up</strong>: at the end of the measured phase {} deliveries were still on \
             their way (less than a second's worth, and not growing), and the drain brought everything in within \
             {} s.",
            thousands(s.in_flight_end),
            number(s.drain_s)
        )
    } else if s.undelivered == 0 && s.status == "ok" {
        format!(
            "<strong class=\"bad\">The system did not keep up during the measured phase, and caught up in the \
             drain</strong>: when the measured phase ended {} deliveries were still on their way ({} expected per \
             second), and the drain delivered every one of them within {} s. It was working through a backlog \
             (after an outage, a slow consumer or a spike), not losing messages: {}. To measure the recovery too, \
             lengthen the measured phase past it; to gate on losing nothing, assert <code>lost==0</code> and \
             <code>undelivered==0</code>.",
            thousands(s.in_flight_end),
            rate(if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 }),
            number(s.drain_s),
            if s.lost == 0 {
                "nothing was lost".to_string()
            } else {
                format!("what was lost ({}) was lost to the causes above", thousands(s.lost))
            }
        )
    } else {
        format!(
            "<strong class=\"bad\">The system did not keep up</strong>: at the end of the measured phase {} \
             deliveries were still on their way, against {} expected per second; {} were delivered during the \
             measured phase ({} a second). The latency of the last seconds is the wait in that backlog.",
            thousands(s.in_flight_end),
            rate(if s.duration_s > 0.0 { s.expected as f64 / s.duration_s } else { 0.0 }),
            thousands((s.delivery_rate * s.duration_s).round() as u64),
            rate(s.delivery_rate)
        )
    });
    if s.transport == "streams" {
        out.push(format!(
            "The streams' backlog peaked at {} entries not yet acknowledged; {} entries were redelivered.",
            thousands(s.backlog_max),
            thousands(s.redelivered)
        ));
    }
    if s.duplicates > 0 || s.out_of_order > 0 {
        out.push(format!(
            "{} duplicate and {} out-of-order deliveries.",
            thousands(s.duplicates),
            thousands(s.out_of_order)
        ));
    }
    if s.delivered > 0 {
        let worst = run
            .timeseries
            .iter()
            .enumerate()
            .filter(|(_, t)| t.delivered > 0)
            .max_by(|a, b| a.1.p99_us.partial_cmp(&b.1.p99_us).unwrap_or(std::cmp::Ordering::Equal));
        let mut text = format!(
            "Latency from the intended send time: p50 {}, p99 {}, p99.9 {}, max {} \
             (from the actual send time, what a closed-loop tool would report: p99 {}).",
            latency_or_dash(s.p50_us),
            latency_or_dash(s.p99_us),
            latency_or_dash(s.p999_us),
            latency_or_dash(s.max_us),
            latency_or_dash(s.raw_p99_us)
        );
        if let Some((i, t)) = worst.filter(|_| run.timeseries.len() > 1) {
            let _ = write!(text, " The worst second was second {i}, with p99 {}.", latency(t.p99_us.unwrap_or(0.0)));
        }
        out.push(text);
    }
    if s.pacing_window_us > 0.0 {
        out.push(format!("Pacing: {}.", super::table::pacing(s)));
    }
    // The harness says when it, or the machine under it, was the bottleneck.
    if s.send_lag_p99_us >= 1000.0 {
        out.push(format!(
            "Messages went out late: p99 send lag {} behind the schedule (the producers or the machine fell \
             behind). The corrected latency counts that wait; the raw latency does not.",
            latency(s.send_lag_p99_us)
        ));
    }
    out.push(limit_finding(s));
    out
}

/// Which server ran and which side limited the run (the `limit` column).
fn limit_finding(s: &crate::rows::SummaryRow) -> String {
    use crate::results::summarize::SERVER_CPU_LIMIT_PCT;
    use crate::rows::Limit;
    let server = match (s.server.as_str(), s.server_version.as_str()) {
        ("", _) => "The server did not say what it is".to_string(),
        (name, version) => format!("The server was {} {}", escape(name), escape(version)),
    };
    let cpu = match (s.server_cpu_pct, s.server_cpu_max_pct) {
        (Some(mean), Some(max)) => {
            format!("; it used {} of a core on average (busiest second {})", percent(mean), percent(max))
        }
        _ => "; its CPU was not sampled (server.csv is empty)".to_string(),
    };
    let verdict = match s.limit {
        Limit::Server => format!(
            "<strong>The server was the limit</strong>: its main thread was busy over {SERVER_CPU_LIMIT_PCT:.0}%              of a core on average. More load will not go faster on this server."
        ),
        Limit::Harness => "<strong>The harness was the limit</strong>: eventbench fell behind its schedule or              had no CPU to spare, so the figures describe eventbench and this machine as much as the server."
            .to_string(),
        Limit::Neither => "Neither the server nor the harness was at its limit.".to_string(),
    };
    format!("{server}{cpu}. {verdict}")
}

pub(crate) fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(title)
    )
}

fn foot(rebuild: &str) -> String {
    format!(
        "<footer>Written by eventbench {}. Rebuild with <code>{}</code>.</footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        escape(rebuild)
    )
}

/// A table of strings; cells that parse as numbers are right-aligned and grouped.
pub(crate) fn table(out: &mut String, header: &[String], rows: &[Vec<String>], highlight: impl Fn(usize) -> bool) {
    // A table wider than the page scrolls inside its box; the page never does.
    out.push_str("<div class=\"scroll\"><table>\n<thead><tr>");
    let numeric: Vec<bool> = (0..header.len())
        .map(|c| !rows.is_empty() && rows.iter().all(|r| r.get(c).is_some_and(|v| v.parse::<f64>().is_ok())))
        .collect();
    for (c, h) in header.iter().enumerate() {
        let class = if numeric[c] { " class=\"n\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", escape(h));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (i, row) in rows.iter().enumerate() {
        out.push_str(if highlight(i) { "<tr class=\"loss\">" } else { "<tr>" });
        for (c, cell) in row.iter().enumerate() {
            match cell.parse::<f64>() {
                Ok(v) if numeric.get(c) == Some(&true) => {
                    let _ = write!(out, "<td class=\"n\">{}</td>", number(v));
                }
                // A number in a column of mixed values (the summary's) reads like the others.
                Ok(v) if is_plain_number(cell) => {
                    let _ = write!(out, "<td>{}</td>", number(v));
                }
                _ => {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n");
}

/// Digits with at most a sign and a decimal point: not `inf`, `NaN` or `1e5`,
/// which are left as written.
fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '.') && digits.matches('.').count() <= 1
}

/// Rows of a serializable struct as strings, through the CSV writer so the
/// page shows exactly what the file holds.
fn cells<T: serde::Serialize>(rows: &[T]) -> Vec<Vec<String>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).expect("row structs serialize");
    }
    let bytes = w.into_inner().expect("in-memory writer");
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    r.records().map(|rec| rec.expect("our own CSV").iter().map(str::to_owned).collect()).collect()
}

pub(crate) fn card(out: &mut String, key: &str, value: &str, detail: &str, class: &str) {
    let _ = writeln!(
        out,
        "<div class=\"card {class}\"><div class=\"k\">{}</div><div class=\"v\">{}</div><div class=\"d\">{}</div></div>",
        escape(key),
        escape(value),
        escape(detail)
    );
}

/// Inline SVG, without anything before its `<svg` tag.
pub(crate) fn inline_svg(svg: &str) -> &str {
    svg.find("<svg").map_or(svg, |i| &svg[i..])
}

/// The page of one run, with the SVGs written beside it inlined.
pub fn run_page(run: &RunData, timeline_svg: &str, latency_svg: &str) -> String {
    let s = &run.summary;
    let mut out = head(&format!("eventbench · {}", s.run_id));
    let _ = writeln!(out, "<h1>{}</h1>", escape(run.name()));
    let started = run
        .hlog
        .start
        .map(|t| format!(" · measured from {}", humantime::format_rfc3339_seconds(t)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<p class=\"sub\"><span class=\"badge {status}\">{status}</span> {} · {} · {} → {} → {} · {} B \
         messages{started}</p>",
        escape(&s.run_id),
        escape(&s.transport),
        plural(s.producers, "producer"),
        plural(s.channels, "channel"),
        plural(s.consumers, "consumer"),
        s.payload_bytes,
        status = escape(s.status.as_str()),
    );
    if let Some(d) = &run.description {
        let _ = writeln!(out, "<p>{}</p>", escape(d));
    }
    out.push_str("<div class=\"story\">\n");
    for f in findings(run) {
        let _ = writeln!(out, "<p>{f}</p>");
    }
    out.push_str("</div>\n<div class=\"cards\">\n");
    let target = if s.target_rate > 0.0 { rate(s.target_rate) } else { "unlimited".into() };
    let sent_sub = format!("{} · {}/s · target {target}", rate(s.send_rate), bytes(s.send_bytes_per_s as u64));
    card(&mut out, "sent", &thousands(s.sent), &sent_sub, "");
    card(&mut out, "delivered", &thousands(s.delivered), &format!("of {} expected", thousands(s.expected)), "");
    let lost_class = if s.lost > 0 { "bad" } else { "good" };
    card(&mut out, "lost", &thousands(s.lost), &format!("{} of expected", pct(s.lost, s.expected)), lost_class);
    if s.p50_us.is_none() {
        card(&mut out, "latency", "–", "no deliveries", "");
    } else {
        let l = latency_or_dash;
        card(&mut out, "p50 latency", &l(s.p50_us), "from intended send time", "");
        card(&mut out, "p99 latency", &l(s.p99_us), &format!("raw {}", l(s.raw_p99_us)), "");
        card(&mut out, "p99.9 latency", &l(s.p999_us), "", "");
        card(&mut out, "max latency", &l(s.max_us), &format!("raw {}", l(s.raw_max_us)), "");
    }
    out.push_str("</div>\n");
    assertions_section(&mut out, &verdicts(run));

    let _ = writeln!(
        out,
        "<h2 id=\"timeline\">Second by second</h2>\n<figure>{}<figcaption>Each message counts in the second it was due to be \
         sent, so a loss lines up with the outage that caused it. Shaded, if any: when a consumer was not \
         subscribed (from events.csv); a dark strip at the top: a cluster node was down. <a href=\"timeline.svg\">timeline.svg</a></figcaption></figure>",
        inline_svg(timeline_svg),
    );
    let _ = writeln!(
        out,
        "<h2 id=\"latency\">Latency by percentile</h2>\n<figure>{}<figcaption>Each step to the right adds a 9 (90%, 99%, 99.9%, \
         …). Corrected: from each message's intended send time, so a stall counts for every message it delayed \
         (from <a href=\"latency.hlog\">latency.hlog</a>). Raw: from the actual send time, as a closed-loop tool \
         would measure (from <a href=\"latency.csv\">latency.csv</a>). <a href=\"latency.svg\">latency.svg</a>\
         </figcaption></figure>",
        inline_svg(latency_svg)
    );

    out.push_str("<h2 id=\"summary\">Summary</h2>\n<div class=\"cols\">\n");
    let names = columns(s);
    let values = cells(std::slice::from_ref(s)).remove(0);
    let rows: Vec<Vec<String>> = names.into_iter().zip(values).map(|(k, v)| vec![k, v]).collect();
    table(&mut out, &["column".into(), "value".into()], &rows, |_| false);
    out.push_str(
        "</div>\n<p class=\"note\">Units are in the column names: <code>_us</code> microseconds, \
                  <code>_s</code> seconds, <code>_bytes</code> bytes; rates are per second. From \
                  <a href=\"summary.csv\">summary.csv</a>.</p>\n",
    );

    out.push_str("<h2 id=\"percentiles\">Latency percentiles</h2>\n");
    let header = columns(&crate::rows::LatencyRow::default());
    table(&mut out, &header, &cells(&run.latency), |_| false);

    let _ = writeln!(out, "<h2 id=\"consumers\">Consumers</h2>");
    let shown = &run.consumers[..run.consumers.len().min(CONSUMER_ROWS)];
    let header = columns(&crate::rows::ConsumerRow::default());
    table(&mut out, &header, &cells(shown), |i| shown[i].lost > 0);
    if shown.len() < run.consumers.len() {
        let _ = writeln!(
            out,
            "<p class=\"note\">The first {} of {} consumers; all are in <a href=\"consumers.csv\">consumers.csv</a>.</p>",
            shown.len(),
            run.consumers.len()
        );
    }
    if let Some(events) = &run.events {
        events_section(&mut out, events);
    }
    if let Some(workers) = &run.workers {
        let _ = writeln!(out, "<h2 id=\"workers\">Workers</h2>");
        let _ = writeln!(
            out,
            "<p>{} processes ran the swarm, each its share of the producers and consumers. A latency between \
             two of them is right to within ±{} (their clocks' uncertainty against Redis's <code>TIME</code>); \
             {} latencies lie at or below that.</p>",
            s.workers,
            super::fmt::latency(s.clock_uncertainty_us),
            s.latency_below_uncertainty
        );
        table(&mut out, &workers.header, &workers.rows, |_| false);
    }

    out.push_str(
        "<h2 id=\"per-second\">Per second</h2>\n<details><summary>Show the table of timeseries.csv</summary>\n",
    );
    let header = columns(&crate::rows::TimeseriesRow::default());
    let marked = |t: &crate::rows::TimeseriesRow| t.lost > 0 || t.connected_consumers < s.consumers;
    if run.timeseries.len() <= MOST_ROWS {
        table(&mut out, &header, &cells(&run.timeseries), |i| marked(&run.timeseries[i]));
    } else {
        // A soak's seconds would make a page of megabytes (and take as much to build).
        let picked: Vec<_> = run.timeseries.iter().filter(|t| marked(t)).take(MOST_ROWS).collect();
        let _ = writeln!(
            out,
            "<p class=\"note\">{} seconds are more than a page shows: here {}the {} with loss or consumers \
             away; <code>timeseries.csv</code> has every second.</p>",
            thousands(run.timeseries.len() as u64),
            if picked.len() == MOST_ROWS { "the first " } else { "" },
            thousands(picked.len() as u64),
        );
        table(&mut out, &header, &cells(&picked), |_| true);
    }
    out.push_str("</details>\n");

    let _ = writeln!(
        out,
        "<h2 id=\"scenario\">Scenario</h2>\n<pre>{}</pre>\n<p class=\"note\">Repeat this run with \
         <code>eventbench run {}/scenario.toml</code>.</p>",
        escape(run.scenario_toml.trim_end()),
        escape(&run.dir.display().to_string())
    );

    out.push_str("<h2 id=\"files\">Files</h2>\n<ul class=\"files\">\n");
    let mut files = vec!["summary.csv", "latency.csv", "timeseries.csv", "consumers.csv"];
    // Runs written before per-channel accounting have none.
    if run.dir.join("channels.csv").exists() {
        files.push("channels.csv");
    }
    if run.events.is_some() {
        files.push("events.csv");
    }
    if run.workers.is_some() {
        files.push("workers.csv");
    }
    if !verdicts(run).is_empty() {
        files.push("assertions.csv");
    }
    files.extend(["latency.hlog", "scenario.toml", "timeline.svg", "latency.svg"]);
    for f in files {
        let _ = writeln!(out, "<li><a href=\"{f}\">{f}</a></li>");
    }
    out.push_str("</ul>\n");
    out.push_str(&foot(&format!("eventbench report {}", run.dir.display())));
    out
}

/// The comparison's headline (escaped HTML): a line per run with what it
/// lost, whether it kept up and its latency, then which run lost least and
/// which had the lowest p99.
pub fn headline(runs: &[RunData], labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .zip(labels)
        .map(|(r, label)| {
            let s = &r.summary;
            let lost = match s.lost {
                0 => "nothing lost".to_string(),
                n => format!(
                    "<strong class=\"bad\">lost {} of {} deliveries ({})</strong>",
                    thousands(n),
                    thousands(s.expected),
                    pct(n, s.expected)
                ),
            };
            let undelivered = match s.undelivered {
                0 => String::new(),
                n => format!(", {} still undelivered", thousands(n)),
            };
            let status = if s.status == "ok" { String::new() } else { format!(" (run {})", escape(s.status.as_str())) };
            format!(
                "<strong>{}</strong>{status}: {lost}{undelivered}; kept up: {}; p50 {}, p99 {}; limit: {}.",
                escape(label),
                super::table::kept_up_word(s),
                latency_or_dash(s.p50_us),
                latency_or_dash(s.p99_us),
                s.limit.as_str()
            )
        })
        .collect();
    if runs.len() > 1 {
        let by = |key: fn(&SummaryRow) -> f64| {
            let best = runs.iter().map(|r| key(&r.summary)).fold(f64::INFINITY, f64::min);
            let who: Vec<&str> =
                runs.iter().zip(labels).filter(|(r, _)| key(&r.summary) == best).map(|(_, l)| l.as_str()).collect();
            (who.len() < runs.len()).then(|| escape(&who.join(" and ")))
        };
        let mut verdict = Vec::new();
        if let Some(who) = by(|s| s.lost as f64 / s.expected.max(1) as f64) {
            verdict.push(format!("least lost: {who}"));
        }
        if let Some(who) = by(|s| s.p99_us.unwrap_or(f64::INFINITY)) {
            verdict.push(format!("lowest p99: {who}"));
        }
        if !verdict.is_empty() {
            let mut text = verdict.join("; ");
            if let Some(first) = text.get(..1) {
                text = first.to_uppercase() + &text[1..];
            }
            out.push(format!("{text}."));
        }
    }
    out
}

/// Each `--assert` of the run (from its `scenario.toml`) checked against its `summary.csv`.
pub fn verdicts(run: &RunData) -> Vec<AssertionRow> {
    crate::assertion::verdicts(&crate::assertion::from_scenario_toml(&run.scenario_toml), &run.summary)
}

/// The verdict of each assertion, failures highlighted; nothing without assertions.
fn assertions_section(out: &mut String, rows: &[AssertionRow]) {
    if rows.is_empty() {
        return;
    }
    let failed = rows.iter().filter(|r| r.verdict == "fail").count();
    let verdict = match failed {
        0 if rows.iter().all(AssertionRow::passed) => "every assertion held".to_string(),
        0 => "the run did not complete, so no assertion was checked".to_string(),
        n => format!("{} of {} failed (exit code 3)", n, rows.len()),
    };
    let _ = writeln!(
        out,
        "<h2 id=\"assertions\">Assertions</h2>\n<p>{}: {verdict}.</p>",
        plural(rows.len() as u64, "assertion")
    );
    let header: Vec<String> = ["", "assertion", "verdict", "measured"].iter().map(|h| h.to_string()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mark = r.line().chars().next().map(String::from).unwrap_or_default();
            vec![mark, r.assertion.clone(), r.verdict.clone(), r.measured.clone()]
        })
        .collect();
    table(out, &header, &cells, |i| rows[i].verdict == "fail");
}

fn events_section(out: &mut String, events: &Table) {
    let _ = writeln!(out, "<h2 id=\"events\">Events</h2>");
    if events.rows.is_empty() {
        out.push_str("<p class=\"note\">None.</p>\n");
    } else {
        table(out, &events.header, &events.rows, |_| false);
    }
}

/// The comparison page; `links[i]` is the relative path to run `i`'s
/// `report.html`, `table` the CSV of their summaries, `svgs` the timeline and
/// latency plots.
pub fn compare_page(runs: &[RunData], labels: &[String], links: &[String], table: &str, svgs: (&str, &str)) -> String {
    let (timeline_svg, latency_svg) = svgs;
    let title = labels.join(" vs ");
    let mut out = head(&format!("eventbench · {title}"));
    let _ = writeln!(out, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} runs side by side; each row of <a href=\"{table}\">{table}</a> is one run's summary.csv.</p>",
        runs.len(),
        table = escape(table)
    );

    out.push_str("<div class=\"story\" id=\"headline\">\n");
    for line in headline(runs, labels) {
        let _ = writeln!(out, "<p>{line}</p>");
    }
    out.push_str("</div>\n");
    let _ = writeln!(
        out,
        "<h2 id=\"timeline\">Second by second</h2>\n<figure>{}<figcaption>Solid: delivered per second; dashed: expected. A strip \
         at the top, in a run's colour: when some of that run's consumers were away (from its events.csv). <a href=\"compare-timeline.svg\">compare-timeline.svg</a>\
         </figcaption></figure>",
        inline_svg(timeline_svg)
    );
    let _ = writeln!(
        out,
        "<h2 id=\"latency\">Latency by percentile</h2>\n<figure>{}<figcaption>From the intended send time; each step to the right adds \
         a 9. <a href=\"compare-latency.svg\">compare-latency.svg</a></figcaption></figure>",
        inline_svg(latency_svg)
    );
    for (run, label) in runs.iter().zip(labels) {
        let _ = writeln!(out, "<h2>{}</h2>\n<div class=\"story\">", escape(label));
        for f in findings(run) {
            let _ = writeln!(out, "<p>{f}</p>");
        }
        out.push_str("</div>\n");
    }
    out.push_str("<h2 id=\"figures\">Every figure</h2>\n");

    type Metric = (&'static str, fn(&SummaryRow) -> String);
    let metrics: &[Metric] = &[
        ("status", |s| s.status.to_string()),
        ("transport", |s| s.transport.clone()),
        ("producers → consumers", |s| format!("{} → {}", s.producers, s.consumers)),
        ("channels", |s| s.channels.to_string()),
        ("payload", |s| format!("{} B", s.payload_bytes)),
        ("duration", |s| format!("{} s", number(s.duration_s))),
        ("target rate", |s| if s.target_rate > 0.0 { rate(s.target_rate) } else { "unlimited".into() }),
        ("send rate", |s| rate(s.send_rate)),
        ("bytes sent", |s| format!("{}/s", bytes(s.send_bytes_per_s as u64))),
        ("sent", |s| thousands(s.sent)),
        ("expected", |s| thousands(s.expected)),
        ("delivered", |s| thousands(s.delivered)),
        ("lost", |s| format!("{} ({})", thousands(s.lost), pct(s.lost, s.expected))),
        ("· not subscribed", |s| thousands(s.lost_unsubscribed)),
        ("· in Redis's buffer", |s| thousands(s.lost_in_buffer)),
        ("· trimmed", |s| thousands(s.lost_trimmed)),
        ("· never answered", |s| thousands(s.lost_unanswered)),
        ("· other cause", |s| thousands(s.lost_other)),
        ("undelivered", |s| format!("{} ({})", thousands(s.undelivered), pct(s.undelivered, s.expected))),
        ("kept up", |s| super::table::kept_up_word(s).into()),
        ("in flight at the end", |s| thousands(s.in_flight_end)),
        ("drain", |s| format!("{} s", number(s.drain_s))),
        ("duplicates", |s| thousands(s.duplicates)),
        ("out of order", |s| thousands(s.out_of_order)),
        ("redelivered", |s| thousands(s.redelivered)),
        ("backlog max", |s| thousands(s.backlog_max)),
        ("delivery rate", |s| rate(s.delivery_rate)),
        ("p50", |s| latency_or_dash(s.p50_us)),
        ("p90", |s| latency_or_dash(s.p90_us)),
        ("p99", |s| latency_or_dash(s.p99_us)),
        ("p99.9", |s| latency_or_dash(s.p999_us)),
        ("max", |s| latency_or_dash(s.max_us)),
        ("raw p99", |s| latency_or_dash(s.raw_p99_us)),
        ("harness limited", |s| if s.harness_limited { "yes".into() } else { "no".into() }),
        ("server", |s| format!("{} {}", s.server, s.server_version).trim().to_string()),
        ("server CPU", |s| s.server_cpu_pct.map_or("–".into(), |p| format!("{} of a core", percent(p)))),
        ("server memory peak", |s| s.server_memory_peak_bytes.map_or("–".into(), bytes)),
        ("limit", |s| s.limit.as_str().into()),
    ];
    out.push_str("<div class=\"scroll\"><table>\n<thead><tr><th></th>");
    for l in labels {
        let _ = write!(out, "<th class=\"n\">{}</th>", escape(l));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let any_loss = runs.iter().any(|r| r.summary.lost > 0);
    for (name, f) in metrics {
        out.push_str(if *name == "lost" && any_loss { "<tr class=\"loss\">" } else { "<tr>" });
        let _ = write!(out, "<th>{}</th>", escape(name));
        for r in runs {
            let _ = write!(out, "<td class=\"n\">{}</td>", escape(&f(&r.summary)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("<tr><th>run</th>");
    for (r, link) in runs.iter().zip(links) {
        let _ = write!(out, "<td class=\"n\"><a href=\"{}\">{}</a></td>", escape(link), escape(&r.summary.run_id));
    }
    out.push_str("</tr>\n</tbody>\n</table></div>\n");
    let dirs: Vec<String> = runs.iter().map(|r| r.dir.display().to_string()).collect();
    out.push_str(&foot(&format!("eventbench report {}", dirs.join(" "))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soaks_page_shows_the_seconds_that_matter_not_every_second() {
        let page = |n| {
            let mut run = RunData::for_tests(crate::report::plots::tests::seconds(n));
            run.summary.consumers = 1;
            run_page(&run, "<svg></svg>", "<svg></svg>")
        };
        let (ten_minutes, ten_hours) = (page(600), page(36_000));
        assert!(ten_minutes.matches("<tr").count() > 600 && !ten_minutes.contains("more than a page shows"));
        assert!(ten_hours.contains("36,000 seconds are more than a page shows: here the 1 with loss"), "{ten_hours}");
        assert_eq!(ten_hours.matches("<tr class=\"loss\">").count(), 1, "second 1,234 alone");
        assert!(ten_hours.len() < ten_minutes.len(), "{} bytes against {}", ten_hours.len(), ten_minutes.len());
    }

    #[test]
    fn a_comparison_opens_with_its_headline() {
        let run = |transport: &str, lost: u64, p99_us: f64| {
            let mut r = RunData::for_tests(crate::report::plots::tests::seconds(3));
            r.summary.transport = transport.into();
            (r.summary.expected, r.summary.lost, r.summary.p99_us, r.summary.sustained) =
                (160_000, lost, Some(p99_us), true);
            r
        };
        let runs = [run("pubsub", 20_014, 162.4), run("streams", 0, 1_850_000.0)];
        let labels = ["pubsub".to_string(), "streams".to_string()];
        let lines = headline(&runs, &labels);
        assert!(lines[0].contains("lost 20,014 of 160,000 deliveries (12.509%)"), "{lines:?}");
        assert!(lines[1].contains("<strong>streams</strong>: nothing lost; kept up: yes"), "{lines:?}");
        assert_eq!(lines[2], "Least lost: streams; lowest p99: pubsub.");
        let page =
            compare_page(&runs, &labels, &["a".into(), "b".into()], "compare.csv", ("<svg></svg>", "<svg></svg>"));
        let (headline_at, table_at) = (page.find("id=\"headline\"").unwrap(), page.find("<table").unwrap());
        assert!(headline_at < table_at && page.find("id=\"timeline\"").unwrap() < table_at, "headline and plots first");
    }

    #[test]
    fn text_helpers() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(seconds_list(&[3, 4, 7]), "3–4, 7");
        assert_eq!(seconds_list(&[1, 3, 5, 7, 9, 11, 13]), "1, 3, 5, 7, 9, and 2 more");
    }
}
