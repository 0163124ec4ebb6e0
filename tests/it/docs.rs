//! The README and the manual (`docs/src/`, an mdBook) document every
//! subcommand, flag, CSV column, metric, shipped scenario and exit code, and
//! every command they show parses. Each list below comes from the code, so a
//! new flag, column or metric fails here until it is documented.

use eventbench::assertion::AssertionRow;
use eventbench::capacity::CapacityRow;
use eventbench::rows::{
    columns, ChannelRow, ConsumerRow, EventRow, LatencyRow, LiveRow, RepeatRow, RunsRow, ServerRow, SummaryRow,
    SweepRow, TimeseriesRow, WorkerRow,
};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The files a table of columns documents, and their columns from the row
/// structs. A new CSV file (or JSON object) gets a line here and a section
/// headed by its backticked name in `docs/src/columns.md` (or elsewhere).
fn column_sources() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("summary.csv", columns(&SummaryRow::default())),
        ("latency.csv", columns(&LatencyRow::default())),
        ("timeseries.csv", columns(&TimeseriesRow::default())),
        ("consumers.csv", columns(&ConsumerRow::default())),
        ("channels.csv", columns(&ChannelRow::default())),
        ("events.csv", columns(&EventRow::default())),
        ("runs.csv", columns(&RunsRow::default())),
        ("workers.csv", columns(&WorkerRow::default())),
        ("server.csv", columns(&ServerRow::default())),
        ("capacity.csv", columns(&CapacityRow::default())),
        ("assertions.csv", columns(&AssertionRow::default())),
        ("repeat.csv", columns(&RepeatRow::default())),
        ("sweep.csv", columns(&SweepRow::default())),
        ("--format jsonl", columns(&LiveRow::default())),
    ]
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap()
}

/// The manual's chapters in `SUMMARY.md`'s order.
fn chapters() -> Vec<(String, String)> {
    let src = Path::new(ROOT).join("docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).expect("docs/src/SUMMARY.md");
    summary
        .lines()
        .filter_map(|l| l.split("](").nth(1).and_then(|rest| rest.split(')').next()))
        .map(|file| {
            let text =
                std::fs::read_to_string(src.join(file)).unwrap_or_else(|e| panic!("SUMMARY.md lists {file}: {e}"));
            (file.to_string(), text)
        })
        .collect()
}

/// The README and every chapter, as one text.
fn all_docs() -> String {
    let mut all = readme();
    for (_, text) in chapters() {
        all.push('\n');
        all.push_str(&text);
    }
    all
}

/// The backticked names in the first column of the table under the heading
/// `` `file` `` (any level), or, for a section without a table that says it
/// has "the columns of `other.csv`", that file's.
fn documented(docs: &str, file: &str) -> Vec<String> {
    let heading = format!("# `{file}`\n");
    let section = docs.split(&heading).nth(1).unwrap_or_else(|| panic!("the docs have no section headed `{file}`"));
    let body: Vec<&str> = section.lines().take_while(|l| !l.starts_with('#')).collect();
    let names: Vec<String> = body
        .iter()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.trim_start_matches("| `").split('`').next().unwrap().to_string())
        .collect();
    if !names.is_empty() {
        return names;
    }
    let text = body.join(" ");
    let other = text
        .split("the columns of `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("`{file}` has neither a column table nor \"the columns of `file`\""));
    documented(docs, other)
}

#[test]
fn every_csv_column_is_documented_in_order() {
    let docs = all_docs();
    for (file, columns) in column_sources() {
        assert_eq!(documented(&docs, file), columns, "the columns of {file}");
    }
}

#[test]
fn the_readme_is_short_and_opens_with_the_two_commands() {
    let readme = readme();
    let lines = readme.lines().count();
    assert!(lines <= 260, "the README is read in five minutes: {lines} lines; the rest belongs in docs/");
    let top: String = readme.lines().take(40).collect::<Vec<_>>().join("\n");
    assert!(top.contains("./scripts/demo.sh") && top.contains("./scripts/test.sh"), "{top}");
    assert!(readme.contains("cargo install --locked --path .") && readme.contains("target/release/eventbench"));
    assert!(readme.contains("(docs/src/SUMMARY.md)"), "the README links the manual");
}

#[test]
fn every_chapter_is_in_the_summary() {
    let listed: Vec<String> = chapters().into_iter().map(|(file, _)| file).collect();
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs/src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(listed.contains(&name), "docs/src/{name} is not in SUMMARY.md, so the book leaves it out");
        }
    }
}

/// Every long flag of `cmd` and of its subcommands, with the subcommand's name.
fn long_flags(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        if let Some(long) = arg.get_long().filter(|l| !["help", "version"].contains(l)) {
            out.push((path.to_string(), format!("--{long}")));
        }
    }
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        long_flags(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_subcommand_flag_and_shipped_scenario_is_documented() {
    use clap::CommandFactory;
    let docs = all_docs();
    let cli = eventbench::cli::Cli::command();
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let shown = format!("eventbench {}", sub.get_name());
        assert!(docs.contains(&shown), "the docs never show `{shown}`");
    }
    let mut flags = Vec::new();
    long_flags(&cli, "eventbench", &mut flags);
    assert!(flags.len() > 50, "{flags:?}");
    for (command, flag) in flags {
        // Written as code: `--flag` in a table or in text, or in a shell example.
        let documented = docs.contains(&format!("`{flag}")) || docs.contains(&format!(" {flag} "));
        assert!(documented, "the docs do not document {flag} of `{command}`");
    }
    // The shipped-scenario table has a row for each, and the keys paragraph names every key.
    let table = docs.split("Shipped scenarios").nth(1).expect("a shipped-scenario table");
    for (name, _) in eventbench::scenario::shipped::SHIPPED {
        assert!(table.contains(&format!("| `{name}` |")), "the shipped-scenario table has no row for {name}");
    }
    let keys = docs.split("\nKeys: ").nth(1).expect("a Keys: paragraph").split("\n\n").next().unwrap();
    // Each flag of the scenario is a key of its file (the password is never read from one).
    let scenario = <eventbench::Scenario as clap::Args>::augment_args(clap::Command::new("scenario"));
    let all: Vec<String> = scenario.get_arguments().filter_map(|a| a.get_long()).map(String::from).collect();
    assert!(all.len() > 30, "{all:?}");
    for key in all.iter().filter(|k| k.as_str() != "password") {
        assert!(keys.contains(&format!("`{key}`")), "the scenario keys in the docs omit `{key}`");
    }
}

#[test]
fn every_metric_is_documented() {
    use eventbench::export::{families, server_families, Labels};
    let labels = Labels { run_id: "r".into(), transport: "pubsub".into() };
    let mut all = families(&labels, &eventbench::meters::Snapshot::default(), 0, None);
    all.extend(server_families(&labels, &[]));
    assert!(all.len() > 15, "{}", all.len());
    let docs = all_docs();
    for family in all {
        // A counter's samples carry `_total`, and the tables name them so.
        let suffix = if family.kind == eventbench::export::Kind::Counter { "_total" } else { "" };
        let name = format!("{}{suffix}", family.name);
        assert!(docs.contains(&format!("| `{name}` |")), "the metric tables omit {name}");
    }
}

/// The exit codes the code gives: every `const EXIT_*: u8 = N;` under `src/`, and 0.
fn exit_codes(dir: &Path, out: &mut Vec<(String, u8)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            exit_codes(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let Some(rest) = line.split("const EXIT_").nth(1) else { continue };
                let Some((name, value)) = rest.split_once(": u8 =") else { continue };
                let code = value.trim().trim_end_matches(';').parse().unwrap_or_else(|_| panic!("{line}"));
                out.push((format!("EXIT_{name}"), code));
            }
        }
    }
}

#[test]
fn every_exit_code_is_documented() {
    let mut codes = vec![("success".to_string(), 0)];
    exit_codes(&Path::new(ROOT).join("src"), &mut codes);
    assert!(codes.len() >= 5, "{codes:?}");
    let page = std::fs::read_to_string(Path::new(ROOT).join("docs/src/exit-codes.md")).unwrap();
    let help: Vec<u8> = eventbench::cli::EXIT_STATUS.iter().map(|(code, _)| *code).collect();
    for (name, code) in codes {
        assert!(page.contains(&format!("\n| `{code}` |")), "docs/src/exit-codes.md has no row for {code} ({name})");
        assert!(help.contains(&code), "cli::EXIT_STATUS (--help, the man page) omits {code} ({name})");
    }
}

/// Splits a shell line as sh would for a plain command: words, quotes, a
/// comment; stops at a pipe, a redirection or a command separator.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ' | '\t') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (None, '#') if !in_word => break,
            (None, '|' | '>' | '<' | ';' | '&') if !in_word => break,
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The eventbench commands of the docs' shell examples (fenced blocks), with where they are.
fn shown_commands() -> Vec<(String, String)> {
    let mut docs = vec![("README.md".to_string(), readme())];
    docs.extend(chapters().into_iter().map(|(f, t)| (format!("docs/src/{f}"), t)));
    let mut out = Vec::new();
    for (file, text) in docs {
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            let line = line.trim().trim_start_matches("$ ");
            let line = line.strip_prefix("./target/release/").unwrap_or(line);
            if fenced && line.starts_with("eventbench ") {
                out.push((file.clone(), line.to_string()));
            }
        }
    }
    out
}

#[test]
fn every_command_shown_parses() {
    use clap::Parser;
    use eventbench::cli::{Cli, Command};
    let commands = shown_commands();
    assert!(commands.len() > 40, "{}", commands.len());
    let shipped: Vec<&str> = eventbench::scenario::shipped::SHIPPED.iter().map(|(name, _)| *name).collect();
    for (file, line) in commands {
        let words = shell_words(&line);
        let cli = Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{file}: `{line}` does not parse: {e}"));
        let scenario = match &cli.command {
            Command::Run(a) => a.scenario.as_ref(),
            Command::Compare(a) => a.run.scenario.as_ref(),
            Command::Capacity(a) => a.run.scenario.as_ref(),
            _ => None,
        };
        // A scenario is a shipped name, which works anywhere, or a file of the user's own.
        if let Some(s) = scenario.map(|s| s.to_string_lossy().to_string()) {
            assert!(
                s.ends_with(".toml") || shipped.contains(&s.as_str()),
                "{file}: `{line}`: {s} is neither a shipped scenario nor a .toml file"
            );
            assert!(!s.starts_with("scenarios/"), "{file}: `{line}`: a shipped scenario is run by name, from anywhere");
        }
    }
}

#[test]
fn shell_words_split_as_sh_does() {
    assert_eq!(
        shell_words("eventbench run --assert 'p99_us<2000' # a gate"),
        ["eventbench", "run", "--assert", "p99_us<2000"]
    );
    assert_eq!(shell_words("eventbench man | man -l -"), ["eventbench", "man"]);
    assert_eq!(shell_words("eventbench completions bash > /etc/x"), ["eventbench", "completions", "bash"]);
    assert_eq!(shell_words("eventbench run --name \"a b\""), ["eventbench", "run", "--name", "a b"]);
}
