//! The typed workload: what a run does, from a TOML file and command-line flags.
//!
//! A scenario file uses the same keys as the flags (`rate = 20000`,
//! `duration = "10s"`, `disconnect = ["50%@5s+2s"]`); flags override the file.
//! [`Scenario::validate`] checks everything before any connection is opened.
//!
//! Each option is declared once, as a field of [`Scenario`]: serde makes it a
//! file key, clap a flag with its help and default; [`ScenarioFlags`] (flags.rs)
//! lays the given flags over a file; forms.rs holds the values' text forms.

mod flags;
mod forms;
pub mod pacing;
pub mod payload;
mod rate;
pub mod shipped;
pub mod skew;
mod vary;

pub use crate::chaos::forms::{Crash, Disconnect, KillNode, Percent, Slow};
pub(crate) use crate::clock::{fmt_duration, parse_duration};
pub use flags::ScenarioFlags;
pub use forms::{
    is_secret_config_key, parse_on_off, parse_rate, parse_redis_config, refused_config_key, shown_config_value,
    Checkpoint, SubscribeMode, TransportKind,
};
pub use pacing::PacingWindow;
pub use payload::{Payload, PayloadDraw};
pub use rate::{Rate, Stage};
pub use skew::{ChannelSkew, Deck};
pub use vary::{fmt_value, Vary};

use clap::{ArgAction, Args, FromArgMatches};
use forms::{duration_str, one_or_many, opt_duration_str, redis_config_entry};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;
use thiserror::Error;

/// A problem with the scenario: a bad value, or a file that cannot be used.
#[derive(Debug, Error)]
pub enum ScenarioError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    // `cause`, not `source`: the message already says it, and the error chain
    // printed at the edge would say it twice.
    #[error("cannot read scenario file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("scenario file {path}, line {line}, column {column}: {message}")]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    /// A value of a key that only the file or the flags' combination can tell is wrong.
    #[error("{key}: {message}")]
    Key { key: String, message: String },
    #[error("no scenario file {path}, and no shipped scenario of that name (shipped: {shipped}; `eventbench scenarios` lists them)")]
    Missing { path: PathBuf, shipped: String },
    #[error("no scenario file {path}; {name} is a shipped scenario, built into eventbench: give its name (`eventbench run {name}`), which works from any directory")]
    ShippedByName { path: PathBuf, name: String },
}

/// The fastest total rate a run may ask for, messages per second: more than
/// one process (or a few) could write to Redis, and short of where the
/// schedule's arithmetic loses its precision.
pub const MAX_RATE: f64 = 100_000_000.0;
/// The longest measured phase (and warmup, drain, timeout): 30 days. Memory
/// grows with the seconds a run has measured, not with what it declares.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The shortest period between checkpoints (they cut the run at whole seconds).
pub const MIN_CHECKPOINT: Duration = Duration::from_secs(1);
/// `--checkpoint auto`: runs measuring this long or longer write checkpoints...
pub const AUTO_CHECKPOINT_FROM: Duration = Duration::from_secs(600);
/// ... this often.
pub const AUTO_CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// The longest time a slow consumer may spend on one message.
pub const MAX_SLOW_DELAY: Duration = Duration::from_secs(60);
/// Producer connections a run may open.
pub const MAX_PRODUCERS: u32 = 10_000;
/// Consumer connections a run may open (the open-file limit may allow fewer).
pub const MAX_CONSUMERS: u32 = 100_000;
/// Channels (or streams) a run may use.
pub const MAX_CHANNELS: u32 = 100_000;
/// Producers × channels: the message sequences each consumer keeps a ledger of.
pub const MAX_SEQUENCES: u64 = 1_000_000;
/// Consumers × producers × channels: every ledger of a run (32 bytes each at least).
pub const MAX_LEDGERS: u64 = 50_000_000;

/// The largest `--read-count`: a read's reply is held whole in memory.
pub const MAX_READ_COUNT: u32 = 100_000;

/// The most a scenario file may hold: a file, not a data set (nor a device or a FIFO).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The longest run name, in bytes: it names a directory, with a time stamp after it.
pub const MAX_NAME: usize = 100;
/// First characters of a CSV cell that a spreadsheet takes for a formula.
pub const FORMULA_STARTS: [char; 4] = ['=', '+', '-', '@'];
/// Worker threads a run may ask for.
pub const MAX_THREADS: usize = 1024;

fn invalid(key: &'static str, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid { key, message: message.into() }
}

/// The whole workload of one run, declared once. Each field is a key of a
/// scenario file (its name in kebab-case) and a flag of `run` and `compare`
/// (`--kebab-case`); its doc comment is the flag's help, and its
/// `default_value` the default of both, shown in `--help`.
///
/// A new option is a field here (`#[arg(long, default_value = ..)]`, no
/// default for an `Option`, a `Vec` or a `bool` switch) and its checks in
/// [`Scenario::validate`]; [`ScenarioFlags`] lays the flags over a file without
/// knowing the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
#[command(next_help_heading = "Scenario (each flag is also a key of a scenario file; flags override the file)")]
pub struct Scenario {
    /// Names the run, its directory and its row in reports [default: the scenario file's name, else the transport]
    #[arg(long, default_value = "pubsub", hide_default_value = true)]
    pub name: String,
    /// What the scenario shows, for people reading it
    #[arg(long, value_name = "TEXT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which Redis mechanism carries the messages
    #[arg(long, value_enum, default_value_t)]
    pub transport: TransportKind,
    /// Redis to test, redis://[user:password@]host:port (rediss:// for TLS); without it a private redis-server is started
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// redis-server binary for the private server (default: the one on PATH)
    #[arg(long, value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_server: Option<PathBuf>,
    /// Producer connections; they publish round-robin over the channels
    #[arg(long, value_name = "N", default_value = "1", allow_negative_numbers = true)]
    pub producers: u32,
    /// Consumer connections; each subscribes to every channel
    #[arg(long, value_name = "N", default_value = "1", allow_negative_numbers = true)]
    pub consumers: u32,
    /// Channels the producers publish to, round-robin
    #[arg(long, value_name = "N", default_value = "1", allow_negative_numbers = true)]
    pub channels: u32,
    /// Total target rate in messages per second over all producers (20000, 20k, 1.5M; 0 = as fast as
    /// possible), or a profile of stages: FROM..TO/FOR ramps, RATE/FOR holds (1k..20k/30s,20k/1m)
    #[arg(long, value_parser = rate::parse_rate_or_profile, default_value = "1000", allow_negative_numbers = true)]
    pub rate: Rate,
    /// Payload size in bytes, header included (at least 36): BYTES (64, 1k), a range LO..HI (uniform), weighted
    /// sizes SIZE:PCT%,... (64:80%,1k:15%,64k:5%), sizes:FILE (a size per line) or samples:PATH (real payloads:
    /// a file's lines, or a directory's files); drawn with --seed
    #[arg(long, value_name = "SIZES", default_value = "64", allow_negative_numbers = true)]
    pub payload: Payload,
    /// Seeds every draw of a run (payload sizes, a skewed deck's phases): the same seed repeats a run's draws exactly
    #[arg(long, value_name = "N", default_value = "1")]
    pub seed: u64,
    /// How the producers spread their messages over the channels: uniform (round-robin), zipf:S (channel k gets
    /// a share ∝ 1/(k+1)^S), hot:P% (channel 0 gets P%, the others share the rest)
    #[arg(long, value_name = "uniform|zipf:S|hot:P%", default_value = "uniform")]
    pub channel_skew: ChannelSkew,
    /// Length of the measured phase (e.g. 10s, 1m); a rate profile sets it (the sum of its stages)
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    #[serde(with = "duration_str")]
    pub duration: Duration,
    /// Time the swarm runs before measuring starts
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    #[serde(with = "duration_str")]
    pub warmup: Duration,
    /// Longest wait for stragglers after the producers stop
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    #[serde(with = "duration_str")]
    pub drain: Duration,
    /// Consumer outage PCT@AT+FOR (e.g. 50%@5s+2s), AT counted from the start of measuring; repeatable
    #[arg(long, value_name = "PCT@AT+FOR")]
    #[serde(deserialize_with = "one_or_many")]
    pub disconnect: Vec<Disconnect>,
    /// How long a producer may hold what falls due before writing it in one write: auto (bounds the
    /// wake-ups a second, within 5% of the tightest latency gate of --assert/--slo; 20us without one), or a
    /// duration (0 = a wake-up per message). The wait counts in each message's latency
    #[arg(long, value_name = "auto|DURATION", default_value = "auto")]
    pub pacing_window: PacingWindow,
    /// Worker threads; 0 = one for a light paced run (at most 50,000 sends and deliveries a second, at most 64 deliveries per message), else one per CPU
    #[arg(long, value_name = "N", default_value = "0", allow_negative_numbers = true)]
    pub threads: usize,
    /// Write the results so far every D while the run goes on (status incomplete; the final result replaces them), e.g. 1m; off; auto = every minute for a measured phase of 10m or more
    #[arg(long, value_name = "D|off", default_value = "auto", allow_hyphen_values = true)]
    pub checkpoint: Checkpoint,
    /// Give up connecting after this long
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Slow consumers PCT:DELAY (e.g. 25%:200us): that share of the consumers (the last ones) spends DELAY per message
    #[arg(long, value_name = "PCT:DELAY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<Slow>,
    /// Reconnect and resubscribe (with backoff) when Redis closes a consumer
    #[arg(long, value_name = "on|off", value_parser = parse_on_off, default_value = "on", action = ArgAction::Set)]
    pub reconnect: bool,
    /// SUBSCRIBE to each channel, or PSUBSCRIBE to one pattern matching them all
    #[arg(long, value_enum, default_value_t)]
    pub subscribe: SubscribeMode,
    /// ACL user name (overrides the URL's)
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password (overrides the URL's); prefer the environment variable, which `ps` cannot show; never read from or written to a file
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    #[serde(skip)]
    pub password: Option<Password>,
    /// CA certificates (PEM) to verify a rediss:// server with, instead of the system's
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Do not verify the rediss:// server's certificate (self-signed test servers only)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure: bool,
    /// Gate over summary columns checked after the run, e.g. 'p99_us<2000'; exit code 3 if one fails; repeatable
    #[arg(long, value_name = "EXPR")]
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub assert: Vec<crate::assertion::Assertion>,
    /// Redis setting "KEY VALUE" applied with CONFIG SET for the run (restored after on a user's Redis); repeatable, adds to the file's
    #[arg(long, value_name = "KEY VALUE", value_parser = redis_config_entry, action = ArgAction::Append)]
    #[arg(default_value = "", hide_default_value = true)] // no setting: clap wants a default for a map
    pub redis_config: BTreeMap<String, String>,
    /// Streams: trim each stream to about N entries (XADD MAXLEN ~ N)
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<u64>,
    /// Streams: entries each XREADGROUP (and XAUTOCLAIM) asks for, its COUNT [default: 256]
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_count: Option<u32>,
    /// Streams: that share of the consumers (the first ones) stops reading PCT@AT+FOR (e.g. 50%@2s+3s) and stays connected, so a backlog builds and then drains; repeatable
    #[arg(long, value_name = "PCT@AT+FOR")]
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub pause: Vec<Disconnect>,
    /// Streams: spread the consumers over G groups sharing the work; 0 = one group per consumer (fan-out, as Pub/Sub)
    #[arg(long, value_name = "G", default_value = "0")]
    pub groups: u32,
    /// Consumers that stop for good PCT@AT (e.g. 25%@3s), without acknowledging what they hold; repeatable
    #[arg(long, value_name = "PCT@AT")]
    #[serde(deserialize_with = "one_or_many")]
    pub crash: Vec<Crash>,
    /// Streams: survivors claim a group's entries idle longer than this (XAUTOCLAIM)
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    #[serde(with = "duration_str")]
    pub claim_idle: Duration,
    /// Streams: a new group reads every stream from the beginning this far into the measured phase
    #[arg(long, value_parser = parse_duration, value_name = "AT")]
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_str", default)]
    pub replay_at: Option<Duration>,
    /// The target must be a Redis Cluster (a cluster is detected without it too; with it a single node is an error)
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
    /// Start a private Redis Cluster of N masters (N ≥ 3) on loopback ports instead of one private server; 0 = none
    #[arg(long, value_name = "N", default_value = "0")]
    #[serde(skip_serializing_if = "is_zero")]
    pub private_cluster: u32,
    /// Stop node NODE of the private cluster AT into the measured phase and restart it FOR later (e.g. 1@2s+1s)
    #[arg(long, value_name = "NODE@AT+FOR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_node: Option<KillNode>,
    /// Sample the server once a second on its own connection (INFO, CLIENT LIST, XLEN, XINFO) into server.csv
    #[arg(long, value_name = "on|off", value_parser = parse_on_off, default_value = "on", action = ArgAction::Set)]
    pub server_telemetry: bool,
    /// `eventbench sweep`'s axes, KEY=V1,V2,... (a file key only: `eventbench sweep` reads it, its
    /// --vary replaces it; `run` runs the scenario as written, without it)
    #[arg(skip)]
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "one_or_many")]
    pub vary: Vec<Vary>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A password: `Debug` shows `***`, so it cannot slip into a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Password {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Password(s.to_string()))
    }
}

/// What a run does unless told otherwise: the flags' defaults, as `eventbench
/// run` without arguments (and without the environment) has them.
impl Default for Scenario {
    fn default() -> Self {
        static DEFAULT: OnceLock<Scenario> = OnceLock::new();
        let default = DEFAULT.get_or_init(|| {
            // REDIS_URL and REDIS_PASSWORD belong to a command line, not to the defaults.
            let cmd = Scenario::augment_args(clap::Command::new("scenario")).mut_args(|a| a.env(None::<&str>));
            let matches = cmd.try_get_matches_from(["scenario"]).and_then(|m| Scenario::from_arg_matches(&m));
            matches.expect("every scenario flag has a default or may be left out")
        });
        default.clone()
    }
}

/// The first key of `table` whose value a scenario refuses on its own, if any.
fn refused_key(table: &toml::Table) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let one: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
        one.try_into::<Scenario>().is_err().then(|| crate::text::shorten(key))
    })
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Scenario {
    /// The scenario a command line names: a file, or else a shipped scenario
    /// by name (`baseline`), which works from any directory.
    pub fn load(arg: &Path) -> Result<Scenario, ScenarioError> {
        if arg.exists() {
            return Scenario::from_file(arg);
        }
        match arg.to_str().and_then(shipped::find) {
            Some(text) => {
                let stem = arg.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                Scenario::from_text(arg, text, &stem)
            }
            None if arg.components().count() == 1 => {
                Err(ScenarioError::Missing { path: arg.into(), shipped: shipped::names() })
            }
            // `scenarios/fanout.toml` outside the repository: the shipped one is there by name.
            None => {
                let stem = arg.file_stem().and_then(|s| s.to_str()).filter(|s| shipped::find(s).is_some());
                match stem {
                    Some(name) if arg.extension().is_some_and(|e| e == "toml") => {
                        Err(ScenarioError::ShippedByName { path: arg.into(), name: name.to_string() })
                    }
                    _ => Scenario::from_file(arg),
                }
            }
        }
    }

    /// Reads a scenario file; its name defaults to the file's stem.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = crate::sys::read_regular(path, MAX_FILE_BYTES)
            .map_err(|cause| ScenarioError::Read { path: path.into(), cause })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Scenario::from_text(path, &text, &stem)
    }

    /// Parses a scenario's TOML read from `path`; its name defaults to `stem`.
    fn from_text(path: &Path, text: &str, stem: &str) -> Result<Scenario, ScenarioError> {
        let mut s = Scenario::from_toml(text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |r| line_col(text, r.start));
            let mut message = e.message().trim().replace('\n', " ");
            // serde says what type it wanted, not for which key: the key is named here.
            if let Some(key) = toml::from_str::<toml::Table>(text).ok().and_then(|t| refused_key(&t)) {
                if !message.starts_with(&format!("{key}:")) {
                    message = format!("{key}: {message}");
                }
            }
            ScenarioError::Parse { path: path.into(), line, column, message }
        })?;
        if let Some(url) = s.url.as_deref().and_then(|u| crate::connect::parse_url(u).ok()) {
            if url.password.as_deref().is_some_and(|p| p != crate::connect::MASK) {
                let line = text.lines().position(|l| l.trim_start().starts_with("url")).map_or(1, |i| i + 1);
                return Err(ScenarioError::Parse {
                    path: path.into(),
                    line,
                    column: 1,
                    message: "url: holds a password; a scenario file never does (files are shared and kept): \
                              write redis://USER:***@HOST:PORT and set REDIS_PASSWORD, or pass --password"
                        .into(),
                });
            }
        }
        let has_name = text.lines().any(|l| l.trim_start().starts_with("name"));
        if !has_name && !stem.is_empty() {
            s.name = stem.to_string();
        }
        Ok(s)
    }

    /// A scenario from a table of its keys; a value that does not fit is
    /// refused with its key named.
    pub(crate) fn from_table(table: toml::Table) -> Result<Scenario, ScenarioError> {
        let key = refused_key(&table);
        table.try_into().map_err(|e: toml::de::Error| ScenarioError::Key {
            key: key.unwrap_or_else(|| "scenario".into()),
            message: e.message().trim().replace('\n', " "),
        })
    }

    /// Parses scenario TOML. A rate profile sets the measured phase: a
    /// `duration` beside it must say the same (as `to_toml` writes it).
    pub fn from_toml(text: &str) -> Result<Scenario, toml::de::Error> {
        let s: Scenario = toml::from_str(text)?;
        let table: toml::Table = toml::from_str(text)?;
        s.with_profile_length(table.contains_key("duration")).map_err(<toml::de::Error as serde::de::Error>::custom)
    }

    /// With a rate profile, the measured phase is the sum of its stages; a
    /// `duration` given beside it (in the same file, or on the same command
    /// line) that says otherwise is refused rather than silently replaced.
    pub(crate) fn with_profile_length(self, duration_given: bool) -> Result<Scenario, ScenarioError> {
        let Some(length) = self.rate.length() else { return Ok(self) };
        if duration_given {
            self.check_profile_length()?;
        }
        Ok(Scenario { duration: length, ..self })
    }

    /// With a rate profile, the duration must be the sum of its stages.
    fn check_profile_length(&self) -> Result<(), ScenarioError> {
        match self.rate.length() {
            Some(length) if length != self.duration => Err(invalid(
                "duration",
                format!(
                    "{} beside a rate profile of {}: the profile's stages set the measured phase; leave duration out",
                    fmt_duration(&self.duration),
                    fmt_duration(&length)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The effective scenario as TOML, credentials masked, ready to be run again.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.url = shown.url.as_deref().map(crate::connect::redact_url);
        for (key, value) in shown.redis_config.iter_mut() {
            if is_secret_config_key(key) {
                *value = crate::connect::MASK.to_string();
            }
        }
        toml::to_string(&shown).expect("a scenario always serializes")
    }

    /// How often this run writes a checkpoint, if at all (`auto` resolved).
    pub fn checkpoint_every(&self) -> Option<Duration> {
        match self.checkpoint {
            Checkpoint::Off => None,
            Checkpoint::Every(d) => Some(d),
            Checkpoint::Auto => (self.duration >= AUTO_CHECKPOINT_FROM).then_some(AUTO_CHECKPOINT_EVERY),
        }
    }

    /// The pacing window, ns, of a producer of a process that paces
    /// `local_producers`: `auto` resolved against the tightest latency gate
    /// of `--assert` (a capacity search's steps carry its `--slo` there).
    pub fn pacing_window_ns(&self, local_producers: u32) -> u64 {
        let gate = self.assert.iter().filter_map(|a| a.latency_ceiling_us()).reduce(f64::min);
        self.pacing_window.window_ns(pacing::WindowInputs {
            latency_gate_us: gate,
            local_producers,
            wakeup_cost_ns: crate::clock::wakeup_cost_ns(),
        })
    }

    /// Checks every value; the first problem is returned with the key it concerns.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.validate_text()?;
        self.validate_sizes()?;
        self.rate.check(MAX_RATE, MAX_DURATION).map_err(|m| invalid("rate", m))?;
        self.check_profile_length()?;
        self.payload.check().map_err(|m| invalid("payload", m))?;
        if self.channel_skew != ChannelSkew::Uniform && self.channels < 2 {
            return Err(invalid(
                "channel-skew",
                format!(
                    "{}: skews messages over channels, and the run has one (--channels 2 or more)",
                    self.channel_skew
                ),
            ));
        }
        let durations = [
            ("duration", self.duration),
            ("warmup", self.warmup),
            ("drain", self.drain),
            ("connect-timeout", self.connect_timeout),
            ("claim-idle", self.claim_idle),
        ];
        for (key, d) in durations {
            if d > MAX_DURATION {
                return Err(invalid(
                    key,
                    format!("{} is longer than the longest run eventbench takes on (30 days, 720h)", fmt_duration(&d)),
                ));
            }
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than 0s"));
        }
        if let Checkpoint::Every(d) = self.checkpoint {
            // Checkpoints cut the run at whole seconds.
            if d < MIN_CHECKPOINT || d > MAX_DURATION {
                return Err(invalid(
                    "checkpoint",
                    format!("{} must be between 1s and 30 days (720h), or off", fmt_duration(&d)),
                ));
            }
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect-timeout", "must be longer than 0s"));
        }
        for d in &self.disconnect {
            if d.share.0 > 0.0 && self.consumers == 0 {
                return Err(invalid("disconnect", format!("{d}: the scenario has no consumers")));
            }
            if d.at.saturating_add(d.down_for) > self.duration {
                return Err(invalid(
                    "disconnect",
                    format!(
                        "{d} ends after the measured phase ({}); AT+FOR must be within --duration",
                        fmt_duration(&self.duration)
                    ),
                ));
            }
            if d.down_for.is_zero() {
                return Err(invalid("disconnect", format!("{d}: FOR must be longer than 0s")));
            }
        }
        for p in &self.pause {
            if p.at.saturating_add(p.down_for) > self.duration {
                return Err(invalid(
                    "pause",
                    format!(
                        "{p} ends after the measured phase ({}); AT+FOR must be within --duration",
                        fmt_duration(&self.duration)
                    ),
                ));
            }
            if p.down_for.is_zero() {
                return Err(invalid("pause", format!("{p}: FOR must be longer than 0s")));
            }
        }
        if let Some(slow) = &self.slow {
            if slow.share.0 > 0.0 && self.consumers == 0 {
                return Err(invalid("slow", format!("{slow}: the scenario has no consumers")));
            }
            if slow.delay > MAX_SLOW_DELAY {
                return Err(invalid(
                    "slow",
                    format!(
                        "{slow}: DELAY is at most {} per message (a consumer that takes longer has stopped: use --crash)",
                        fmt_duration(&MAX_SLOW_DELAY)
                    ),
                ));
            }
        }
        for (key, value) in &self.redis_config {
            if key.trim().is_empty() || key.contains(char::is_whitespace) {
                return Err(invalid("redis-config", format!("{} is not a configuration key", crate::text::quote(key))));
            }
            if let Some(why) = refused_config_key(key) {
                return Err(invalid(
                    "redis-config",
                    format!(
                        "{} is refused: {why}; set it on the server yourself if you mean to",
                        crate::text::quote(key)
                    ),
                ));
            }
            if is_secret_config_key(key) && value == crate::connect::MASK {
                return Err(invalid(
                    "redis-config",
                    format!(
                        "the value of {} is masked (***), as eventbench writes secrets; give it with --redis-config",
                        crate::text::quote(key)
                    ),
                ));
            }
        }
        let within = |key: &'static str, what: String, at: Duration| {
            if at >= self.duration {
                Err(invalid(
                    key,
                    format!(
                        "{what} is outside the measured phase ({}); AT must be below --duration",
                        fmt_duration(&self.duration)
                    ),
                ))
            } else {
                Ok(())
            }
        };
        for c in &self.crash {
            within("crash", c.to_string(), c.at)?;
            if c.share.0 > 0.0 && self.consumers == 0 {
                return Err(invalid("crash", format!("{c}: the scenario has no consumers")));
            }
        }
        if let Some(at) = self.replay_at {
            within("replay-at", fmt_duration(&at), at)?;
        }
        if self.groups > self.consumers {
            return Err(invalid(
                "groups",
                format!("{} groups need at least as many consumers (have {})", self.groups, self.consumers),
            ));
        }
        if self.maxlen == Some(0) {
            return Err(invalid("maxlen", "must be at least 1"));
        }
        if let Some(n) = self.read_count.filter(|n| !(1..=MAX_READ_COUNT).contains(n)) {
            return Err(invalid("read-count", format!("{n}: must be between 1 and {MAX_READ_COUNT}")));
        }
        self.validate_cluster()?;
        self.validate_target()
    }

    /// The name and the description: a name becomes a directory and the
    /// first cell of `summary.csv`, so it is short, has no path separator,
    /// no control character (a terminal would obey it) and no first
    /// character a spreadsheet reads as a formula; a description is shown on
    /// a terminal, so it holds no control character but new lines and tabs.
    fn validate_text(&self) -> Result<(), ScenarioError> {
        let name = crate::text::quote(&self.name);
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(invalid("name", "must be non-empty and contain no path separators"));
        }
        if self.name.len() > MAX_NAME {
            return Err(invalid(
                "name",
                format!("{name} is longer than {MAX_NAME} bytes: it names the run's directory"),
            ));
        }
        if self.name.chars().any(char::is_control) {
            return Err(invalid("name", format!("{} holds a control character", crate::text::printable(&name))));
        }
        if self.name.starts_with(FORMULA_STARTS) {
            return Err(invalid(
                "name",
                format!("{name} starts with one of = + - @, which a spreadsheet reads as a formula"),
            ));
        }
        let description = self.description.as_deref().unwrap_or("");
        if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
            return Err(invalid("description", "holds a control character (other than a new line or a tab)"));
        }
        Ok(())
    }

    /// How many producers, consumers and channels: each has a connection or
    /// memory of its own, so each has a limit one machine can honour.
    fn validate_sizes(&self) -> Result<(), ScenarioError> {
        let at_most = |key: &'static str, n: u32, max: u32, what: &str| {
            if n > max {
                Err(invalid(key, format!("at most {max} {what} (asked for {n})")))
            } else {
                Ok(())
            }
        };
        if self.threads > MAX_THREADS {
            return Err(invalid(
                "threads",
                format!("at most {MAX_THREADS} worker threads (asked for {})", self.threads),
            ));
        }
        if self.producers == 0 {
            return Err(invalid("producers", "must be at least 1"));
        }
        at_most("producers", self.producers, MAX_PRODUCERS, "producer connections per run")?;
        if self.consumers == 0 {
            return Err(invalid(
                "consumers",
                "must be at least 1: eventbench measures delivery, and a run without consumers has none to measure",
            ));
        }
        at_most("consumers", self.consumers, MAX_CONSUMERS, "consumer connections per run")?;
        if self.channels == 0 {
            return Err(invalid("channels", "must be at least 1"));
        }
        at_most("channels", self.channels, MAX_CHANNELS, "channels per run")?;
        // Each consumer (or Streams group) keeps a ledger per (producer, channel).
        let sequences = u64::from(self.producers) * u64::from(self.channels);
        if sequences > MAX_SEQUENCES {
            return Err(invalid(
                "channels",
                format!(
                    "{} producers × {} channels is {sequences} sequences; at most {MAX_SEQUENCES}",
                    self.producers, self.channels
                ),
            ));
        }
        let ledgers = sequences * u64::from(self.consumers);
        if ledgers > MAX_LEDGERS {
            return Err(invalid(
                "consumers",
                format!(
                    "{} consumers × {sequences} sequences (producers × channels) is {ledgers} ledgers, at most \
                     {MAX_LEDGERS} (about {} GB of memory)",
                    self.consumers,
                    MAX_LEDGERS * 32 / 1_000_000_000
                ),
            ));
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ScenarioError> {
        if self.private_cluster > 0 {
            if self.private_cluster < 3 {
                return Err(invalid(
                    "private-cluster",
                    format!("{} nodes: a cluster needs at least 3 masters", self.private_cluster),
                ));
            }
            if self.private_cluster > 64 {
                return Err(invalid("private-cluster", "at most 64 nodes"));
            }
            if self.url.is_some() {
                return Err(invalid("private-cluster", "starts its own cluster: leave out --url"));
            }
        }
        if let Some(k) = &self.kill_node {
            if self.private_cluster == 0 {
                return Err(invalid(
                    "kill-node",
                    format!("{k}: needs --private-cluster N (eventbench stops only nodes it started)"),
                ));
            }
            if k.node >= self.private_cluster {
                return Err(invalid(
                    "kill-node",
                    format!("{k}: node {} does not exist (nodes 0..{})", k.node, self.private_cluster - 1),
                ));
            }
            if k.down_for.is_zero() {
                return Err(invalid("kill-node", format!("{k}: FOR must be longer than 0s")));
            }
            if k.at.saturating_add(k.down_for) > self.duration {
                return Err(invalid(
                    "kill-node",
                    format!(
                        "{k} ends after the measured phase ({}); AT+FOR must be within --duration",
                        fmt_duration(&self.duration)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The URL, credentials and TLS settings fit together.
    fn validate_target(&self) -> Result<(), ScenarioError> {
        let Some(url) = &self.url else {
            if self.user.is_some() || self.password.is_some() {
                return Err(invalid(
                    "password",
                    "--user and --password apply to --url only (the private server has none)",
                ));
            }
            if self.tls_ca.is_some() || self.tls_insecure {
                return Err(invalid("tls-ca", "--tls-ca and --tls-insecure apply to a rediss:// --url only"));
            }
            return Ok(());
        };
        let url = crate::connect::parse_url(url).map_err(|m| invalid("url", m))?;
        if url.password.as_deref() == Some(crate::connect::MASK) && self.password.is_none() {
            return Err(invalid(
                "url",
                "the password in the URL is masked (***); pass --password or set REDIS_PASSWORD".to_string(),
            ));
        }
        if !url.tls && (self.tls_ca.is_some() || self.tls_insecure) {
            return Err(invalid("tls-ca", "--tls-ca and --tls-insecure apply to rediss:// URLs only"));
        }
        if self.tls_ca.is_some() && self.tls_insecure {
            return Err(invalid("tls-insecure", "choose one of --tls-ca FILE (verify) and --tls-insecure (do not)"));
        }
        Ok(())
    }

    /// Every fault the scenario injects, with the swarm's size.
    pub fn fault_plan(&self) -> crate::chaos::Plan {
        let faults = crate::chaos::Fault::all(&self.disconnect, &self.crash, self.slow, self.kill_node, &self.pause);
        crate::chaos::Plan { faults, consumers: self.consumers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_errors() {
        let s = Scenario {
            disconnect: vec!["25%@1s+1s".parse().unwrap()],
            rate: Rate::Constant(5000.0),
            ..Scenario::default()
        };
        let back = Scenario::from_toml(&s.to_toml()).unwrap();
        assert_eq!(back, s);

        let err = Scenario::from_toml("rate = 10\nbogus = 1\n").unwrap_err();
        assert!(err.message().contains("bogus"), "{}", err.message());
        assert_eq!(line_col("rate = 10\nbogus = 1\n", err.span().unwrap().start), (2, 1));
    }

    #[test]
    fn validation_names_the_key() {
        let check = |s: Scenario, key: &str| {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.starts_with(key), "{e}");
        };
        check(Scenario { payload: Payload::Fixed(10), ..Scenario::default() }, "payload");
        check(Scenario { duration: Duration::ZERO, ..Scenario::default() }, "duration");
        check(Scenario { disconnect: vec!["50%@9s+2s".parse().unwrap()], ..Scenario::default() }, "disconnect");
        check(Scenario { url: Some("http://x".into()), ..Scenario::default() }, "url");
        assert!(Scenario::default().validate().is_ok());
    }
}
