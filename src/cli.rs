//! The command line: subcommands, flags and their value parsers.

use crate::assertion::Assertion;
use crate::scenario::{
    parse_duration, parse_rate, parse_redis_config, Crash, Disconnect, KillNode, Password, Scenario, ScenarioError,
    Slow, SubscribeMode, TransportKind,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Load-test Redis Pub/Sub at a set rate; measure true latency and exactly which messages were lost.
#[derive(Debug, Parser)]
#[command(name = "eventbench", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run one scenario and write its results.
    Run(RunArgs),
    /// Run one scenario once per transport against the same Redis, side by side.
    Compare(CompareArgs),
    /// Rebuild the plots and report.html of run directories from their files; given several, also compare them.
    Report(ReportArgs),
    /// Run one share of a run that `eventbench run --workers N` coordinates (on this or another host).
    Worker(WorkerArgs),
    /// List the shipped scenario files, one line each.
    Scenarios {
        /// Directory to list (default: ./scenarios, else the one shipped with eventbench).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// How the summary is printed on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// The summary row as one JSON object.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (TOML, same keys as the flags); flags override its values.
    pub scenario: Option<PathBuf>,
    /// Redis to test, redis://[user:password@]host:port (rediss:// for TLS); without it a private redis-server is started.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// ACL user name (overrides the URL's).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Password (overrides the URL's); prefer the environment variable, which `ps` cannot show.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub password: Option<String>,
    /// CA certificates (PEM) to verify a rediss:// server with, instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Do not verify the rediss:// server's certificate (self-signed test servers only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// Gate over summary columns checked after the run, e.g. 'p99_us<2000'; exit code 3 if one fails; repeatable.
    #[arg(long = "assert", value_name = "EXPR", value_parser = parse_assertion)]
    pub assertions: Vec<Assertion>,
    /// redis-server binary for the private server.
    #[arg(long, value_name = "PATH")]
    pub redis_server: Option<PathBuf>,
    /// Name of the run (default: the scenario file's name, or the transport).
    #[arg(long)]
    pub name: Option<String>,
    /// pubsub (PUBLISH/SUBSCRIBE), sharded (SPUBLISH/SSUBSCRIBE, Redis 7) or streams (XADD/XREADGROUP/XACK).
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// Producer connections.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub producers: Option<u32>,
    /// Consumer connections; each subscribes to every channel.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub consumers: Option<u32>,
    /// Channels the producers publish to, round-robin.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub channels: Option<u32>,
    /// Total target rate in messages per second (20000, 20k, 1.5M); 0 = as fast as possible.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Payload size in bytes, header included (at least 36).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    pub payload: Option<usize>,
    /// Length of the measured phase (e.g. 10s, 1m).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Time the swarm runs before measuring starts.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Longest wait for stragglers after the producers stop.
    #[arg(long, value_parser = parse_duration)]
    pub drain: Option<Duration>,
    /// Consumer outage PCT@AT+FOR (e.g. 50%@5s+2s), AT counted from the start of measuring; repeatable.
    #[arg(long, value_parser = parse_disconnect, value_name = "PCT@AT+FOR")]
    pub disconnect: Vec<Disconnect>,
    /// Slow consumers PCT:DELAY (e.g. 25%:200us): that share of the consumers spends DELAY per message.
    #[arg(long, value_parser = parse_slow, value_name = "PCT:DELAY")]
    pub slow: Option<Slow>,
    /// Reconnect and resubscribe when Redis closes a consumer (on|off).
    #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
    pub reconnect: Option<bool>,
    /// SUBSCRIBE to each channel, or PSUBSCRIBE to one pattern matching them all.
    #[arg(long, value_enum)]
    pub subscribe: Option<SubscribeMode>,
    /// Redis setting "KEY VALUE" applied with CONFIG SET for the run (restored after on a user's Redis); repeatable.
    #[arg(long, value_parser = parse_redis_config, value_name = "KEY VALUE")]
    pub redis_config: Vec<(String, String)>,
    /// Consumers that stop for good PCT@AT (e.g. 25%@3s), without acknowledging what they hold; repeatable.
    #[arg(long, value_parser = parse_crash, value_name = "PCT@AT")]
    pub crash: Vec<Crash>,
    /// Streams: trim each stream to about N entries (XADD MAXLEN ~ N).
    #[arg(long, value_name = "N")]
    pub maxlen: Option<u64>,
    /// Streams: spread the consumers over G groups sharing the work (default: one group per consumer).
    #[arg(long, value_name = "G")]
    pub groups: Option<u32>,
    /// Streams: survivors claim a group's entries idle longer than this (XAUTOCLAIM).
    #[arg(long, value_parser = parse_duration)]
    pub claim_idle: Option<Duration>,
    /// Streams: a new group reads every stream from the beginning this far into the measured phase.
    #[arg(long, value_parser = parse_duration, value_name = "AT")]
    pub replay_at: Option<Duration>,
    /// The target must be a Redis Cluster (a cluster is detected without it too).
    #[arg(long)]
    pub cluster: bool,
    /// Start a private Redis Cluster of N masters (N ≥ 3) on loopback ports instead of one private server.
    #[arg(long, value_name = "N")]
    pub private_cluster: Option<u32>,
    /// Stop node NODE of the private cluster AT into the measured phase and restart it FOR later (e.g. 1@2s+1s).
    #[arg(long, value_parser = parse_kill_node, value_name = "NODE@AT+FOR")]
    pub kill_node: Option<KillNode>,
    /// Worker threads (0 = one for a light paced run, else one per CPU).
    #[arg(long, allow_negative_numbers = true)]
    pub threads: Option<usize>,
    /// Give up connecting after this long.
    #[arg(long, value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Directory for the results (default: results/<name>-<UTC time>); never overwritten.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Summary on stdout as a table or as one JSON object.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// No live progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub split: SplitArgs,
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
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The control Redis the coordinator printed, redis://host:port.
    #[arg(long, value_name = "URL")]
    pub control: String,
    /// The run to join, as the coordinator printed it (default: the only run waiting for workers).
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// Password of the Redis under test (and of the control Redis if its URL has none).
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub password: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Transports to run the scenario on, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pubsub,streams")]
    pub transports: Vec<TransportKind>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run directories (each as `eventbench run` wrote it).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the comparison of several runs goes (default: results/compare-<UTC time>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_disconnect(s: &str) -> Result<Disconnect, String> {
    s.parse()
}

fn parse_assertion(s: &str) -> Result<Assertion, String> {
    s.parse()
}

fn parse_crash(s: &str) -> Result<Crash, String> {
    s.parse()
}

fn parse_kill_node(s: &str) -> Result<KillNode, String> {
    s.parse()
}

fn parse_slow(s: &str) -> Result<Slow, String> {
    s.parse()
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{s}': expected on or off")),
    }
}

impl RunArgs {
    /// The scenario file (if any) with the flags laid over it.
    pub fn scenario(&self) -> Result<Scenario, ScenarioError> {
        let mut s = match &self.scenario {
            Some(path) => Scenario::from_file(path)?,
            None => Scenario::default(),
        };
        macro_rules! over {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { s.$field = v.clone(); } )* };
        }
        if self.name.is_none() && self.scenario.is_none() {
            if let Some(t) = self.transport {
                s.name = t.to_string();
            }
        }
        over!(name, producers, consumers, channels, rate, payload, duration, warmup, drain, threads, connect_timeout);
        if self.user.is_some() {
            s.user = self.user.clone();
        }
        if let Some(p) = &self.password {
            s.password = Some(Password(p.clone()));
        }
        if self.tls_ca.is_some() {
            s.tls_ca = self.tls_ca.clone();
        }
        s.tls_insecure |= self.tls_insecure;
        if !self.assertions.is_empty() {
            s.assert = self.assertions.clone();
        }
        over!(reconnect, subscribe, transport, groups, claim_idle);
        if self.maxlen.is_some() {
            s.maxlen = self.maxlen;
        }
        if self.replay_at.is_some() {
            s.replay_at = self.replay_at;
        }
        if !self.crash.is_empty() {
            s.crash = self.crash.clone();
        }
        if self.slow.is_some() {
            s.slow = self.slow;
        }
        s.cluster |= self.cluster;
        if let Some(n) = self.private_cluster {
            s.private_cluster = n;
        }
        if self.kill_node.is_some() {
            s.kill_node = self.kill_node;
        }
        s.redis_config.extend(self.redis_config.iter().cloned());
        if self.url.is_some() {
            s.url = self.url.clone();
        }
        if self.redis_server.is_some() {
            s.redis_server = self.redis_server.clone();
        }
        if !self.disconnect.is_empty() {
            s.disconnect = self.disconnect.clone();
        }
        s.validate()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!((s.rate, s.payload, s.disconnect.len()), (20_000.0, 128, 1));
    }
}
