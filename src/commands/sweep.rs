//! `eventbench sweep`: the scenario once per value of one or two numeric
//! keys (`--vary consumers=1,10,100`), each point an ordinary run through
//! the one pipeline (or, with `--capacity`, a capacity search as
//! `eventbench capacity` runs it), written as a whole run directory the
//! moment it ends; `sweep.csv` is rewritten whole after every point, then
//! `sweep.svg` and `sweep.html` are drawn from its rows.

use super::{
    capacity, interrupted_before_start, mode_of, on_interrupt, run_one, start_target, write_run, OutDir, EXIT_ABORTED,
    EXIT_INTERRUPTED, WRITING,
};
use crate::capacity::search::Verdict;
use crate::capacity::Searched;
use crate::cli::{Format, SweepArgs};
use crate::live::{Live, Status};
use crate::pipeline::{self, Finished, Mode};
use crate::report::{files, sweep as page};
use crate::rows::SweepRow;
use crate::scenario::{fmt_value, Rate, Scenario, ScenarioError, Vary};
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::{Arc, Mutex};

fn invalid(message: impl Into<String>) -> anyhow::Error {
    ScenarioError::Invalid { key: "vary", message: message.into() }.into()
}

/// One point: its values of the axes, its directory's name, its scenario.
struct Point {
    values: Vec<(String, f64)>,
    dir: String,
    scenario: Scenario,
}

/// The axes: `--vary`, else the scenario file's `vary`; one or two distinct keys.
fn axes(args: &SweepArgs, base: &Scenario) -> Result<Vec<Vary>> {
    let axes = if args.vary.is_empty() { base.vary.clone() } else { args.vary.clone() };
    match axes.len() {
        0 => return Err(invalid("a sweep needs --vary KEY=V1,V2,... (e.g. --vary consumers=1,10,100)")),
        1 | 2 => {}
        n => return Err(invalid(format!("at most two keys per sweep (got {n})"))),
    }
    if axes.len() == 2 && axes[0].key == axes[1].key {
        return Err(invalid(format!("{} is varied twice; give its values once", axes[0].key)));
    }
    Ok(axes)
}

/// Every point (the first key's values, for each of the second's), each
/// scenario checked as the run or search it will be, before anything runs.
fn points(args: &SweepArgs, base: &Scenario, mode: &Mode) -> Result<Vec<Point>> {
    let run = &args.search.run;
    if run.repeat > 1 {
        return Err(ScenarioError::Invalid { key: "repeat", message: "a sweep runs each point once".into() }.into());
    }
    if !args.search.transports.is_empty() {
        let message = "a sweep varies numeric keys on one transport: give --transport (or sweep each transport)".into();
        return Err(ScenarioError::Invalid { key: "transports", message }.into());
    }
    let axes = axes(args, base)?;
    for axis in &axes {
        if axis.key == "rate" && args.capacity {
            return Err(invalid("rate: a capacity search finds the rate; vary another key with --capacity"));
        }
        if run.flags.gave(&axis.key) {
            return Err(invalid(format!("--{0} is given beside --vary {0}=...; give one of them", axis.key)));
        }
    }
    let seconds: Vec<Option<f64>> = match axes.get(1) {
        Some(a) => a.values.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    let mut out = Vec::new();
    for second in seconds {
        for &first in &axes[0].values {
            let mut values = vec![(axes[0].key.clone(), first)];
            if let Some(v) = second {
                values.push((axes[1].key.clone(), v));
            }
            let mut scenario = Scenario { vary: Vec::new(), ..base.clone() };
            for (key, value) in &values {
                scenario = scenario.with_value(key, *value)?;
            }
            match args.capacity {
                true => capacity::check_point(&args.search, mode, scenario.clone())?,
                false => pipeline::check(&scenario, mode)?,
            }
            let dir = values.iter().map(|(k, v)| format!("{k}-{}", fmt_value(*v))).collect::<Vec<_>>().join("-");
            out.push(Point { values, dir, scenario });
        }
    }
    Ok(out)
}

/// `eventbench sweep`.
pub(super) async fn sweep(args: SweepArgs) -> Result<u8> {
    let run = &args.search.run;
    let base = run.scenario()?;
    let mode = mode_of(&run.split);
    let points = points(&args, &base, &mode)?;
    let root = match &run.out {
        Some(dir) => dir.clone(),
        None => files::default_dir(Path::new("results"), &format!("sweep-{}-{}", base.name, pipeline::utc_stamp())),
    };
    let mut out = OutDir::prepare(Some(&root), Path::new("results"))?;
    let current = Arc::new(Mutex::new(Arc::new(Live::default())));
    on_interrupt(current.clone())?;
    let watch = super::watch::Watch::start(&run.export, run.format)?;
    let mut rows: Vec<SweepRow> = Vec::new();
    let mut code = 0;
    for (i, point) in points.iter().enumerate() {
        let what = point.values.iter().map(|(k, v)| format!("{k}={}", fmt_value(*v))).collect::<Vec<_>>().join(" ");
        if !run.quiet {
            super::say_err(&format!("eventbench: point {}/{}: {what}", i + 1, points.len()));
        }
        let ctx = PointCtx { args: &args, mode: &mode, current: &current, watch: &watch, root: &root };
        let (row, point_code) = match ran(&ctx, point).await? {
            Some(done) => done,
            None => {
                code = EXIT_INTERRUPTED;
                break;
            }
        };
        out.keep();
        let mut row = row;
        row.point = i as u32 + 1;
        (row.key, row.value) = point.values[0].clone();
        if let Some((k, v)) = point.values.get(1) {
            (row.key2, row.value2) = (k.clone(), Some(*v));
        }
        rows.push(row);
        write_rows(&rows, &root)?;
        code = code.max(point_code);
        if matches!(point_code, EXIT_ABORTED | EXIT_INTERRUPTED) {
            code = point_code;
            break;
        }
    }
    if rows.is_empty() {
        return Ok(code);
    }
    write_pictures(&rows, &base, &args, &root);
    say(&rows, &root, run.format)?;
    match code {
        EXIT_INTERRUPTED => {
            super::say_err(&format!("eventbench: interrupted; the points so far are in {}", root.display()))
        }
        EXIT_ABORTED => super::say_err(&format!(
            "eventbench: sweep stopped at a failed point; the points so far are in {}",
            root.display()
        )),
        _ => {}
    }
    let last = current.lock().expect("live lock").clone();
    watch.linger(last).await;
    Ok(code)
}

/// What every point of a sweep shares.
struct PointCtx<'a> {
    args: &'a SweepArgs,
    mode: &'a Mode,
    current: &'a Arc<Mutex<Arc<Live>>>,
    watch: &'a super::watch::Watch,
    root: &'a Path,
}

/// Runs one point on a target of its own (as its own `eventbench run` would):
/// its row (`dir` set) and exit code, or `None` if a stop came before it ran.
async fn ran(ctx: &PointCtx<'_>, point: &Point) -> Result<Option<(SweepRow, u8)>> {
    if ctx.current.lock().expect("live lock").stop_requested() {
        return Ok(None);
    }
    let target = match start_target(&point.scenario, ctx.mode, ctx.current).await {
        Ok(target) => target,
        Err(e) if interrupted_before_start(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let dir = ctx.root.join(&point.dir);
    if ctx.args.capacity {
        let (searched, code) = capacity::search_point(
            &ctx.args.search,
            ctx.mode,
            point.scenario.clone(),
            &target,
            ctx.current,
            ctx.watch,
            &dir,
        )
        .await?;
        return Ok(Some((capacity_row(&searched, &point.dir), code)));
    }
    let quiet = ctx.args.search.run.quiet;
    let finished = run_one(point.scenario.clone(), &target, ctx.mode, quiet, ctx.current, ctx.watch, None).await;
    let Finished { report, workers } = match finished {
        Ok(finished) => finished,
        Err(e) if interrupted_before_start(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    drop(target);
    write_run(&report, &dir, &workers, None)?;
    let code = super::exit_code(&report, &dir);
    let row = SweepRow { dir: point.dir.clone(), ..SweepRow::of(&report.summary) };
    Ok(Some((row, code)))
}

/// A searched point's row: the figures of its best passing step at the
/// maximum (the first such try), else of its last step, with `max_rate`.
fn capacity_row(s: &Searched, point_dir: &str) -> SweepRow {
    let best = s.steps.iter().find(|st| Some(st.row.rate) == s.found.max_rate && st.row.verdict == Verdict::Pass);
    let Some(step) = best.or(s.steps.last()) else {
        return SweepRow { status: Status::Interrupted, dir: point_dir.to_string(), ..SweepRow::default() };
    };
    let dir = format!("{point_dir}/{}", step.row.dir);
    SweepRow { dir, max_rate: s.found.max_rate, ..SweepRow::of(&step.summary) }
}

/// `sweep.csv`, whole, after every point.
fn write_rows(rows: &[SweepRow], root: &Path) -> Result<()> {
    let _writing = WRITING.lock();
    files::write_csv(&root.join("sweep.csv"), rows)
}

/// `sweep.svg` and `sweep.html`; a plot that fails is a warning (the rows are safe).
fn write_pictures(rows: &[SweepRow], base: &Scenario, args: &SweepArgs, root: &Path) {
    let how = match (&args.capacity, &base.rate) {
        (true, _) => "Each point is a capacity search; its figures are those of its best passing step at the maximum."
            .to_string(),
        (false, Rate::Constant(r)) => format!("Each point is one run at {} msg/s.", crate::report::fmt::number(*r)),
        (false, rate) => format!("Each point is one run at --rate {rate}."),
    };
    let _writing = WRITING.lock();
    let drawn = page::sweep_svg(rows).and_then(|svg| {
        files::write_atomic(&root.join("sweep.svg"), svg.as_bytes())?;
        let html = page::sweep_page(rows, &base.name, &how, &svg);
        files::write_atomic(&root.join("sweep.html"), html.as_bytes())
    });
    if let Err(e) = drawn {
        super::say_err(&format!("eventbench: warning: no sweep.svg or sweep.html in {}: {e:#}", root.display()));
    }
}

/// The points on stdout: a line each, or the rows as JSON.
fn say(rows: &[SweepRow], root: &Path, format: Format) -> Result<()> {
    match format {
        Format::Table => {
            for r in rows {
                let second = r.value2.map_or(String::new(), |v| format!(" {}={}", r.key2, fmt_value(v)));
                let max =
                    r.max_rate.map_or(String::new(), |m| format!("  max {} msg/s", crate::report::fmt::number(m)));
                super::say_out(&format!(
                    "{}={}{second}{max}  {} deliveries/s  p50 {}  p99 {}  lost {}  server CPU {}\n",
                    r.key,
                    fmt_value(r.value),
                    crate::report::fmt::number(r.delivery_rate.round()),
                    crate::report::fmt::latency_or_dash(r.p50_us),
                    crate::report::fmt::latency_or_dash(r.p99_us),
                    r.lost,
                    r.server_cpu_pct.map_or("–".into(), |v| format!("{v:.1}%")),
                ));
            }
            super::say_out(&format!("{:>12}  {}\n", "results", root.join("sweep.html").display()));
        }
        Format::Json | Format::Jsonl => {
            let text = serde_json::to_string(&serde_json::json!({ "sweep": rows, "results_dir": root }))
                .context("the sweep as JSON")?;
            super::say_out(&format!("{text}\n"));
        }
    }
    Ok(())
}
