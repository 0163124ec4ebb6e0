//! What each subcommand does, between parsing and exit codes.

use crate::cli::{Command, Format, RunArgs};
use crate::progress::Progress;
use crate::report::rows::SummaryRow;
use crate::report::{files, table};
use crate::scenario::ScenarioError;
use crate::stats::summary::{HARNESS_CPU_LIMIT_PCT, HARNESS_LAG_LIMIT_US};
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
    if let Some(warning) = harness_warning(&report.summary, crate::sys::cpus_available()) {
        eprintln!("{warning}");
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

/// When eventbench itself may have been the limit of a run: what it saw, and what to do.
pub fn harness_warning(s: &SummaryRow, cpus: usize) -> Option<String> {
    if !s.harness_limited {
        return None;
    }
    let mut seen = Vec::new();
    if s.send_lag_p99_us > HARNESS_LAG_LIMIT_US {
        seen.push(format!(
            "messages went out later than scheduled (send lag p99 {:.2} ms, over {:.0} ms; the harness was short of \
             CPU, or Redis did not take the writes as fast as scheduled)",
            s.send_lag_p99_us / 1e3,
            HARNESS_LAG_LIMIT_US / 1e3
        ));
    }
    if s.harness_cpu_pct > HARNESS_CPU_LIMIT_PCT {
        seen.push(format!(
            "eventbench used {:.0}% of the CPU it may use ({cpus} CPUs; over {HARNESS_CPU_LIMIT_PCT:.0}%)",
            s.harness_cpu_pct
        ));
    }
    Some(format!(
        "eventbench: warning: the harness may have been the limit of this run: {}. Latency and rates may describe \
         eventbench and this machine more than Redis (harness_limited = true). Lower --rate, spread the load \
         (--producers, --threads), or give eventbench CPU to spare.",
        seen.join("; ")
    ))
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
