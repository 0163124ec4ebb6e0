//! `eventbench sweep` against real private redis-servers: a sweep's rows are
//! its points' own summaries, figure for figure; bad `--vary` input is one
//! line and exit 2 before anything runs; a Redis that dies mid-sweep ends it
//! with exit 1 and whole files for the points that finished.

use crate::common::{assert_bad_input, assert_whole_run_dir, bin, eventbench, stderr, wait_exit, RedisServer};
use eventbench::rows::SweepRow;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn sweep_rows(dir: &Path) -> Vec<SweepRow> {
    let mut r = csv::Reader::from_path(dir.join("sweep.csv")).expect("sweep.csv");
    r.deserialize().map(|row| row.expect("a sweep.csv row")).collect()
}

const SHORT: [&str; 8] = ["--duration", "1s", "--warmup", "300ms", "--drain", "1s", "--quiet", "--rate"];

#[test]
fn a_sweeps_rows_are_its_points_own_summaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let mut args = vec!["sweep", "--vary", "consumers=1,3", "--out", dir.to_str().unwrap()];
    args.extend(SHORT);
    args.push("400");
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = sweep_rows(&dir);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (i, (row, consumers)) in rows.iter().zip([1u32, 3]).enumerate() {
        assert_eq!((row.point, row.key.as_str(), row.value), (i as u32 + 1, "consumers", f64::from(consumers)));
        assert_eq!((row.key2.as_str(), row.value2), ("", None));
        assert_eq!(row.dir, format!("consumers-{consumers}"));
        let s = assert_whole_run_dir(&dir.join(&row.dir));
        assert_eq!(s.consumers, consumers, "the point ran with its value");
        // Figure for figure, as the point's own summary.csv has it.
        let summary = SweepRow {
            point: row.point,
            key: row.key.clone(),
            value: row.value,
            dir: row.dir.clone(),
            ..SweepRow::of(&s)
        };
        assert_eq!(row, &summary);
        assert_eq!(s.delivered + s.lost + s.undelivered, s.expected);
        assert_eq!(s.expected, s.sent * u64::from(consumers), "every consumer expects every message");
    }
    for f in ["sweep.svg", "sweep.html"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.contains("consumers"), "{f}");
    }
    let page = std::fs::read_to_string(dir.join("sweep.html")).unwrap();
    assert!(page.contains("consumers-3/report.html"), "the page links each point's run");
}

#[test]
fn two_keys_make_every_pair_a_point() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let mut args = vec!["sweep", "--vary", "consumers=1,2", "--vary", "channels=1,2", "--out", dir.to_str().unwrap()];
    args.extend(["--duration", "500ms", "--warmup", "200ms", "--drain", "1s", "--quiet", "--rate", "200"]);
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let points: Vec<(f64, Option<f64>, String)> =
        sweep_rows(&dir).into_iter().map(|r| (r.value, r.value2, r.dir)).collect();
    let want = [(1.0, 1.0), (2.0, 1.0), (1.0, 2.0), (2.0, 2.0)]
        .map(|(c, ch)| (c, Some(ch), format!("consumers-{c}-channels-{ch}")))
        .to_vec();
    assert_eq!(points, want);
    for (_, _, d) in &points {
        let s = assert_whole_run_dir(&dir.join(d));
        assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{d}");
    }
}

#[test]
fn bad_vary_is_one_line_and_exit_2_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let o = out.to_str().unwrap();
    for (args, says) in [
        (vec!["sweep", "--vary", "bogus=1,2", "--out", o], "not a scenario key"),
        (vec!["sweep", "--vary", "consumers=1,x", "--out", o], "not a number"),
        (vec!["sweep", "--vary", "consumers=", "--out", o], "not a number"),
        (vec!["sweep", "--vary", "consumers", "--out", o], "KEY=V1,V2"),
        (vec!["sweep", "--vary", "name=1,2", "--out", o], "numeric keys only"),
        (vec!["sweep", "--vary", "duration=1,2", "--out", o], "numeric keys only"),
        (vec!["sweep", "--vary", "consumers=1.5", "--out", o], "whole numbers"),
        (vec!["sweep", "--vary", "consumers=0,1", "--out", o], "at least 1"),
        (vec!["sweep", "--out", o], "needs --vary"),
        (vec!["sweep", "--vary", "consumers=1", "--vary", "consumers=2", "--out", o], "varied twice"),
        (
            vec!["sweep", "--vary", "consumers=1", "--vary", "channels=1", "--vary", "producers=1", "--out", o],
            "at most two",
        ),
        (vec!["sweep", "--vary", "consumers=1,2", "--consumers", "3", "--out", o], "give one of them"),
        (vec!["sweep", "--vary", "consumers=1,2", "--slo", "p99_us<1000", "--out", o], "--capacity"),
        (vec!["sweep", "--vary", "rate=1,2", "--capacity", "--out", o], "capacity search finds the rate"),
        (vec!["sweep", "--vary", "groups=1,2", "--transport", "pubsub", "--out", o], "groups"),
    ] {
        assert_bad_input(&args, says);
        assert!(!out.exists(), "{args:?}: nothing is written");
    }
}

#[test]
fn a_redis_that_dies_mid_sweep_ends_it_with_exit_1_and_whole_files() {
    let server = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sweep");
    let mut child = bin()
        .args(["sweep", "--url", &server.url(), "--vary", "consumers=1,2,3", "--rate", "500"])
        .args(["--duration", "4s", "--warmup", "200ms", "--drain", "1s", "--quiet", "--out"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first point is written; the second is measuring when Redis dies.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dir.join("sweep.csv").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.signal(libc::SIGKILL);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("sweep stopped"), "{err}");
    let rows = sweep_rows(&dir);
    let statuses: Vec<String> = rows.iter().map(|r| r.status.to_string()).collect();
    assert_eq!(statuses, ["ok", "aborted"], "the third point never ran");
    for r in &rows {
        let s = assert_whole_run_dir(&dir.join(&r.dir));
        assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{}", r.dir);
    }
    assert!(dir.join("sweep.html").exists() && !dir.join("consumers-3").exists());
}
