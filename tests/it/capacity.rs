//! `eventbench capacity` against a real private redis-server: a search ends
//! with a maximum a plain run meets and twice which it does not, an SLO no
//! rate meets exits 3, and each step is an ordinary run (any transport,
//! `--workers`) with its own complete run directory.
//!
//! A consumer that spends 2 ms per message (`--slow 100%:2ms`) is the system
//! under test: it keeps up with about 480 messages a second whatever else
//! the machine does, so the knee is where the test expects it, at rates low
//! enough for a busy machine.

use crate::common::{assert_bad_input, assert_whole_run_dir, eventbench, quick, run, stderr, stdout};
use eventbench::capacity::CapacityRow;
use eventbench::Scenario;
use std::path::Path;
use std::time::Duration;

/// The knee a slow consumer makes, and an SLO it breaks just past it.
const SLOW: &str = "100%:2ms";
const SLO_P99_US: f64 = 50_000.0;

fn capacity_rows(dir: &Path) -> Vec<CapacityRow> {
    let mut r = csv::Reader::from_path(dir.join("capacity.csv")).expect("capacity.csv");
    r.deserialize().map(|row| row.expect("a capacity.csv row")).collect()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

#[tokio::test]
async fn a_tight_slo_finds_a_maximum_a_plain_run_meets_and_twice_it_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("search");
    let slo = format!("p99_us<{SLO_P99_US}");
    let out = eventbench(&[
        "capacity",
        "--slow",
        SLOW,
        "--rate",
        "200",
        "--step",
        "1s",
        "--step-warmup",
        "500ms",
        "--drain",
        "1s",
        "--slo",
        &slo,
        "--precision",
        "10%",
        "--budget",
        "40s",
        "--format",
        "json",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["end"], "found", "{j:#}");
    let max = j["max_rate"].as_f64().unwrap();
    assert!((150.0..=600.0).contains(&max), "a 2 ms consumer keeps up with about 480/s: {j:#}");
    assert!(j["headline"].as_str().unwrap().starts_with("max sustainable rate: "), "{j:#}");

    // capacity.csv: one row per step, each a complete run directory; the
    // maximum passed every time (once and twice more), nothing at or below it failed.
    let rows = capacity_rows(&dir);
    assert_eq!(rows.len(), j["steps"].as_array().unwrap().len());
    assert_eq!(rows.iter().filter(|r| r.rate == max).map(|r| r.passed).collect::<Vec<_>>(), [true; 3]);
    assert!(rows.iter().all(|r| r.passed || r.rate > max), "{rows:?}");
    assert!(rows.iter().any(|r| !r.passed && r.failed.contains("p99_us<")), "{rows:?}");
    assert_eq!(rows[0].rate, 200.0);
    for r in &rows {
        let s = assert_whole_run_dir(&dir.join(&r.dir));
        assert_eq!((s.target_rate, s.duration_s.round()), (r.rate, 1.0), "{r:?}");
        assert!(dir.join(&r.dir).join("report.html").is_file());
    }
    let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
    assert!(svg.contains("SLO p99 &lt; 50 ms") || svg.contains("SLO p99 < 50 ms"), "the SLO is drawn");
    let html = std::fs::read_to_string(dir.join("capacity.html")).unwrap();
    assert!(html.contains("max sustainable rate") && html.contains("step-01-200/report.html"));

    // A plain run at the maximum meets the SLO; at twice the maximum it does not.
    let plain = |rate: f64| Scenario {
        slow: Some(SLOW.parse().unwrap()),
        warmup: Duration::from_millis(500),
        ..quick("plain", rate, 1.0)
    };
    let at = run(plain(max)).await.summary;
    assert!(at.p99_us < SLO_P99_US && at.lost == 0 && at.sustained, "at {max}/s: {at:?}");
    let above = run(plain(2.0 * max)).await.summary;
    assert!(above.p99_us >= SLO_P99_US, "at {}/s: {above:?}", 2.0 * max);
}

#[test]
fn an_slo_no_rate_meets_exits_3_with_what_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("impossible");
    let out = eventbench(&[
        "capacity",
        "--rate",
        "100",
        "--min-rate",
        "50",
        "--step",
        "1s",
        "--step-warmup",
        "300ms",
        "--drain",
        "1s",
        "--slo",
        "p99_us<1",
        "--budget",
        "20s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (err, text) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(text.starts_with("no rate met the SLO: at 50 msg/s p99 was "), "{text}");
    assert!(text.contains("> 1 µs"), "{text}");
    assert!(err.contains("no rate met the SLO") && err.contains("step  2"), "{err}");
    let rows = capacity_rows(&dir);
    let tried: Vec<(f64, bool)> = rows.iter().map(|r| (r.rate, r.passed)).collect();
    assert_eq!(tried, [(100.0, false), (50.0, false)], "down to --min-rate, then it ends");
    assert!(rows.iter().all(|r| r.failed.contains("p99_us<1 (p99_us = ")), "{rows:?}");
}

#[test]
fn steps_go_through_the_pipeline_with_workers() {
    // Nothing capacity-specific in the pipeline: Streams split over two worker processes.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("workers");
    let out = eventbench(&[
        "capacity",
        "--transport",
        "streams",
        "--consumers",
        "2",
        "--workers",
        "2",
        "--rate",
        "300",
        "--max-rate",
        "300",
        "--confirm",
        "0",
        "--step",
        "1s",
        "--step-warmup",
        "300ms",
        "--drain",
        "1s",
        "--slo",
        "p99_us<10000000",
        "--budget",
        "20s",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("max sustainable rate: at least 300 msg/s"), "{}", stdout(&out));
    let rows = capacity_rows(&dir);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let step = dir.join(&rows[0].dir);
    let s = assert_whole_run_dir(&step);
    assert_eq!((s.transport.as_str(), s.workers), ("streams", 2), "{s:?}");
    assert!(step.join("workers.csv").is_file());
}

#[test]
fn bad_capacity_input_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let o = out.to_str().unwrap();
    assert_bad_input(&["capacity", "--rate", "0", "--out", o], "has no rate to search");
    assert_bad_input(&["capacity", "--budget", "2s", "--out", o], "shorter than one step");
    assert_bad_input(&["capacity", "--duration", "5s", "--out", o], "--step");
    assert_bad_input(&["capacity", "--precision", "0%", "--out", o], "precision");
    assert_bad_input(&["capacity", "--min-rate", "5k", "--out", o], "min-rate");
    assert_bad_input(&["capacity", "--slo", "p99<1", "--out", o], "not a numeric summary.csv column");
    assert!(!out.exists(), "nothing is written");
}
