//! `--workers`: real worker processes of the built binary against a real
//! redis-server, merged into one run whose totals are exact.

use crate::common;
use crate::common::{assert_whole_run_dir, bin, eventbench, stderr, RedisServer};
use eventbench::rows::{ConsumerRow, SummaryRow, TimeseriesRow, WorkerRow};
use std::path::Path;
use std::time::Duration;

fn rows<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.deserialize().map(|row| row.unwrap_or_else(|e| panic!("{}: {e}", path.display()))).collect()
}

/// Runs `eventbench run` against `redis` with `extra` flags into `dir`; returns the exit code, stderr and stdout.
fn run(redis: &RedisServer, dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let url = redis.url();
    let mut args = vec!["run", "--url", &url, "--quiet", "--out", dir.to_str().unwrap()];
    for default in [["--warmup", "300ms"], ["--drain", "1s"]] {
        if !extra.contains(&default[0]) {
            args.extend(default);
        }
    }
    args.extend(extra);
    let out = eventbench(&args);
    (out.status.code(), stderr(&out), common::stdout(&out))
}

fn control_keys(redis: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS").arg("eventbench:ctl:*").query(&mut redis.client()).unwrap()
}

/// delivered + lost + undelivered == expected over the summary, the consumers and the workers.
fn assert_accounted(dir: &Path) -> (SummaryRow, Vec<ConsumerRow>) {
    let s = assert_whole_run_dir(dir);
    let consumers: Vec<ConsumerRow> = rows(&dir.join("consumers.csv"));
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
    assert_eq!(consumers.iter().map(|c| c.expected).sum::<u64>(), s.expected);
    assert_eq!(consumers.iter().map(|c| c.delivered).sum::<u64>(), s.delivered);
    assert_eq!(consumers.iter().map(|c| c.lost).sum::<u64>(), s.lost);
    for c in &consumers {
        assert_eq!(c.delivered + c.lost + c.undelivered, c.expected, "consumer {}", c.consumer);
    }
    let ids: Vec<u32> = consumers.iter().map(|c| c.consumer).collect();
    assert_eq!(ids, (0..s.consumers).collect::<Vec<_>>(), "every consumer once, by its global id");
    (s, consumers)
}

#[test]
fn two_workers_add_up_exactly_like_one_process() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--producers", "2", "--consumers", "4", "--channels", "2", "--rate", "2000", "--duration", "2s"];
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let (code, err, table) = run(&redis, &one, &flags);
    assert_eq!(code, Some(0), "{err}");
    assert!(!table.contains("processes"), "{table}");
    let mut split = flags.to_vec();
    split.extend(["--workers", "2"]);
    let (code, err, table) = run(&redis, &two, &split);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains("2 processes · clock uncertainty ±"), "{table}");

    let (a, _) = assert_accounted(&one);
    let (b, _) = assert_accounted(&two);
    for s in [&a, &b] {
        assert_eq!(s.status, "ok", "{}", s.reason);
        assert_eq!(s.sent, 4000, "2 s at 2000/s");
        assert_eq!(s.expected, s.sent * 4, "every consumer expects every message");
        assert_eq!((s.delivered, s.lost, s.duplicates, s.foreign), (s.expected, 0, 0, 0), "{s:?}");
        assert_eq!(s.reached, s.expected, "PUBLISH reached every subscriber");
    }
    assert_eq!((a.workers, b.workers), (1, 2));
    assert_eq!(a.clock_uncertainty_us, 0.0, "one process, one clock");
    assert!(b.clock_uncertainty_us > 0.0 && b.clock_uncertainty_us < 20_000.0, "{}", b.clock_uncertainty_us);
    assert!(b.latency_below_uncertainty <= b.delivered);
    assert!(b.p50_us.is_some_and(|p| p > 0.0) && b.p50_us <= b.p99_us, "{b:?}");
    // Clocks a second apart (or an epoch taken for another) would show here.
    assert!(b.max_us.is_some_and(|m| m < 1e6), "a latency of {:?} µs between processes on one host", b.max_us);

    let workers: Vec<WorkerRow> = rows(&two.join("workers.csv"));
    assert_eq!(workers.len(), 2);
    assert_eq!(workers.iter().map(|w| w.sent).sum::<u64>(), b.sent, "the workers' sends add up");
    assert_eq!(workers.iter().map(|w| w.delivered).sum::<u64>(), b.delivered, "their deliveries add up");
    assert_ne!(workers[0].pid, workers[1].pid, "two processes");
    assert!(workers.iter().all(|w| w.sent > 0 && w.delivered > 0 && w.status == "ok"), "{workers:?}");
    for w in &workers {
        // On one host the two clocks are one: the measured offset is within its uncertainty.
        assert!(w.clock_offset_us.abs() <= w.clock_uncertainty_us, "{w:?}");
    }
    assert!(!one.join("workers.csv").exists(), "workers.csv only for runs with workers");
    let page = std::fs::read_to_string(two.join("report.html")).unwrap();
    assert!(page.contains("2 processes ran the swarm") && page.contains("href=\"workers.csv\""), "report.html");
    assert!(!std::fs::read_to_string(one.join("report.html")).unwrap().contains("workers.csv"));
    let rebuilt = eventbench(&["report", two.to_str().unwrap()]);
    assert_eq!(rebuilt.status.code(), Some(0), "{}", stderr(&rebuilt));
    assert_eq!(std::fs::read_to_string(two.join("report.html")).unwrap(), page, "rebuilt from the files alone");
    assert!(control_keys(&redis).is_empty(), "control keys left: {:?}", control_keys(&redis));
}

#[test]
fn a_disconnect_across_workers_is_lost_exactly_as_publish_counts_it() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Each worker runs one producer; consumers 0-1 (worker 1) hear worker 0's producer across processes.
    let (code, err, _) = run(
        &redis,
        &dir,
        &["--producers", "2", "--consumers", "4", "--rate", "5000", "--duration", "3s", "--disconnect", "50%@1s+1s"],
    );
    assert_eq!(code, Some(0), "{err}");
    let (s, consumers) = assert_accounted(&dir);
    assert_eq!(s.status, "ok", "{}", s.reason);
    // What the run sent (its own send rate) while each consumer was away
    // (its recorded downtime, events.csv), not what the schedule says.
    let closes: Vec<_> = crate::common::events_of(&dir).into_iter().filter(|e| e.kind == "disconnect").collect();
    assert_eq!(closes.len(), 2, "{closes:?}");
    let arithmetic: f64 = closes.iter().map(|e| s.send_rate * e.downtime_ms.expect("it came back") / 1e3).sum();
    let off = (s.lost as f64 - arithmetic).abs() / arithmetic;
    assert!(off < 0.15, "lost {} vs {arithmetic} by the arithmetic: {closes:?}", s.lost);
    assert!(
        consumers.iter().all(|c| (c.consumer < 2) == (c.lost > 0)),
        "only the two disconnected lost: {consumers:?}"
    );
    // Placed against the remote producer's schedule, every loss still has its cause,
    // and PUBLISH's replies say the same.
    assert_eq!((s.lost_unsubscribed, s.lost_in_buffer, s.lost_other), (s.lost, 0, 0), "{s:?}");
    assert_eq!(s.expected - s.reached, s.lost_unsubscribed, "cross-check against PUBLISH's replies");
}

#[test]
fn streams_split_over_workers_keep_what_absent_consumers_miss() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let flags = ["--transport", "streams", "--consumers", "4", "--rate", "2000", "--duration", "3s", "--workers", "2"];
    // Every consumer (two in each worker) away from 0.5 s to 1.5 s.
    let (code, err, _) = run(&redis, &dir, &[&flags[..], &["--disconnect", "100%@500ms+1s", "--drain", "3s"]].concat());
    assert_eq!(code, Some(0), "{err}");
    let (s, consumers) = assert_accounted(&dir);
    assert_eq!(s.status, "ok", "{}", s.reason);
    assert_eq!((s.sent, s.expected, s.delivered, s.lost), (6_000, 24_000, 24_000, 0), "{s:?}");
    assert_eq!(consumers.iter().map(|c| c.disconnects).sum::<u64>(), 4);
    // One worker samples the backlog for all: at the end of second 0, mid-outage, 4 groups
    // × 0.5 s × 2,000/s = 4,000 entries wait (plus what the consumers held unacknowledged,
    // and more if the sample is late); a sampler in each worker would say at least 8,000.
    let seconds: Vec<TimeseriesRow> = rows(&dir.join("timeseries.csv"));
    assert!((3_000..8_000).contains(&seconds[0].backlog), "backlog mid-outage {}", seconds[0].backlog);
    assert!(s.max_us.is_some_and(|m| m > 500_000.0), "the absent consumers' entries waited for them: {s:?}");
    let keys: Vec<String> = redis::cmd("KEYS").arg("eventbench:*").query(&mut redis.client()).unwrap();
    assert!(keys.is_empty(), "the run's streams and control keys are deleted: {keys:?}");
}

#[test]
fn bad_worker_input_is_one_line_and_exit_code_2() {
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("redis://127.0.0.1:{closed}");
    // A plan written by another eventbench version.
    let plan = serde_json::json!({
        "version": "0.0.0 (control 0, header 0)", "workers": 2, "scenario": "", "url": url,
        "nonce": "x", "epoch_unix_ns": 0
    });
    let _: () =
        redis::cmd("SET").arg("eventbench:ctl:{old}:plan").arg(plan.to_string()).query(&mut redis.client()).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--workers", "0", "--url", &url], "--workers must be at least 1"),
        (&["run", "--workers", "2", "--spawn", "3", "--url", &url], "--spawn"),
        (
            &["run", "--workers", "2", "--transport", "streams", "--groups", "2", "--consumers", "4", "--url", &url],
            "one process",
        ),
        (&["run", "--workers", "2", "--transport", "streams", "--replay-at", "1s", "--url", &url], "one process"),
        (&["worker", "--control", &closed, "--run", "r"], "cannot reach"),
        (&["worker", "--control", &url, "--run", "old"], "does not match the coordinator's"),
        // Without --run: the only run waiting for workers, here that one.
        (&["worker", "--control", &url], "does not match the coordinator's"),
        (&["worker", "--control", &url, "--run", "nothing-here"], "no run nothing-here"),
    ];
    for (args, needle) in cases {
        common::assert_bad_input(args, needle);
    }
    let _: () =
        redis::cmd("SET").arg("eventbench:ctl:{old2}:plan").arg(plan.to_string()).query(&mut redis.client()).unwrap();
    common::assert_bad_input(&["worker", "--control", &url], "several runs wait for workers on");
}

/// The pids in `/proc/<pid>/task/*/children`.
fn children_of(pid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(text.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
    }
    out
}

fn alive(pid: i32) -> bool {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Gone, or a zombie waiting to be reaped, is not running.
    !state.is_empty() && !state.contains(") Z ")
}

/// Starts `eventbench run --url <redis> --quiet --out <dir>` with `args`, stderr piped, in the background.
fn coordinator(redis: &RedisServer, dir: &Path, args: &[&str]) -> std::process::Child {
    bin()
        .args(["run", "--url", &redis.url(), "--quiet", "--out"])
        .arg(dir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Issue 31: a worker lost once the run is under way no longer throws the
/// run away: the others are stopped, its share is stood in for, and the
/// files are whole (before, exit 1 with no files at all).
#[test]
fn a_worker_that_dies_mid_run_fails_the_run_by_name_with_whole_files() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Two of each, so that each worker holds a producer and a consumer,
    // whichever of them is killed.
    let args = ["--workers", "2", "--duration", "5s", "--producers", "2", "--consumers", "2"];
    let mut coordinator = coordinator(&redis, &dir, &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let workers = loop {
        let pids = children_of(coordinator.id());
        let started: Option<String> =
            redis::cmd("KEYS").arg("eventbench:ctl:*:start").query::<Vec<String>>(&mut redis.client()).unwrap().pop();
        if pids.len() == 2 && started.is_some() {
            break pids;
        }
        assert!(std::time::Instant::now() < deadline, "the workers did not start: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Into the measured phase (after the start's lead and the warmup), so that there is a share to stand in for.
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: plain kill(2) of the test's own grandchild.
    assert_eq!(unsafe { libc::kill(workers[0], libc::SIGKILL) }, 0);
    let status = common::wait_exit(&mut coordinator, Duration::from_secs(15));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut coordinator.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(last.contains("worker") && last.contains(&workers[0].to_string()) && last.contains("signal"), "{err}");
    let (s, consumers) = assert_accounted(&dir);
    assert_eq!(s.status, "aborted", "{s:?}");
    assert!(s.reason.contains(&format!("pid {} ", workers[0])) && s.reason.contains("stands in"), "{}", s.reason);
    assert_eq!(s.duplicates, 0, "nothing counted twice");
    let rows: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    let dead = rows.iter().find(|w| w.pid as i32 == workers[0]).expect("the dead worker's row");
    assert_eq!((dead.status.as_str(), dead.delivered), ("aborted", 0), "{rows:?}");
    assert!(
        consumers.iter().any(|c| c.delivered == 0 && c.undelivered == c.expected && c.expected > 0),
        "{consumers:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while alive(workers[1]) {
        assert!(std::time::Instant::now() < deadline, "the other worker outlived the coordinator");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(control_keys(&redis).is_empty(), "control keys left: {:?}", control_keys(&redis));
}

#[test]
fn a_worker_started_by_hand_joins_with_the_line_the_coordinator_prints() {
    let (redis, control) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let split = ["--workers", "2", "--spawn", "1", "--consumers", "2", "--rate", "2000", "--duration", "1s"];
    let timing = ["--warmup", "300ms", "--drain", "1s", "--control", &control.url()];
    let mut coordinator = coordinator(&redis, &dir, &[&split[..], &timing].concat());
    // The first line on stderr is the command that joins the run.
    let mut stderr = std::io::BufReader::new(coordinator.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let command = line.rsplit(": ").next().unwrap_or_default();
    let args: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(&args[..2], ["eventbench", "worker"], "{line}");
    assert_eq!(args[3].trim_end_matches('/'), control.url(), "the processes meet on --control: {line}");
    assert!(control_keys(&control).iter().any(|k| k.ends_with(":plan")), "the plan is on the control Redis");
    assert!(control_keys(&redis).is_empty(), "nothing of the control plane on the target");
    let worker = bin().args(&args[1..]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let by_hand = worker.id();
    let worker = worker.wait_with_output().unwrap();
    assert_eq!(worker.status.code(), Some(0), "{}", common::stderr(&worker));
    let status = common::wait_exit(&mut coordinator, Duration::from_secs(20));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    let (s, _) = assert_accounted(&dir);
    assert_eq!((s.status.as_str(), s.sent, s.delivered, s.lost), ("ok", 2000, 4000, 0), "{s:?}");
    let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    assert_eq!(workers.len(), 2);
    assert!(workers.iter().all(|w| w.status == "ok"), "{workers:?}");
    assert_eq!(
        workers.iter().filter(|w| w.pid == by_hand).count(),
        1,
        "the worker started by hand ran a share: {workers:?}"
    );
    assert!(control_keys(&control).is_empty(), "control keys left: {:?}", control_keys(&control));
}

#[test]
fn compare_splits_each_transport_over_workers_like_run() {
    let redis = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cmp");
    let url = redis.url();
    let o = eventbench(&[
        "compare",
        "--url",
        &url,
        "--quiet",
        "--workers",
        "2",
        "--transports",
        "pubsub,streams",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "300ms",
        "--drain",
        "2s",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for transport in ["pubsub", "streams"] {
        let dir = out.join(transport);
        let (s, _) = assert_accounted(&dir);
        assert_eq!((s.workers, s.sent, s.delivered, s.lost), (2, 2000, 4000, 0), "{transport}: {s:?}");
        let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
        assert_eq!(workers.len(), 2, "{transport}");
    }
    assert!(control_keys(&redis).is_empty(), "the control keys are gone");
}
