//! What each subcommand does, between parsing and exit codes.

use crate::cli::{Command, Format, RunArgs};
use crate::progress::Progress;
use crate::report::{files, table};
use crate::scenario::ScenarioError;
use crate::swarm::{Live, Status};
use crate::RunReport;
use anyhow::{Context, Result};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// Exit codes: 0 ok, 1 the run failed, 2 bad input, 3 an assertion failed, 130 interrupted.
pub const EXIT_ABORTED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ASSERTION: u8 = 3;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Held while result files are written: a second Ctrl-C waits for it, so
/// even "exit at once" leaves whole files (writing takes milliseconds).
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a parsed command; returns the exit code.
pub async fn execute(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Scenarios { dir } => {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
            let dir = dir.unwrap_or_else(|| if Path::new("scenarios").is_dir() { "scenarios".into() } else { shipped });
            print!("{}", list_scenarios(&dir)?);
            Ok(0)
        }
    }
}

/// First Ctrl-C or SIGTERM: ask the run to stop, drain and report. A second
/// one exits at once (after any file being written is complete).
fn watch_signals(live: Arc<Live>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Both streams exist before the first signal, so a quick second one is never missed.
    let mut int = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        live.request_stop();
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        let _whole_files = WRITING.lock();
        crate::target::remove_private_dirs();
        eprintln!("eventbench: interrupted again; exiting without results");
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
    Ok(())
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
    watch_signals(live.clone())?;
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
    {
        let _writing = WRITING.lock();
        files::write_run(&report, &dir)?;
    }
    match args.format {
        Format::Table => {
            print!("{}", table::render(&report.summary));
            println!("{:>12}  {}", "results", dir.display());
        }
        Format::Json => println!("{}", serde_json::to_string(&report.summary).context("summary as JSON")?),
    }
    Ok(match report.status {
        Status::Ok => check_assertions(&report),
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

/// Checks `--assert` gates on a completed run: one line per failure, exit code 3.
fn check_assertions(report: &RunReport) -> u8 {
    let failed: Vec<_> =
        report.scenario.assert.iter().map(|a| a.check(&report.summary)).filter(|v| !v.passed).collect();
    for v in &failed {
        eprintln!("eventbench: assertion failed: {}", v.line);
    }
    if failed.is_empty() {
        0
    } else {
        EXIT_ASSERTION
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
