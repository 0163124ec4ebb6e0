//! Issue 28's output cases that need no server (the loopback transport):
//! no CSV cell a run writes makes a spreadsheet run a formula (item 13),
//! a run with no deliveries shows no latency rather than 0 (item 25), and
//! each assertion's verdict reaches the JSON summary of `--format json` and
//! `--format jsonl` (issue 29, item 6).

use crate::common::{bin, stderr, stdout};
use std::path::Path;
use std::process::Output;

/// A short loopback run into `dir` with `args` added.
fn loopback(dir: &Path, args: &[&str]) -> Output {
    loopback_at(dir, "2000", "0s", args)
}

/// A loopback run of one second at `rate` after `warmup`.
fn loopback_at(dir: &Path, rate: &str, warmup: &str, args: &[&str]) -> Output {
    bin()
        .args(["run", "--transport", "loopback", "--rate", rate, "--duration", "1s", "--warmup", warmup])
        .args(["--drain", "500ms", "--consumers", "2", "--quiet", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// Every CSV file in `dir`, as (name, header, rows).
fn csv_files(dir: &Path) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "csv") {
            let mut r = csv::Reader::from_path(&p).unwrap();
            let header = r.headers().unwrap().iter().map(str::to_owned).collect();
            let rows = r.records().map(|rec| rec.unwrap().iter().map(str::to_owned).collect()).collect();
            files.push((p.file_name().unwrap().to_string_lossy().into_owned(), header, rows));
        }
    }
    files.sort();
    files
}

/// A cell a spreadsheet would run: one that starts with `= + - @`, a tab or
/// a carriage return and is not a number.
fn runs_as_formula(cell: &str) -> bool {
    let number = cell.parse::<f64>().is_ok() && cell.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    cell.starts_with(['=', '+', '-', '@', '\t', '\r']) && !number
}

#[test]
fn no_cell_of_any_csv_a_run_writes_runs_as_a_formula() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // An assertion that starts with `-` (and holds), and a description a spreadsheet would run.
    let file = tmp.path().join("hostile.toml");
    let toml = "assert = [\"-1<lost\", \"lost>=-1\"]\ndescription = \"=cmd|' -C calc'!A0\"\n";
    std::fs::write(&file, toml).unwrap();
    let o = loopback(&dir, &[file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let files = csv_files(&dir);
    let names: Vec<&str> = files.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"assertions.csv") && names.contains(&"summary.csv"), "{names:?}");
    for (name, header, rows) in &files {
        for cell in header.iter().chain(rows.iter().flatten()) {
            assert!(!runs_as_formula(cell), "{name}: {cell:?} would run as a formula");
        }
    }
    let (_, _, asserts) = files.iter().find(|(n, _, _)| n == "assertions.csv").unwrap();
    assert_eq!(asserts[0][..2], ["'-1<lost".to_string(), "pass".into()], "{asserts:?}");
    assert_eq!(asserts[1][0], "lost>=-1", "a cell that runs nothing is written as it is");

    // `eventbench report` reads the files back as they were meant, and rebuilds the page from them.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let o = bin().args(["report"]).arg(&dir).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("-1&lt;lost") && !html.contains("'-1&lt;lost"), "the page shows the assertion as given");
}

#[test]
fn a_run_that_delivered_nothing_shows_no_latency_rather_than_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Every consumer away for the whole measured phase, whose first message is due 200 ms in: nothing delivered.
    let away = ["--disconnect", "100%@0s+1s", "--assert", "p99_us<1000000"];
    let o = loopback_at(&dir, "4", "300ms", &[&away[..], &["--format", "table"]].concat());
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "an assertion on a latency there is none of fails: {err}");
    assert!(out.contains("latency  no deliveries"), "{out}");
    assert!(!out.contains("0.0 µs"), "{out}");
    assert!(out.contains("✗ p99_us<1000000 (p99_us is empty)"), "{out}");

    let (_, header, rows) = csv_files(&dir).into_iter().find(|(n, _, _)| n == "summary.csv").unwrap();
    let cell = |column: &str| rows[0][header.iter().position(|h| h == column).unwrap()].clone();
    assert_eq!(cell("delivered"), "0");
    for column in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "raw_p50_us", "raw_p99_us", "raw_max_us"] {
        assert_eq!(cell(column), "", "{column} of a run that delivered nothing");
    }
    let (_, header, rows) = csv_files(&dir).into_iter().find(|(n, _, _)| n == "consumers.csv").unwrap();
    let p99 = header.iter().position(|h| h == "p99_us").unwrap();
    assert!(rows.iter().all(|r| r[p99].is_empty()), "{rows:?}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("no deliveries") && !html.contains(">0.0 µs<"), "the page says so too");

    // The JSON summary: null, not 0, and the assertion's verdict with no observed value.
    let o = loopback_at(&tmp.path().join("json"), "4", "300ms", &[&away[..], &["--format", "json"]].concat());
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!((j["delivered"].as_u64(), j["p99_us"].is_null(), j["p50_us"].is_null()), (Some(0), true, true), "{j}");
    assert_eq!(j["assertions"][0]["verdict"], "fail", "{j}");
    assert!(j["assertions"][0]["observed"].is_null(), "{j}");
}

#[test]
fn every_json_summary_carries_each_assertions_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let gates = ["--assert", "p99_us<10000000", "--assert", "lost>0"];
    let o = loopback(&tmp.path().join("json"), &[&gates[..], &["--format", "json"]].concat());
    assert_eq!(o.status.code(), Some(3), "lost>0 fails: {}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let check = |j: &serde_json::Value| {
        let a = j["assertions"].as_array().unwrap_or_else(|| panic!("no assertions: {j}"));
        assert_eq!(a.len(), 2, "{j}");
        assert_eq!((a[0]["assertion"].as_str(), a[0]["verdict"].as_str()), (Some("p99_us<10000000"), Some("pass")));
        assert_eq!(a[0]["observed"], j["p99_us"], "the observed value is the column's: {j}");
        assert_eq!((a[1]["assertion"].as_str(), a[1]["verdict"].as_str()), (Some("lost>0"), Some("fail")));
        assert_eq!(a[1]["observed"], 0.0, "{j}");
        assert_eq!(a[1]["measured"], "lost = 0", "{j}");
    };
    check(&j);
    assert!(j["results_dir"].is_string(), "{j}");

    // jsonl: its last line is the summary, with the same verdicts.
    let o = loopback(&tmp.path().join("jsonl"), &[&gates[..], &["--format", "jsonl"]].concat());
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let text = stdout(&o);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "ok", "the summary object ends the lines: {text}");
    check(&last);
}
