//! `capacity.html`: one self-contained page for a search (or one per
//! transport, side by side): the headline, the curve, every step and a link
//! to each step's own report.

use super::search::End;
use super::{msg_rate, slo, word, CapacityRow, Searched, Slo};
use crate::clock::fmt_duration;
use crate::report::fmt::{number, plural};
use crate::report::html::{card, escape, head, inline_svg, table};
use crate::report::plots::fmt_latency;
use crate::scenario::Scenario;
use std::fmt::Write;
use std::time::Duration;

/// What the page says about an end other than a maximum found.
fn end_note(end: End) -> Option<&'static str> {
    match end {
        End::Found => None,
        End::MaxRate => Some("Every rate up to <code>--max-rate</code> met the SLO: the system's maximum is higher."),
        End::NothingPasses => Some(
            "Even the lowest rate (<code>--min-rate</code>) failed: the SLO is out of this system's reach at any \
             rate tried, or the scenario fails on its own (its faults, its slow consumers).",
        ),
        End::Harness => Some(
            "Near the knee, steps failed where eventbench itself may be what failed (it had no CPU to spare, even \
             with more threads, or messages went out so late that the lateness alone broke a latency bound), and \
             tried again they still did: the answer is the range, the harness's limit on this machine, not \
             Redis's. Give eventbench CPU to spare (another machine, <code>--workers</code>, fewer other \
             processes) and search again.",
        ),
        End::Inconclusive => Some(
            "Near the knee, steps failed where the machine may be what failed (its own wake-up floor was above a \
             latency bound, or other processes or the hypervisor took its CPU; see the machine columns), and tried \
             again they still did: the answer is the range the evidence supports. Search again on a quieter \
             machine, or with a bound above the machine's floor.",
        ),
        End::Spread => Some(
            "A knee was found, but above it some tries met the SLO at rates where most failed: on this machine \
             the limit is a range wider than <code>--precision</code>, not one rate, and a figure picked from it \
             would differ from search to search. The answer is the range. Longer steps (<code>--step</code>) \
             average more of the system's hiccups into each try and narrow it; <code>--repeat</code> shows the spread.",
        ),
        End::Budget => Some(
            "The budget ran out before the search was done: the best rate so far is not yet confirmed or not \
             within the precision. A longer <code>--budget</code>, shorter <code>--step</code> or a \
             <code>--rate</code> nearer the answer finishes it.",
        ),
        End::Halted => Some("A step was interrupted or aborted, and the search stopped there."),
    }
}

/// A column of the Steps table: its header and its cell for a step.
type Column<'a> = (&'static str, Box<dyn Fn(&super::Step) -> String + 'a>);

/// The steps, a few columns each (`capacity.csv` has them all); failed ones
/// highlighted. Header and cells come from one list, so they cannot drift apart.
fn steps_table(out: &mut String, searches: &[Searched], slo: &Slo) {
    // Values with units stay on one line.
    let nb = |s: String| s.replace(' ', "\u{a0}");
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let opt = move |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "–".to_string(), |v| nb(f(v)));
    let mut columns: Vec<Column> = vec![("step", Box::new(|st| st.row.step.to_string()))];
    if searches.len() > 1 {
        columns.push(("transport", Box::new(|st| st.row.transport.clone())));
    }
    columns.extend::<Vec<Column>>(vec![
        ("phase", Box::new(|st| word(st.row.phase))),
        ("try", Box::new(|st| st.row.attempt.to_string())),
        ("rate, msg/s", Box::new(|st| number(st.row.rate))),
        ("delivered/s", Box::new(|st| number(st.row.delivered_messages_rate().round()))),
        ("lost", Box::new(|st| number(st.row.lost as f64))),
        ("undelivered", Box::new(|st| number(st.row.undelivered as f64))),
        ("p50", Box::new(move |st| opt(st.row.p50_us, fmt_latency))),
        ("p99", Box::new(move |st| opt(st.row.p99_us, fmt_latency))),
        ("p99.9", Box::new(move |st| opt(st.row.p999_us, fmt_latency))),
        ("kept up", Box::new(move |st| yes(st.row.sustained))),
        ("harness limited", Box::new(move |st| yes(st.row.harness_limited))),
        ("machine wake-up p99", Box::new(move |st| opt(st.row.machine_wakeup_p99_us, fmt_latency))),
        ("other CPU, cores", Box::new(move |st| opt(st.row.machine_other_cpu_pct, |p| format!("{:.2}", p / 100.0)))),
        ("verdict", Box::new(|st| word(st.row.verdict))),
        ("note", Box::new(|st| st.row.note.clone())),
        ("what failed", Box::new(|st| slo.reason_text(&st.summary))),
    ]);
    let steps: Vec<&super::Step> = searches.iter().flat_map(|x| &x.steps).collect();
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let cells: Vec<Vec<String>> = steps.iter().map(|st| columns.iter().map(|(_, cell)| cell(st)).collect()).collect();
    table(out, &header, &cells, |i| !steps[i].row.passed);
}

/// The value of `column` at the maximum, worst of its tries.
fn latency_at(s: &Searched, column: &str) -> String {
    s.worst_at_max(column).map_or_else(|| "–".into(), fmt_latency)
}

/// The page. `scenario` is the searched one (its rate the start), `budget`
/// the whole command's, `svg` the `capacity.svg` written beside it.
pub fn capacity_page(searches: &[Searched], slo: &Slo, scenario: &Scenario, budget: Duration, svg: &str) -> String {
    let s = scenario;
    let transports: Vec<&str> = searches.iter().map(|x| x.transport.as_str()).collect();
    // Runs named after their transport are named after all of them.
    let title = if transports.len() > 1 && transports.contains(&s.name.as_str()) {
        transports.join(" vs ")
    } else {
        s.name.clone()
    };
    let mut out = head(&format!("eventbench · capacity · {title}"));
    let _ = writeln!(out, "<h1>Capacity: {}</h1>", escape(&title));
    let plan = searches.first().map(|x| x.plan.clone());
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} · {} → {} → {} · {} B messages · steps of {} after {} of warmup (drain up to {}){}</p>",
        escape(&transports.join(", ")),
        plural(s.producers, "producer"),
        plural(s.channels, "channel"),
        plural(s.consumers, "consumer"),
        s.payload,
        fmt_duration(&s.duration),
        fmt_duration(&s.warmup),
        fmt_duration(&s.drain),
        plan.as_ref().map_or(String::new(), |p| format!(
            " · from {} · precision {}% · {} · budget {}",
            msg_rate(p.start),
            number(p.precision * 100.0),
            plural(p.confirm, "confirmation"),
            fmt_duration(&budget)
        )),
    );
    if let Some(d) = &s.description {
        let _ = writeln!(out, "<p>{}</p>", escape(d));
    }

    out.push_str("<div class=\"story\">\n");
    for x in searches {
        let who =
            if searches.len() > 1 { format!("<strong>{}</strong>: ", escape(&x.transport)) } else { String::new() };
        let _ = writeln!(out, "<p>{who}<strong>{}</strong></p>", escape(&x.headline(slo)));
        if let Some(note) = end_note(x.found.end) {
            let _ = writeln!(out, "<p>{note}</p>");
        }
        if let Some(advice) = x.advice() {
            let _ = writeln!(out, "<p>What to try: {}.</p>", escape(advice.trim_start_matches("try ")));
        }
    }
    let user: Vec<String> =
        slo.user_gates().iter().map(|g| format!("<code>{}</code>", escape(&g.to_string()))).collect();
    let _ = writeln!(
        out,
        "<p>The SLO: nothing lost (<code>lost==0</code>) and the system kept up (<code>sustained==1</code>){}. \
         A step passes when every gate holds; the maximum is the highest rate that passed every time it ran \
         ({}) and lies below every rate that failed. A step marked <code>harness_limited</code> \
         counts for the system when it met the SLO with eventbench's delays counted against it, or when its \
         failure stands from the actual send times too; otherwise the search stops.</p>",
        if user.is_empty() { String::new() } else { format!(", and {}", user.join(", ")) },
        match plan.map_or(0, |p| p.confirm) {
            0 => "once".to_string(),
            n => format!("once, then {n} more"),
        }
    );
    out.push_str("</div>\n");

    let quoted = slo.quoted_latency();
    let quoted_label = slo::column_label(&quoted);
    if let [x] = searches {
        out.push_str("<div class=\"cards\">\n");
        let f = &x.found;
        let good = if matches!(f.end, End::Found | End::MaxRate) { "good" } else { "bad" };
        let max = f.max_rate.map_or("none".into(), msg_rate);
        card(&mut out, "max sustainable rate", &max, &format!("{quoted_label} {}", latency_at(x, &quoted)), good);
        let failure = f.first_failure.map_or("–".into(), msg_rate);
        card(&mut out, "lowest failure", &failure, "", "");
        card(
            &mut out,
            "steps",
            &x.steps.len().to_string(),
            &format!("{} s", number(f.spent.as_secs_f64().round())),
            "",
        );
        out.push_str("</div>\n");
    } else {
        let header: Vec<String> =
            std::iter::once(String::new()).chain(transports.iter().map(|t| t.to_string())).collect();
        let row = |name: &str, f: &dyn Fn(&Searched) -> String| -> Vec<String> {
            std::iter::once(name.to_string()).chain(searches.iter().map(f)).collect()
        };
        let rows = vec![
            row("max sustainable rate", &|x| x.found.max_rate.map_or("none".into(), msg_rate)),
            row(&format!("{quoted_label} at the maximum"), &|x| latency_at(x, &quoted)),
            row("p50 at the maximum", &|x| latency_at(x, "p50_us")),
            row("lowest failure", &|x| x.found.first_failure.map_or("–".into(), msg_rate)),
            row("what failed there", &|x| x.failure_text(slo).unwrap_or_else(|| "–".into())),
            row("how the search ended", &|x| word(x.found.end)),
            row("steps", &|x| x.steps.len().to_string()),
            row("time", &|x| format!("{} s", number(x.found.spent.as_secs_f64().round()))),
        ];
        table(&mut out, &header, &rows, |_| false);
    }

    let _ = writeln!(
        out,
        "<h2 id=\"curve\">Latency and delivered rate by offered rate</h2>\n<figure>{}<figcaption>Left: latency \
         percentiles from the intended send time at each rate tried (the worst of a rate's tries), a dot per \
         step that passed and a cross per step that failed; dashed red, the SLO's latency bounds; dashed \
         vertical, the maximum found. Right: messages delivered per second (deliveries divided by the \
         deliveries each message is owed, so that keeping up is the diagonal) against the rate offered. \
         <a href=\"capacity.svg\">capacity.svg</a></figcaption></figure>",
        inline_svg(svg)
    );

    out.push_str("<h2 id=\"steps\">Steps</h2>\n");
    steps_table(&mut out, searches, slo);
    let rows: Vec<&CapacityRow> = searches.iter().flat_map(|x| x.steps.iter().map(|st| &st.row)).collect();
    out.push_str(
        "<p class=\"note\">From <a href=\"capacity.csv\">capacity.csv</a>; failed steps highlighted. Each step \
         is a complete run directory:</p>\n<ul class=\"files\">\n",
    );
    for r in &rows {
        let _ = writeln!(
            out,
            "<li><a href=\"{}/report.html\">step {} · {} · {}</a></li>",
            escape(&r.dir),
            r.step,
            escape(&r.transport),
            escape(&msg_rate(r.rate))
        );
    }
    out.push_str("</ul>\n");
    let _ = writeln!(out, "<h2 id=\"scenario\">Scenario</h2>\n<pre>{}</pre>", escape(scenario.to_toml().trim_end()));
    let _ = writeln!(
        out,
        "<footer>Written by eventbench {} (<code>eventbench capacity</code>). Each step's page can be rebuilt \
         with <code>eventbench report DIR</code>.</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    out
}
