//! Reports of real runs, checked by independent readers: HdrHistogram's Python
//! implementation decodes `latency.hlog`.

mod common;
use common::{eventbench, stderr, stdout};
use eventbench::report::rows::{SummaryRow, TimeseriesRow};
use std::path::Path;
use std::process::Command;

/// A short run through the binary into `dir`: 4 consumers at 4000/s for 3 s,
/// with `extra` flags; returns its summary.
fn short_run(dir: &Path, extra: &[&str]) -> SummaryRow {
    let mut args = vec!["run", "--consumers", "4", "--rate", "4000", "--duration", "3s", "--warmup", "300ms"];
    args.extend(["--drain", "1s", "--quiet", "--out", dir.to_str().unwrap()]);
    args.extend(extra);
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    summary(dir)
}

fn summary(dir: &Path) -> SummaryRow {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    r.deserialize().next().unwrap().unwrap()
}

fn timeseries(dir: &Path) -> Vec<TimeseriesRow> {
    let mut r = csv::Reader::from_path(dir.join("timeseries.csv")).unwrap();
    r.deserialize().map(Result::unwrap).collect()
}

const DISCONNECT: &[&str] = &["--disconnect", "50%@1s+1s"];

/// Decodes an interval log with the `hdrhistogram` Python package (HdrHistogram_py).
const PY_DECODE: &str = r#"
import json, sys
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
reader = HistogramLogReader(sys.argv[1], HdrHistogram(1, 24 * 3600 * 10**9, 3))
counts, total = [], HdrHistogram(1, 24 * 3600 * 10**9, 3)
while True:
    h = reader.get_next_interval_histogram()
    if h is None:
        break
    counts.append(h.get_total_count())
    total.add(h)
print(json.dumps({"counts": counts, "total": total.get_total_count(),
                  "p99_ns": total.get_value_at_percentile(99.0), "max_ns": total.get_max_value()}))
"#;

#[test]
fn hlog_read_by_python_hdrhistogram_adds_up_to_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let s = short_run(&dir, DISCONNECT);
    assert!(s.lost > 0, "the disconnect should lose messages: {s:?}");

    let out = Command::new("python3")
        .args(["-c", PY_DECODE, dir.join("latency.hlog").to_str().unwrap()])
        .output()
        .expect("python3 is needed to check latency.hlog (scripts/test.sh installs what is missing)");
    assert!(
        out.status.success(),
        "the hdrhistogram Python package could not read latency.hlog (scripts/test.sh installs it: \
         python3 -m pip install hdrhistogram): {}",
        stderr(&out)
    );
    let decoded: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let counts: Vec<u64> = decoded["counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).collect();
    let per_second: Vec<u64> = timeseries(&dir).iter().map(|t| t.delivered).collect();
    assert_eq!(decoded["total"].as_u64(), Some(s.delivered), "the log's counts add up to delivered");
    assert_eq!(counts, per_second, "one interval per row of timeseries.csv, with its deliveries");
    // Same histograms, same percentiles (the two libraries round the rank of a
    // percentile differently, so a neighbouring sample may answer).
    let p99_us = decoded["p99_ns"].as_f64().unwrap() / 1000.0;
    let max_us = decoded["max_ns"].as_f64().unwrap() / 1000.0;
    assert!((p99_us - s.p99_us).abs() <= s.p99_us * 0.01, "p99 {p99_us} µs vs summary {} µs", s.p99_us);
    assert!((max_us - s.max_us).abs() <= s.max_us * 0.002, "max {max_us} µs vs summary {} µs", s.max_us);
}
