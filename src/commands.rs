//! What each subcommand does, between parsing and exit codes.

mod capacity;
mod repeat;
mod sweep;
mod watch;

use crate::assertion::AssertionRow;
use crate::cli::{Command, CompareArgs, Format, ReportArgs, RunArgs, WorkerArgs};
use crate::live::{Live, Status};
use crate::pipeline::workers::{Coordination, WorkerError};
use crate::pipeline::{self, Finished, Mode};
use crate::progress::Progress;
use crate::report::rundir::{LoadError, RunData};
use crate::report::{files, render, table};
use crate::results::summarize::{HARNESS_CPU_LIMIT_PCT, HARNESS_LAG_LIMIT_US};
use crate::rows::{SummaryRow, WorkerRow};
use crate::scenario::ScenarioError;
use crate::target::Target;
use crate::RunReport;
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `eprintln!`, `println!` and `print!` that never panic: a closed terminal
/// (after SIGHUP) or pipe is no reason to lose a run's exit code.
macro_rules! eline { ($($t:tt)*) => { say_err(&format!($($t)*)) } }
macro_rules! oline { ($($t:tt)*) => { say_out(&(format!($($t)*) + "\n")) } }
macro_rules! otext { ($($t:tt)*) => { say_out(&format!($($t)*)) } }

/// Exit codes: 0 ok, 1 the run failed, 2 bad input, 3 an assertion failed,
/// 4 a capacity search was inconclusive, 130 interrupted.
pub const EXIT_ABORTED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ASSERTION: u8 = 3;
pub const EXIT_INCONCLUSIVE: u8 = 4;
pub const EXIT_INTERRUPTED: u8 = 130;

/// Held while result files are written: a second Ctrl-C waits for it, so
/// even "exit at once" leaves whole files (writing takes milliseconds).
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs a parsed command; returns the exit code.
pub async fn execute(command: Command) -> Result<u8> {
    let code = execute_command(command).await?;
    Ok(stdout_failure(code))
}

async fn execute_command(command: Command) -> Result<u8> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Compare(args) => compare(args).await,
        Command::Capacity(args) => capacity::capacity(args).await,
        Command::Sweep(args) => sweep::sweep(args).await,
        Command::Report(args) => report(args),
        Command::Worker(args) => worker(args).await,
        Command::Scenarios { dir } => {
            let listed = match dir {
                Some(dir) => list_scenarios(&dir)?,
                None => list_shipped()?,
            };
            otext!("{listed}");
            Ok(0)
        }
        Command::Completions { shell } => {
            otext!("{}", completion_script(shell));
            Ok(0)
        }
        Command::Man { command } => {
            otext!("{}", man_page(command.as_deref())?);
            Ok(0)
        }
    }
}

/// The shell's completion script. clap_complete offers a positional
/// argument's values (the shipped scenarios' names) in bash and zsh only;
/// for fish, a line per subcommand that takes a scenario offers them too,
/// beside file names (a scenario file of one's own still completes).
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut cli = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "eventbench", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Fish {
        let names: Vec<&str> = crate::scenario::shipped::SHIPPED.iter().map(|(name, _)| *name).collect();
        for sub in cli.get_subcommands().filter(|c| c.get_arguments().any(|a| a.get_id() == "scenario")) {
            let cond = format!("__fish_eventbench_using_subcommand {}", sub.get_name());
            script.push_str(&format!("complete -c eventbench -n \"{cond}\" -a \"{}\"\n", names.join(" ")));
        }
    }
    script
}

/// The man page of eventbench, or of one of its subcommands (`eventbench-run(1)`),
/// generated from the same clap definitions as `--help`.
pub fn man_page(subcommand: Option<&str>) -> Result<String> {
    let cli = crate::cli::Cli::command();
    let page = match subcommand {
        None => cli,
        Some(name) => {
            let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_string()).collect();
            let found = cli.get_subcommands().find(|c| c.get_name() == name).cloned();
            let found = found.ok_or_else(|| ScenarioError::Invalid {
                key: "man",
                message: format!("no subcommand {} (one of: {})", crate::text::shorten(name), names.join(", ")),
            })?;
            found.name(format!("eventbench-{name}"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff).context("rendering the man page")?;
    let mut page = String::from_utf8_lossy(&roff).into_owned();
    page.push_str(".SH \"EXIT STATUS\"\n");
    for (code, meaning) in crate::cli::EXIT_STATUS {
        page.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", meaning.replace('-', "\\-")));
    }
    Ok(page)
}

/// Where a run's results will go, made ready before anything runs: an
/// existing `--out` is refused (results are never overwritten), and the
/// directory (or, without `--out`, the `results` directory the run's own
/// goes into) is created and written to once, so that an unusable path
/// (`/proc/x`, a file, a read-only place) is bad input up front instead of
/// a lost run. Directories it created are removed again if no result ever
/// goes into them.
struct OutDir {
    /// `--out`, or `None` for a directory named after the run under `root`.
    out: Option<PathBuf>,
    root: PathBuf,
    /// Directories created here, outermost first.
    created: Vec<PathBuf>,
    keep: bool,
}

/// Directories prepared for results and still empty, for an exit that skips Drop (a second Ctrl-C).
static PREPARED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn prepared() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PREPARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the prepared directories that are still empty (a second Ctrl-C).
fn remove_prepared() {
    for dir in prepared().drain(..).rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

impl OutDir {
    fn prepare(out: Option<&Path>, root: &Path) -> Result<OutDir> {
        let unusable = |dir: &Path, why: String| -> anyhow::Error {
            ScenarioError::Invalid { key: "out", message: format!("{} cannot hold the results: {why}", dir.display()) }
                .into()
        };
        if let Some(dir) = out.filter(|d| d.exists() || d.is_symlink()) {
            return Err(ScenarioError::Invalid {
                key: "out",
                message: format!("{} already exists; results are never overwritten", dir.display()),
            }
            .into());
        }
        let dir = out.unwrap_or(root);
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(p) = at.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            at = p.parent();
        }
        missing.reverse();
        let mut this =
            OutDir { out: out.map(Path::to_path_buf), root: root.to_path_buf(), created: Vec::new(), keep: false };
        for d in missing {
            std::fs::create_dir(&d).map_err(|e| unusable(&d, e.to_string()))?;
            prepared().push(d.clone());
            this.created.push(d);
        }
        // A directory that exists may still refuse files (read-only, or not a directory at all).
        tempfile::Builder::new()
            .prefix(".eventbench-probe-")
            .tempfile_in(dir)
            .map_err(|e| unusable(dir, e.to_string()))?;
        Ok(this)
    }

    /// The run's directory: `--out`, or `results/<run id>` (with a suffix if that exists).
    fn run_dir(&self, run_id: &str) -> PathBuf {
        match &self.out {
            Some(dir) => dir.clone(),
            None => files::default_dir(&self.root, run_id),
        }
    }

    /// Results went in: keep what was created.
    fn keep(&mut self) {
        self.keep = true;
        prepared().retain(|d| !self.created.contains(d));
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        prepared().retain(|d| !self.created.contains(d));
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir); // only if still empty
        }
    }
}

/// First Ctrl-C, SIGTERM, SIGHUP or SIGQUIT: the current run stops, drains
/// and reports (also while its target starts: the run's `Live` is in
/// `current` from the moment the command starts, and a run that starts
/// later inherits the stop). A second one exits at once (after putting back
/// what `--redis-config` changed on a user's Redis, and after any file
/// being written is complete). SIGUSR1, which would kill the process by
/// default, is ignored.
fn on_interrupt(current: Arc<std::sync::Mutex<Arc<Live>>>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Every stream exists before the first signal, so a quick second one is never missed.
    let mut int = signal(SignalKind::interrupt()).context("installing the Ctrl-C handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut quit = signal(SignalKind::quit()).context("installing the SIGQUIT handler")?;
    let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
    tokio::spawn(async move { while usr1.recv().await.is_some() {} });
    tokio::spawn(async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {}, _ = hup.recv() => {}, _ = quit.recv() => {} }
        if let Ok(live) = current.lock() {
            live.request_stop();
        }
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {}, _ = hup.recv() => {}, _ = quit.recv() => {} }
        crate::progress::clear_line();
        crate::target::restore_unrestored(std::time::Duration::from_millis(500)).await;
        let _whole_files = WRITING.lock();
        crate::target::remove_private_dirs();
        remove_prepared();
        say_err("eventbench: interrupted again; exiting without results");
        std::process::exit(EXIT_INTERRUPTED as i32);
    });
    Ok(())
}

/// One line on stderr; a closed terminal (after SIGHUP) or pipe is no reason to fail.
fn say_err(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Text on stdout, likewise; but text that did not reach it (a full disk,
/// `/dev/full`) is remembered, and the command fails with it
/// ([`stdout_failure`]): a script waiting for a JSON summary must not take
/// an exit code of 0 for it. A reader that left (a closed pipe) wants nothing more.
fn say_out(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut lost = STDOUT_LOST.lock().unwrap_or_else(|p| p.into_inner());
            lost.get_or_insert(e.to_string());
        }
    }
}

/// Why stdout did not take what was written to it, if it did not.
static STDOUT_LOST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The command's exit code, unless what it printed never reached stdout: then
/// that is said on stderr and the command failed.
fn stdout_failure(code: u8) -> u8 {
    match STDOUT_LOST.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => {
            say_err(&format!("error: cannot write to stdout: {e}"));
            code.max(EXIT_ABORTED)
        }
        None => code,
    }
}

/// Writes a run's files (and `workers.csv` when it had workers), then its
/// plots and page; a second Ctrl-C waits until they are whole. A result that
/// could not be written whole (a full disk) is an error: what was written is
/// kept, and the error names it.
fn write_run(report: &RunReport, dir: &Path, workers: &[WorkerRow], out: Option<&mut OutDir>) -> Result<()> {
    write_run_over(report, dir, workers, out, false)
}

/// [`write_run`]; with `over_checkpoint`, the run's directory may hold its
/// last checkpoint, which the result replaces whole.
fn write_run_over(
    report: &RunReport,
    dir: &Path,
    workers: &[WorkerRow],
    out: Option<&mut OutDir>,
    over_checkpoint: bool,
) -> Result<()> {
    let _writing = WRITING.lock();
    // The directory is kept from here, under the lock: a second Ctrl-C either
    // comes first and removes it still empty, or waits for whole files.
    if let Some(out) = out {
        out.keep();
    }
    let written = match over_checkpoint {
        false => write_files(report, dir, workers),
        true => write_replacing(report, dir, workers),
    };
    written.map_err(|e| incomplete(dir, e))
}

/// Writes every file of a run into `dir`.
fn write_files(report: &RunReport, dir: &Path, workers: &[WorkerRow]) -> Result<()> {
    files::write_run(report, dir)?;
    if !workers.is_empty() {
        files::write_csv(&dir.join("workers.csv"), workers)?;
    }
    // The plots and the page come from the files just written, exactly as
    // `eventbench report` rebuilds them.
    render::run_report(dir).map(|_| ())
}

/// Writes every file of a run beside `dir`, then puts them in its place at
/// once: whatever happens meanwhile, `dir` holds one whole result.
fn write_replacing(report: &RunReport, dir: &Path, workers: &[WorkerRow]) -> Result<()> {
    let staged = files::staging_dir(dir);
    // What a killed run left half-written.
    let _ = std::fs::remove_dir_all(&staged);
    let written = write_files(report, &staged, workers).and_then(|()| files::replace_dir(&staged, dir));
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    written
}

/// Writes a run's checkpoints (`--checkpoint`) into its directory as they
/// come, each a whole result replacing the one before; off the async
/// threads, so that the run's own coordination never waits for a disk.
struct Checkpoints {
    /// The run's directory, chosen by the first checkpoint (from its run id).
    dir: Option<PathBuf>,
    choose: Box<dyn Fn(&str) -> PathBuf>,
    /// The write under way: a checkpoint that comes meanwhile is skipped.
    writing: Option<std::thread::JoinHandle<()>>,
}

impl Checkpoints {
    fn new(choose: impl Fn(&str) -> PathBuf + 'static) -> Checkpoints {
        Checkpoints { dir: None, choose: Box::new(choose), writing: None }
    }

    fn take(&mut self, report: RunReport) {
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let dir = self.dir.get_or_insert_with(|| (self.choose)(&report.run_id)).clone();
        self.writing = Some(std::thread::spawn(move || {
            let _writing = WRITING.lock();
            if let Err(e) = write_replacing(&report, &dir, &[]) {
                eline!("eventbench: checkpoint not written: {e:#}");
            }
        }));
    }

    /// Waits for the write under way; the directory, if a checkpoint chose one.
    fn finish(self) -> Option<PathBuf> {
        if let Some(w) = self.writing {
            let _ = w.join();
        }
        self.dir
    }
}

/// A result directory that could not be written whole: why, and what it holds.
fn incomplete(dir: &Path, e: anyhow::Error) -> anyhow::Error {
    let mut kept: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    kept.retain(|n| !n.starts_with('.'));
    kept.sort();
    let kept = if kept.is_empty() { "nothing".to_string() } else { kept.join(", ") };
    e.context(format!("the results in {} are incomplete (kept: {kept})", dir.display()))
}

/// Runs one scenario on `target` in `mode` with a live view; the results are not written yet.
async fn run_one(
    scenario: crate::Scenario,
    target: &Target,
    mode: &Mode,
    quiet: bool,
    current: &std::sync::Mutex<Arc<Live>>,
    watch: &watch::Watch,
    checkpoints: Option<&mut Checkpoints>,
) -> Result<Finished> {
    let live = Arc::new(Live::default());
    {
        // A stop requested before this run (while its target started) stops it too.
        let mut current = current.lock().expect("live lock");
        if current.stop_requested() {
            live.request_stop();
        }
        *current = live.clone();
    }
    // In a --workers run, the coordinator's counters are the workers' sums, a second old at most.
    let show_progress = !quiet && std::io::stderr().is_terminal();
    let label = scenario.transport.to_string();
    let progress = show_progress
        .then(|| Progress::start(live.clone(), label, scenario.warmup + scenario.duration, scenario.consumers));
    let latest = Arc::new(crate::telemetry::Latest::default());
    let lines = watch.run(&live, &scenario.transport.to_string(), latest.clone());
    let mut take = checkpoints.map(|c| move |report| c.take(report));
    let on_checkpoint = take.as_mut().map(|f| f as &mut dyn FnMut(RunReport));
    let watched = pipeline::Watch { latest, on_checkpoint };
    let finished = pipeline::execute_with(scenario, live, target, mode, |line| eline!("{line}"), watched).await;
    drop(lines);
    drop(progress);
    if let Ok(f) = &finished {
        watch.finished(&f.report.summary, &verdicts(&f.report))?;
    }
    finished
}

/// `--workers`, `--spawn` and `--control` as a mode: one process, or coordinated worker processes.
fn mode_of(split: &crate::cli::SplitArgs) -> Mode {
    match split.workers {
        None => Mode::Local,
        Some(workers) => Mode::Workers(Coordination {
            workers,
            spawn: split.spawn.unwrap_or(workers),
            control: split.control.clone(),
            join_timeout: split.join_timeout,
        }),
    }
}

/// A run that a Ctrl-C stopped before it started has nothing to write.
fn interrupted_before_start(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(c.downcast_ref(), Some(WorkerError::Interrupted))
            || matches!(c.downcast_ref(), Some(crate::target::TargetError::Interrupted))
    })
}

/// Starts the scenario's Redis (a private server or cluster) off the async
/// threads, so that a signal meanwhile is heard, and gives it up then.
async fn start_target(
    scenario: &crate::Scenario,
    mode: &pipeline::Mode,
    current: &std::sync::Mutex<Arc<Live>>,
) -> Result<Target> {
    let live = current.lock().expect("live lock").clone();
    let (scenario, mode) = (scenario.clone(), mode.clone());
    tokio::task::spawn_blocking(move || pipeline::target_until(&scenario, &mode, &|| live.stop_requested()))
        .await
        .context("starting the Redis under test")?
}

/// The exit code of a written run; says why on stderr when it is not 0.
fn exit_code(report: &RunReport, dir: &Path) -> u8 {
    if let Some(warning) = harness_warning(&report.summary, crate::sys::cpus_available()) {
        eline!("{warning}");
    }
    if !report.summary.sustained && report.summary.status == Status::Ok {
        eprintln!("{}", not_sustained(&report.summary));
    }
    match report.summary.status {
        Status::Ok => check_assertions(report),
        Status::Interrupted => {
            eline!("eventbench: interrupted; partial results in {}", dir.display());
            EXIT_INTERRUPTED
        }
        // A finished run is never a checkpoint; taken as a failure if it were.
        Status::Aborted | Status::Incomplete => {
            eline!("eventbench: run aborted: {}; partial results in {}", report.summary.reason, dir.display());
            EXIT_ABORTED
        }
    }
}

async fn run(args: RunArgs) -> Result<u8> {
    if args.repeat > 1 {
        return repeat::run_repeat(args).await;
    }
    let scenario = args.scenario()?;
    let current = Arc::new(std::sync::Mutex::new(Arc::new(Live::default())));
    on_interrupt(current.clone())?;
    let mode = mode_of(&args.split);
    pipeline::check(&scenario, &mode)?;
    let mut out = OutDir::prepare(args.out.as_deref(), Path::new("results"))?;
    let watch = watch::Watch::start(&args.export, args.format)?;
    let target = match start_target(&scenario, &mode, &current).await {
        Ok(target) => target,
        Err(e) if interrupted_before_start(&e) => {
            eline!("eventbench: {e}");
            return Ok(EXIT_INTERRUPTED);
        }
        Err(e) => return Err(e),
    };
    let (given, root) = (args.out.clone(), PathBuf::from("results"));
    let mut checkpoints =
        Checkpoints::new(move |run_id| given.clone().unwrap_or_else(|| files::default_dir(&root, run_id)));
    let ran = run_one(scenario, &target, &mode, args.quiet, &current, &watch, Some(&mut checkpoints)).await;
    let checkpointed = checkpoints.finish();
    let Finished { report, workers } = match ran {
        Ok(finished) => finished,
        Err(e) if interrupted_before_start(&e) => {
            eline!("eventbench: {e}");
            return Ok(EXIT_INTERRUPTED);
        }
        Err(e) => return Err(e),
    };
    drop(target);
    let dir = checkpointed.clone().unwrap_or_else(|| out.run_dir(&report.run_id));
    write_run_over(&report, &dir, &workers, Some(&mut out), checkpointed.is_some())?;
    if let Some(warning) = clock_warning(&report.summary) {
        eline!("{warning}");
    }
    match args.format {
        Format::Table => {
            otext!("{}", table::render(&report.summary));
            otext!("{}", table::assertions(&verdicts(&report)));
            oline!("{:>12}  {}", "results", dir.display());
        }
        Format::Json => oline!("{}", json_with_dir(&report.summary, &verdicts(&report), &dir, watch.listening)?),
        // The summary object followed the run's lines already.
        Format::Jsonl => {}
    }
    let code = exit_code(&report, &dir);
    // Not under the lock: a Ctrl-C during the linger takes it to stop the run.
    let last = current.lock().expect("live lock").clone();
    watch.linger(last).await;
    Ok(code)
}

/// A summary row as one JSON object, its columns in `summary.csv`'s order,
/// then `assertions` (each `--assert`'s verdict), `results_dir` (where its
/// files are) and, with --metrics-listen, `metrics_listen` (where /metrics was
/// served: the port, when it was :0).
fn json_with_dir(
    row: &SummaryRow,
    asserts: &[AssertionRow],
    dir: &Path,
    listening: Option<std::net::SocketAddr>,
) -> Result<String> {
    let object = summary_json(row, asserts)?;
    let dir = serde_json::to_string(&dir.display().to_string()).context("results directory as JSON")?;
    let fields = object.strip_suffix('}').context("a summary row is a JSON object")?;
    let listen = listening.map(|a| format!(",\"metrics_listen\":\"{a}\"")).unwrap_or_default();
    Ok(format!("{fields},\"results_dir\":{dir}{listen}}}"))
}

/// A summary row as one JSON object, its columns in `summary.csv`'s order,
/// then `assertions`: what `--format jsonl` ends with, and what
/// `--format json` adds to.
fn summary_json(row: &SummaryRow, asserts: &[AssertionRow]) -> Result<String> {
    let object = serde_json::to_string(row).context("summary as JSON")?;
    let asserts = serde_json::to_string(asserts).context("assertions as JSON")?;
    let fields = object.strip_suffix('}').context("a summary row is a JSON object")?;
    Ok(format!("{fields},\"assertions\":{asserts}}}"))
}

/// Each `--assert`'s verdict on a written run.
fn verdicts(report: &RunReport) -> Vec<AssertionRow> {
    crate::assertion::verdicts(&report.scenario.assert, &report.summary)
}

/// Checks `--assert` gates on a completed run: one line per failure, exit code 3.
fn check_assertions(report: &RunReport) -> u8 {
    let failed: Vec<_> =
        report.scenario.assert.iter().map(|a| a.check(&report.summary)).filter(|v| !v.passed).collect();
    for v in &failed {
        eline!("eventbench: assertion failed: {}", v.line);
    }
    if failed.is_empty() {
        0
    } else {
        EXIT_ASSERTION
    }
}

/// The same scenario once per transport, against one Redis, or once per
/// server (`--servers`, `--urls`); each run is written as soon as it ends,
/// then `compare.csv` and a side-by-side table.
async fn compare(args: CompareArgs) -> Result<u8> {
    let base = args.run.scenario()?;
    if args.run.repeat > 1 {
        let message = "compare runs each of its runs once; repeat one with eventbench run --repeat".into();
        return Err(ScenarioError::Invalid { key: "repeat", message }.into());
    }
    if args.run.flags.gave("transport") {
        return Err(ScenarioError::Invalid {
            key: "transport",
            message: "compare runs the scenario once for each of --transports; give those instead".into(),
        }
        .into());
    }
    let mode = mode_of(&args.run.split);
    let plan = compare_plan(&args, &base)?;
    for (_, s) in &plan {
        pipeline::check(s, &mode)?;
    }
    let what = match args.run.scenario.is_none() && !args.run.flags.gave("name") {
        true => plan.iter().map(|(label, _)| label.as_str()).collect::<Vec<_>>().join("-"),
        false => base.name.clone(),
    };
    let root = match &args.run.out {
        Some(dir) => dir.clone(),
        None => files::default_dir(Path::new("results"), &format!("compare-{what}-{}", crate::pipeline::utc_stamp())),
    };
    let mut out = OutDir::prepare(Some(&root), Path::new("results"))?;
    let current = Arc::new(std::sync::Mutex::new(Arc::new(Live::default())));
    on_interrupt(current.clone())?;
    let watch = watch::Watch::start(&args.run.export, args.run.format)?;
    // Transports share one Redis; each server is a target of its own.
    let per_server = !args.servers.is_empty() || !args.urls.is_empty();
    let shared = match per_server {
        false => Some(start_target(&base, &mode, &current).await?),
        true => None,
    };
    let mut rows: Vec<SummaryRow> = Vec::new();
    let mut checks: Vec<Vec<AssertionRow>> = Vec::new();
    let mut dirs = Vec::new();
    let mut code = 0;
    for (label, s) in plan {
        let own;
        let target = match &shared {
            Some(t) => t,
            None => {
                own = start_target(&s, &mode, &current).await?;
                &own
            }
        };
        let dir = root.join(&label);
        let run_dir = dir.clone();
        let mut checkpoints = Checkpoints::new(move |_| run_dir.clone());
        let ran = run_one(s, target, &mode, args.run.quiet, &current, &watch, Some(&mut checkpoints)).await;
        let checkpointed = checkpoints.finish().is_some();
        let Finished { report, workers } = match ran {
            Ok(finished) => finished,
            Err(e) if interrupted_before_start(&e) => {
                eline!("eventbench: {e}");
                code = EXIT_INTERRUPTED;
                break;
            }
            Err(e) => return Err(e),
        };
        write_run_over(&report, &dir, &workers, Some(&mut out), checkpointed)?;
        code = code.max(exit_code(&report, &dir));
        checks.push(verdicts(&report));
        rows.push(report.summary);
        dirs.push(dir);
        if code == EXIT_INTERRUPTED {
            break;
        }
    }
    drop(shared);
    if dirs.is_empty() {
        return Ok(code);
    }
    {
        let _writing = WRITING.lock();
        let written = files::write_csv(&root.join("compare.csv"), &rows).and_then(|()| {
            // The same runs side by side in pictures, from the files just written.
            let runs = dirs.iter().map(|d| RunData::load(d)).collect::<Result<Vec<_>, _>>()?;
            render::comparison_page(&runs, &root, "compare.csv")
        });
        written.map_err(|e| incomplete(&root, e))?;
    }
    match args.run.format {
        Format::Table => {
            otext!("{}", table::render_comparison(&rows));
            oline!("{:>16}  {}", "results", root.display());
        }
        Format::Json => {
            let each = (rows.iter().zip(&checks).zip(&dirs))
                .map(|((row, asserts), dir)| json_with_dir(row, asserts, dir, watch.listening))
                .collect::<Result<Vec<_>>>()?;
            oline!("[{}]", each.join(","))
        }
        // Each run's summary object followed its lines.
        Format::Jsonl => {}
    }
    // Not under the lock: a Ctrl-C during the linger takes it to stop the run.
    let last = current.lock().expect("live lock").clone();
    watch.linger(last).await;
    Ok(code)
}

/// The runs of a comparison, in order, each with the name of its directory:
/// one per transport, or one per server (on the scenario's transport, or
/// the one `--transports` gives). Comparing servers and transports at once is
/// refused: one difference at a time.
fn compare_plan(args: &CompareArgs, base: &crate::Scenario) -> Result<Vec<(String, crate::Scenario)>, ScenarioError> {
    let invalid = |key, message: String| ScenarioError::Invalid { key, message };
    // Without a file or --name, each run is named after what sets it apart, as a plain run would be.
    let named_by_difference = args.run.scenario.is_none() && !args.run.flags.gave("name");
    let named = |label: &str| if named_by_difference { label.to_string() } else { base.name.clone() };
    distinct_transports(&args.transports)?;
    if args.servers.is_empty() && args.urls.is_empty() {
        let transports = match args.transports.is_empty() {
            true => crate::drivers::REGISTRY.iter().filter(|r| r.traits.compared_by_default).map(|r| r.kind).collect(),
            false => args.transports.clone(),
        };
        return Ok(transports
            .into_iter()
            .map(|t| (t.to_string(), crate::Scenario { transport: t, name: named(&t.to_string()), ..base.clone() }))
            .collect());
    }
    let key = if args.servers.is_empty() { "urls" } else { "servers" };
    if args.transports.len() > 1 {
        return Err(invalid(
            key,
            format!("compares servers on one transport; give --transports one value, not {}", args.transports.len()),
        ));
    }
    let transport = args.transports.first().copied().unwrap_or(base.transport);
    let mut plan = Vec::new();
    for path in &args.servers {
        if base.url.is_some() {
            return Err(invalid(
                "servers",
                "starts a private server from each binary: leave out --url (or use --urls)".into(),
            ));
        }
        if !server_binary_exists(path) {
            return Err(invalid("servers", format!("cannot find the server binary {}", path.display())));
        }
        let stem = path.file_name().map_or_else(|| "server".into(), |n| n.to_string_lossy().into_owned());
        let s = crate::Scenario { transport, redis_server: Some(path.clone()), ..base.clone() };
        plan.push((stem, s));
    }
    for url in &args.urls {
        if base.redis_server.is_some() || base.private_cluster > 0 {
            return Err(invalid(
                "urls",
                "runs on servers you run: leave out --redis-server and --private-cluster".into(),
            ));
        }
        let parsed = crate::connect::parse_url(url).map_err(|m| invalid("urls", crate::text::cut(&m, 200)))?;
        let label = format!("{}-{}", parsed.host.replace([':', '[', ']'], ""), parsed.port);
        plan.push((label, crate::Scenario { transport, url: Some(url.clone()), ..base.clone() }));
    }
    // Two binaries of the same name (or two URLs of one host) get directories of their own.
    let mut seen: Vec<String> = Vec::new();
    for (label, s) in &mut plan {
        let taken = |l: &String| seen.contains(l);
        let mut unique = label.clone();
        let mut n = 2;
        while taken(&unique) {
            unique = format!("{label}-{n}");
            n += 1;
        }
        seen.push(unique.clone());
        // A second run of the same server (an A/A comparison) is named apart, with or without --name.
        s.name = match unique == *label {
            true => named(label),
            false => format!("{}{}", named(label), &unique[label.len()..]),
        };
        *label = unique;
    }
    Ok(plan)
}

/// `--transports` names each transport once: each run's directory and row are named after it.
fn distinct_transports(transports: &[crate::scenario::TransportKind]) -> Result<(), ScenarioError> {
    for (i, t) in transports.iter().enumerate() {
        if transports[..i].contains(t) {
            return Err(ScenarioError::Invalid {
                key: "transports",
                message: format!("{t} is given twice; each transport runs once (to repeat a run, run it again)"),
            });
        }
    }
    Ok(())
}

/// Whether `path` names an executable file, directly or (a bare name) on PATH.
fn server_binary_exists(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if path.components().count() > 1 {
        return runnable(path);
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).any(|d| runnable(&d.join(path)))
}

/// Rebuilds each run's plots and page; with several runs, also writes the
/// comparison. A missing or malformed file is the user's to fix: one line
/// naming it, exit code 2.
fn report(args: ReportArgs) -> Result<u8> {
    if args.out.is_some() && args.dirs.len() < 2 {
        eline!("error: --out is where the comparison of two or more runs goes (usage: eventbench report DIR DIR... [--out DIR])");
        return Ok(EXIT_USAGE);
    }
    // As `run --out`: an existing page is never overwritten, and nothing is rebuilt before that is known.
    if let Some(out) = args.out.as_deref().filter(|d| d.exists() || d.is_symlink()) {
        eline!("error: out: {} already exists; results are never overwritten", out.display());
        return Ok(EXIT_USAGE);
    }
    let mut runs = Vec::new();
    for dir in &args.dirs {
        // A capacity search's directory: its page again (each step is a run directory of its own).
        if args.dirs.len() == 1 && dir.join("capacity.json").is_file() {
            capacity::rerender(dir)?;
            oline!("{:>12}  {}", "capacity", dir.join("capacity.html").display());
            return Ok(0);
        }
        match render::run_report(dir) {
            Ok(run) => runs.push(run),
            Err(e) => return usage_or(e),
        }
        oline!("{:>12}  {}", "report", dir.join("report.html").display());
    }
    if runs.len() > 1 {
        let out = match args.out {
            Some(out) => out,
            None => files::default_dir(Path::new("results"), &format!("compare-{}", crate::pipeline::utc_stamp())),
        };
        render::comparison(&runs, &out)?;
        oline!("{:>12}  {}", "comparison", out.join("compare.html").display());
        oline!("{:>12}  {}", "runs", out.join("runs.csv").display());
    }
    Ok(0)
}

/// A [`LoadError`] anywhere in the chain is bad input (exit 2, one line); anything else fails.
fn usage_or(e: anyhow::Error) -> Result<u8> {
    match e.chain().find_map(|c| c.downcast_ref::<LoadError>()) {
        Some(load) => {
            eline!("error: {load}");
            Ok(EXIT_USAGE)
        }
        None => Err(e),
    }
}

/// `eventbench worker`: one share of a coordinated run; Ctrl-C stops it like a run.
async fn worker(args: WorkerArgs) -> Result<u8> {
    let current = Arc::new(std::sync::Mutex::new(Arc::new(Live::default())));
    on_interrupt(current.clone())?;
    let live = current.lock().expect("live lock").clone();
    let passwords = (args.password, args.control_password);
    let join = crate::pipeline::workers::Join {
        run: args.run,
        index: args.index,
        workers: args.workers,
        plan_wait: args.plan_wait,
    };
    crate::pipeline::workers::work(&args.control, &join, passwords, live).await?;
    Ok(0)
}

/// A run that did not keep up says so in one line, with the backlog's figures.
/// It is a finding, not an error: `--assert sustained==1` gates on it.
pub fn not_sustained(s: &SummaryRow) -> String {
    format!("eventbench: {}: {}", s.run_id, table::not_kept_up(s))
}

/// When latencies measured across workers' clocks fall below what those clocks can tell apart.
pub fn clock_warning(s: &SummaryRow) -> Option<String> {
    if s.latency_below_uncertainty == 0 {
        return None;
    }
    let share = s.latency_below_uncertainty as f64 / s.delivered.max(1) as f64 * 100.0;
    let share = if share < 0.1 { format!("{share:.3}") } else { format!("{share:.1}") };
    Some(format!(
        "eventbench: warning: {} latencies ({share}%) are below the clock uncertainty between workers \
         (±{:.1} µs, latency_below_uncertainty): they are within what the workers' clocks can tell apart, \
         not trustworthy one by one{}",
        s.latency_below_uncertainty,
        s.clock_uncertainty_us,
        if s.p50_us.is_some_and(|p50| p50 < s.clock_uncertainty_us) { "; so is the median" } else { "" }
    ))
}

/// When eventbench itself may have been the limit of a run: what it saw, and what to do.
pub fn harness_warning(s: &SummaryRow, cpus: usize) -> Option<String> {
    if !s.harness_limited {
        return None;
    }
    let mut seen = Vec::new();
    if s.send_lag_p99_us > HARNESS_LAG_LIMIT_US + s.pacing_window_us {
        seen.push(format!(
            "messages went out later than scheduled (send lag p99 {:.2} ms, over {:.0} ms beyond the pacing window; \
             the harness was short of CPU, or Redis did not take the writes as fast as scheduled)",
            s.send_lag_p99_us / 1e3,
            HARNESS_LAG_LIMIT_US / 1e3
        ));
    }
    if s.unsent > 0 {
        seen.push(format!(
            "the producers fell behind their schedule: {} measured messages were still due when the phase ended, and \
             were not sent (unsent)",
            s.unsent
        ));
    }
    if s.harness_cpu_pct > HARNESS_CPU_LIMIT_PCT {
        seen.push(format!(
            "eventbench used {:.0}% of the CPU it may use ({cpus} CPUs; over {HARNESS_CPU_LIMIT_PCT:.0}%)",
            s.harness_cpu_pct
        ));
    }
    if s.harness_thread_max_pct > HARNESS_CPU_LIMIT_PCT {
        seen.push(format!(
            "one of its threads was busy {:.0}% of the measured phase (over {HARNESS_CPU_LIMIT_PCT:.0}%; its \
             connections waited for it even if other CPUs were free)",
            s.harness_thread_max_pct
        ));
    }
    Some(format!(
        "eventbench: warning: the harness may have been the limit of this run ({}): {}. Latency and rates may describe \
         eventbench and this machine more than Redis (harness_limited = true). Lower --rate, spread the load \
         (--producers, --threads), or give eventbench CPU to spare.",
        s.run_id,
        seen.join("; ")
    ))
}

/// One line per scenario file of `dir`: name, workload, and the first line of
/// its description. A directory that cannot be listed is bad input.
pub fn list_scenarios(dir: &Path) -> Result<String> {
    let entries = std::fs::read_dir(dir).map_err(|e| ScenarioError::Invalid {
        key: "dir",
        message: format!("cannot list scenarios in {}: {e}", dir.display()),
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let scenarios = paths.iter().map(|p| crate::scenario::Scenario::from_file(p)).collect::<Result<Vec<_>, _>>()?;
    Ok(scenario_lines(&scenarios))
}

/// The scenarios built into the binary, one line each; `eventbench run NAME` runs one.
pub fn list_shipped() -> Result<String> {
    let scenarios = crate::scenario::shipped::SHIPPED
        .iter()
        .map(|(name, _)| crate::scenario::Scenario::load(Path::new(name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(scenario_lines(&scenarios))
}

fn scenario_lines(scenarios: &[crate::Scenario]) -> String {
    let mut out = String::new();
    for s in scenarios {
        // A file's text, shown on a terminal: its control characters escaped, never obeyed.
        let what = crate::text::printable(s.description.as_deref().unwrap_or("").lines().next().unwrap_or(""));
        let rate = match &s.rate {
            r if r.is_unlimited() => "max".to_string(),
            crate::scenario::Rate::Constant(r) => crate::report::fmt::rate(*r),
            crate::scenario::Rate::Profile(_) => "profile".to_string(),
        };
        out.push_str(&format!(
            "{:<18} {:>3}p {:>4}c {:>3}ch {:>9} {:>6}  {}\n",
            crate::text::printable(&s.name),
            s.producers,
            s.consumers,
            s.channels,
            rate,
            crate::scenario::fmt_duration(&s.duration),
            what
        ));
    }
    out
}
