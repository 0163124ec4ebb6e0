//! The command line: subcommands, flags and their value parsers.

use crate::scenario::{Scenario, ScenarioError, ScenarioFlags, TransportKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Load-test Redis Pub/Sub, sharded Pub/Sub and Streams at a set rate; measure true latency and exactly which messages were lost, and why.
#[derive(Debug, Parser)]
#[command(name = "eventbench", version, about, propagate_version = true, after_help = exit_status_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run one scenario and write its results.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Run one scenario once per transport (--transports) or once per server (--servers, --urls), side by side.
    #[command(after_help = COMPARE_EXAMPLES)]
    // Each run's transport comes from --transports: --transport has no say here (and is refused).
    #[command(mut_arg("transport", |a| a.hide(true)))]
    // Refused: a comparison's runs are side by side, not repeated.
    #[command(mut_arg("repeat", |a| a.hide(true)))]
    #[command(mut_arg("out", |a| a.help(
        "Directory for the comparison, one subdirectory per transport (default: results/compare-<name>-<UTC time>); never overwritten",
    )))]
    Compare(CompareArgs),
    /// Find the highest rate Redis sustains within an SLO, step by step, and what breaks above it.
    #[command(after_help = CAPACITY_EXAMPLES)]
    #[command(mut_arg("out", |a| a.help(
        "Directory for the search, one subdirectory per step (default: results/capacity-<name>-<UTC time>); never overwritten",
    )))]
    Capacity(CapacityArgs),
    /// Run a scenario once per value of one or two numeric keys (--vary consumers=1,10,100), or a capacity search per value (--capacity); one row per point.
    #[command(after_help = SWEEP_EXAMPLES)]
    // A sweep varies one thing per axis: its points run one transport, once each.
    #[command(mut_arg("transports", |a| a.hide(true)))]
    #[command(mut_arg("repeat", |a| a.hide(true)))]
    // The search's flags mean something with --capacity only.
    #[command(mut_arg("slo", |a| a.requires("capacity")))]
    #[command(mut_arg("step", |a| a.requires("capacity")))]
    #[command(mut_arg("step_warmup", |a| a.requires("capacity")))]
    #[command(mut_arg("precision", |a| a.requires("capacity")))]
    #[command(mut_arg("confirm", |a| a.requires("capacity")))]
    #[command(mut_arg("tries", |a| a.requires("capacity")))]
    #[command(mut_arg("no_ceiling", |a| a.requires("capacity")))]
    #[command(mut_arg("budget", |a| a.requires("capacity")))]
    #[command(mut_arg("min_rate", |a| a.requires("capacity")))]
    #[command(mut_arg("max_rate", |a| a.requires("capacity")))]
    #[command(mut_arg("out", |a| a.help(
        "Directory for the sweep, one subdirectory per point (default: results/sweep-<name>-<UTC time>); never overwritten",
    )))]
    Sweep(SweepArgs),
    /// Rebuild the plots and report.html of run directories from their files; given several, also compare them.
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),
    /// Run one share of a run that `eventbench run --workers N` coordinates (on this or another host).
    Worker(WorkerArgs),
    /// List the shipped scenarios (built into eventbench; `eventbench run NAME` runs one), one line each.
    Scenarios {
        /// List the scenario files of this directory instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script, e.g. `eventbench completions bash > /etc/bash_completion.d/eventbench`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `eventbench man | man -l -`; with a subcommand, that one's page.
    Man {
        /// The subcommand whose page to print (run, compare, ...).
        command: Option<String>,
    },
}

const RUN_EXAMPLES: &str = "\
Examples:
  eventbench run                                  1,000 msg/s on Pub/Sub for 10 s, private redis-server
  eventbench run baseline                         a shipped scenario by name (eventbench scenarios lists them)
  eventbench run --rate 20k --consumers 4 --disconnect 50%@5s+2s
  eventbench run fanout --transport streams --url redis://10.0.0.5:6379
  eventbench run --workers 4 --assert 'p99_us<2000' --assert 'lost==0'";

const COMPARE_EXAMPLES: &str = "\
Examples:
  eventbench compare disconnect-loss              Pub/Sub, then Streams, against one private redis-server
  eventbench compare --transports pubsub,sharded,streams --private-cluster 3
  eventbench compare disconnect-loss --servers redis-server,/opt/valkey/bin/valkey-server";

const CAPACITY_EXAMPLES: &str = "\
Examples:
  eventbench capacity --slo 'p99_us<1000'         the highest Pub/Sub rate with p99 under 1 ms
  eventbench capacity                             no --slo: the highest rate that loses nothing and keeps up
  eventbench capacity fanout --transports pubsub,streams --budget 5m
  eventbench capacity --slo 'p99_us<2000' --repeat 3    three searches, and how far they agree";

const SWEEP_EXAMPLES: &str = "\
Examples:
  eventbench sweep fanout-sweep                   the shipped fan-out sweep: consumers 1 to 1,000 at 2,000 msg/s
  eventbench sweep --vary consumers=1,10,100,1000 --rate 2k
  eventbench sweep --vary consumers=1,10 --vary channels=1,100 --transport streams
  eventbench sweep --vary consumers=1,10,100 --capacity --slo 'p99_us<2000'   a capacity search per point";

const REPORT_EXAMPLES: &str = "\
Examples:
  eventbench report results/baseline-20250101T120000Z
  eventbench report results/a results/b --out results/a-vs-b";

/// The scenario argument: any name or path (read, and refused if neither,
/// once the command runs), offering the shipped scenarios' names to shell
/// completion (`eventbench completions`).
#[derive(Debug, Clone, Copy)]
pub struct ScenarioArg;

impl clap::builder::TypedValueParser for ScenarioArg {
    type Value = PathBuf;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<PathBuf, clap::Error> {
        clap::builder::TypedValueParser::parse_ref(&clap::builder::PathBufValueParser::new(), cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let names = crate::scenario::shipped::SHIPPED.iter().map(|(name, _)| clap::builder::PossibleValue::new(*name));
        Some(Box::new(names))
    }
}

/// What each exit code means: the end of `--help` and the man page's EXIT
/// STATUS section (the manual's exit-code page says more).
pub const EXIT_STATUS: &[(u8, &str)] = &[
    (0, "the run completed and every --assert held; capacity: a rate met the SLO"),
    (1, "a fault mid-run (Redis died, a worker failed): the results measured until then are written, status aborted"),
    (2, "bad input or an unusable target (a flag, value, scenario, URL, password): one line on stderr, nothing runs"),
    (3, "an --assert failed (the results are written first); capacity: no rate met the SLO"),
    (4, "capacity: inconclusive (the harness or the machine, not the system, may be what failed)"),
    (130, "interrupted (Ctrl-C, SIGTERM, SIGHUP): the results so far are written, status interrupted"),
];

/// [`EXIT_STATUS`] as the end of `--help` shows it.
pub fn exit_status_help() -> String {
    let mut text = String::from("Exit status:\n");
    for (code, meaning) in EXIT_STATUS {
        text.push_str(&format!("  {code:<5}{meaning}\n"));
    }
    text.push_str("\nThe manual: docs/src/SUMMARY.md in the repository (scripts/docs.sh builds it as a book).");
    text
}

/// How the summary is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// The summary row as one JSON object.
    Json,
    /// One JSON object per second while the run goes on, then the summary object.
    Jsonl,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A shipped scenario's name (baseline, fanout, disconnect-loss, ...: `eventbench scenarios` lists them; they work from any directory) or a scenario file of your own (TOML, same keys as the flags); flags override its values.
    #[arg(value_name = "SCENARIO", value_parser = ScenarioArg, hide_possible_values = true)]
    pub scenario: Option<PathBuf>,
    /// Directory for the results (default: results/<name>-<UTC time>); never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Summary on stdout as a table, as one JSON object, or as JSON lines (one a second, then the summary).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// No live progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run it N times (each in its own directory): the median, min and max of each headline figure and their spread, in repeat.csv and repeat.html; a spread over 25% is called noisy
    #[arg(long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub export: ExportArgs,
    /// Every field of the scenario as a flag (see [`Scenario`]).
    #[command(flatten)]
    pub flags: ScenarioFlags,
}

/// Running one scenario in several processes.
#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    /// Split the swarm over N worker processes (this process coordinates and merges).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Of the workers, how many this process starts itself (default: all; the others join with `eventbench worker`).
    #[arg(long, value_name = "K", requires = "workers")]
    pub spawn: Option<u32>,
    /// Redis the processes meet on, redis://host:port (default: the target).
    #[arg(long, value_name = "URL", requires = "workers")]
    pub control: Option<String>,
    /// Longest wait for the workers to join [default: 30s when this process starts them all, else 10m]
    #[arg(long, value_name = "DURATION", value_parser = parse_join_timeout, requires = "workers")]
    pub join_timeout: Option<std::time::Duration>,
}

/// The longest `--metrics-linger`: a scraper polls every few seconds, and a run must end.
pub const MAX_LINGER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The longest `--join-timeout`.
pub const MAX_JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A duration between `0` (excluded when `positive`) and `max`, named `what` in the refusal.
fn bounded_duration(s: &str, max: std::time::Duration, positive: bool) -> Result<std::time::Duration, String> {
    let d = crate::scenario::parse_duration(s)?;
    if d > max {
        return Err(format!(
            "{} is longer than the longest allowed, {}",
            crate::text::quote(s),
            crate::scenario::fmt_duration(&max)
        ));
    }
    if positive && d.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(d)
}

fn parse_linger(s: &str) -> Result<std::time::Duration, String> {
    bounded_duration(s, MAX_LINGER, false)
}

fn parse_join_timeout(s: &str) -> Result<std::time::Duration, String> {
    bounded_duration(s, MAX_JOIN_TIMEOUT, true)
}

/// Live export while a run goes on.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Serve Prometheus metrics on http://ADDR/metrics from the start of the run to its end (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", env = "EVENTBENCH_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// After the end, keep serving the final values this long, so that a scraper catches them.
    #[arg(long, value_name = "DURATION", value_parser = parse_linger, default_value = "0s", requires = "metrics_listen")]
    pub metrics_linger: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The control Redis the coordinator printed, redis://host:port (a host name, e.g. a Kubernetes Service, works)
    #[arg(long, env = "EVENTBENCH_CONTROL", value_name = "URL")]
    pub control: String,
    /// The run to join, as the coordinator printed it (default: the only run waiting for workers).
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// The share to take, 0 to N-1 (an Indexed Job's JOB_COMPLETION_INDEX) [default: the next free one, in order of joining]
    #[arg(long, env = "JOB_COMPLETION_INDEX", value_name = "I")]
    pub index: Option<u32>,
    /// The number of workers this one expects the run to have; a run with another number is refused
    #[arg(long, env = "EVENTBENCH_WORKERS", value_name = "N")]
    pub workers: Option<u32>,
    /// How long to wait for a run to join, when none is planned yet (a worker started before its coordinator)
    #[arg(long, env = "EVENTBENCH_PLAN_WAIT", value_name = "DURATION", value_parser = parse_join_timeout, default_value = "3s")]
    pub plan_wait: std::time::Duration,
    /// Password of the Redis under test (and of the control Redis if its URL has none).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// Password of the control Redis, when it differs from the target's (a coordinator hands it to the workers it starts)
    #[arg(long, env = "EVENTBENCH_CONTROL_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub control_password: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Transports to run the scenario on, in order [default: pubsub,streams; with --servers or --urls, the scenario's]
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transports: Vec<TransportKind>,
    /// Server binaries to run the scenario on, in order, each as a private server (e.g. redis-server,/opt/valkey/valkey-server)
    #[arg(long, value_delimiter = ',', value_name = "PATH,PATH", conflicts_with = "urls")]
    pub servers: Vec<PathBuf>,
    /// Servers you run to run the scenario on, in order (redis://host:port,redis://host:port)
    #[arg(long, value_delimiter = ',', value_name = "URL,URL")]
    pub urls: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct CapacityArgs {
    /// SLO gate over summary columns, as --assert (e.g. 'p99_us<1000'); repeatable. Always part of it: lost==0 and sustained==1, which are the whole SLO without --slo (the highest rate that loses nothing and keeps up)
    #[arg(long, value_name = "EXPR")]
    pub slo: Vec<crate::assertion::Assertion>,
    /// Transports to search, one after the other against the same Redis (default: the scenario's)
    #[arg(long, value_enum, value_delimiter = ',')]
    pub transports: Vec<TransportKind>,
    /// Measured phase of each step (instead of --duration)
    #[arg(long, value_parser = crate::scenario::parse_duration, default_value = "3s")]
    pub step: std::time::Duration,
    /// Warmup before each step's measured phase (instead of --warmup)
    #[arg(long, value_parser = crate::scenario::parse_duration, default_value = "1s")]
    pub step_warmup: std::time::Duration,
    /// The search ends when the lowest failure is within this much above the best pass
    #[arg(long, value_name = "PCT", default_value = "5%")]
    pub precision: crate::scenario::Percent,
    /// Times the best rate must pass, and the lowest failure fail, again before the maximum is reported
    #[arg(long, value_name = "N", default_value = "2")]
    pub confirm: u32,
    /// Tries of a rate whose first step did not pass; the rate's verdict is the majority's
    #[arg(long, value_name = "N", default_value = "3", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub tries: u32,
    /// Skip the first step at --rate 0 (as fast as it goes), whose delivered rate caps the climb by decades
    #[arg(long)]
    pub no_ceiling: bool,
    /// Longest time the whole search may take; a step starts only if it can end within it
    #[arg(long, value_parser = crate::scenario::parse_duration, default_value = "10m")]
    pub budget: std::time::Duration,
    /// Lowest rate tried; a failure there ends the search (exit code 3) [default: 1% of --rate, at least 1]
    #[arg(long, value_parser = crate::scenario::parse_rate, value_name = "RATE")]
    pub min_rate: Option<f64>,
    /// Highest rate tried [default: no limit]
    #[arg(long, value_parser = crate::scenario::parse_rate, value_name = "RATE")]
    pub max_rate: Option<f64>,
    /// The run's flags; --rate is the first step's rate
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// KEY=V1,V2,...: a numeric scenario key and its values, one point each (e.g. consumers=1,10,100,1000); once or twice (two keys: every pair). A scenario file's `vary = ["consumers=1,10"]` holds the same
    #[arg(long, value_name = "KEY=V1,V2,..")]
    pub vary: Vec<crate::scenario::Vary>,
    /// A capacity search per point (with the capacity flags: --slo, --step, --budget, ...) instead of one run at --rate
    #[arg(long)]
    pub capacity: bool,
    /// The search's flags (used with --capacity) and the run's
    #[command(flatten)]
    pub search: CapacityArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories (each as `eventbench run` wrote it).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the comparison of several runs goes (default: results/compare-<UTC time>); never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl RunArgs {
    /// The scenario file (if any) with the flags laid over it, validated.
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        self.flags.scenario(self.scenario.as_deref())
    }
}

/// The usage line of a subcommand (or of eventbench), without clap's `Usage: `.
pub fn usage_of(subcommand: Option<&str>) -> String {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    cli.build();
    let usage = match subcommand.and_then(|name| cli.find_subcommand_mut(name)) {
        Some(sub) => sub.render_usage(),
        None => cli.render_usage(),
    };
    usage.to_string().trim().trim_start_matches("Usage: ").to_string()
}

/// A flag given a negative value (`--drain -1s`, `--groups -1`), which clap
/// reads as a flag of its own: the one line that names the flag and the value.
pub fn negative_value(argv: &[String]) -> Option<String> {
    use clap::CommandFactory;
    let cli = Cli::command();
    let sub = argv.first().and_then(|name| cli.find_subcommand(name.as_str()))?;
    argv.windows(2).find_map(|pair| {
        let (flag, value) = (&pair[0], &pair[1]);
        let negative = value.strip_prefix('-').is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit() || c == '.'));
        let long = flag.strip_prefix("--").filter(|f| !f.contains('='))?;
        let arg = sub.get_arguments().find(|a| a.get_long() == Some(long))?;
        (negative && arg.get_action().takes_values()).then(|| {
            format!(
                "error: invalid value {} for '--{long}': negative values are not accepted",
                crate::text::quote(value)
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Rate;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "eventbench",
            "run",
            "--rate",
            "20k",
            "--disconnect",
            "50%@5s+2s",
            "--payload",
            "128",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else { panic!("run") };
        let s = args.scenario().unwrap();
        assert_eq!(
            (s.rate, s.payload, s.disconnect.len()),
            (Rate::Constant(20_000.0), crate::scenario::Payload::Fixed(128), 1)
        );
    }

    #[test]
    fn run_and_compare_take_the_scenario_flags_and_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("base.toml");
        std::fs::write(&file, "rate = 500\nconsumers = 3\ndisconnect = \"50%@1s+1s\"\n[redis-config]\nhz = \"20\"\n")
            .unwrap();
        let cli = Cli::try_parse_from([
            "eventbench",
            "compare",
            file.to_str().unwrap(),
            "--transports",
            "pubsub,sharded",
            "--rate",
            "5k",
            "--redis-config",
            "timeout 5",
            "--out",
            "somewhere",
            "--format",
            "json",
            "--quiet",
        ])
        .unwrap();
        let Command::Compare(args) = cli.command else { panic!("compare") };
        assert_eq!(args.transports.iter().map(ToString::to_string).collect::<Vec<_>>(), ["pubsub", "sharded"]);
        assert_eq!(
            (args.run.out.clone(), args.run.format, args.run.quiet),
            (Some("somewhere".into()), Format::Json, true)
        );
        let s = args.run.scenario().unwrap();
        assert_eq!((s.name.as_str(), s.rate, s.consumers, s.disconnect.len()), ("base", Rate::Constant(5000.0), 3, 1));
        assert_eq!(s.redis_config.len(), 2);

        let cli =
            Cli::try_parse_from(["eventbench", "run", "--workers", "2", "--spawn", "1", "--transport", "streams"])
                .unwrap();
        let Command::Run(args) = cli.command else { panic!("run") };
        assert_eq!((args.split.workers, args.split.spawn), (Some(2), Some(1)));
        assert!(args.flags.gave("transport") && !args.flags.gave("rate"));
        assert_eq!(args.scenario().unwrap().name, "streams");
    }

    #[test]
    fn every_example_in_help_parses() {
        let examples = [RUN_EXAMPLES, COMPARE_EXAMPLES, CAPACITY_EXAMPLES, SWEEP_EXAMPLES, REPORT_EXAMPLES];
        let lines: Vec<&str> = examples.iter().flat_map(|e| e.lines().skip(1)).collect();
        assert!(lines.len() >= 10, "{lines:?}");
        for line in lines {
            // The command, then (after two spaces or more) what it does.
            let command = line.trim().split("  ").next().unwrap();
            let words: Vec<String> = command.split_whitespace().map(|w| w.trim_matches('\'').to_string()).collect();
            assert_eq!(words[0], "eventbench", "{line}");
            let cli = Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{line}: {e}"));
            if let Command::Run(args) = cli.command {
                args.scenario().unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
    }

    #[test]
    fn compare_help_shows_transports_only_and_its_own_out() {
        let mut cmd = Cli::command();
        let help = cmd.find_subcommand_mut("compare").unwrap().render_long_help().to_string();
        assert!(help.contains("--transports") && !help.contains("--transport <"), "{help}");
        assert!(help.contains("results/compare-<name>-<UTC time>") && help.contains("Examples:"), "{help}");
    }

    #[test]
    fn run_compare_and_capacity_take_the_live_export_flags() {
        for command in ["run", "compare", "capacity"] {
            let cli = Cli::try_parse_from([
                "eventbench",
                command,
                "--format",
                "jsonl",
                "--metrics-listen",
                "127.0.0.1:9464",
                "--metrics-linger",
                "15s",
            ])
            .unwrap();
            let run = match cli.command {
                Command::Run(a) => a,
                Command::Compare(a) => a.run,
                Command::Capacity(a) => a.run,
                _ => panic!("{command}"),
            };
            assert_eq!(run.format, Format::Jsonl);
            assert_eq!(run.export.metrics_listen.as_deref(), Some("127.0.0.1:9464"));
            assert_eq!(run.export.metrics_linger, std::time::Duration::from_secs(15));
        }
        // Lingering with nothing to serve is refused.
        assert!(Cli::try_parse_from(["eventbench", "run", "--metrics-linger", "5s"]).is_err());
    }

    #[test]
    fn run_help_shows_every_flag_with_its_default() {
        let mut cmd = Cli::command();
        let help = cmd.find_subcommand_mut("run").unwrap().render_long_help().to_string();
        for shown in ["--out <DIR>", "--workers <N>", "--rate <RATE>", "[default: 1000]", "--duration <DURATION>"] {
            assert!(help.contains(shown), "{shown} missing from\n{help}");
        }
        assert!(help.contains("Run one scenario and write its results"), "{help}");
    }
}
