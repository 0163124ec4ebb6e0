//! `eventbench capacity` against a real private redis-server: a search ends
//! with a maximum a plain run meets and twice which it does not (a failed
//! rate tried again), an SLO no rate meets exits 3, a search the machine
//! decides is inconclusive (exit 4), `--repeat` on `run` and `capacity`,
//! output into a closed pipe, every page's tables line up, and each step is
//! an ordinary run (any transport, `--workers`) with its own complete run directory.
//!
//! A consumer that spends 2 ms per message (`--slow 100%:2ms`) is the system
//! under test: it keeps up with about 480 messages a second whatever else
//! the machine does, so the knee is where the test expects it, at rates low
//! enough for a busy machine.

use crate::common::{assert_bad_input, assert_whole_run_dir, eventbench, quick, run, stderr, stdout};
use eventbench::capacity::search::{Phase, Verdict};
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
        "--no-ceiling",
        "--step",
        "1s",
        "--step-warmup",
        "500ms",
        "--drain",
        "1s",
        "--slo",
        &slo,
        "--precision",
        "20%",
        "--confirm",
        "1",
        "--budget",
        "70s",
        "--format",
        "json",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let j = json(&out);
    let rows = capacity_rows(&dir);
    assert_eq!(rows.len(), j["steps"].as_array().unwrap().len());
    // A rate that failed was tried again before it counted: two tries at least, none passing.
    let failed_rates: Vec<f64> = rows.iter().filter(|r| r.verdict == Verdict::Fail).map(|r| r.rate).collect();
    assert!(!failed_rates.is_empty(), "{rows:?}");
    for rate in &failed_rates {
        let at: Vec<&CapacityRow> = rows.iter().filter(|r| r.rate == *rate).collect();
        if at.iter().all(|r| r.verdict == Verdict::Fail) {
            assert!(at.len() >= 2, "a failure counts after a retry: {at:?}");
            assert_eq!(at[1].phase, Phase::Retry, "{at:?}");
            assert_eq!((at[0].attempt, at[1].attempt), (1, 2), "{at:?}");
        }
    }
    if out.status.code() == Some(4) {
        // A busy machine may leave the knee undecided, or make it a range (tries above the
        // lowest failure that passed): then the answer is a range around it, never a figure.
        assert!(j["max_rate"].is_null(), "{j:#}");
        let (lo, hi) = (j["range_low"].as_f64().unwrap_or(0.0), j["range_high"].as_f64().unwrap_or(f64::INFINITY));
        assert!(lo <= 600.0 && hi >= 150.0, "the range holds the knee of about 480/s: {j:#}");
        if j["end"] == "spread" {
            let first_failure = j["first_failure"].as_f64().unwrap();
            let above = |r: &&CapacityRow| r.rate > first_failure && r.verdict == Verdict::Pass;
            assert_eq!(rows.iter().filter(above).map(|r| r.rate).reduce(f64::max), Some(hi), "{rows:?}");
        } else {
            // Inconclusive: the machine was disturbed at some step, or the
            // tries of a rate inside the range disagreed (the SLO held in some,
            // not in most), and the headline names which.
            assert_eq!(j["end"], "inconclusive", "{j:#}");
            let disagreed = |rate: f64| {
                let at = || rows.iter().filter(move |r| r.rate == rate);
                at().any(|r| r.verdict == Verdict::Pass) && at().any(|r| r.verdict == Verdict::Fail)
            };
            let inside = rows.iter().map(|r| r.rate).filter(|&r| r > lo && r < hi);
            let headline = j["headline"].as_str().unwrap_or_default();
            if !rows.iter().any(|r| r.verdict == Verdict::Machine) {
                assert!(
                    inside.clone().any(disagreed),
                    "neither a disturbed machine nor tries that disagreed: {rows:?}"
                );
                assert!(headline.contains("the tries disagreed at"), "{j:#}");
            }
        }
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(j["end"], "found", "{j:#}");
    let max = j["max_rate"].as_f64().unwrap();
    assert!((150.0..=600.0).contains(&max), "a 2 ms consumer keeps up with about 480/s: {j:#}");
    assert!(j["headline"].as_str().unwrap().starts_with("max sustainable rate: "), "{j:#}");

    // capacity.csv: one row per step, each a complete run directory; the
    // maximum passed by a majority, and twice at least; no rate at or below it failed by one.
    // A try the machine may have failed (a busy machine's wake-ups) is no evidence either way.
    let at_max: Vec<bool> = rows.iter().filter(|r| r.rate == max && !r.verdict.unclear()).map(|r| r.passed).collect();
    let passes = at_max.iter().filter(|&&p| p).count();
    assert!(passes >= 2 && passes * 2 > at_max.len(), "{rows:?}");
    // A rate's verdict is its judged tries' majority: a failed try that the others contradict
    // (a confirmation that went the other way, on a busy machine) does not fail it.
    for rate in failed_rates.iter().filter(|&&r| r <= max) {
        let judged = rows.iter().filter(|r| r.rate == *rate && !r.verdict.unclear());
        let (passes, fails) = judged.fold((0, 0), |(p, f), r| if r.passed { (p + 1, f) } else { (p, f + 1) });
        assert!(passes > fails, "{rate} msg/s, at or below the maximum, failed by its majority: {rows:?}");
    }
    assert!(rows.iter().any(|r| !r.passed && r.failed.contains("p99_us<")), "{rows:?}");
    assert_eq!(rows[0].rate, 200.0);
    for r in &rows {
        let s = assert_whole_run_dir(&dir.join(&r.dir));
        assert_eq!((s.target_rate, s.duration_s.round()), (r.rate, 1.0), "{r:?}");
        assert!(dir.join(&r.dir).join("report.html").is_file());
        // A thread that sleeps wakes microseconds late at the least: a figure of nanoseconds is no measurement.
        assert!(
            s.machine_wakeup_p99_us.is_some_and(|us| us >= 1.0) && s.machine_other_cpu_pct.is_some(),
            "the probe ran: {s:?}"
        );
    }
    let svg = std::fs::read_to_string(dir.join("capacity.svg")).unwrap();
    assert!(svg.contains("SLO p99 &lt; 50 ms") || svg.contains("SLO p99 < 50 ms"), "the SLO is drawn");
    let html = std::fs::read_to_string(dir.join("capacity.html")).unwrap();
    assert!(html.contains("max sustainable rate") && html.contains("step-01-200/report.html"));
    assert_tables_line_up(&dir.join("capacity.html"));
    assert_tables_line_up(&dir.join(&rows[0].dir).join("report.html"));
    // The page again from the directory: the same tables.
    let again = eventbench(&["report", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(dir.join("capacity.html")).unwrap(), html);

    // A plain run at the maximum meets the SLO; at twice the maximum it does not.
    let plain = |rate: f64| Scenario {
        slow: Some(SLOW.parse().unwrap()),
        warmup: Duration::from_millis(500),
        ..quick("plain", rate, 1.0)
    };
    let at = run(plain(max)).await.summary;
    assert!(at.p99_us.is_some_and(|p| p < SLO_P99_US) && at.lost == 0 && at.sustained, "at {max}/s: {at:?}");
    let above = run(plain(2.0 * max)).await.summary;
    assert!(above.p99_us.is_some_and(|p| p >= SLO_P99_US), "at {}/s: {above:?}", 2.0 * max);
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
        "--no-ceiling",
        "--slo",
        "p99_us<1",
        "--budget",
        "30s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (err, text) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(text.starts_with("no rate met the SLO: at 50 msg/s p99 was "), "{text}");
    assert!(text.contains("> 1 µs"), "{text}");
    assert!(err.contains("no rate met the SLO") && err.contains("step  4"), "{err}");
    // What failed is said once (the headline); each step's line says it in a few words, and the end what to try.
    assert_eq!(text.matches("p99 was").count(), 1, "{text}");
    assert!(!err.contains("p99 was") && err.contains("fail: p99 ≥ 1 µs"), "{err}");
    assert!(err.contains("no rate met the SLO; try a looser --slo, a lower --min-rate, or fewer --consumers"), "{err}");
    let rows = capacity_rows(&dir);
    // The judged tries (a try the machine may have failed, on a busy machine, is tried again).
    let tried: Vec<(f64, bool)> = rows.iter().filter(|r| !r.verdict.unclear()).map(|r| (r.rate, r.passed)).collect();
    let unclear_at_start = rows.iter().filter(|r| r.rate == 100.0 && r.verdict.unclear()).count();
    if unclear_at_start < 2 {
        assert_eq!(
            tried,
            [(100.0, false), (100.0, false), (50.0, false), (50.0, false)],
            "down to --min-rate, then it ends"
        );
    } else {
        // Most tries of the first rate were the machine's (a busy machine): an
        // unclear rate does not stop a climb, so the search went up a decade
        // first; it still failed everywhere and ended at --min-rate.
        assert!(tried.iter().all(|(_, passed)| !passed), "{rows:?}");
        assert!(tried.ends_with(&[(50.0, false), (50.0, false)]), "down to --min-rate, then it ends: {rows:?}");
    }
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
        "--no-ceiling",
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

/// Every `<table>` of the page at `path` has as many cells in each row as in its header.
fn assert_tables_line_up(path: &Path) {
    let html = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (t, table) in html.split("<table").skip(1).enumerate() {
        let table = table.split("</table>").next().unwrap();
        let rows: Vec<usize> = table
            .split("<tr")
            .skip(1)
            .map(|row| row.matches("<td").count() + row.matches("<th").count() - row.matches("<thead").count())
            .collect();
        let Some(&header) = rows.first() else { continue };
        for (i, &n) in rows.iter().enumerate() {
            assert_eq!(n, header, "{}: table {} row {i} has {n} cells, its header {header}", path.display(), t + 1);
        }
    }
}

#[test]
fn every_committed_page_s_tables_line_up() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference");
    let mut pages = Vec::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            match p.extension().and_then(|x| x.to_str()) {
                _ if p.is_dir() => dirs.push(p),
                Some("html") => pages.push(p),
                _ => {}
            }
        }
    }
    let kinds = ["report.html", "compare.html", "capacity.html"];
    for kind in kinds {
        assert!(pages.iter().any(|p| p.ends_with(kind)), "no committed {kind}");
    }
    for p in &pages {
        assert_tables_line_up(p);
    }
}

/// A process that keeps one CPU busy until dropped.
struct Hog(std::process::Child);

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_disturbed_machine_makes_a_search_inconclusive_exit_4_never_a_failure_of_redis() {
    // Another process takes a core the whole time, and the SLO asks what no rate gives
    // (twice the rate delivered): every step fails while the machine is disturbed.
    let _hog = Hog(std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("disturbed");
    let out = eventbench(&[
        "capacity",
        "--rate",
        "100",
        "--max-rate",
        "1000",
        "--no-ceiling",
        "--tries",
        "1",
        "--confirm",
        "0",
        "--step",
        "1s",
        "--step-warmup",
        "300ms",
        "--drain",
        "1s",
        "--slo",
        "delivery_rate>=2*target_rate",
        "--budget",
        "40s",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let (err, text) = (stderr(&out), stdout(&out));
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(text.starts_with("inconclusive: no rate could be judged; in 3 of 3 steps the machine"), "{text}");
    let rows = capacity_rows(&dir);
    let tried: Vec<(f64, Verdict)> = rows.iter().map(|r| (r.rate, r.verdict)).collect();
    // 100 unclear, the climb goes on to --max-rate, unclear too; 100 once more, in case the machine quietened.
    assert_eq!(tried, [(100.0, Verdict::Machine), (1000.0, Verdict::Machine), (100.0, Verdict::Machine)]);
    for r in &rows {
        assert!(r.failed.contains("machine: other processes used"), "{r:?}");
        assert!(r.machine_other_cpu_pct.is_some_and(|p| p > 30.0), "{r:?}");
    }
    let html = std::fs::read_to_string(dir.join("capacity.html")).unwrap();
    assert!(html.contains("inconclusive") && html.contains("other processes used"));
    assert_tables_line_up(&dir.join("capacity.html"));
}

#[test]
fn repeat_gives_the_spread_of_each_figure_for_run_and_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = eventbench(&[
        "run",
        "--repeat",
        "2",
        "--rate",
        "200",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--checkpoint",
        "off",
        "--quiet",
        "--out",
        runs.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("2 times: median [min – max], spread"), "{}", stdout(&out));
    let rows = repeat_rows(&runs);
    let sent = rows.iter().find(|r| r.figure == "send_rate").expect("send_rate");
    let each: Vec<f64> = (1..=2).map(|i| assert_whole_run_dir(&runs.join(format!("run-{i}"))).send_rate).collect();
    assert_eq!((sent.count, sent.min, sent.max), (2, Some(each[0].min(each[1])), Some(each[0].max(each[1]))));
    assert!((sent.median.unwrap() - (each[0] + each[1]) / 2.0).abs() < 1e-9, "{sent:?}");
    assert_eq!(sent.noisy, sent.spread_pct.unwrap() > 25.0);
    assert_tables_line_up(&runs.join("repeat.html"));
    assert_bad_input(&["compare", "--repeat", "2", "--out", tmp.path().join("x").to_str().unwrap()], "repeat");

    // Two searches, read through a pipe that closes after the first line:
    // nothing panics, and every file is whole.
    let searches = tmp.path().join("searches");
    let cmd = format!(
        "{} capacity --repeat 2 --rate 200 --max-rate 200 --no-ceiling --confirm 0 --step 1s --step-warmup 300ms \
         --drain 1s --slo 'p99_us<10000000' --budget 20s --quiet --out {} | head -1",
        env!("CARGO_BIN_EXE_eventbench"),
        searches.display()
    );
    let out = std::process::Command::new("sh").args(["-c", &cmd]).output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    for i in 1..=2 {
        let d = searches.join(format!("search-{i}"));
        assert_eq!(capacity_rows(&d).len(), 1, "{}", d.display());
        assert!(std::fs::read_to_string(d.join("capacity.html")).unwrap().ends_with("</html>\n"));
    }
    let rows = repeat_rows(&searches);
    let max = rows.iter().find(|r| r.figure == "max_rate").expect("max_rate");
    assert_eq!((max.count, max.median, max.spread_pct, max.noisy), (2, Some(200.0), Some(0.0), false), "{rows:?}");
}

fn repeat_rows(dir: &Path) -> Vec<eventbench::rows::RepeatRow> {
    let mut r = csv::Reader::from_path(dir.join("repeat.csv")).expect("repeat.csv");
    r.deserialize().map(|row| row.expect("a repeat.csv row")).collect()
}
