//! A sweep's axis, `KEY=V1,V2,...`: a numeric scenario key and the values
//! it takes, one point each. The key is any key whose value is a number in
//! a scenario file (`consumers`, `channels`, `producers`, `rate`, ...), so a
//! new numeric option can be swept without code here.

use super::{Scenario, ScenarioError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Most values one axis takes: each is a run (or a capacity search).
pub const MAX_VALUES: usize = 100;

/// One axis of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Vary {
    /// The scenario key, as a file writes it (`consumers`, `read-count`).
    pub key: String,
    /// Its values, in the order given (each a point).
    pub values: Vec<f64>,
}

impl FromStr for Vary {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let form = "expected KEY=V1,V2,... (e.g. consumers=1,10,100)";
        let quoted = crate::text::quote(s);
        let (key, list) = s.split_once('=').ok_or_else(|| format!("{quoted}: {form}"))?;
        let key = key.trim().trim_start_matches("--").to_string();
        if key.is_empty() {
            return Err(format!("{quoted}: no key; {form}"));
        }
        let values: Vec<f64> = list
            .split(',')
            .map(|v| {
                let number = super::parse_rate(v).map_err(|_| {
                    format!(
                        "{}: {} is not a number ≥ 0 (1000, 1k, 1.5M)",
                        crate::text::quote(&key),
                        crate::text::quote(v)
                    )
                })?;
                Ok(number)
            })
            .collect::<Result<_, String>>()?;
        if values.len() > MAX_VALUES {
            return Err(format!("{}: at most {MAX_VALUES} values (got {})", crate::text::quote(&key), values.len()));
        }
        let mut seen = values.clone();
        seen.sort_by(f64::total_cmp);
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("{}: a value is given twice", crate::text::quote(&key)));
        }
        Ok(Vary { key, values })
    }
}

impl TryFrom<String> for Vary {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Vary> for String {
    fn from(v: Vary) -> String {
        v.to_string()
    }
}

impl fmt::Display for Vary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values: Vec<String> = self.values.iter().map(|v| fmt_value(*v)).collect();
        write!(f, "{}={}", self.key, values.join(","))
    }
}

/// A value as a file writes it: `100`, `2.5`.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn invalid(message: String) -> ScenarioError {
    ScenarioError::Invalid { key: "vary", message }
}

impl Scenario {
    /// This scenario with `key` set to `value` (a number of the key's own
    /// type: an integer key takes whole values only), validated. An unknown
    /// key, a key that is not a number, or a value out of its range is
    /// refused with the key named.
    pub fn with_value(&self, key: &str, value: f64) -> Result<Scenario, ScenarioError> {
        let mut table = toml::Table::try_from(Scenario { vary: Vec::new(), ..self.clone() })
            .map_err(|e| ScenarioError::Key { key: "scenario".into(), message: e.to_string() })?;
        let shown = crate::text::quote(key);
        let current = match table.get(key) {
            Some(v) => Some(v.clone()),
            // A key left out of the file (an optional number, `maxlen`) is known if the flags know it.
            None if is_key(key) => None,
            None => {
                return Err(invalid(format!(
                    "{shown} is not a scenario key (consumers, channels, producers, rate, ...)"
                )))
            }
        };
        let number = match current {
            Some(toml::Value::Float(_)) => toml::Value::Float(value),
            Some(toml::Value::Integer(_)) | None => {
                if value.fract() != 0.0 || value >= 9.2e18 {
                    return Err(invalid(format!("{shown} takes whole numbers; {} is not one", fmt_value(value))));
                }
                toml::Value::Integer(value as i64)
            }
            // A rate is a number until it is a profile.
            Some(other) if key == "rate" => {
                return Err(invalid(format!("rate: a sweep sets one rate per point, not a profile ({other})")))
            }
            Some(_) => return Err(invalid(format!("{shown} is not a number; a sweep varies numeric keys only"))),
        };
        table.insert(key.to_string(), number);
        let s = Scenario::from_table(table).map_err(|e| invalid(format!("{shown}={}: {e}", fmt_value(value))))?;
        s.validate().map_err(|e| invalid(format!("{shown}={}: {e}", fmt_value(value))))?;
        Ok(s)
    }
}

/// Whether `key` is a scenario key (a flag of `run`).
fn is_key(key: &str) -> bool {
    use clap::Args;
    Scenario::augment_args(clap::Command::new("scenario")).get_arguments().any(|a| a.get_long() == Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_parse_and_print_back() {
        let v: Vary = "consumers=1,10,100,1k".parse().unwrap();
        assert_eq!((v.key.as_str(), v.values.as_slice()), ("consumers", &[1.0, 10.0, 100.0, 1000.0][..]));
        assert_eq!(v.to_string(), "consumers=1,10,100,1000");
        for bad in ["consumers", "=1,2", "consumers=", "consumers=1,x", "consumers=1,1", "consumers=-1"] {
            assert!(bad.parse::<Vary>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_value_is_set_by_its_key_and_checked() {
        let s = Scenario::default();
        assert_eq!(s.with_value("consumers", 7.0).unwrap().consumers, 7);
        assert_eq!(s.with_value("rate", 2500.0).unwrap().rate, crate::scenario::Rate::Constant(2500.0));
        assert_eq!(s.with_value("maxlen", 100.0).unwrap().maxlen, Some(100));
        for (key, value, says) in [
            ("bogus", 1.0, "not a scenario key"),
            ("name", 1.0, "not a number"),
            ("duration", 1.0, "not a number"),
            ("consumers", 1.5, "whole numbers"),
            ("consumers", 0.0, "at least 1"),
        ] {
            let e = s.with_value(key, value).unwrap_err().to_string();
            assert!(e.starts_with("vary: ") && e.contains(says), "{key}={value}: {e}");
        }
    }
}
