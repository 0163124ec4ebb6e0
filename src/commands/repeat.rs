//! `--repeat N`: the same run (or search) N times, each in its own
//! directory, and how far their headline figures agree: median, min, max
//! and relative spread, in `repeat.csv`, `repeat.html`, the terminal and
//! JSON. A spread over [`NOISY_PCT`] is called noisy: one run's figure on
//! this machine is then not a figure to quote alone.

use super::{run_one, write_run, EXIT_ABORTED, EXIT_INTERRUPTED};
use crate::capacity::Searched;
use crate::cli::{Format, RunArgs};
use crate::report::files;
use crate::report::fmt::number;
use crate::report::html::{escape, head, table};
use crate::rows::{RepeatRow, SummaryRow};
use anyhow::{Context, Result};
use std::fmt::Write;
use std::path::Path;

/// A relative spread (max - min over the median) above this is noisy, %.
pub const NOISY_PCT: f64 = 25.0;

/// The figures of `run --repeat` (summary columns).
const RUN_FIGURES: [&str; 9] = [
    "send_rate",
    "delivery_rate",
    "p50_us",
    "p99_us",
    "p999_us",
    "max_us",
    "lost",
    "harness_cpu_pct",
    "machine_wakeup_p99_us",
];

/// The row of one figure from each run's value (`None`: that run gave none).
pub fn spread(figure: &str, values: &[Option<f64>]) -> RepeatRow {
    let mut got: Vec<f64> = values.iter().flatten().copied().collect();
    got.sort_by(f64::total_cmp);
    let median = match got.len() {
        0 => None,
        n if n % 2 == 1 => Some(got[n / 2]),
        n => Some((got[n / 2 - 1] + got[n / 2]) / 2.0),
    };
    let (min, max) = (got.first().copied(), got.last().copied());
    let spread_pct = match (median, min, max) {
        (Some(m), Some(lo), Some(hi)) if m > 0.0 => Some(100.0 * (hi - lo) / m),
        (Some(_), Some(lo), Some(hi)) => Some(if hi > lo { f64::INFINITY } else { 0.0 }),
        _ => None,
    };
    let text: Vec<String> = values.iter().map(|v| v.map_or("-".into(), |v| format!("{v}"))).collect();
    RepeatRow {
        figure: figure.to_string(),
        count: got.len() as u32,
        values: text.join(" "),
        median,
        min,
        max,
        spread_pct,
        noisy: spread_pct.is_some_and(|s| s > NOISY_PCT) || (got.len() as u32) < values.len() as u32 && !got.is_empty(),
    }
}

/// The rows of N runs' summaries.
pub fn run_rows(summaries: &[SummaryRow]) -> Vec<RepeatRow> {
    let value = |s: &SummaryRow, c: &str| crate::capacity::slo::column(s, c);
    RUN_FIGURES.iter().map(|c| spread(c, &summaries.iter().map(|s| value(s, c)).collect::<Vec<_>>())).collect()
}

/// The rows of N searches (each of one or more transports): the maximum,
/// the best pass and the lowest failure of each transport.
pub fn capacity_rows(all: &[Vec<Searched>]) -> Vec<RepeatRow> {
    let transports: Vec<String> = all.first().map_or(Vec::new(), |s| s.iter().map(|x| x.transport.clone()).collect());
    let several = transports.len() > 1;
    let mut rows = Vec::new();
    for t in &transports {
        let of = |f: fn(&Searched) -> Option<f64>| -> Vec<Option<f64>> {
            all.iter().map(|searches| searches.iter().find(|s| &s.transport == t).and_then(f)).collect()
        };
        let name = |f: &str| if several { format!("{t} {f}") } else { f.to_string() };
        rows.push(spread(&name("max_rate"), &of(|s| s.found.figure())));
        rows.push(spread(&name("best_pass"), &of(|s| s.found.max_rate)));
        rows.push(spread(&name("first_failure"), &of(|s| s.found.first_failure)));
    }
    rows
}

/// One line per figure for the terminal.
pub fn lines(rows: &[RepeatRow], n: usize) -> String {
    let mut out = format!("{n} times: median [min – max], spread\n");
    let v = |x: Option<f64>| x.map_or("–".into(), |x| number((x * 10.0).round() / 10.0));
    for r in rows {
        let spread = r.spread_pct.map_or("–".into(), |s| format!("{s:.0}%"));
        let noisy = if r.noisy { "  noisy" } else { "" };
        let _ = writeln!(
            out,
            "{:>24}  {} [{} – {}], {spread} ({} of {n}){noisy}",
            r.figure,
            v(r.median),
            v(r.min),
            v(r.max),
            r.count
        );
    }
    out
}

/// `repeat.html`: the table, and a link to each run's or search's own page.
pub fn page(rows: &[RepeatRow], title: &str, links: &[String]) -> String {
    let mut out = head(&format!("eventbench · repeat · {title}"));
    let _ = writeln!(out, "<h1>Repeated: {}</h1>", escape(title));
    let _ = writeln!(
        out,
        "<p>{} times. A figure whose spread (max − min over the median) is over {}% is noisy: on this machine one \
         run's figure is not one to quote alone.</p>",
        links.len(),
        NOISY_PCT
    );
    let header: Vec<String> =
        ["figure", "count", "median", "min", "max", "spread", "noisy", "each"].iter().map(|s| s.to_string()).collect();
    let v = |x: Option<f64>| x.map_or("–".into(), |x| number((x * 10.0).round() / 10.0));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.figure.clone(),
                r.count.to_string(),
                v(r.median),
                v(r.min),
                v(r.max),
                r.spread_pct.map_or("–".into(), |s| format!("{s:.0}%")),
                if r.noisy { "yes" } else { "no" }.into(),
                r.values.clone(),
            ]
        })
        .collect();
    table(&mut out, &header, &cells, |i| rows[i].noisy);
    out.push_str("<ul class=\"files\">\n");
    for l in links {
        let _ = writeln!(out, "<li><a href=\"{0}\">{0}</a></li>", escape(l));
    }
    out.push_str("</ul>\n</main>\n</body>\n</html>\n");
    out
}

/// Writes `repeat.csv` and `repeat.html` into `root`, and prints the figures.
fn write_and_say(rows: &[RepeatRow], root: &Path, title: &str, links: &[String], format: Format) -> Result<()> {
    {
        let _writing = super::WRITING.lock();
        files::write_csv(&root.join("repeat.csv"), rows)?;
        files::write_atomic(&root.join("repeat.html"), page(rows, title, links).as_bytes())?;
    }
    match format {
        Format::Table => {
            super::say_out(&lines(rows, links.len()));
            super::say_out(&format!("{:>12}  {}\n", "repeat", root.join("repeat.html").display()));
        }
        Format::Json | Format::Jsonl => {
            let text = serde_json::to_string(&serde_json::json!({ "repeat": rows })).context("repeat as JSON")?;
            super::say_out(&format!("{text}\n"));
        }
    }
    Ok(())
}

/// `capacity --repeat N`, after the searches: the figures, and the exit
/// code (an interruption or an aborted step first, else the worst search's).
pub fn capacity_repeat(all: &[(Vec<Searched>, u8)], root: &Path, format: Format) -> Result<u8> {
    let searches: Vec<Vec<Searched>> = all.iter().map(|(s, _)| s.clone()).collect();
    let links: Vec<String> = (1..=all.len()).map(|i| format!("search-{i}/capacity.html")).collect();
    write_and_say(&capacity_rows(&searches), root, "capacity", &links, format)?;
    let codes = all.iter().map(|(_, c)| *c);
    Ok(codes.clone().find(|c| matches!(*c, EXIT_INTERRUPTED | EXIT_ABORTED)).unwrap_or(codes.max().unwrap_or(0)))
}

/// `run --repeat N`: N runs of the scenario into `<out>/run-1` ... and their figures.
pub async fn run_repeat(args: RunArgs) -> Result<u8> {
    let scenario = args.scenario()?;
    if scenario.checkpoint_every().is_some() {
        return Err(crate::scenario::ScenarioError::Invalid {
            key: "checkpoint",
            message: "a repeated run's runs are each written as they end; give --checkpoint off with --repeat".into(),
        }
        .into());
    }
    let current = std::sync::Arc::new(std::sync::Mutex::new(std::sync::Arc::new(crate::live::Live::default())));
    super::on_interrupt(current.clone())?;
    let mode = super::mode_of(&args.split);
    crate::pipeline::check(&scenario, &mode)?;
    let root = args.out.clone().unwrap_or_else(|| {
        files::default_dir(Path::new("results"), &format!("repeat-{}-{}", scenario.name, crate::pipeline::utc_stamp()))
    });
    let mut out = super::OutDir::prepare(Some(&root), Path::new("results"))?;
    let watch = super::watch::Watch::start(&args.export, args.format)?;
    let target = crate::pipeline::target_for(&scenario)?;
    out.keep();
    let (mut summaries, mut links, mut code) = (Vec::new(), Vec::new(), 0);
    for i in 1..=args.repeat {
        let finished = run_one(scenario.clone(), &target, &mode, args.quiet, &current, &watch, None).await;
        let finished = match finished {
            Ok(f) => f,
            Err(e) if super::interrupted_before_start(&e) => {
                code = EXIT_INTERRUPTED;
                break;
            }
            Err(e) => return Err(e),
        };
        let dir = root.join(format!("run-{i}"));
        write_run(&finished.report, &dir, &finished.workers, None)?;
        let run_code = super::exit_code(&finished.report, &dir);
        summaries.push(finished.report.summary);
        links.push(format!("run-{i}/report.html"));
        code = code.max(run_code);
        if matches!(run_code, EXIT_INTERRUPTED | EXIT_ABORTED) {
            code = run_code;
            break;
        }
    }
    drop(target);
    if !summaries.is_empty() {
        write_and_say(&run_rows(&summaries), &root, &scenario.name, &links, args.format)?;
    }
    let last = current.lock().expect("live lock").clone();
    watch.linger(last).await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spread_is_max_less_min_over_the_median() {
        let r = spread("p99_us", &[Some(100.0), Some(130.0), Some(110.0)]);
        assert_eq!((r.median, r.min, r.max, r.count), (Some(110.0), Some(100.0), Some(130.0), 3));
        assert!((r.spread_pct.unwrap() - 100.0 * 30.0 / 110.0).abs() < 1e-9);
        assert!(r.noisy, "27% is over 25%");
        let quiet = spread("p99_us", &[Some(100.0), Some(104.0), Some(110.0), Some(98.0)]);
        assert_eq!(quiet.median, Some(102.0));
        assert!(!quiet.noisy);
        // A search that said inconclusive gives no maximum: counted, and noisy.
        let some = spread("max_rate", &[Some(1000.0), None, Some(1000.0)]);
        assert_eq!((some.count, some.values.as_str(), some.noisy), (2, "1000 - 1000", true));
        let none = spread("max_rate", &[None, None]);
        assert_eq!((none.median, none.spread_pct, none.noisy), (None, None, false));
    }

    #[test]
    fn the_page_has_a_cell_per_header() {
        let rows = run_rows(&[SummaryRow { p99_us: Some(10.0), ..Default::default() }, SummaryRow::default()]);
        let html = page(&rows, "x", &["run-1/report.html".into(), "run-2/report.html".into()]);
        assert!(html.contains("p99_us") && html.contains("run-2/report.html"));
        assert_eq!(lines(&rows, 2).lines().count(), 1 + RUN_FIGURES.len());
    }
}
