//! The README documents every CSV column; this keeps the two from drifting.

use eventbench::capacity::CapacityRow;
use eventbench::rows::{
    columns, ConsumerRow, EventRow, LatencyRow, LiveRow, RunsRow, SummaryRow, TimeseriesRow, WorkerRow,
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
    assert_eq!(documented(&readme, "capacity.csv"), columns(&CapacityRow::default()));
    assert_eq!(documented(&readme, "--format jsonl"), columns(&LiveRow::default()));
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let top: String = readme.lines().take(8).collect::<Vec<_>>().join("\n");
    assert!(top.contains("./scripts/demo.sh") && top.contains("./scripts/test.sh"), "{top}");
}
