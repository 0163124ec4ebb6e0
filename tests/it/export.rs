//! Live export with real parts: Debian's `prometheus` scrapes a running
//! eventbench and answers PromQL over what it scraped; `promtool` checks the
//! endpoint's text; `--format jsonl` is read line by line as it comes.

use crate::common::{assert_bad_input, bin, stderr, wait_exit};
use eventbench::rows::{LiveRow, SummaryRow};
use std::io::{BufRead, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// GET `path` from `127.0.0.1:port` (HTTP/1.0: no chunked bodies); (head, body), or None if nothing listens.
fn get(port: u16, path: &str, accept: &str) -> Option<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.to_string(), body.to_string()))
}

/// The endpoint's text once it shows a run (it serves nothing before the run has an id).
fn scrape_when_ready(port: u16, accept: &str, deadline: Duration) -> (String, String) {
    let until = Instant::now() + deadline;
    loop {
        if let Some((head, body)) = get(port, "/metrics", accept) {
            if body.contains("eventbench_messages_sent_total") {
                return (head, body);
            }
        }
        assert!(Instant::now() < until, "the endpoint on {port} never showed a run");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A Prometheus server of the test's own, scraping `target` every second; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: eventbench\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // One thread: the suite's timing-sensitive tests share the machine's CPUs.
            .env("GOMAXPROCS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test.sh installs it)");
        let prometheus = Prometheus { child, port, _dir: dir };
        // Ready before the run starts, so that it scrapes the run's every phase.
        let until = Instant::now() + Duration::from_secs(20);
        while !get(port, "/-/ready", "*/*").is_some_and(|(head, _)| head.contains(" 200 ")) {
            assert!(Instant::now() < until, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    /// The value of an instant PromQL query with one result, if it has one.
    fn query(&self, promql: &str) -> Option<f64> {
        let q = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
        let (_, body) = get(self.port, &format!("/api/v1/query?query={q}"), "application/json")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = v["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{promql}: more than one series: {body}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `promql` has a value (Prometheus scrapes once a second).
    fn wait_for(&self, promql: &str, deadline: Duration) -> f64 {
        let until = Instant::now() + deadline;
        loop {
            if let Some(v) = self.query(promql) {
                return v;
            }
            assert!(Instant::now() < until, "Prometheus never answered {promql}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_a_live_run_and_its_last_scrape_matches_the_files() {
    let metrics = free_port();
    let prometheus = Prometheus::start(metrics);
    // Its scrape loop runs (a first scrape failed: nothing listens yet) before the run starts.
    prometheus.wait_for("up{job=\"eventbench\"}", Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut run = bin()
        .args(["run", "--rate", "1000", "--warmup", "1s", "--duration", "3s", "--drain", "1s", "--quiet"])
        .args(["--format", "json", "--metrics-linger", "30s", "--out"])
        .arg(&out)
        .env("EVENTBENCH_METRICS_LISTEN", format!("127.0.0.1:{metrics}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // While the run goes on: the text format passes promtool; OpenMetrics when asked for it.
    let (head, text) = scrape_when_ready(metrics, "*/*", Duration::from_secs(10));
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics: {said}\n{text}");
    for series in [
        "eventbench_lost_total{run_id=",
        "cause=\"in_buffer\"} 0",
        "eventbench_latency_seconds_bucket{",
        "le=\"0.00001\"",
        "le=\"10\"",
        "eventbench_undelivered{",
        "eventbench_harness_cpu_ratio{",
        "phase=\"drain\"",
    ] {
        assert!(text.contains(series), "{series} missing from the first scrape:\n{text}");
    }
    assert!(!text.contains("redis://") && !text.contains("url="), "no URL in a label:\n{text}");
    let om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (head, open) = scrape_when_ready(metrics, om, Duration::from_secs(5));
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(open.ends_with("# EOF\n") && open.contains("# UNIT eventbench_latency_seconds seconds"), "{open}");

    // Prometheus sees the run while it goes on...
    prometheus.wait_for("eventbench_messages_sent_total{phase=\"measure\"} > 0", Duration::from_secs(10));

    // ... and its last scrapes (the linger: once eventbench is gone its series
    // go stale) hold summary.csv's totals, written before the linger began.
    prometheus.wait_for("eventbench_phase{phase=\"done\"} == 1", Duration::from_secs(30));
    let files: SummaryRow =
        csv::Reader::from_path(out.join("summary.csv")).unwrap().deserialize().next().unwrap().unwrap();
    assert!(files.sent > 2500 && files.delivered > 0, "{files:?}");
    let q = |promql: &str| prometheus.query(promql).unwrap_or_else(|| panic!("{promql}: no value"));
    assert_eq!(q("max_over_time(eventbench_phase{phase=\"measure\"}[1m])"), 1.0, "scraped while measuring");
    assert_eq!(q("eventbench_messages_sent_total{phase=\"measure\"}"), files.sent as f64);
    assert_eq!(q("sum(eventbench_messages_delivered_total)"), files.delivered as f64);
    assert_eq!(q("eventbench_deliveries_expected_total"), files.expected as f64);
    assert_eq!(q("sum(eventbench_lost_total)"), files.lost as f64);
    assert_eq!(q("eventbench_undelivered"), files.undelivered as f64);
    assert_eq!(q("sum(eventbench_duplicates_total)"), files.duplicates as f64);
    assert_eq!(
        q("eventbench_latency_seconds_count"),
        files.delivered as f64,
        "every measured latency is in the histogram"
    );
    // The README's loss rates: so far (missing) and final (by cause), each lost / expected.
    let loss = files.lost as f64 / files.expected as f64;
    assert_eq!(q("eventbench_missing / clamp_min(eventbench_deliveries_expected_total, 1)"), loss);
    assert_eq!(q("sum(eventbench_lost_total / ignoring(cause) group_left eventbench_deliveries_expected_total)"), loss);
    // A latency quantile over the whole run, from the buckets: within the 1-2-5 bucket of the files' exact p99.
    let p99_s = q("histogram_quantile(0.99, eventbench_latency_seconds_bucket)");
    let exact_s = files.p99_us.expect("a p99") / 1e6;
    assert!(
        p99_s >= exact_s / 2.5 && p99_s <= exact_s * 2.5,
        "p99 {p99_s} s from Prometheus, {exact_s} s in the files"
    );
    // The same question over time, as a dashboard asks it.
    let p99_window = q("histogram_quantile(0.99, sum by (le) (increase(eventbench_latency_seconds_bucket[1m])))");
    assert!(p99_window > 0.0 && p99_window <= 10.0, "{p99_window}");
    // The server's own figures (server telemetry), under the same labels: its clients include the run's.
    let clients = q("max_over_time(eventbench_server_connected_clients{node=\"0\"}[1m])");
    assert!(clients >= 2.0, "producer and consumer connected: {clients}");
    let memory = q("max_over_time(eventbench_server_memory_bytes[1m])");
    assert!(memory > 100_000.0, "{memory}");

    // A Ctrl-C ends the linger at once; the run's exit code stands.
    let asked = Instant::now();
    // SAFETY: a plain signal to the test's own child.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let status = wait_exit(&mut run, Duration::from_secs(40));
    assert!(asked.elapsed() < Duration::from_secs(5), "the linger went on for {:?}", asked.elapsed());
    let mut stdout = String::new();
    run.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    assert!(status.success(), "{status}: {stdout}");
    let summary: SummaryRow = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((summary.run_id, summary.sent, summary.delivered), (files.run_id, files.sent, files.delivered));

    // Once eventbench has gone its series go stale: the manual's queries
    // about a finished run look back with last_over_time, and still answer.
    let after = |promql: &str| prometheus.wait_for(promql, Duration::from_secs(10));
    assert_eq!(after("sum(last_over_time(eventbench_lost_total[1h]))"), files.lost as f64);
    assert_eq!(after("last_over_time(eventbench_messages_sent_total{phase=\"measure\"}[1h])"), files.sent as f64);
    assert_eq!(after("sum(last_over_time(eventbench_messages_delivered_total[1h]))"), files.delivered as f64);
    let final_loss = "sum(last_over_time(eventbench_lost_total[1h]) / ignoring(cause) group_left \
                      last_over_time(eventbench_deliveries_expected_total[1h]))";
    assert_eq!(after(final_loss), loss);
    let p99_after = after("histogram_quantile(0.99, last_over_time(eventbench_latency_seconds_bucket[1h]))");
    assert!(p99_after >= exact_s / 2.5 && p99_after <= exact_s * 2.5, "{p99_after} s after the run");
}

/// The lines of a `--format jsonl` run as they came: per-second rows, then the summary.
fn jsonl_run(args: &[&str]) -> (Vec<LiveRow>, SummaryRow, Vec<Duration>) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = bin()
        .args(["run", "--format", "jsonl", "--quiet", "--out"])
        .arg(dir.path().join("run"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines: Vec<(String, Duration)> = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        lines.push((line.unwrap(), started.elapsed()));
    }
    let status = wait_exit(&mut child, Duration::from_secs(40));
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    let (last, _) = lines.pop().expect("a summary line");
    let summary: SummaryRow = serde_json::from_str(&last).unwrap_or_else(|e| panic!("{e}: {last}"));
    let rows = lines.iter().map(|(l, _)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    (rows, summary, lines.into_iter().map(|(_, at)| at).collect())
}

#[test]
fn jsonl_prints_a_line_a_second_while_the_run_goes_then_the_summary() {
    let (rows, summary, arrived) =
        jsonl_run(&["--rate", "500", "--warmup", "1s", "--duration", "3s", "--drain", "500ms"]);
    assert!(rows.len() >= 4, "a line a second over 4 s: {rows:?}");
    // Live: the lines came over the run's seconds, not all at its end.
    let spread = *arrived.last().unwrap() - arrived[0];
    assert!(spread >= Duration::from_secs(2), "lines arrived within {spread:?}");
    let measured: Vec<&LiveRow> = rows.iter().filter(|r| r.phase == "measure").collect();
    assert!(measured.len() >= 2, "{rows:?}");
    assert!(measured.iter().any(|r| r.p99_us.is_some() && r.delivered > 0), "{measured:?}");
    assert!(rows.iter().all(|r| r.run_id == summary.run_id && r.transport == "pubsub"));
    // Running totals: the per-second counts add up to them, and they never pass the files'.
    let last = rows.last().unwrap();
    assert_eq!(rows.iter().map(|r| r.sent).sum::<u64>(), last.sent_total);
    assert_eq!(rows.iter().map(|r| r.delivered).sum::<u64>(), last.delivered_total);
    assert!(last.sent_measured_total <= summary.sent && last.delivered_total <= summary.delivered, "{last:?}");
    assert!(last.sent_measured_total >= summary.sent / 2, "{last:?} against {}", summary.sent);
    let seconds: Vec<i64> = rows.iter().filter_map(|r| r.second).collect();
    // In order, and counted as timeseries.csv counts (a busy machine may skip one).
    assert!(seconds.windows(2).all(|w| w[0] <= w[1]) && seconds.iter().any(|&s| (0..3).contains(&s)), "{seconds:?}");
}

#[test]
fn a_workers_run_exports_the_workers_sum() {
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let (rows, summary, _) = jsonl_run(&[
        "--workers",
        "2",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--rate",
        "500",
        "--warmup",
        "1s",
        "--duration",
        "3s",
        "--metrics-listen",
        &listen,
    ]);
    // The coordinator counts nothing itself: what it shows is what the workers published.
    let last = rows.iter().rev().find(|r| r.phase == "measure").expect("a measured second");
    assert!(last.sent_total > 0 && last.delivered_total > 0 && last.connected_consumers == 2, "{rows:?}");
    assert!(last.delivered_total <= summary.delivered, "{last:?}");
    assert_eq!(summary.workers, 2);
}

#[test]
fn a_listen_address_in_use_is_refused_before_anything_runs() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    for command in ["run", "compare", "capacity"] {
        let line = assert_bad_input(&[command, "--metrics-listen", &addr, "--out", out.to_str().unwrap()], &addr);
        assert!(line.contains("in use"), "{line}");
        assert!(!out.exists(), "{command}: nothing was prepared");
    }
    assert_bad_input(&["run", "--metrics-listen", "nowhere:port"], "nowhere:port");
    let out = bin().args(["run", "--metrics-linger", "5s"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
