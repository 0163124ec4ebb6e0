//! The values of single scenario keys and flags: their text forms (`50%@5s+2s`,
//! `25%:200us`, `10s`, `20k`), how they read and print, and their serde as those strings.

use crate::chaos::forms::serde_as_string;
use crate::clock::{fmt_duration, parse_duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
    /// In memory, no Redis: the harness's own ceiling and latency floor, fire-and-forget like Pub/Sub.
    Loopback,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Pubsub => "pubsub",
            TransportKind::Streams => "streams",
            TransportKind::Sharded => "sharded",
            TransportKind::Loopback => "loopback",
        })
    }
}

serde_as_string!(crate::assertion::Assertion);

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
        _ => Err(format!(
            "{}: expected \"KEY VALUE\", e.g. \"client-output-buffer-limit pubsub 256kb 64kb 5\"",
            crate::text::quote(s)
        )),
    }
}

/// Settings `--redis-config` refuses, with why: they change how clients
/// authenticate or replicas reach their master (eventbench could not restore
/// them, or lock out everyone who knew the old password), or where Redis
/// listens (eventbench could not reach it to restore anything).
const REFUSED_CONFIG: &[(&str, &str)] = &[
    ("requirepass", "it changes the password every client needs"),
    ("aclfile", "it changes the users and passwords every client needs"),
    ("masterauth", "it changes the credentials replicas use to reach their master"),
    ("masteruser", "it changes the credentials replicas use to reach their master"),
    ("primaryauth", "it changes the credentials replicas use to reach their primary"),
    ("primaryuser", "it changes the credentials replicas use to reach their primary"),
    ("replicaof", "it changes what the server replicates"),
    ("slaveof", "it changes what the server replicates"),
    ("tls-key-file-pass", "it is a secret of the server's TLS key"),
    ("tls-client-key-file-pass", "it is a secret of the server's TLS key"),
    ("tls-auth-clients", "it changes how clients authenticate"),
    ("port", "eventbench could not reach the server to restore it"),
    ("tls-port", "eventbench could not reach the server to restore it"),
    ("bind", "eventbench could not reach the server to restore it"),
    ("unixsocket", "it changes where clients reach the server"),
];

/// Why `--redis-config KEY ...` is refused, if it is (Redis keys are case-insensitive).
pub fn refused_config_key(key: &str) -> Option<&'static str> {
    let key = key.to_ascii_lowercase();
    REFUSED_CONFIG.iter().find(|(k, _)| *k == key).map(|(_, why)| *why)
}

/// A setting whose value looks like a secret: written as `***` in every output.
pub fn is_secret_config_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "auth", "secret", "token", "credential", "masteruser", "primaryuser"].iter().any(|w| key.contains(w))
}

/// The value of `key` as messages and files show it: `***` for a secret.
pub fn shown_config_value(key: &str, value: &str) -> String {
    if is_secret_config_key(key) {
        crate::connect::MASK.to_string()
    } else {
        crate::text::shorten(value)
    }
}

/// `--redis-config "KEY VALUE"` as the map of that one setting (clap keeps a
/// flag's values of the field's type; [`super::ScenarioFlags`] gathers them).
/// The empty string is the flag's default, no setting.
pub(super) fn redis_config_entry(s: &str) -> Result<BTreeMap<String, String>, String> {
    if s.is_empty() {
        return Ok(BTreeMap::new());
    }
    parse_redis_config(s).map(|setting| BTreeMap::from([setting]))
}

/// `--reconnect on|off`.
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{}: expected on or off", crate::text::quote(s))),
    }
}

/// `--checkpoint`: how often a run writes its results so far while it goes
/// on. `auto` (the default) is every minute for a measured phase of 10
/// minutes or more, else none; `off` (or `0`) is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoint {
    #[default]
    Auto,
    Off,
    Every(Duration),
}

impl std::str::FromStr for Checkpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Checkpoint::Auto),
            "off" | "0" => Ok(Checkpoint::Off),
            other => match parse_duration(other) {
                Ok(d) if d.is_zero() => Ok(Checkpoint::Off),
                Ok(d) => Ok(Checkpoint::Every(d)),
                Err(_) => Err(format!("{}: expected a duration like 1m or 30s, off, or auto", crate::text::quote(s))),
            },
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Auto => f.write_str("auto"),
            Checkpoint::Off => f.write_str("off"),
            Checkpoint::Every(d) => f.write_str(&fmt_duration(d)),
        }
    }
}

serde_as_string!(Checkpoint);

pub(super) mod duration_str {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_duration(d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

pub(super) mod opt_duration_str {
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

/// A list that a file may also give as its one element: `disconnect = "50%@1s+1s"`
/// reads as `disconnect = ["50%@1s+1s"]`, like one `--disconnect` flag.
pub(super) fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct OneOrMany<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Vec<T>, E> {
            // The element's own message on a bad value (e.g. "'150%' is outside 0%..100%").
            T::deserialize(serde::de::value::StrDeserializer::new(s)).map(|one| vec![one])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Vec<T>, A::Error> {
            Vec::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(OneOrMany(std::marker::PhantomData))
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
    let bad = || format!("{}: {form}", crate::text::quote(s));
    let v: f64 = digits.parse().map_err(|_| bad())?;
    if !v.is_finite() || v < 0.0 {
        return Err(bad());
    }
    Ok(v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Disconnect, Percent, Scenario, Slow};

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
    fn a_list_in_a_file_may_be_one_string() {
        let one =
            Scenario::from_toml("disconnect = \"50%@1s+1s\"\ncrash = \"25%@3s\"\nassert = \"lost==0\"\n").unwrap();
        let many = Scenario::from_toml("disconnect = [\"50%@1s+1s\"]\ncrash = [\"25%@3s\"]\nassert = [\"lost==0\"]\n")
            .unwrap();
        assert_eq!(one, many);
        assert_eq!((one.disconnect.len(), one.crash.len(), one.assert.len()), (1, 1, 1));
        assert_eq!(one.disconnect[0].to_string(), "50%@1s+1s");
        assert_eq!(one.crash[0].to_string(), "25%@3s");
        // Written back as a list, the same run again.
        assert!(one.to_toml().contains("disconnect = [\"50%@1s+1s\"]"), "{}", one.to_toml());

        let two = Scenario::from_toml("disconnect = [\"50%@1s+1s\", \"25%@3s+1s\"]\n").unwrap();
        assert_eq!(two.disconnect.len(), 2);
        for (text, needle) in [
            ("disconnect = \"150%@1s+1s\"\n", "0%..100%"),
            ("crash = \"25%\"\n", "PCT@AT"),
            ("crash = [\"25%@1s\", \"x\"]\n", "PCT@AT"),
            ("disconnect = 3\n", "a string or a list of strings"),
        ] {
            let e = Scenario::from_toml(text).unwrap_err();
            assert!(e.message().contains(needle), "{text}: {}", e.message());
            assert!(e.span().is_some(), "{text}");
        }
    }
}
