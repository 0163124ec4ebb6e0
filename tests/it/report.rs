//! Reports of real runs, checked by independent readers: HdrHistogram's Python
//! implementation decodes `latency.hlog`, headless Chromium renders
//! `report.html`, and `eventbench report` rebuilds everything from the files.

use crate::common::{eventbench, stderr, stdout};
use eventbench::rows::{columns, RunsRow, SummaryRow, TimeseriesRow};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A short run through the binary into `dir`: 4 consumers at 4000/s for 3 s,
/// with `extra` flags; returns its summary.
fn short_run(dir: &Path, extra: &[&str]) -> SummaryRow {
    let mut args = vec!["run", "--consumers", "4", "--rate", "4000", "--duration", "3s", "--warmup", "300ms"];
    args.extend(["--drain", "1s", "--quiet", "--out", dir.to_str().unwrap()]);
    args.extend(extra);
    let out = eventbench(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning: no report.html"), "the plots and page were built: {}", stderr(&out));
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
    // Same histograms, same percentiles. The two libraries round the rank of a
    // percentile differently, so a neighbouring sample may answer: Python's p99
    // must be the value of a sample within one rank of ours (on a sparse tail
    // that neighbour can be far more than 1% away).
    let p99_ns = decoded["p99_ns"].as_u64().unwrap();
    let max_us = decoded["max_ns"].as_f64().unwrap() / 1000.0;
    let ours = eventbench::report::hlog::decode(&std::fs::read(dir.join("latency.hlog")).unwrap()).unwrap();
    let h = ours.merged();
    let n = h.len() as f64;
    assert_eq!(h.len(), s.delivered, "our reading of the log adds up too");
    let our_p99_us = h.value_at_quantile(0.99) as f64 / 1000.0;
    let (s_p99_us, s_max_us) = (s.p99_us.expect("a p99"), s.max_us.expect("a max"));
    assert!((our_p99_us - s_p99_us).abs() < 1e-6, "the log's p99 {our_p99_us} µs is the summary's {s_p99_us} µs");
    let (lo, hi) = (h.value_at_quantile((0.99 * n - 1.0) / n), h.value_at_quantile(((0.99 * n + 1.0) / n).min(1.0)));
    assert!(
        (h.lowest_equivalent(lo)..=h.highest_equivalent(hi)).contains(&p99_ns),
        "Python's p99 {p99_ns} ns is no sample within one rank of ours ({lo}..={hi} ns; summary {s_p99_us} µs)",
    );
    assert!((max_us - s_max_us).abs() <= s_max_us * 0.002, "max {max_us} µs vs summary {s_max_us} µs");
}

/// What headless Chromium made of a page: the DOM after loading, and every
/// console message (errors, CSP violations, failed loads).
struct Rendered {
    dom: String,
    console: Vec<String>,
}

fn chromium(page: &Path, screenshot: Option<&Path>) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut cmd = Command::new("timeout");
    cmd.args(["120", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]);
    cmd.args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]);
    cmd.arg(format!("--user-data-dir={}", profile.path().display()));
    cmd.args(["--enable-logging=stderr", "--v=0"]);
    match screenshot {
        Some(png) => cmd.args(["--window-size=1200,2400".to_string(), format!("--screenshot={}", png.display())]),
        None => cmd.args(["--dump-dom"]),
    };
    let out = cmd.arg(&url).output().expect("running timeout chromium");
    assert!(
        out.status.success(),
        "headless chromium failed (scripts/test.sh installs it: apt-get install -y chromium): {}",
        stderr(&out)
    );
    let console = stderr(&out).lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect();
    Rendered { dom: stdout(&out), console }
}

#[test]
fn report_html_renders_in_headless_chromium_without_console_errors() {
    let tmp = tempfile::tempdir().unwrap();

    // The check itself must see errors: a page that loads a missing image and
    // breaks the page's no-network policy.
    let broken = tmp.path().join("broken.html");
    std::fs::write(&broken, "<!doctype html><title>x</title><img src=\"missing.png\"><script>oops(</script>").unwrap();
    assert!(!chromium(&broken, None).console.is_empty(), "console errors must be detected");

    let dir = tmp.path().join("run");
    let s = short_run(&dir, DISCONNECT);
    let page = dir.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in ["<svg", "deliveries were lost", "Consumers", "scenario.toml", "href=\"latency.hlog\""] {
        assert!(html.contains(needle), "report.html lacks {needle:?}");
    }
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "the page loads nothing from the network");
    assert!(html.contains(&s.run_id));
    let timeline = std::fs::read_to_string(dir.join("timeline.svg")).unwrap();
    assert!(timeline.contains("lost: not subscribed"), "the loss is drawn with its cause");

    let rendered = chromium(&page, None);
    assert!(rendered.console.is_empty(), "console messages:\n{}", rendered.console.join("\n"));
    assert!(rendered.dom.matches("<svg").count() >= 2, "both plots are inline in the rendered page");
    assert!(rendered.dom.contains("<table"), "tables rendered");

    // Kept as a test artifact: target/tmp/report-screenshot.png.
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let _ = std::fs::remove_file(&png);
    let shot = chromium(&page, Some(&png));
    assert!(shot.console.is_empty(), "console messages:\n{}", shot.console.join("\n"));
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(size > 50_000, "screenshot {} is {size} bytes: blank page?", png.display());
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn report_rebuilds_plots_and_page_from_files_and_compares_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let lossy = tmp.path().join("lossy");
    let clean = tmp.path().join("clean");
    let lossy_summary = short_run(&lossy, &[&["--name", "lossy"], DISCONNECT].concat());
    let clean_summary = short_run(&clean, &["--name", "clean"]);

    // A run's own plots and page come from its files: rebuilt, they are identical.
    let built = ["report.html", "latency.svg", "timeline.svg"];
    let originals: Vec<Vec<u8>> = built.iter().map(|f| read(&lossy.join(f))).collect();
    for f in built {
        std::fs::remove_file(lossy.join(f)).unwrap();
    }
    let cmp = tmp.path().join("cmp");
    let out = eventbench(&["report", lossy.to_str().unwrap(), clean.to_str().unwrap(), "--out", cmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (f, original) in built.iter().zip(&originals) {
        assert!(read(&lossy.join(f)) == *original, "{f} rebuilt differently");
    }
    assert!(stdout(&out).contains("compare.html"), "{}", stdout(&out));

    // One summary row per run, with summary.csv's columns.
    let text = String::from_utf8(read(&cmp.join("runs.csv"))).unwrap();
    let header: Vec<String> = text.lines().next().unwrap().split(',').map(str::to_owned).collect();
    assert_eq!(header, columns(&RunsRow::default()));
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<SummaryRow> = r.deserialize().map(Result::unwrap).collect();
    assert_eq!(rows, vec![lossy_summary, clean_summary]);

    // The comparison page and plots, with links that lead to each run's page.
    for f in ["compare-latency.svg", "compare-timeline.svg"] {
        let svg = String::from_utf8(read(&cmp.join(f))).unwrap();
        assert!(svg.contains("lossy") && svg.contains("clean"), "{f} names both runs");
    }
    let page = String::from_utf8(read(&cmp.join("compare.html"))).unwrap();
    let links: Vec<PathBuf> = page
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .filter(|l| l.ends_with("report.html"))
        .map(|l| cmp.join(l))
        .collect();
    assert_eq!(links.len(), 2, "{page}");
    for l in links {
        assert!(l.is_file(), "broken link {}", l.display());
    }
    assert!(page.contains("deliveries were lost") && page.contains("Nothing was lost."), "both stories are told");
}

#[test]
fn report_errors_name_the_file_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    short_run(&good, &[]);
    let variant = |name: &str, change: &dyn Fn(&Path)| -> PathBuf {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for e in std::fs::read_dir(&good).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        change(&dir);
        dir
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (tmp.path().join("nowhere"), "nowhere"),
        (variant("no-hlog", &|d| std::fs::remove_file(d.join("latency.hlog")).unwrap()), "latency.hlog"),
        (variant("no-summary", &|d| std::fs::remove_file(d.join("summary.csv")).unwrap()), "summary.csv"),
        (
            variant("bad-csv", &|d| std::fs::write(d.join("timeseries.csv"), "second,sent\nx,y\n").unwrap()),
            "timeseries.csv",
        ),
        (
            variant("bad-hlog", &|d| std::fs::write(d.join("latency.hlog"), "0.0,1.0,2.0,HISTFnope\n").unwrap()),
            "latency.hlog",
        ),
        (variant("bad-toml", &|d| std::fs::write(d.join("scenario.toml"), "rate = \n").unwrap()), "scenario.toml"),
        // A log of no latencies cannot belong to a run that delivered messages.
        (variant("other-run", &|d| std::fs::write(d.join("latency.hlog"), "#empty\n").unwrap()), "latency.hlog"),
    ];
    for (dir, needle) in cases {
        let out = eventbench(&["report", dir.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", dir.display());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(needle), "{err:?} should name {needle}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // A good run next to a bad one is still an error, naming the bad one.
    let out = eventbench(&["report", good.to_str().unwrap(), tmp.path().join("no-hlog").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no-hlog"), "{}", stderr(&out));
}

#[test]
fn run_directories_from_before_clusters_still_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    let out = eventbench(&["run", "--duration", "1s", "--warmup", "200ms", "--quiet", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // summary.csv as written before clusters: without their four columns.
    let path = dir.join("summary.csv");
    let mut r = csv::Reader::from_path(&path).unwrap();
    let header = r.headers().unwrap().clone();
    let record = r.records().next().unwrap().unwrap();
    let gone = ["nodes", "redirections", "write_errors", "recover_ms"];
    let keep: Vec<usize> = (0..header.len()).filter(|&i| !gone.contains(&&header[i])).collect();
    assert_eq!(keep.len(), header.len() - gone.len(), "{header:?}");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(keep.iter().map(|&i| &header[i])).unwrap();
    w.write_record(keep.iter().map(|&i| &record[i])).unwrap();
    w.flush().unwrap();
    drop(w);
    let out = eventbench(&["report", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = summary(&dir);
    assert_eq!((s.nodes, s.redirections, s.write_errors, s.recover_ms), (1, 0, 0, None));
}

/// The results committed in `results/reference/` are what the README points
/// people to: `eventbench report` must still read every one of them.
#[test]
fn committed_reference_results_still_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reference");
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    // Runs, and the runs of a comparison (`pubsub-vs-streams/pubsub`, ...).
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    let nested: Vec<PathBuf> = dirs
        .iter()
        .filter(|d| d.is_dir())
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .collect();
    dirs.extend(nested);
    for (n, dir) in dirs.into_iter().filter(|d| d.join("summary.csv").exists()).enumerate() {
        // `report` rebuilds the plots and page in place: work on a copy.
        let copy = tmp.path().join(format!("{n}-{}", dir.file_name().unwrap().to_string_lossy()));
        std::fs::create_dir(&copy).unwrap();
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
        }
        let out = eventbench(&["report", copy.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}: {}", dir.display(), stderr(&out));
        runs.push(copy);
    }
    assert!(runs.len() >= 7, "the shipped scenarios' results and a comparison's: {runs:?}");
}
