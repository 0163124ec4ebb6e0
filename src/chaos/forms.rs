//! The forms of the faults a scenario declares, as flags and file values
//! read them: `PCT@AT+FOR`, `PCT@AT`, `PCT:DELAY`, `NODE@AT+FOR`.

use crate::clock::{fmt_duration, parse_duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

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
pub(crate) use serde_as_string;

serde_as_string!(Disconnect);
serde_as_string!(Slow);
serde_as_string!(Crash);
serde_as_string!(KillNode);

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
        let digits =
            s.strip_suffix('%').ok_or_else(|| format!("{} is not a percentage like 50%", crate::text::quote(s)))?;
        let v: f64 = digits.parse().map_err(|_| format!("{} is not a percentage like 50%", crate::text::quote(s)))?;
        if !(0.0..=100.0).contains(&v) {
            return Err(format!("{} is outside 0%..100%", crate::text::quote(s)));
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
    let (who, rest) = s.split_once('@').ok_or_else(|| format!("{}: {form}", crate::text::quote(s)))?;
    let (at, down_for) = rest.split_once('+').ok_or_else(|| format!("{}: {form}", crate::text::quote(s)))?;
    let at = parse_duration(at).map_err(|e| format!("{e}; {form}"))?;
    Ok((who, at, parse_duration(down_for).map_err(|e| format!("{e}; {form}"))?))
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}+{}", self.share, fmt_duration(&self.at), fmt_duration(&self.down_for))
    }
}

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
        let (share, at) = s.split_once('@').ok_or_else(|| format!("{}: {form}", crate::text::quote(s)))?;
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
        let node =
            node.trim().parse().map_err(|_| format!("{} is not a node index; {form}", crate::text::quote(node)))?;
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
        let (share, delay) = s.split_once(':').ok_or_else(|| format!("{}: {form}", crate::text::quote(s)))?;
        let slow = Slow {
            share: share.parse().map_err(|e| format!("{e}; {form}"))?,
            delay: parse_duration(delay).map_err(|e| format!("{e}; {form}"))?,
        };
        if slow.delay.is_zero() {
            return Err(format!("{}: DELAY must be longer than 0; {form}", crate::text::quote(s)));
        }
        Ok(slow)
    }
}

impl fmt::Display for Slow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.share, fmt_duration(&self.delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_selects_at_least_one() {
        assert_eq!(Percent(50.0).of(8), 4);
        assert_eq!(Percent(1.0).of(8), 1);
        assert_eq!(Percent(0.0).of(8), 0);
        assert_eq!(Percent(100.0).of(8), 8);
        assert_eq!(Percent(50.0).of(0), 0);
    }
}
