//! Soak runs: `--checkpoint` writes the results so far while a run goes on,
//! whole, so that a run killed outright (SIGKILL, a host lost) still leaves a
//! result whose totals add up and that `eventbench report` reads; a run that
//! finishes replaces its last checkpoint with its result.

use crate::common::{assert_bad_input, assert_whole_run_dir, bin, eventbench, stderr, wait_exit};
use crate::signals::private_server_of;
use eventbench::rows::{SummaryRow, TimeseriesRow};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn rows<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.deserialize().map(|row| row.unwrap_or_else(|e| panic!("{}: {e}", path.display()))).collect()
}

/// The summary of `dir` if it holds one (a checkpoint may not be written yet).
fn summary_of(dir: &Path) -> Option<SummaryRow> {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).ok()?;
    r.deserialize().next()?.ok()
}

/// The summary's totals are the sums of its seconds, and every message is accounted for.
fn assert_adds_up(dir: &Path, s: &SummaryRow) {
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
    let series: Vec<TimeseriesRow> = rows(&dir.join("timeseries.csv"));
    let sum = |f: fn(&TimeseriesRow) -> u64| series.iter().map(f).sum::<u64>();
    assert_eq!(sum(|t| t.sent), s.sent, "per-second sent adds up");
    assert_eq!(sum(|t| t.delivered), s.delivered, "per-second delivered adds up");
    assert_eq!(sum(|t| t.lost), s.lost, "per-second lost adds up");
    assert_eq!(sum(|t| t.undelivered), s.undelivered, "per-second undelivered adds up");
    assert_eq!(series.len() as f64, s.duration_s.ceil(), "one row per measured second");
}

#[test]
fn a_run_killed_outright_leaves_its_last_checkpoint_whole() {
    killed_after_two_checkpoints(&[]);
}

#[test]
fn a_run_over_workers_killed_outright_leaves_its_last_checkpoint_whole() {
    // The workers' copies meet in the control keys; the coordinator merges and writes them.
    let s = killed_after_two_checkpoints(&["--workers", "2"]);
    assert_eq!(s.workers, 2, "{s:?}");
}

/// Kills a 6 s run (2 consumers, 2,000 msg/s, a checkpoint every second)
/// with SIGKILL once two checkpoints with measured seconds were written;
/// checks what it left and returns its summary.
fn killed_after_two_checkpoints(extra: &[&str]) -> SummaryRow {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    let mut child = bin()
        .args(["run", "--rate", "2000", "--consumers", "2", "--duration", "6s", "--warmup", "200ms"])
        .args(extra)
        .args(["--checkpoint", "1s", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut server = None;
    // Two checkpoints with measured seconds in them: the second replaced the first.
    let mut seen = Vec::new();
    while seen.iter().filter(|&&d| d > 0.0).count() < 2 {
        assert!(Instant::now() < deadline, "no second checkpoint; saw {seen:?}");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its second checkpoint");
        server = server.or_else(|| private_server_of(child.id()));
        if let Some(s) = summary_of(&out).filter(|s| s.status == "incomplete") {
            if seen.last() != Some(&s.duration_s) {
                seen.push(s.duration_s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no handler runs, nothing is finished
    wait_exit(&mut child, Duration::from_secs(5));
    if let Some((pid, _)) = server {
        // Nobody is left to stop the private server.
        let dir = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        // SAFETY: kill(2) on the server our child started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        if let Some(dir) = dir.filter(|d| d.to_string_lossy().contains("eventbench-redis")) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "incomplete", "{s:?}");
    assert!(s.reason.starts_with("checkpoint at ") && s.reason.ends_with(" of 6s"), "{}", s.reason);
    assert!(s.duration_s >= 1.0 && s.duration_s <= 6.0, "{s:?}");
    assert!(s.sent >= 2000 && s.delivered > 0, "{s:?}");
    assert_eq!(s.lost, 0, "nothing had a cause of loss: {s:?}");
    assert_eq!(s.expected, s.sent * 2, "two consumers expect every message sent: {s:?}");
    assert_adds_up(&out, &s);

    let report = eventbench(&["report", out.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(0), "{}", stderr(&report));
    assert!(out.join("report.html").is_file());
    s
}

#[test]
fn a_run_that_finishes_replaces_its_checkpoints_and_leaves_nothing_of_them() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    let mut child = bin()
        .args(["run", "--rate", "1000", "--duration", "3s", "--warmup", "200ms", "--checkpoint", "1s", "--quiet"])
        .args(["--transport", "streams", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut checkpointed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the run did not end");
        checkpointed |= summary_of(&out).is_some_and(|s| s.status == "incomplete");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = wait_exit(&mut child, Duration::from_secs(1));
    assert_eq!(status.code(), Some(0));
    assert!(checkpointed, "a checkpoint was written while the run went on");
    let s = assert_whole_run_dir(&out);
    assert_eq!((s.status.as_str(), s.duration_s), ("ok", 3.0), "{s:?}");
    assert_eq!((s.delivered, s.expected), (3000, 3000));
    assert_adds_up(&out, &s);
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["run"], "no staged or old directory beside the results");
}

#[test]
fn bad_checkpoint_values_are_refused_before_anything_runs() {
    assert_bad_input(&["run", "--checkpoint", "soon"], "checkpoint");
    assert_bad_input(&["run", "--checkpoint", "-1s"], "checkpoint");
    assert_bad_input(&["run", "--checkpoint", "500ms"], "between 1s and 30 days");
    assert_bad_input(&["run", "--checkpoint", "1000days"], "between 1s and 30 days");
    assert_bad_input(&["capacity", "--checkpoint", "1m"], "capacity");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("soak.toml");
    std::fs::write(&file, "checkpoint = \"100ms\"\n").unwrap();
    assert_bad_input(&["run", file.to_str().unwrap()], "between 1s and 30 days");
}
