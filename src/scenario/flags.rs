//! The scenario flags of a command line, laid over a scenario file.
//!
//! clap's derive on [`Scenario`] makes every field a flag. A flag given on the
//! command line or through the environment (clap's [`ValueSource`]) replaces
//! the file's value of the same key; a flag left out leaves the file's value,
//! or the default, alone. The values travel as the TOML a file would have, key
//! by key, so nothing here names a field: a new one needs no code here.

use super::{Password, Scenario, ScenarioError};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use std::collections::BTreeMap;
use std::path::Path;

/// The scenario flags given to `run` or `compare`; flatten it into their arguments.
#[derive(Debug, Clone)]
pub struct ScenarioFlags {
    /// Each given flag under its key (its long name), with its value as a file
    /// writes it; `None` for a value a file leaves out, the default (`--private-cluster 0`).
    given: BTreeMap<String, Option<toml::Value>>,
    /// `--password` or REDIS_PASSWORD: never TOML (see [`Scenario::password`]), so carried apart.
    password: Option<Password>,
}

/// Set on the command line or through the environment, not a default.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
}

impl FromArgMatches for ScenarioFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values = Scenario::from_arg_matches(matches)?;
        // JSON here only because it holds any u64; the TOML conversion below names the flag that does not fit.
        let serde_json::Value::Object(written) = serde_json::to_value(&values).expect("a scenario serializes") else {
            unreachable!("a struct serializes as a map")
        };
        let mut flags = BTreeMap::new();
        for arg in Scenario::augment_args(Command::new("scenario")).get_arguments() {
            let id = arg.get_id().as_str();
            if !given(matches, id) {
                continue;
            }
            let key = arg.get_long().expect("every scenario field is a --flag");
            // clap's derive gathers a repeated flag into a Vec only: a map field
            // (--redis-config) holds its first occurrence, so all are gathered here.
            let value = match matches.try_get_many::<BTreeMap<String, String>>(id) {
                Ok(Some(maps)) => Some(toml::Value::Table(
                    maps.flatten().map(|(k, v)| (k.clone(), toml::Value::String(v.clone()))).collect(),
                )),
                _ => written.get(key).map(toml::Value::try_from).transpose().map_err(|e| {
                    clap::Error::raw(
                        ErrorKind::ValueValidation,
                        format!("invalid value for '--{key}': {e} for a scenario file"),
                    )
                })?,
            };
            flags.insert(key.to_string(), value);
        }
        Ok(ScenarioFlags { given: flags, password: values.password })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for ScenarioFlags {
    fn augment_args(cmd: Command) -> Command {
        Scenario::augment_args(cmd)
    }
    fn augment_args_for_update(cmd: Command) -> Command {
        Scenario::augment_args_for_update(cmd)
    }
}

impl ScenarioFlags {
    /// Whether the flag of `key` (e.g. `"rate"`) was given, on the command line or through the environment.
    pub fn gave(&self, key: &str) -> bool {
        self.given.contains_key(key)
    }

    /// The scenario file (if any) with the given flags laid over it, validated.
    /// Without a file, the run is named after its transport unless `--name` says otherwise.
    pub fn scenario(&self, file: Option<&Path>) -> Result<Scenario, ScenarioError> {
        let s = match file {
            Some(path) => self.over(&Scenario::load(path)?)?,
            None if self.gave("name") => self.over(&Scenario::default())?,
            None => {
                let s = self.over(&Scenario::default())?;
                Scenario { name: s.transport.to_string(), ..s }
            }
        };
        // A profile on the command line replaces a file's duration; beside a --duration, it is refused.
        let s = s.with_profile_length(self.gave("duration"))?;
        s.validate()?;
        Ok(s)
    }

    /// `base` with the given flags laid over it: each replaces its key's value,
    /// except that a map (`--redis-config`) adds to the base's, and a switch
    /// (`--cluster`) can only turn on.
    fn over(&self, base: &Scenario) -> Result<Scenario, ScenarioError> {
        // A value read from a file that does not write back (a key's value out of its range) is
        // the file's to fix, named by its key; it must never take the process down.
        let mut table = toml::Table::try_from(base)
            .map_err(|e| ScenarioError::Key { key: "scenario".into(), message: e.to_string() })?;
        for (key, value) in &self.given {
            match (value, table.get_mut(key)) {
                (Some(toml::Value::Table(add)), Some(toml::Value::Table(map))) => map.extend(add.clone()),
                (Some(value), _) => {
                    table.insert(key.clone(), value.clone());
                }
                (None, _) => {
                    table.remove(key);
                }
            }
        }
        let s = Scenario::from_table(table)?;
        Ok(Scenario { password: self.password.clone().or_else(|| base.password.clone()), ..s })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Rate;
    use std::time::Duration;

    /// The scenario flags of `args`, the environment left out.
    fn flags(args: &[&str]) -> ScenarioFlags {
        let cmd = ScenarioFlags::augment_args(Command::new("t")).mut_args(|a| a.env(None::<&str>));
        let matches = cmd.try_get_matches_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        ScenarioFlags::from_arg_matches(&matches).unwrap()
    }

    const FILE: &str = r#"
name = "file"
transport = "streams"
producers = 3
rate = 5000
duration = "3s"
warmup = "500ms"
disconnect = ["50%@1s+1s"]
crash = "25%@2s"
maxlen = 100
user = "bench"
cluster = true
private-cluster = 3

[redis-config]
hz = "20"
maxmemory = "100mb"
"#;

    #[test]
    fn a_given_flag_replaces_its_key_and_the_others_keep_the_file() {
        let file = Scenario::from_toml(FILE).unwrap();
        let s = flags(&[
            "--rate",
            "20k",
            "--duration",
            "5s",
            "--disconnect",
            "10%@1s+1s",
            "--disconnect",
            "20%@2s+1s",
            "--maxlen",
            "7",
            "--slow",
            "25%:1ms",
            "--tls-insecure",
            "--redis-config",
            "maxmemory 1gb",
            "--redis-config",
            "timeout 5",
            "--private-cluster",
            "0",
            "--reconnect",
            "off",
        ])
        .over(&file)
        .unwrap();
        // Numbers, durations, lists, options: the flag's value.
        assert_eq!((s.rate, s.duration), (Rate::Constant(20_000.0), Duration::from_secs(5)));
        assert_eq!(s.disconnect.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10%@1s+1s", "20%@2s+1s"]);
        assert_eq!((s.maxlen, s.slow.map(|x| x.to_string())), (Some(7), Some("25%:1ms".into())));
        assert!(s.tls_insecure && !s.reconnect);
        // A flag set to what a file leaves out (the default) still overrides the file.
        assert_eq!(s.private_cluster, 0);
        // A map: the flags add to the file's settings, and win over the same key.
        let config: Vec<_> = s.redis_config.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(config, ["hz 20", "maxmemory 1gb", "timeout 5"]);
        // The rest is the file's, whether it differs from the default or not.
        assert_eq!((s.name.as_str(), s.transport, s.producers), ("file", super::super::TransportKind::Streams, 3));
        assert_eq!((s.warmup, s.crash.len(), s.user.as_deref()), (Duration::from_millis(500), 1, Some("bench")));
        assert!(s.cluster, "a switch left out keeps the file's true");
        assert_eq!((s.consumers, s.drain), (1, Duration::from_secs(2)));

        // No flags: the file as it is.
        assert_eq!(flags(&[]).over(&file).unwrap(), file);
        // A switch given turns on what the file left off.
        let off = Scenario::from_toml("cluster = false\n").unwrap();
        assert!(flags(&["--cluster"]).over(&off).unwrap().cluster);
        assert!(!flags(&[]).over(&off).unwrap().cluster);
        // A list given replaces the file's; left out, the file's stays.
        let asserted = Scenario::from_toml("assert = [\"lost==0\", \"sent>0\"]\n").unwrap();
        assert_eq!(flags(&["--assert", "p99_us<2000"]).over(&asserted).unwrap().assert.len(), 1);
        assert_eq!(flags(&[]).over(&asserted).unwrap().assert.len(), 2);
    }

    #[test]
    fn the_run_is_named_by_flag_else_file_else_transport() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("named.toml");
        std::fs::write(&named, "name = \"in-file\"\nrate = 10\n").unwrap();
        let unnamed = dir.path().join("stem.toml");
        std::fs::write(&unnamed, "rate = 10\n").unwrap();
        let name = |args: &[&str], file: Option<&Path>| flags(args).scenario(file).unwrap().name;
        assert_eq!(name(&[], None), "pubsub");
        assert_eq!(name(&["--transport", "streams"], None), "streams");
        assert_eq!(name(&["--transport", "streams", "--name", "mine"], None), "mine");
        assert_eq!(name(&["--transport", "streams"], Some(&named)), "in-file");
        assert_eq!(name(&["--transport", "streams"], Some(&unnamed)), "stem");
        assert_eq!(name(&["--name", "mine"], Some(&named)), "mine");
        let s = flags(&["--rate", "20"]).scenario(Some(&unnamed)).unwrap();
        assert_eq!(s.rate, Rate::Constant(20.0));
        // Flags over a file are validated together.
        let e = flags(&["--duration", "1s", "--disconnect", "50%@1s+1s"]).scenario(Some(&unnamed)).unwrap_err();
        assert!(e.to_string().starts_with("disconnect"), "{e}");
    }

    #[test]
    fn the_defaults_are_the_flags_defaults_and_help_shows_them() {
        assert_eq!(flags(&[]).scenario(None).unwrap(), Scenario::default());
        assert_eq!(Scenario::from_toml("").unwrap(), Scenario::default());
        let d = Scenario::default();
        assert_eq!(
            (d.name.as_str(), d.rate, d.duration, d.reconnect),
            ("pubsub", Rate::Constant(1000.0), Duration::from_secs(10), true)
        );
        assert!(d.url.is_none() && d.password.is_none() && d.redis_config.is_empty() && d.disconnect.is_empty());

        let help = ScenarioFlags::augment_args(Command::new("t")).render_long_help().to_string();
        for shown in ["[default: 1000]", "[default: 10s]", "[default: on]", "[default: pubsub]", "[env: REDIS_URL]"] {
            assert!(help.contains(shown), "{shown} missing from\n{help}");
        }
        // Neither the name's stand-in default nor the map's empty one.
        assert!(!help.contains("[default: ]") && help.matches("[default: pubsub]").count() == 1, "{help}");
    }

    #[test]
    fn the_password_comes_from_the_flag_or_the_environment_never_a_file() {
        let cmd = ScenarioFlags::augment_args(Command::new("t"));
        let arg = cmd.get_arguments().find(|a| a.get_id() == "password").unwrap();
        assert_eq!(arg.get_env().and_then(|v| v.to_str()), Some("REDIS_PASSWORD"));
        assert!(arg.is_hide_env_values_set());
        let url = cmd.get_arguments().find(|a| a.get_id() == "url").unwrap();
        assert_eq!(url.get_env().and_then(|v| v.to_str()), Some("REDIS_URL"));

        // The same command with variables of this test's own, as REDIS_PASSWORD and REDIS_URL.
        std::env::set_var("EVENTBENCH_TEST_FLAGS_PASSWORD", "from-env");
        std::env::set_var("EVENTBENCH_TEST_FLAGS_URL", "redis://127.0.0.1:1");
        let cmd = cmd
            .mut_arg("password", |a| a.env("EVENTBENCH_TEST_FLAGS_PASSWORD"))
            .mut_arg("url", |a| a.env("EVENTBENCH_TEST_FLAGS_URL"));
        let parse = |args: &[&str]| {
            let matches = cmd.clone().try_get_matches_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
            ScenarioFlags::from_arg_matches(&matches).unwrap()
        };
        let file = Scenario::from_toml("url = \"redis://file:6379\"\n").unwrap();
        let s = parse(&[]).over(&file).unwrap();
        assert_eq!(s.password, Some(Password("from-env".into())));
        assert_eq!(s.url.as_deref(), Some("redis://127.0.0.1:1"), "the environment overrides the file");
        let s = parse(&["--password", "from-flag", "--url", "redis://flag:6379"]).over(&file).unwrap();
        assert_eq!(
            (s.password.clone(), s.url.as_deref()),
            (Some(Password("from-flag".into())), Some("redis://flag:6379"))
        );
        assert!(!s.to_toml().contains("from-flag"), "{}", s.to_toml());
        assert!(Scenario::from_toml("password = \"x\"\n").is_err());
    }

    #[test]
    fn every_file_key_is_a_flag_and_every_flag_a_file_key() {
        // serde names every key it knows when it refuses an unknown one.
        let refused = Scenario::from_toml("not-a-key = 1\n").unwrap_err().message().to_string();
        let keys: Vec<&str> = refused.split("expected one of ").nth(1).unwrap().split('`').skip(1).step_by(2).collect();
        let cmd = ScenarioFlags::augment_args(Command::new("t"));
        let flags: Vec<&str> = cmd.get_arguments().map(|a| a.get_long().expect("a --flag, not a positional")).collect();
        assert!(keys.len() > 30 && keys.contains(&"redis-config"), "{refused}");
        // `vary` is `eventbench sweep`'s axes: its flag is sweep's --vary, not one of run's.
        assert!(keys.contains(&"vary"), "{refused}");
        for key in keys.iter().filter(|k| **k != "vary") {
            assert!(flags.contains(key), "file key {key} has no --{key}");
        }
        // The password only: never in a file.
        let without_key: Vec<_> = flags.iter().filter(|f| !keys.contains(f)).collect();
        assert_eq!(without_key, [&"password"], "flags that no file key matches");
    }

    #[test]
    fn a_number_too_large_for_a_file_is_a_flag_error() {
        let cmd = ScenarioFlags::augment_args(Command::new("t"));
        let matches = cmd.try_get_matches_from(["t", "--maxlen", "18446744073709551615"]).unwrap();
        let e = ScenarioFlags::from_arg_matches(&matches).unwrap_err().to_string();
        assert!(e.contains("--maxlen"), "{e}");
    }
}
