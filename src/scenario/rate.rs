//! The target rate of a run: one rate, or a profile of stages.
//!
//! `--rate 20k` holds one rate for the whole measured phase (`0` = as fast as
//! possible). `--rate '1k..20k/30s,20k/60s,0/5s'` is a profile: `FROM..TO/FOR`
//! ramps linearly, `RATE/FOR` holds, and the measured phase is the sum of the
//! stages. A file may give the same string, or a list of stages, each a string
//! or a table (`{ from = 1000, to = 20000, for = "30s" }`, `{ rate = 20000, for = "1m" }`).
//!
//! The rate is the producers' total; the schedule of intended send times is
//! its integral (see [`crate::pacer`]).

use super::forms::parse_rate;
use crate::clock::{fmt_duration, parse_duration};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Most stages a profile may have: more is a schedule, not a shape.
pub const MAX_STAGES: usize = 1000;

/// How fast all producers together send, messages per second, over the measured phase.
#[derive(Debug, Clone, PartialEq)]
pub enum Rate {
    /// One rate for the whole run; 0 = as fast as possible.
    Constant(f64),
    /// Stages one after another; the measured phase is their sum. A rate of 0 in a stage is a silence.
    Profile(Vec<Stage>),
}

/// One stage of a profile: a linear ramp from `from` to `to` over `length` (a hold when they are equal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Messages per second at the start of the stage.
    pub from: f64,
    /// Messages per second at its end.
    pub to: f64,
    /// How long it lasts.
    pub length: Duration,
}

impl Stage {
    /// Messages the stage sends in all: the integral of its rate.
    pub fn messages(&self) -> f64 {
        (self.from + self.to) / 2.0 * self.length.as_secs_f64()
    }

    /// Messages sent in the first `t` seconds of the stage (clamped to its length).
    pub fn messages_by(&self, t: f64) -> f64 {
        let len = self.length.as_secs_f64();
        let t = t.clamp(0.0, len);
        self.from * t + (self.to - self.from) / len * t * t / 2.0
    }

    /// Whether the rate holds steady over the stage.
    pub fn is_hold(&self) -> bool {
        self.from == self.to
    }
}

impl Default for Rate {
    fn default() -> Self {
        Rate::Constant(1000.0)
    }
}

impl Rate {
    /// Whether producers send as fast as they can (`--rate 0`).
    pub fn is_unlimited(&self) -> bool {
        matches!(self, Rate::Constant(r) if *r == 0.0)
    }

    /// The highest rate the run asks for at any moment; 0 for an unlimited rate.
    pub fn peak(&self) -> f64 {
        match self {
            Rate::Constant(r) => *r,
            Rate::Profile(stages) => stages.iter().map(|s| s.from.max(s.to)).fold(0.0, f64::max),
        }
    }

    /// The lowest rate at which the run sends at any moment: a silence
    /// (`0/FOR`) sends nothing and does not count, a ramp from 0 does; 0 for
    /// an unlimited rate.
    pub fn lowest(&self) -> f64 {
        match self {
            Rate::Constant(r) => *r,
            Rate::Profile(stages) => {
                let sending = stages.iter().filter(|s| s.from > 0.0 || s.to > 0.0);
                let lowest = sending.map(|s| s.from.min(s.to)).fold(f64::INFINITY, f64::min);
                if lowest.is_finite() {
                    lowest
                } else {
                    0.0
                }
            }
        }
    }

    /// The rate at the start of the measured phase, which the warmup holds.
    pub fn first(&self) -> f64 {
        match self {
            Rate::Constant(r) => *r,
            Rate::Profile(stages) => stages.first().map_or(0.0, |s| s.from),
        }
    }

    /// The profile's stages (none for one rate).
    pub fn stages(&self) -> &[Stage] {
        match self {
            Rate::Constant(_) => &[],
            Rate::Profile(stages) => stages,
        }
    }

    /// The measured phase a profile sets: the sum of its stages (`None` for one rate).
    pub fn length(&self) -> Option<Duration> {
        match self {
            Rate::Constant(_) => None,
            Rate::Profile(stages) => Some(stages.iter().map(|s| s.length).sum()),
        }
    }

    /// Messages the schedule sends between `t0` and `t1` seconds into the measured
    /// phase, all producers together (fractional: the integral of the rate).
    /// Unknown (0) for an unlimited rate.
    pub fn messages_between(&self, t0: f64, t1: f64) -> f64 {
        match self {
            Rate::Constant(r) => r * (t1 - t0).max(0.0),
            Rate::Profile(stages) => {
                let mut at = 0.0;
                let mut sum = 0.0;
                for s in stages {
                    let len = s.length.as_secs_f64();
                    sum += s.messages_by(t1 - at) - s.messages_by(t0 - at);
                    at += len;
                }
                sum
            }
        }
    }

    /// The mean target rate over a measured phase of `duration`; 0 for an unlimited rate.
    pub fn mean(&self, duration: Duration) -> f64 {
        match self {
            Rate::Constant(r) => *r,
            Rate::Profile(_) if duration.is_zero() => 0.0,
            Rate::Profile(_) => self.messages_between(0.0, duration.as_secs_f64()) / duration.as_secs_f64(),
        }
    }

    /// Checks the values: `Err` says what is wrong, for the `rate` key.
    pub fn check(&self, max_rate: f64, max_length: Duration) -> Result<(), String> {
        let check_one = |r: f64| {
            if !r.is_finite() || r < 0.0 {
                Err("must be ≥ 0 messages per second (0 = as fast as possible)".to_string())
            } else if r > max_rate {
                Err(format!(
                    "{r} messages per second is more than one run can send (at most {max_rate} = 100M; 0 = as fast as possible)"
                ))
            } else {
                Ok(())
            }
        };
        match self {
            Rate::Constant(r) => check_one(*r),
            Rate::Profile(stages) => {
                if stages.is_empty() {
                    return Err("a profile needs at least one stage, e.g. 1k..20k/30s".into());
                }
                if stages.len() > MAX_STAGES {
                    return Err(format!("a profile has at most {MAX_STAGES} stages, not {}", stages.len()));
                }
                for s in stages {
                    check_one(s.from)?;
                    check_one(s.to)?;
                    if s.length.is_zero() {
                        return Err(format!("stage {} lasts 0s: each stage needs a length above 0", StageText(s)));
                    }
                }
                if stages.iter().all(|s| s.from == 0.0 && s.to == 0.0) {
                    return Err("the profile sends nothing: every stage is a silence (0)".into());
                }
                let length = self.length().unwrap_or_default();
                if length > max_length {
                    return Err(format!(
                        "the stages add up to {}, longer than the longest run eventbench takes on (30 days, 720h)",
                        fmt_duration(&length)
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A stage as `--rate` writes it.
struct StageText<'a>(&'a Stage);

impl fmt::Display for StageText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.is_hold() {
            write!(f, "{}/{}", s.from, fmt_duration(&s.length))
        } else {
            write!(f, "{}..{}/{}", s.from, s.to, fmt_duration(&s.length))
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        StageText(self).fmt(f)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::Constant(r) => write!(f, "{r}"),
            Rate::Profile(stages) => {
                for (i, s) in stages.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    StageText(s).fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

/// One stage, `FROM..TO/FOR` or `RATE/FOR`.
fn parse_stage(text: &str) -> Result<Stage, String> {
    let bad = |why: &str| format!("stage {}: {why}", crate::text::quote(text));
    let Some((rates, length)) = text.rsplit_once('/') else {
        return Err(bad("needs a length, e.g. 20k/30s or 1k..20k/30s"));
    };
    let length = parse_duration(length).map_err(|e| bad(&e))?;
    let (from, to) = match rates.split_once("..") {
        Some((from, to)) => (parse_rate(from).map_err(|e| bad(&e))?, parse_rate(to).map_err(|e| bad(&e))?),
        None => {
            let r = parse_rate(rates).map_err(|e| bad(&e))?;
            (r, r)
        }
    };
    Ok(Stage { from, to, length })
}

/// `--rate`: one rate, or comma-separated stages.
pub fn parse_rate_or_profile(text: &str) -> Result<Rate, String> {
    let t = text.trim();
    if t.contains("..") && !t.contains('/') {
        return Err(format!("{}: a ramp needs a length, e.g. 1k..20k/30s", crate::text::quote(text)));
    }
    if !t.contains(['/', ',']) {
        return parse_rate(t).map(Rate::Constant).map_err(|e| format!("{e}, or stages like 1k..20k/30s,20k/1m"));
    }
    t.split(',').map(|stage| parse_stage(stage.trim())).collect::<Result<Vec<_>, _>>().map(Rate::Profile)
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        parse_rate_or_profile(s)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::Constant(r) => s.serialize_f64(*r),
            Rate::Profile(_) => s.serialize_str(&self.to_string()),
        }
    }
}

/// A stage in a file's list: the text form, or a table.
enum StageForm {
    Text(String),
    Ramp { from: RateValue, to: RateValue, length: String },
    Hold { rate: RateValue, length: String },
}

/// The forms a stage may take, as a refusal names them.
const STAGE_FORMS: &str =
    "a stage: a string like \"1k..20k/30s\" or \"20k/1m\", or a table { from = 1000, to = 20000, for = \"30s\" } \
     or { rate = 20000, for = \"1m\" }";

impl<'de> Deserialize<'de> for StageForm {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StageForm, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StageForm;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(STAGE_FORMS)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StageForm, E> {
                Ok(StageForm::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StageForm, A::Error> {
                use serde::de::Error;
                let (mut from, mut to, mut rate, mut length) = (None, None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "from" => from = Some(map.next_value::<RateValue>()?),
                        "to" => to = Some(map.next_value::<RateValue>()?),
                        "rate" => rate = Some(map.next_value::<RateValue>()?),
                        "for" => length = Some(map.next_value::<String>()?),
                        other => {
                            return Err(A::Error::custom(format!(
                                "unknown key {} in {STAGE_FORMS}",
                                crate::text::quote(other)
                            )))
                        }
                    }
                }
                let length = length.ok_or_else(|| A::Error::custom(format!("`for` missing from {STAGE_FORMS}")))?;
                match (from, to, rate) {
                    (Some(from), Some(to), None) => Ok(StageForm::Ramp { from, to, length }),
                    (None, None, Some(rate)) => Ok(StageForm::Hold { rate, length }),
                    _ => Err(A::Error::custom(format!("give from and to, or rate: {STAGE_FORMS}"))),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// A rate in a file: a number, or the text form (`"20k"`).
enum RateValue {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for RateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RateValue, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RateValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate: a number of messages per second (20000) or a string like \"20k\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RateValue, E> {
                Ok(RateValue::Number(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RateValue, E> {
                Ok(RateValue::Number(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RateValue, E> {
                Ok(RateValue::Number(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RateValue, E> {
                Ok(RateValue::Text(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl RateValue {
    fn get(self) -> Result<f64, String> {
        match self {
            RateValue::Number(r) if r.is_finite() && r >= 0.0 => Ok(r),
            RateValue::Number(r) => Err(format!("{r}: expected messages per second ≥ 0, e.g. 20000 or \"20k\"")),
            RateValue::Text(t) => parse_rate(&t),
        }
    }
}

impl StageForm {
    fn stage(self) -> Result<Stage, String> {
        let length = |l: &str| parse_duration(l);
        match self {
            StageForm::Text(t) => parse_stage(t.trim()),
            StageForm::Ramp { from, to, length: l } => {
                Ok(Stage { from: from.get()?, to: to.get()?, length: length(&l)? })
            }
            StageForm::Hold { rate, length: l } => {
                let r = rate.get()?;
                Ok(Stage { from: r, to: r, length: length(&l)? })
            }
        }
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate (20000, \"20k\"), a profile (\"1k..20k/30s,20k/1m\") or a list of stages")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Rate, E> {
                Ok(Rate::Constant(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                Ok(Rate::Constant(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                Ok(Rate::Constant(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                parse_rate_or_profile(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Rate, A::Error> {
                let mut stages = Vec::new();
                while let Some(form) = seq.next_element::<StageForm>()? {
                    stages.push(form.stage().map_err(serde::de::Error::custom)?);
                }
                if stages.is_empty() {
                    return Err(serde::de::Error::custom(
                        "an empty list: a profile needs at least one stage, e.g. [\"1k..20k/30s\"]",
                    ));
                }
                Ok(Rate::Profile(stages))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn one_rate_and_profiles_parse_and_print_back() {
        assert_eq!("20k".parse::<Rate>().unwrap(), Rate::Constant(20_000.0));
        assert_eq!("1.5M".parse::<Rate>().unwrap(), Rate::Constant(1_500_000.0));
        assert_eq!("0".parse::<Rate>().unwrap(), Rate::Constant(0.0));
        let p: Rate = "1k..20k/30s, 20k/1m,60k/5s,0/5s".parse().unwrap();
        assert_eq!(
            p,
            Rate::Profile(vec![
                Stage { from: 1000.0, to: 20_000.0, length: secs(30) },
                Stage { from: 20_000.0, to: 20_000.0, length: secs(60) },
                Stage { from: 60_000.0, to: 60_000.0, length: secs(5) },
                Stage { from: 0.0, to: 0.0, length: secs(5) },
            ])
        );
        assert_eq!(p.to_string(), "1000..20000/30s,20000/1m,60000/5s,0/5s");
        assert_eq!(p.to_string().parse::<Rate>().unwrap(), p);
        assert_eq!(p.length(), Some(secs(100)));
        assert_eq!(p.peak(), 60_000.0);
        assert_eq!(p.lowest(), 1000.0, "the silence sends nothing");
        assert_eq!(p.first(), 1000.0);
        assert_eq!("20k/10s".parse::<Rate>().unwrap().length(), Some(secs(10)), "one stage is a profile");
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        for (bad, says) in [
            ("1k..20k", "needs a length"),
            ("20k/", "not a duration"),
            ("1k..x/30s", "expected messages per second"),
            ("fast", "expected messages per second"),
            ("-5", "expected messages per second"),
            ("1k/30s,20k", "needs a length"),
            ("20k/soon", "not a duration"),
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let max = Duration::from_secs(30 * 24 * 3600);
        for (bad, says) in [
            ("0/5s,0/5s", "sends nothing"),
            ("1k/0s", "lasts 0s"),
            ("1k..200M/1s", "more than one run can send"),
            ("1k/800h", "longer than the longest run"),
        ] {
            let e = bad.parse::<Rate>().unwrap().check(100e6, max).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn files_take_a_number_a_string_or_a_list() {
        #[derive(Deserialize)]
        struct F {
            rate: Rate,
        }
        let read = |t: &str| toml::from_str::<F>(t).map(|f| f.rate);
        assert_eq!(read("rate = 5000").unwrap(), Rate::Constant(5000.0));
        assert_eq!(read("rate = 2.5").unwrap(), Rate::Constant(2.5));
        assert_eq!(read("rate = \"20k\"").unwrap(), Rate::Constant(20_000.0));
        let want = Rate::Profile(vec![
            Stage { from: 0.0, to: 10_000.0, length: secs(30) },
            Stage { from: 10_000.0, to: 10_000.0, length: secs(60) },
        ]);
        assert_eq!(read("rate = \"0..10k/30s,10k/1m\"").unwrap(), want);
        assert_eq!(read("rate = [\"0..10k/30s\", \"10k/1m\"]").unwrap(), want);
        let tables = "rate = [{ from = 0, to = \"10k\", for = \"30s\" }, { rate = 10000, for = \"1m\" }]";
        assert_eq!(read(tables).unwrap(), want);
        let e = read("rate = [{ rate = 10000 }]").err().unwrap().to_string();
        assert!(e.contains("rate"), "{e}");
        // Written back as a string, it reads back the same.
        #[derive(Serialize)]
        struct W<'a> {
            rate: &'a Rate,
        }
        assert_eq!(read(&toml::to_string(&W { rate: &want }).unwrap()).unwrap(), want);
        assert_eq!(
            read(&toml::to_string(&W { rate: &Rate::Constant(1000.0) }).unwrap()).unwrap(),
            Rate::Constant(1000.0)
        );
    }

    #[test]
    fn integrals_per_stage_and_between_times() {
        let p: Rate = "0..10/10s,10/10s,10..0/10s,0/5s".parse().unwrap();
        let per_stage: Vec<f64> = p.stages().iter().map(Stage::messages).collect();
        assert_eq!(per_stage, [50.0, 100.0, 50.0, 0.0]);
        assert_eq!(p.messages_between(0.0, 35.0), 200.0);
        assert_eq!(p.messages_between(0.0, 1.0), 0.5, "a ramp from 0 starts slowly: 10/10s × 1² / 2");
        assert_eq!(p.messages_between(10.0, 20.0), 100.0);
        assert_eq!(p.messages_between(30.0, 35.0), 0.0, "silence");
        assert!((p.mean(Duration::from_secs(35)) - 200.0 / 35.0).abs() < 1e-12);
        assert_eq!(Rate::Constant(7.0).messages_between(1.0, 3.0), 14.0);
    }
}
