//! The typed workload: what a run does, from a TOML file and command-line flags.
//!
//! A scenario file uses the same keys as the flags (`rate = 20000`,
//! `duration = "10s"`, `disconnect = ["50%@5s+2s"]`); flags override the file.
//! [`Scenario::validate`] checks everything before any connection is opened.

use crate::wire::HEADER_LEN;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
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
}

fn invalid(key: &'static str, message: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid { key, message: message.into() }
}

/// Which Redis mechanism carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// PUBLISH / SUBSCRIBE: fire-and-forget fan-out.
    #[default]
    Pubsub,
    /// XADD / XREADGROUP / XACK: durable, with consumer groups.
    Streams,
    /// SPUBLISH / SSUBSCRIBE (Redis 7): Pub/Sub confined to the shard that owns the channel.
    Sharded,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Pubsub => "pubsub",
            TransportKind::Streams => "streams",
            TransportKind::Sharded => "sharded",
        })
    }
}

/// A share of the consumers, `0%` to `100%`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl Percent {
    /// How many of `n` consumers this share selects: rounded, at least one when above 0%.
    pub fn of(&self, n: u32) -> u32 {
        if self.0 <= 0.0 {
            return 0;
        }
        ((self.0 / 100.0 * n as f64).round() as u32).clamp(1, n.max(1)).min(n)
    }
}

impl FromStr for Percent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_suffix('%').ok_or_else(|| format!("'{s}' is not a percentage like 50%"))?;
        let v: f64 = digits.parse().map_err(|_| format!("'{s}' is not a percentage like 50%"))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("'{s}' is outside 0%..100%"));
        }
        Ok(Percent(v))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

/// A consumer outage: `PCT@AT+FOR`, e.g. `50%@5s+2s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disconnect {
    /// Share of the consumers that disconnect.
    pub share: Percent,
    /// When, counted from the start of the measured phase.
    pub at: Duration,
    /// How long they stay away before reconnecting.
    pub down_for: Duration,
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("'{s}' is not a duration like 10s or 500ms ({e})"))
}

pub(crate) fn fmt_duration(d: &Duration) -> String {
    humantime::format_duration(*d).to_string().replace(' ', "")
}

impl FromStr for Disconnect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected PCT@AT+FOR, e.g. 50%@5s+2s";
        let (share, at, down_for) = split_at_for(s, form)?;
        Ok(Disconnect { share: share.parse().map_err(|e| format!("{e}; {form}"))?, at, down_for })
    }
}

/// Splits `WHO@AT+FOR` into WHO and the two durations; `form` goes into the messages.
fn split_at_for<'a>(s: &'a str, form: &str) -> Result<(&'a str, Duration, Duration), String> {
    let (who, rest) = s.split_once('@').ok_or_else(|| format!("'{s}': {form}"))?;
    let (at, down_for) = rest.split_once('+').ok_or_else(|| format!("'{s}': {form}"))?;
    let at = parse_duration(at).map_err(|e| format!("{e}; {form}"))?;
    Ok((who, at, parse_duration(down_for).map_err(|e| format!("{e}; {form}"))?))
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}+{}", self.share, fmt_duration(&self.at), fmt_duration(&self.down_for))
    }
}

/// Serde through the `FromStr`/`Display` forms, so files read like the flags.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(Disconnect);
serde_as_string!(Slow);
serde_as_string!(Crash);
serde_as_string!(KillNode);
serde_as_string!(crate::assertion::Assertion);

/// Consumers that stop for good: `PCT@AT`, e.g. `25%@3s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crash {
    pub share: Percent,
    /// When, counted from the start of the measured phase.
    pub at: Duration,
}

impl FromStr for Crash {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected PCT@AT, e.g. 25%@3s";
        let (share, at) = s.split_once('@').ok_or_else(|| format!("'{s}': {form}"))?;
        Ok(Crash {
            share: share.parse().map_err(|e| format!("{e}; {form}"))?,
            at: parse_duration(at).map_err(|e| format!("{e}; {form}"))?,
        })
    }
}

impl fmt::Display for Crash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.share, fmt_duration(&self.at))
    }
}

/// A cluster node stopped and restarted: `NODE@AT+FOR`, e.g. `1@2s+1s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillNode {
    /// The master's index in slot order (node 0 serves slot 0).
    pub node: u32,
    /// When, counted from the start of the measured phase.
    pub at: Duration,
    /// How long the node stays down.
    pub down_for: Duration,
}

impl FromStr for KillNode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected NODE@AT+FOR, e.g. 1@2s+1s";
        let (node, at, down_for) = split_at_for(s, form)?;
        let node = node.trim().parse().map_err(|_| format!("'{node}' is not a node index; {form}"))?;
        Ok(KillNode { node, at, down_for })
    }
}

impl fmt::Display for KillNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}+{}", self.node, fmt_duration(&self.at), fmt_duration(&self.down_for))
    }
}

/// Slow consumers: `PCT:DELAY`, e.g. `25%:200us`. That share of the consumers
/// (the last ones) spends DELAY on each message before taking the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slow {
    pub share: Percent,
    pub delay: Duration,
}

impl FromStr for Slow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected PCT:DELAY, e.g. 25%:200us";
        let (share, delay) = s.split_once(':').ok_or_else(|| format!("'{s}': {form}"))?;
        let slow = Slow {
            share: share.parse().map_err(|e| format!("{e}; {form}"))?,
            delay: parse_duration(delay).map_err(|e| format!("{e}; {form}"))?,
        };
        if slow.delay.is_zero() {
            return Err(format!("'{s}': DELAY must be longer than 0; {form}"));
        }
        Ok(slow)
    }
}

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.share, fmt_duration(&self.delay))
    }
}

/// How consumers subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SubscribeMode {
    /// SUBSCRIBE to each channel by name.
    #[default]
    Channel,
    /// PSUBSCRIBE to one pattern that matches every channel of the run.
    Pattern,
}

/// Splits a `--redis-config "KEY VALUE"` flag.
pub fn parse_redis_config(s: &str) -> Result<(String, String), String> {
    match s.trim().split_once(char::is_whitespace) {
        Some((key, value)) if !value.trim().is_empty() => Ok((key.to_string(), value.trim().to_string())),
        _ => Err(format!("'{s}': expected \"KEY VALUE\", e.g. \"client-output-buffer-limit pubsub 256kb 64kb 5\"")),
    }
}

mod duration_str {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_duration(d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_duration_str {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&fmt_duration(d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Some).map_err(serde::de::Error::custom)
    }
}

/// A message rate: a number of messages per second, optionally with a k or M suffix.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (digits, scale) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'm' | 'M')) => (&t[..i], 1e6),
        _ => (t, 1.0),
    };
    let form = "expected messages per second ≥ 0, e.g. 20000, 20k or 0 for as fast as possible";
    let v: f64 = digits.parse().map_err(|_| format!("'{s}': {form}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}': {form}"));
    }
    Ok(v * scale)
}

/// The whole workload of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
pub struct Scenario {
    /// Names the run directory and the row in reports.
    pub name: String,
    /// What the scenario shows, for people reading it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub transport: TransportKind,
    /// Redis to aim at; none starts a private `redis-server`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `redis-server` binary for the private server (default: from PATH).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_server: Option<PathBuf>,
    pub producers: u32,
    pub consumers: u32,
    pub channels: u32,
    /// Total target rate, messages per second over all producers; 0 = as fast as possible.
    pub rate: f64,
    /// Payload size in bytes, header included.
    pub payload: usize,
    #[serde(with = "duration_str")]
    pub duration: Duration,
    #[serde(with = "duration_str")]
    pub warmup: Duration,
    #[serde(with = "duration_str")]
    pub drain: Duration,
    pub disconnect: Vec<Disconnect>,
    /// Worker threads; 0 = one for a light paced run (at most 50,000 sends and deliveries a second, at most 64 deliveries per message), else one per CPU.
    pub threads: usize,
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Slow consumers, `PCT:DELAY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow: Option<Slow>,
    /// Reconnect and resubscribe (with backoff) when the server closes a consumer.
    pub reconnect: bool,
    /// SUBSCRIBE by channel name, or PSUBSCRIBE to a pattern.
    pub subscribe: SubscribeMode,
    /// ACL user; overrides the URL's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password; overrides the URL's. Never read from or written to a file.
    #[serde(skip)]
    pub password: Option<Password>,
    /// PEM file of the CA certificates a `rediss://` server is checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Accept any certificate from a `rediss://` server (self-signed test servers).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_insecure: bool,
    /// Gates checked after the run (exit code 3 when one fails).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub assert: Vec<crate::assertion::Assertion>,
    /// Applied with CONFIG SET before the run (and restored after it on a user's Redis).
    pub redis_config: BTreeMap<String, String>,
    /// Streams: approximate trimming, `XADD MAXLEN ~ N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxlen: Option<u64>,
    /// Streams: consumer groups sharing the work; 0 = one group per consumer (fan-out, as Pub/Sub).
    pub groups: u32,
    /// Consumers that stop for good without acknowledging what they hold, `PCT@AT`.
    pub crash: Vec<Crash>,
    /// Streams: survivors claim a group's entries idle for longer than this.
    #[serde(with = "duration_str")]
    pub claim_idle: Duration,
    /// Streams: a new group reads the streams from the beginning this far into the measured phase.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_str", default)]
    pub replay_at: Option<Duration>,
    /// The target must be a Redis Cluster (detected anyway; this makes a single node an error).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
    /// Start a private cluster of this many masters instead of one private server (0: none).
    #[serde(skip_serializing_if = "is_zero")]
    pub private_cluster: u32,
    /// Stop a node of the private cluster and restart it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_node: Option<KillNode>,
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

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "pubsub".into(),
            description: None,
            transport: TransportKind::Pubsub,
            url: None,
            redis_server: None,
            producers: 1,
            consumers: 1,
            channels: 1,
            rate: 1000.0,
            payload: 64,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            drain: Duration::from_secs(2),
            disconnect: Vec::new(),
            threads: 0,
            connect_timeout: Duration::from_secs(5),
            slow: None,
            reconnect: true,
            subscribe: SubscribeMode::Channel,
            user: None,
            password: None,
            tls_ca: None,
            tls_insecure: false,
            assert: Vec::new(),
            redis_config: BTreeMap::new(),
            maxlen: None,
            groups: 0,
            crash: Vec::new(),
            claim_idle: Duration::from_secs(1),
            replay_at: None,
            cluster: false,
            private_cluster: 0,
            kill_node: None,
        }
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

impl Scenario {
    /// Reads a scenario file; its name defaults to the file's stem.
    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ScenarioError::Read { path: path.into(), cause })?;
        let mut s = Scenario::from_toml(&text).map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |r| line_col(&text, r.start));
            let message = e.message().trim().replace('\n', " ");
            ScenarioError::Parse { path: path.into(), line, column, message }
        })?;
        let has_name = text.lines().any(|l| l.trim_start().starts_with("name"));
        if !has_name {
            if let Some(stem) = path.file_stem() {
                s.name = stem.to_string_lossy().into_owned();
            }
        }
        Ok(s)
    }

    /// Parses scenario TOML.
    pub fn from_toml(text: &str) -> Result<Scenario, toml::de::Error> {
        toml::from_str(text)
    }

    /// The effective scenario as TOML, credentials masked, ready to be run again.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        shown.url = shown.url.as_deref().map(crate::connect::redact_url);
        toml::to_string(&shown).expect("a scenario always serializes")
    }

    /// Checks every value; the first problem is returned with the key it concerns.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(invalid("name", "must be non-empty and contain no path separators"));
        }
        if self.producers == 0 {
            return Err(invalid("producers", "must be at least 1"));
        }
        if self.channels == 0 {
            return Err(invalid("channels", "must be at least 1"));
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            return Err(invalid("rate", "must be ≥ 0 messages per second (0 = as fast as possible)"));
        }
        if self.payload < HEADER_LEN {
            return Err(invalid(
                "payload",
                format!("{} bytes is below the minimum of {HEADER_LEN} (the header size)", self.payload),
            ));
        }
        if self.payload > 512 * 1024 * 1024 {
            return Err(invalid("payload", "must be at most 512 MiB (Redis's limit for a string)"));
        }
        if self.duration.is_zero() {
            return Err(invalid("duration", "must be longer than 0s"));
        }
        if self.connect_timeout.is_zero() {
            return Err(invalid("connect-timeout", "must be longer than 0s"));
        }
        for d in &self.disconnect {
            if d.share.0 > 0.0 && self.consumers == 0 {
                return Err(invalid("disconnect", format!("{d}: the scenario has no consumers")));
            }
            if d.at + d.down_for > self.duration {
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
        if let Some(slow) = &self.slow {
            if slow.share.0 > 0.0 && self.consumers == 0 {
                return Err(invalid("slow", format!("{slow}: the scenario has no consumers")));
            }
        }
        if let Some(key) = self.redis_config.keys().find(|k| k.trim().is_empty() || k.contains(char::is_whitespace)) {
            return Err(invalid("redis-config", format!("'{key}' is not a configuration key")));
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
        let streams_only =
            [("maxlen", self.maxlen.is_some()), ("groups", self.groups > 0), ("replay-at", self.replay_at.is_some())];
        if self.transport != TransportKind::Streams {
            if let Some((key, _)) = streams_only.iter().find(|(_, set)| *set) {
                return Err(invalid(key, "applies to --transport streams only"));
            }
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
        if self.transport == TransportKind::Sharded && self.subscribe == SubscribeMode::Pattern {
            return Err(invalid("subscribe", "sharded Pub/Sub has no pattern subscriptions (no SPSUBSCRIBE)"));
        }
        self.validate_cluster()?;
        self.validate_target()
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
            if k.at + k.down_for > self.duration {
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

    /// Messages per second for each producer.
    pub fn rate_per_producer(&self) -> f64 {
        self.rate / self.producers as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_forms_parse_and_print_back() {
        let d: Disconnect = "50%@5s+2s".parse().unwrap();
        assert_eq!(
            d,
            Disconnect { share: Percent(50.0), at: Duration::from_secs(5), down_for: Duration::from_secs(2) }
        );
        assert_eq!(d.to_string(), "50%@5s+2s");
        assert_eq!("12.5%@1s500ms+250ms".parse::<Disconnect>().unwrap().to_string(), "12.5%@1s500ms+250ms");
        for bad in ["50@5s+2s", "150%@5s+2s", "50%5s+2s", "50%@5s", "50%@soon+2s", "-1%@1s+1s"] {
            assert!(bad.parse::<Disconnect>().is_err(), "{bad}");
        }
        assert_eq!(parse_rate("20k"), Ok(20_000.0));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000.0));
        assert!(parse_rate("-5").is_err() && parse_rate("fast").is_err() && parse_rate("inf").is_err());
    }

    #[test]
    fn slow_and_redis_config_forms() {
        let slow: Slow = "25%:200us".parse().unwrap();
        assert_eq!(slow, Slow { share: Percent(25.0), delay: Duration::from_micros(200) });
        assert_eq!(slow.to_string(), "25%:200us");
        for bad in ["25%", "25:200us", "25%:0s", "125%:1ms"] {
            assert!(bad.parse::<Slow>().is_err(), "{bad}");
        }
        assert_eq!(
            parse_redis_config("client-output-buffer-limit pubsub 256kb 64kb 5"),
            Ok(("client-output-buffer-limit".into(), "pubsub 256kb 64kb 5".into()))
        );
        assert!(parse_redis_config("maxmemory").is_err());
        let s = Scenario::from_toml("[redis-config]\nmaxmemory = \"100mb\"\n").unwrap();
        assert_eq!(s.redis_config.get("maxmemory").map(String::as_str), Some("100mb"));
    }

    #[test]
    fn percent_selects_at_least_one() {
        assert_eq!(Percent(50.0).of(8), 4);
        assert_eq!(Percent(1.0).of(8), 1);
        assert_eq!(Percent(0.0).of(8), 0);
        assert_eq!(Percent(100.0).of(8), 8);
        assert_eq!(Percent(50.0).of(0), 0);
    }

    #[test]
    fn toml_round_trip_and_errors() {
        let s = Scenario { disconnect: vec!["25%@1s+1s".parse().unwrap()], rate: 5000.0, ..Scenario::default() };
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
        check(Scenario { payload: 10, ..Scenario::default() }, "payload");
        check(Scenario { duration: Duration::ZERO, ..Scenario::default() }, "duration");
        check(Scenario { disconnect: vec!["50%@9s+2s".parse().unwrap()], ..Scenario::default() }, "disconnect");
        check(Scenario { url: Some("http://x".into()), ..Scenario::default() }, "url");
        assert!(Scenario::default().validate().is_ok());
    }
}
