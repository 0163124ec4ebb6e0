//! `eventbench capacity`: the search of [`crate::capacity`] against Redis.
//! Each step is an ordinary run through the one pipeline (any transport,
//! `--workers`, clusters), written as a complete run directory the moment it
//! ends; then `capacity.csv`, `capacity.svg`, `capacity.html` and the headline.

use super::{
    interrupted_before_start, mode_of, on_interrupt, run_one, write_run, EXIT_ABORTED, EXIT_ASSERTION,
    EXIT_INCONCLUSIVE, EXIT_INTERRUPTED, WRITING,
};
use crate::capacity::search::{self, Outcome, Phase, StepPlan, Steps, Verdict};
use crate::capacity::{msg_rate, page, plot, slo, word, CapacityRow, End, Plan, Saved, Searched, Slo, Step};
use crate::cli::{CapacityArgs, Format};
use crate::live::{Live, Status};
use crate::pipeline::{self, Finished, Mode};
use crate::report::files;
use crate::report::plots::fmt_latency;
use crate::results::summarize::HARNESS_CPU_LIMIT_PCT;
use crate::scenario::{Rate, Scenario, ScenarioError};
use crate::target::Target;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn invalid(key: &'static str, message: impl Into<String>) -> anyhow::Error {
    ScenarioError::Invalid { key, message: message.into() }.into()
}

/// Why a search stopped before its rules ended it.
#[derive(Debug, Clone)]
enum Halt {
    Interrupted,
    Aborted { step: u32, reason: String },
}

/// Runs the steps of one transport's search.
struct Stepper<'a> {
    scenario: &'a Scenario,
    target: &'a Target,
    mode: &'a Mode,
    current: &'a Mutex<Arc<Live>>,
    slo: &'a Slo,
    root: &'a Path,
    /// `""`, or `"<transport>/"` when several transports are searched.
    prefix: String,
    quiet: bool,
    watch: &'a super::watch::Watch,
    steps: Vec<Step>,
    halt: Option<Halt>,
    /// Threads every step runs with from now on, after a step that was harness-limited with fewer.
    threads: Option<usize>,
    /// Called with the rows so far after every step (`capacity.csv` kept whole as the search goes).
    on_step: &'a dyn Fn(&[CapacityRow]),
}

impl Stepper<'_> {
    fn halted(&mut self, halt: Halt, started: Instant) -> Outcome {
        self.halt = Some(halt);
        Outcome { verdict: Verdict::Halt, elapsed: started.elapsed(), delivered_rate: 0.0 }
    }

    /// One line on stderr per step, as it ends.
    fn say(&self, step: &Step) {
        if self.quiet {
            return;
        }
        let (r, s) = (&step.row, &step.summary);
        let quoted = self.slo.quoted_latency();
        let latency = slo::column(s, &quoted).map_or_else(|| "–".into(), fmt_latency);
        let how = match r.verdict {
            Verdict::Pass => "passed".to_string(),
            Verdict::Halt => s.status.to_string(),
            _ if r.phase == Phase::Ceiling => format!("delivered {}", msg_rate(r.delivered_messages_rate().round())),
            Verdict::Fail | Verdict::Harness | Verdict::Machine => {
                format!("{}: {}", word(r.verdict), self.slo.short_reason(s, &quoted))
            }
        };
        super::say_err(&format!(
            "eventbench: step {:>2} {:<8} {:<7} {:>14}  {} {:<9} {how}",
            r.step,
            r.transport,
            word(r.phase),
            msg_rate(r.rate),
            slo::column_label(&quoted),
            latency,
        ));
    }
}

impl Stepper<'_> {
    /// Runs one step at `plan.rate` (0: as fast as it goes) with `threads` (0: the scenario's) and writes it.
    async fn run_step(&mut self, plan: StepPlan, threads: usize, note: String) -> Result<(Step, Outcome)> {
        let started = Instant::now();
        // A Ctrl-C between two steps stopped the last one's run, already over: stop here.
        if self.current.lock().expect("live lock").stop_requested() {
            return Ok(self.halted_step(Halt::Interrupted, started));
        }
        let threads = if threads == 0 { self.scenario.threads } else { threads };
        // The step carries the SLO's gates as its own: its `--pacing-window auto`
        // takes its window from their latency budget, and its scenario.toml
        // says what it was judged by.
        let assert = self.slo.user_gates().to_vec();
        let scenario = Scenario { rate: Rate::Constant(plan.rate), threads, assert, ..self.scenario.clone() };
        let Finished { report, workers } =
            match run_one(scenario, self.target, self.mode, true, self.current, self.watch, None).await {
                Ok(finished) => finished,
                Err(e) if interrupted_before_start(&e) => return Ok(self.halted_step(Halt::Interrupted, started)),
                Err(e) => {
                    let halt = Halt::Aborted { step: plan.step, reason: format!("{e:#}") };
                    return Ok(self.halted_step(halt, started));
                }
            };
        let n = self.steps.len() as u32 + 1;
        let rel = format!("{}step-{:02}-{}", self.prefix, n, plan.rate as u64);
        write_run(&report, &self.root.join(&rel), &workers, None)?;
        let summary = report.summary;
        let judged = self.slo.judge(&summary);
        let verdict = match summary.status {
            Status::Ok => judged.verdict,
            Status::Interrupted => {
                self.halt = Some(Halt::Interrupted);
                Verdict::Halt
            }
            // A finished run is never a checkpoint; taken as a failure if it were.
            Status::Aborted | Status::Incomplete => {
                self.halt = Some(Halt::Aborted { step: n, reason: summary.reason.clone() });
                Verdict::Halt
            }
        };
        let elapsed = started.elapsed();
        let mut row = CapacityRow::new(n, plan.phase, &summary, &judged, elapsed.as_secs_f64(), &rel);
        row.verdict = verdict;
        row.passed = verdict == Verdict::Pass;
        row.attempt =
            1 + self.steps.iter().filter(|s| s.row.rate == row.rate && s.row.phase != Phase::Ceiling).count() as u32;
        row.note = note;
        let delivered_rate = row.delivered_messages_rate();
        Ok((Step { row, summary }, Outcome { verdict, elapsed, delivered_rate }))
    }

    /// A step that did not run, as the search reads it (no row).
    fn halted_step(&mut self, halt: Halt, started: Instant) -> (Step, Outcome) {
        let outcome = self.halted(halt, started);
        (Step { row: CapacityRow::default(), summary: Default::default() }, outcome)
    }

    /// Keeps a step that ran: its line on stderr, its row, `capacity.csv` so far.
    fn keep(&mut self, step: Step) {
        if step.row.step == 0 {
            return;
        }
        self.say(&step);
        self.steps.push(step);
        let rows: Vec<CapacityRow> = self.steps.iter().map(|s| s.row.clone()).collect();
        (self.on_step)(&rows);
    }

    /// More threads for a step that eventbench's CPU limited, when it may have them:
    /// `Some((threads, why))`, or `None` (the user chose --threads, or every CPU is in use already).
    fn more_threads(&self, step: &Step) -> Option<(usize, String)> {
        let s = &step.summary;
        let cpu_bound = s.harness_cpu_pct > HARNESS_CPU_LIMIT_PCT || s.harness_thread_max_pct > HARNESS_CPU_LIMIT_PCT;
        let cpus = crate::sys::cpus_available();
        let used = s.threads as usize;
        if step.row.verdict != Verdict::Harness || !cpu_bound || self.scenario.threads != 0 || used >= cpus {
            return None;
        }
        let more = (used * 2).clamp(used + 1, cpus);
        Some((more, format!("{more} threads: step {} was harness-limited with {used}", step.row.step)))
    }
}

impl Steps for Stepper<'_> {
    async fn step(&mut self, plan: StepPlan) -> Result<Outcome> {
        let threads = self.threads.unwrap_or(0);
        let note = self
            .threads
            .map_or(String::new(), |t| format!("{t} threads (a step before was harness-limited with fewer)"));
        let (step, outcome) = self.run_step(plan, threads, note).await?;
        let retry = self.more_threads(&step);
        self.keep(step);
        // The harness gets out of its own way before it is blamed: the same step with more threads.
        let Some((more, why)) = retry else { return Ok(outcome) };
        self.threads = Some(more);
        let (again, second) = self.run_step(plan, more, why).await?;
        self.keep(again);
        Ok(Outcome { elapsed: outcome.elapsed + second.elapsed, ..second })
    }
}

/// The checked settings of a search.
struct Settings {
    scenarios: Vec<Scenario>,
    slo: Slo,
    plan: Plan,
    root: PathBuf,
}

/// Everything that can be wrong with the command line, found before anything runs.
fn settings(args: &CapacityArgs, mode: &Mode) -> Result<Settings> {
    settings_for(args, mode, args.run.scenario()?)
}

/// [`settings`] of a search of `base` (a sweep's point) with the command line's search flags.
fn settings_for(args: &CapacityArgs, mode: &Mode, base: Scenario) -> Result<Settings> {
    for key in ["duration", "warmup"] {
        if args.run.flags.gave(key) {
            return Err(invalid(
                key,
                "capacity measures each step for --step (default 3s), after --step-warmup (default 1s)",
            ));
        }
    }
    if let crate::scenario::Checkpoint::Every(d) = base.checkpoint {
        return Err(invalid(
            "checkpoint",
            format!(
                "{}: a capacity search's steps are short runs, each written as it ends; --checkpoint is for run and compare",
                crate::scenario::fmt_duration(&d)
            ),
        ));
    }
    let base_rate = match base.rate {
        Rate::Constant(r) => r,
        Rate::Profile(_) => return Err(invalid(
            "rate",
            "a capacity search holds one rate per step; give the first step's rate (e.g. --rate 10k), not a profile",
        )),
    };
    if base_rate <= 0.0 {
        return Err(invalid(
            "rate",
            "0 (as fast as possible) has no rate to search; in a capacity search --rate is the first step's (default 1000)",
        ));
    }
    if args.step.is_zero() {
        return Err(invalid("step", "must be longer than 0s"));
    }
    let precision = args.precision.0 / 100.0;
    if precision <= 0.0 || precision >= 1.0 {
        return Err(invalid("precision", format!("{} must be above 0% and below 100%", args.precision)));
    }
    let start = search::round_rate(base_rate);
    let min_rate = args.min_rate.unwrap_or((start / 100.0).max(1.0));
    if !(1.0..=start).contains(&min_rate) {
        return Err(invalid(
            "min-rate",
            format!("{} must be at least 1 and at most the starting rate ({})", msg_rate(min_rate), msg_rate(start)),
        ));
    }
    if let Some(max) = args.max_rate {
        if max < min_rate {
            return Err(invalid("max-rate", format!("{} is below --min-rate {}", msg_rate(max), msg_rate(min_rate))));
        }
    }
    super::distinct_transports(&args.transports)?;
    let transports = if args.transports.is_empty() { vec![base.transport] } else { args.transports.clone() };
    let step_max = crate::capacity::step_max(args.step_warmup, args.step, base.drain);
    // Each transport's search gets its share of the budget: at least one step each.
    if args.budget < step_max * transports.len() as u32 {
        return Err(invalid(
            "budget",
            format!(
                "{} is shorter than one step may take ({}: --step-warmup + --step + --drain + 1s){}",
                crate::clock::fmt_duration(&args.budget),
                crate::clock::fmt_duration(&step_max),
                if transports.len() > 1 {
                    format!(" for each of {} transports", transports.len())
                } else {
                    String::new()
                }
            ),
        ));
    }
    // Without a file or --name, each transport's runs are named after it, as a plain run would be.
    let named_by_transport = args.run.scenario.is_none() && !args.run.flags.gave("name");
    let scenarios = transports
        .iter()
        .map(|&t| {
            let s = Scenario {
                transport: t,
                name: if named_by_transport { t.to_string() } else { base.name.clone() },
                rate: Rate::Constant(start),
                duration: args.step,
                warmup: args.step_warmup,
                ..base.clone()
            };
            pipeline::check(&s, mode).map(|_| s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let slo = Slo::new(base.assert.iter().cloned().chain(args.slo.iter().cloned()));
    let root = match &args.run.out {
        Some(dir) => dir.clone(),
        None => files::default_dir(
            Path::new("results"),
            &format!("capacity-{}-{}", base.name, crate::pipeline::utc_stamp()),
        ),
    };
    let plan = Plan {
        start,
        min_rate,
        max_rate: args.max_rate.map(search::round_rate),
        precision,
        confirm: args.confirm,
        tries: args.tries,
        ceiling: !args.no_ceiling,
        budget: args.budget,
        step_max,
    };
    Ok(Settings { scenarios, slo, plan, root })
}

/// `eventbench capacity`: one search per transport against one Redis (or
/// `--repeat N` of them, each in its own directory, and how far they agree).
pub(super) async fn capacity(args: CapacityArgs) -> Result<u8> {
    let mode = mode_of(&args.run.split);
    let Settings { scenarios, slo, plan, root } = settings(&args, &mode)?;
    // Usable (and new) before anything runs; every step goes in below it.
    let mut out = super::OutDir::prepare(Some(&root), Path::new("results"))?;
    let current = Arc::new(Mutex::new(Arc::new(Live::default())));
    on_interrupt(current.clone())?;
    let watch = super::watch::Watch::start(&args.run.export, args.run.format)?;
    let target = super::start_target(&scenarios[0], &mode, &current).await?;
    out.keep();
    let repeat = args.run.repeat;
    let mut all: Vec<(Vec<Searched>, u8)> = Vec::new();
    for i in 0..repeat {
        let dir = if repeat > 1 { root.join(format!("search-{}", i + 1)) } else { root.clone() };
        let ctx = Ctx {
            args: &args,
            mode: &mode,
            scenarios: &scenarios,
            slo: &slo,
            plan: &plan,
            target: &target,
            print: true,
        };
        let (searches, code) = search_all(&ctx, &current, &watch, &dir).await?;
        let stop = matches!(code, EXIT_INTERRUPTED | EXIT_ABORTED);
        all.push((searches, code));
        if stop {
            break;
        }
    }
    drop(target);
    let code = if repeat > 1 {
        super::repeat::capacity_repeat(&all, &root, args.run.format)?
    } else {
        all.last().map_or(0, |(_, code)| *code)
    };
    // Not under the lock: a Ctrl-C during the linger takes it to stop the run.
    let last = current.lock().expect("live lock").clone();
    watch.linger(last).await;
    Ok(code)
}

/// What every search of a command shares.
struct Ctx<'a> {
    args: &'a CapacityArgs,
    mode: &'a Mode,
    scenarios: &'a [Scenario],
    slo: &'a Slo,
    plan: &'a Plan,
    target: &'a Target,
    /// The headline on stdout (not for a sweep's points: the sweep prints its own).
    print: bool,
}

/// A sweep's point checked as a search before anything runs: the search's
/// flags, and the point's scenario on its transport.
pub(super) fn check_point(args: &CapacityArgs, mode: &Mode, point: Scenario) -> Result<()> {
    settings_for(args, mode, point).map(|_| ())
}

/// One search of a sweep's point into `dir` (as `eventbench capacity --out dir`
/// would write it, on the sweep's target): the search, and its exit code.
pub(super) async fn search_point(
    args: &CapacityArgs,
    mode: &Mode,
    point: Scenario,
    target: &Target,
    current: &Arc<Mutex<Arc<Live>>>,
    watch: &super::watch::Watch,
    dir: &Path,
) -> Result<(Searched, u8)> {
    let Settings { scenarios, slo, plan, .. } = settings_for(args, mode, point)?;
    let ctx = Ctx { args, mode, scenarios: &scenarios, slo: &slo, plan: &plan, target, print: false };
    let (mut searches, code) = search_all(&ctx, current, watch, dir).await?;
    let searched = searches.pop().context("a search per point")?;
    Ok((searched, code))
}

/// One search per transport into `root`: its files, its headline, its exit code.
async fn search_all(
    ctx: &Ctx<'_>,
    current: &Arc<Mutex<Arc<Live>>>,
    watch: &super::watch::Watch,
    root: &Path,
) -> Result<(Vec<Searched>, u8)> {
    let (args, scenarios, slo) = (ctx.args, ctx.scenarios, ctx.slo);
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let started = Instant::now();
    let mut searches: Vec<Searched> = Vec::new();
    let mut halt = None;
    for (i, scenario) in scenarios.iter().enumerate() {
        // What is left of the budget, shared by the searches still to run.
        let left = args.budget.saturating_sub(started.elapsed());
        let plan = Plan { budget: left / (scenarios.len() - i) as u32, ..ctx.plan.clone() };
        let transport = scenario.transport.to_string();
        let done: Vec<CapacityRow> = searches.iter().flat_map(|s| s.steps.iter().map(|st| st.row.clone())).collect();
        let on_step = |rows: &[CapacityRow]| {
            let all: Vec<CapacityRow> = done.iter().chain(rows).cloned().collect();
            let _writing = WRITING.lock();
            if let Err(e) = files::write_csv(&root.join("capacity.csv"), &all) {
                super::say_err(&format!("eventbench: warning: capacity.csv: {e:#}"));
            }
        };
        let mut stepper = Stepper {
            scenario,
            target: ctx.target,
            mode: ctx.mode,
            current,
            slo,
            root,
            prefix: if scenarios.len() > 1 { format!("{transport}/") } else { String::new() },
            quiet: args.run.quiet,
            watch,
            steps: Vec::new(),
            halt: None,
            threads: None,
            on_step: &on_step,
        };
        let found = search::search(&plan, &mut stepper).await?;
        halt = stepper.halt.take();
        searches.push(Searched { transport, plan, found, steps: stepper.steps });
        if halt.is_some() {
            break;
        }
    }
    // As each step ran it: with the SLO's gates (what its scenario.toml says, and what `report` reads back).
    let shown = Scenario { assert: slo.user_gates().to_vec(), ..scenarios[0].clone() };
    write_outputs(&searches, slo, &shown, args.budget, root)?;
    let several = searches.len() > 1;
    match args.run.format {
        _ if !ctx.print => {}
        Format::Table => {
            for s in &searches {
                let who = if several { format!("{}: ", s.transport) } else { String::new() };
                super::say_out(&format!("{who}{}\n", s.headline(slo)));
            }
            super::say_out(&format!("{:>12}  {}\n", "results", root.join("capacity.html").display()));
        }
        // With jsonl, each step's lines and summary object came first.
        Format::Json | Format::Jsonl => {
            let json: Vec<_> = searches.iter().map(|s| s.json(slo)).collect();
            let text = if several { serde_json::to_string(&json) } else { serde_json::to_string(&json[0]) };
            super::say_out(&format!("{}\n", text.context("the search as JSON")?));
        }
    }
    let code = exit_code(&searches, halt.as_ref(), root);
    Ok((searches, code))
}

/// `capacity.csv`, `capacity.svg` and `capacity.html`; a second Ctrl-C waits until they are whole.
fn write_outputs(
    searches: &[Searched],
    slo: &Slo,
    scenario: &Scenario,
    budget: std::time::Duration,
    root: &Path,
) -> Result<()> {
    let _writing = WRITING.lock();
    let rows: Vec<CapacityRow> = searches.iter().flat_map(|s| s.steps.iter().map(|st| st.row.clone())).collect();
    files::write_csv(&root.join("capacity.csv"), &rows)?;
    let saved = serde_json::to_string_pretty(&Saved::of(searches, slo, budget)).context("capacity.json")?;
    files::write_atomic(&root.join("capacity.json"), saved.as_bytes())?;
    // The steps' data is safe either way: a plot or page that fails is a warning.
    let pictures = plot::capacity_svg(searches, &slo.latency_ceilings()).and_then(|svg| {
        files::write_atomic(&root.join("capacity.svg"), svg.as_bytes())?;
        let html = page::capacity_page(searches, slo, scenario, budget, &svg);
        files::write_atomic(&root.join("capacity.html"), html.as_bytes())
    });
    if let Err(e) = pictures {
        super::say_err(&format!("eventbench: warning: no capacity.svg or capacity.html in {}: {e:#}", root.display()));
    }
    Ok(())
}

/// 0 with a maximum, 3 when no rate met the SLO, 4 when the search could
/// not tell (the machine or eventbench may be what failed near the knee),
/// 1 when a step was aborted, 130 when interrupted; says why on stderr when it is not 0.
fn exit_code(searches: &[Searched], halt: Option<&Halt>, root: &Path) -> u8 {
    let say = |line: String| super::say_err(&line);
    match halt {
        Some(Halt::Interrupted) => {
            say(format!("eventbench: interrupted; the steps so far are in {}", root.display()));
            return EXIT_INTERRUPTED;
        }
        Some(Halt::Aborted { step, reason }) => {
            say(format!("eventbench: step {step} aborted: {reason}; the steps so far are in {}", root.display()));
            return EXIT_ABORTED;
        }
        None => {}
    }
    // The headline said what happened; stderr says what it means for the exit code, and what to try.
    let mut code = 0;
    for s in searches {
        let advice = s.advice().map_or(String::new(), |a| format!("; {a}"));
        match s.found.end {
            End::Harness | End::Inconclusive | End::Spread => {
                say(format!("eventbench: {}: inconclusive, no maximum{advice}", s.transport));
                code = code.max(EXIT_INCONCLUSIVE);
            }
            End::Budget => say(format!(
                "eventbench: warning: {}: the budget ({}) ran out before the search was done (--budget){advice}",
                s.transport,
                crate::capacity::budget_text(s.plan.budget)
            )),
            _ if s.found.max_rate.is_none() => {
                say(format!("eventbench: {}: no rate met the SLO{advice}", s.transport));
            }
            _ => {}
        }
        if s.found.max_rate.is_none() && !matches!(s.found.end, End::Harness | End::Inconclusive | End::Spread) {
            code = code.max(EXIT_ASSERTION);
        }
    }
    code
}

/// `eventbench report DIR` of a search's directory: `capacity.html` and
/// `capacity.svg` again from `capacity.json`, `capacity.csv` and each step's directory.
pub(super) fn rerender(root: &Path) -> Result<()> {
    let text = std::fs::read_to_string(root.join("capacity.json")).context("capacity.json")?;
    let saved: Saved = serde_json::from_str(&text).context("capacity.json")?;
    let mut reader = csv::Reader::from_path(root.join("capacity.csv")).context("capacity.csv")?;
    let headers = reader.headers().context("capacity.csv")?.clone();
    let row = |rec: Result<csv::StringRecord, csv::Error>| files::restore(&rec?).deserialize(Some(&headers));
    let rows: Vec<CapacityRow> = reader.records().map(row).collect::<Result<_, _>>().context("capacity.csv")?;
    let budget = saved.budget;
    let summary = |row: &CapacityRow| -> Result<crate::rows::SummaryRow> {
        Ok(crate::report::rundir::RunData::load(&root.join(&row.dir))?.summary)
    };
    let (searches, slo) = saved.searches(&rows, summary)?;
    let first = rows.first().context("capacity.csv has no step")?;
    let toml =
        std::fs::read_to_string(root.join(&first.dir).join("scenario.toml")).context("a step's scenario.toml")?;
    let scenario = Scenario::from_toml(&toml).context("a step's scenario.toml")?;
    let start = searches.first().map_or(first.rate, |s| s.plan.start);
    let scenario = Scenario { rate: Rate::Constant(start), ..scenario };
    write_outputs(&searches, &slo, &scenario, budget, root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::time::Duration;

    fn settings_of(args: &[&str]) -> Result<Settings> {
        let cli = Cli::try_parse_from([&["eventbench", "capacity"][..], args].concat()).unwrap();
        let Command::Capacity(args) = cli.command else { panic!("capacity") };
        settings(&args, &mode_of(&args.run.split))
    }

    #[test]
    fn the_defaults_make_a_search_of_short_steps_from_1000() {
        let s = settings_of(&["--slo", "p99_us<1000"]).unwrap();
        let p = &s.plan;
        assert_eq!((p.start, p.min_rate, p.max_rate, p.precision, p.confirm), (1000.0, 10.0, None, 0.05, 2));
        assert_eq!((p.budget, p.step_max), (Duration::from_secs(600), Duration::from_secs(1 + 3 + 2 + 1)));
        let [step] = &s.scenarios[..] else { panic!("one transport") };
        assert_eq!(
            (step.duration, step.warmup, step.name.as_str()),
            (Duration::from_secs(3), Duration::from_secs(1), "pubsub")
        );
        let gates: Vec<String> = s.slo.gates().iter().map(ToString::to_string).collect();
        assert_eq!(gates, ["lost==0", "sustained==1", "p99_us<1000"]);
        assert!(s.root.starts_with("results") && s.root.to_string_lossy().contains("capacity-pubsub-"));
    }

    #[test]
    fn without_slo_the_search_keeps_only_what_always_holds() {
        let s = settings_of(&[]).unwrap();
        let gates: Vec<String> = s.slo.gates().iter().map(ToString::to_string).collect();
        assert_eq!(gates, ["lost==0", "sustained==1"]);
    }

    #[test]
    fn the_run_flags_apply_to_every_step() {
        let s = settings_of(&[
            "--transports",
            "pubsub,streams",
            "--rate",
            "20k",
            "--consumers",
            "4",
            "--step",
            "2s",
            "--step-warmup",
            "500ms",
            "--assert",
            "lost_in_buffer==0",
            "--slo",
            "p999_us<5000",
            "--precision",
            "2.5%",
            "--confirm",
            "1",
            "--min-rate",
            "1k",
            "--max-rate",
            "1M",
            "--budget",
            "2m",
        ])
        .unwrap();
        let names: Vec<(&str, u32, Duration)> =
            s.scenarios.iter().map(|x| (x.name.as_str(), x.consumers, x.duration)).collect();
        let two = Duration::from_secs(2);
        assert_eq!(names, [("pubsub", 4, two), ("streams", 4, two)]);
        assert_eq!((s.plan.start, s.plan.min_rate, s.plan.max_rate), (20_000.0, 1000.0, Some(1e6)));
        assert_eq!((s.plan.precision, s.plan.confirm), (0.025, 1));
        assert_eq!(s.slo.user_gates().len(), 2, "the scenario's --assert gates are part of the SLO");
    }

    #[test]
    fn the_budget_holds_a_step_for_each_transport() {
        let e = settings_of(&["--budget", "10s", "--transports", "pubsub,streams"]).err().unwrap().to_string();
        assert!(e.contains("7s") && e.contains("for each of 2 transports"), "{e}");
        assert!(settings_of(&["--budget", "14s", "--transports", "pubsub,streams"]).is_ok());
    }
}
