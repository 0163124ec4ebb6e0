//! What each subcommand does, between parsing and exit codes.

use crate::cli::{Command, Format, ReportArgs, RunArgs};
use crate::progress::Progress;
use crate::report::rundir::LoadError;
use crate::report::{files, render, table};
use crate::scenario::ScenarioError;
use crate::swarm::{Live, Status};
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// Exit codes: 0 ok, 1 the run failed, 2 bad input, 130 interrupted.
pub const EXIT_ABORTED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Runs a parsed command; returns the exit code.
pub async fn execute(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Report(args) => report(args),
        Command::Scenarios { dir } => {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let dir = dir.unwrap_or_else(|| if Path::new("scenarios").is_dir() { "scenarios".into() } else { shipped });
            print!("{}", list_scenarios(&dir)?);
            Ok(0)
        }
    }
}

async fn run(args: RunArgs) -> Result<u8> {
    let scenario = args.scenario()?;
    if let Some(dir) = args.out.as_ref().filter(|d| d.exists()) {
        return Err(ScenarioError::Invalid {
            key: "out",
            message: format!("{} already exists; results are never overwritten", dir.display()),
        }
        .into());
    }
    let live = Arc::new(Live::default());
    let watcher = live.clone();
    tokio::spawn(async move {
        // First Ctrl-C or SIGTERM: stop and report. A second one exits at once.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let sigterm = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = sigterm => {} }
        watcher.request_stop();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let progress =
        show_progress.then(|| Progress::start(live.clone(), scenario.warmup + scenario.duration, scenario.consumers));
    let report = crate::run_with(scenario, live).await;
    drop(progress);
    let report = report?;
    let dir = match &args.out {
        Some(dir) => dir.clone(),
        None => files::default_dir(Path::new("results"), &report.run_id),
    };
    files::write_run(&report, &dir)?;
    match args.format {
        Format::Table => {
            print!("{}", table::render(&report.summary));
            println!("{:>12}  {}", "results", dir.display());
        }
        Format::Json => println!("{}", serde_json::to_string(&report.summary).context("summary as JSON")?),
    }
    Ok(match report.status {
        Status::Ok => 0,
        Status::Interrupted => {
            eprintln!("eventbench: interrupted; partial results in {}", dir.display());
            EXIT_INTERRUPTED
        }
        Status::Aborted(reason) => {
            eprintln!("eventbench: run aborted: {reason}; partial results in {}", dir.display());
            EXIT_ABORTED
        }
    })
}

/// Rebuilds each run's plots and page; with several runs, also writes the
/// comparison. A missing or malformed file is the user's to fix: one line
/// naming it, exit code 2.
fn report(args: ReportArgs) -> Result<u8> {
    if args.out.is_some() && args.dirs.len() < 2 {
        eprintln!("error: --out is where the comparison of two or more runs goes (usage: eventbench report DIR DIR... [--out DIR])");
        return Ok(EXIT_USAGE);
    }
    let mut runs = Vec::new();
    for dir in &args.dirs {
        match render::run_report(dir) {
            Ok(run) => runs.push(run),
            Err(e) => return usage_or(e),
        }
        println!("{:>12}  {}", "report", dir.join("report.html").display());
    }
    if runs.len() > 1 {
        let out = match args.out {
            Some(out) => out,
            None => files::default_dir(Path::new("results"), &format!("compare-{}", crate::utc_stamp())),
        };
        render::comparison(&runs, &out)?;
        println!("{:>12}  {}", "comparison", out.join("compare.html").display());
        println!("{:>12}  {}", "runs", out.join("runs.csv").display());
    }
    Ok(0)
}

/// A [`LoadError`] anywhere in the chain is bad input (exit 2, one line); anything else fails.
fn usage_or(e: anyhow::Error) -> Result<u8> {
    match e.chain().find_map(|c| c.downcast_ref::<LoadError>()) {
        Some(load) => {
            eprintln!("error: {load}");
            Ok(EXIT_USAGE)
        }
        None => Err(e),
    }
}

/// One line per scenario file: name, workload, and the first line of its description.
pub fn list_scenarios(dir: &Path) -> Result<String> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list scenarios in {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut out = String::new();
    for path in paths {
        let s = crate::scenario::Scenario::from_file(&path)?;
        let what = s.description.as_deref().unwrap_or("").lines().next().unwrap_or("");
        let rate = if s.rate > 0.0 { format!("{}/s", s.rate) } else { "max".into() };
        out.push_str(&format!(
            "{:<18} {:>3}p {:>4}c {:>3}ch {:>9} {:>6}  {}\n",
            s.name,
            s.producers,
            s.consumers,
            s.channels,
            rate,
            crate::scenario::fmt_duration(&s.duration),
            what
        ));
    }
    Ok(out)
}
