//! The README documents every CSV column; this keeps the two from drifting.

use eventbench::capacity::CapacityRow;
use eventbench::rows::{
    columns, ConsumerRow, EventRow, LatencyRow, LiveRow, RepeatRow, RunsRow, ServerRow, SummaryRow, TimeseriesRow,
    WorkerRow,
};

/// The backticked names in the first column of the table under `### \`file\``,
/// or, for a section without a table that says it has "the columns of
/// \`other.csv\`", that file's.
fn documented(readme: &str, file: &str) -> Vec<String> {
    let heading = format!("### `{file}`");
    let section = readme.split(&heading).nth(1).unwrap_or_else(|| panic!("README has no section {heading}"));
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
        .unwrap_or_else(|| panic!("{heading} has neither a column table nor \"the columns of `file`\""));
    documented(readme, other)
}

#[test]
fn every_csv_column_is_documented_in_order() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert_eq!(documented(&readme, "summary.csv"), columns(&SummaryRow::default()));
    assert_eq!(documented(&readme, "latency.csv"), columns(&LatencyRow::default()));
    assert_eq!(documented(&readme, "timeseries.csv"), columns(&TimeseriesRow::default()));
    assert_eq!(documented(&readme, "consumers.csv"), columns(&ConsumerRow::default()));
    assert_eq!(documented(&readme, "events.csv"), columns(&EventRow::default()));
    assert_eq!(documented(&readme, "runs.csv"), columns(&RunsRow::default()));
    assert_eq!(documented(&readme, "workers.csv"), columns(&WorkerRow::default()));
    assert_eq!(documented(&readme, "server.csv"), columns(&ServerRow::default()));
    assert_eq!(documented(&readme, "capacity.csv"), columns(&CapacityRow::default()));
    assert_eq!(documented(&readme, "repeat.csv"), columns(&RepeatRow::default()));
    assert_eq!(documented(&readme, "--format jsonl"), columns(&LiveRow::default()));
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let top: String = readme.lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(top.contains("./scripts/demo.sh") && top.contains("./scripts/test.sh"), "{top}");
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
fn every_subcommand_flag_and_shipped_scenario_is_in_the_readme() {
    use clap::CommandFactory;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let cli = eventbench::cli::Cli::command();
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let shown = format!("eventbench {}", sub.get_name());
        assert!(readme.contains(&shown), "README never shows `{shown}`");
    }
    let mut flags = Vec::new();
    long_flags(&cli, "eventbench", &mut flags);
    assert!(flags.len() > 50, "{flags:?}");
    for (command, flag) in flags {
        // Written as code: `--flag` in a table or in text, or in a shell example.
        let documented = readme.contains(&format!("`{flag}")) || readme.contains(&format!(" {flag} "));
        assert!(documented, "README does not document {flag} of `{command}`");
    }
    // The shipped-scenario table has a row for each, and the keys paragraph names every key.
    let table = readme.split("Shipped scenarios").nth(1).expect("a shipped-scenario table");
    for (name, _) in eventbench::scenario::shipped::SHIPPED {
        assert!(table.contains(&format!("| `{name}` |")), "the shipped-scenario table has no row for {name}");
    }
    let keys = readme.split("\nKeys: ").nth(1).expect("a Keys: paragraph").split("\n\n").next().unwrap();
    // Each flag of the scenario is a key of its file (the password is never read from one).
    let scenario = <eventbench::Scenario as clap::Args>::augment_args(clap::Command::new("scenario"));
    let all: Vec<String> = scenario.get_arguments().filter_map(|a| a.get_long()).map(String::from).collect();
    assert!(all.len() > 30, "{all:?}");
    for key in all.iter().filter(|k| k.as_str() != "password") {
        assert!(keys.contains(&format!("`{key}`")), "the scenario keys in the README omit `{key}`");
    }
}
