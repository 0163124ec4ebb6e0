//! The scenario file reader, fuzzed: arbitrary TOML values (numbers at
//! their extremes, NaN, strings in the values' own alphabets, empty and
//! nested lists, tables) under every key a scenario file has, read the way
//! `eventbench run FILE` reads them (the file, the flags laid over it,
//! validation). It must never panic; a refusal is one line naming a key.
//! `rate = []` panicked here (issue 28, item 6); empty lists are among the
//! values tried (a sweep of every key with every awkward value, and the
//! random files each key alone), so it would have been found.

use clap::Parser;
use eventbench::cli::{Cli, Command};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Every key of a scenario file: serde names them when it refuses an unknown one.
fn keys() -> Vec<String> {
    let refused = eventbench::Scenario::from_toml("not-a-key = 1\n").unwrap_err().message().to_string();
    let list = refused.split("expected one of ").nth(1).unwrap();
    list.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn value() -> impl Strategy<Value = toml::Value> {
    let text = prop_oneof![
        "[0-9a-z%@+.:/,= -]{0,12}",
        Just("1s".to_string()),
        Just("18446744073709551615s".to_string()),
        Just("50%@1s+1s".to_string()),
        Just("1k..2k/1s".to_string()),
        Just("25%:1ms".to_string()),
        Just("redis://127.0.0.1:1".to_string()),
        Just("streams".to_string()),
        Just("lost==0".to_string()),
        Just("hz 10".to_string()),
    ];
    let leaf = prop_oneof![
        any::<bool>().prop_map(toml::Value::Boolean),
        any::<i64>().prop_map(toml::Value::Integer),
        prop_oneof![Just(0i64), Just(-1), Just(1), Just(3), Just(100_000), Just(i64::MAX)]
            .prop_map(toml::Value::Integer),
        any::<f64>().prop_map(toml::Value::Float),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), Just(1e300)].prop_map(toml::Value::Float),
        text.prop_map(toml::Value::String),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            proptest::collection::btree_map("from|to|rate|for|[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// A scenario file: a few keys of the real ones, each with an arbitrary value.
fn file() -> impl Strategy<Value = BTreeMap<String, toml::Value>> {
    let keys = keys();
    assert!(keys.len() > 30, "{keys:?}");
    proptest::collection::btree_map(proptest::sample::select(keys), value(), 1..5)
}

/// Reads `table` as `eventbench run FILE` does; a refusal must be one line naming a key.
fn read(table: toml::Table) -> Result<(), String> {
    let text = toml::to_string(&table).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz.toml");
    std::fs::write(&path, &text).unwrap();
    let cli = Cli::try_parse_from(["eventbench", "run", path.to_str().unwrap()]).unwrap();
    let Command::Run(args) = cli.command else { unreachable!() };
    match args.scenario() {
        Ok(_) => Ok(()),
        Err(e) => {
            let line = e.to_string();
            if line.lines().count() != 1 || !keys().iter().any(|k| line.contains(k.as_str())) {
                return Err(format!("{line}\n{text}"));
            }
            Ok(())
        }
    }
}

#[test]
fn every_key_with_every_awkward_value_is_read_or_refused_by_name() {
    let awkward = [
        toml::Value::Array(vec![]),
        toml::Value::Array(vec![toml::Value::Array(vec![])]),
        toml::Value::Array(vec![toml::Value::Table(toml::Table::new())]),
        toml::Value::Table(toml::Table::new()),
        toml::Value::Float(f64::NAN),
        toml::Value::Float(f64::INFINITY),
        toml::Value::Integer(-1),
        toml::Value::Integer(i64::MAX),
        toml::Value::String(String::new()),
        toml::Value::Boolean(true),
    ];
    let mut failed = Vec::new();
    for key in keys() {
        for value in &awkward {
            let table: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
            let read = std::panic::catch_unwind(|| read(table));
            match read {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("{key} = {value}: {e}")),
                Err(_) => failed.push(format!("{key} = {value}: panicked")),
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_scenario_reader_never_panics_and_names_the_key(table in file()) {
        // The whole file, then each key alone: a key's trouble is not hidden behind another's refusal.
        for (key, value) in &table {
            let one: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
            prop_assert!(read(one).is_ok(), "{:?}", read([(key.clone(), value.clone())].into_iter().collect()));
        }
        let whole = read(table.into_iter().collect());
        prop_assert!(whole.is_ok(), "{:?}", whole);
    }
}

#[test]
fn the_values_that_crashed_are_refused_naming_their_key() {
    for (text, key) in [("rate = []\n", "rate"), ("rate = [[]]\n", "rate"), ("rate = [{}]\n", "rate")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        let cli = Cli::try_parse_from(["eventbench", "run", path.to_str().unwrap()]).unwrap();
        let Command::Run(args) = cli.command else { unreachable!() };
        let e = args.scenario().unwrap_err().to_string();
        assert!(e.contains(&format!("{key}: ")), "{text}: {e}");
    }
}
