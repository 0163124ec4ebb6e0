//! The binary as a user meets it: bad input, the files a run leaves, repeating a run.

use crate::common;
use crate::common::{eventbench, stderr, stdout};

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--bogus"], "--bogus"),
        (&["run", "--rate", "abc"], "rate"),
        (&["run", "--rate", "-5"], "rate"),
        (&["run", "--payload", "10"], "minimum of 36"),
        (&["run", "--duration", "0s"], "duration"),
        (&["run", "--duration", "soon"], "duration"),
        (&["run", "--disconnect", "150%@1s+1s"], "0%..100%"),
        (&["run", "--disconnect", "50%@1s"], "PCT@AT+FOR"),
        (&["run", "--duration", "5s", "--disconnect", "50%@4s+2s"], "within --duration"),
        (&["run", "--url", "http://127.0.0.1:6379"], "redis://"),
        (&["run", "no-such-scenario.toml"], "no-such-scenario.toml"),
        (&["frobnicate"], "frobnicate"),
        (&["run", "--rate", "1.5x"], "rate"),
        (&["run", "--consumers", "-3"], "consumers"),
        (&["run", "--payload", "-1"], "payload"),
        (&["run", "--connect-timeout", "0s"], "connect-timeout"),
        (&["run", "--disconnect", "50%@11s+1s"], "within --duration"),
        (&["run", "--disconnect", "50%@1s+0s"], "FOR must be longer than 0s"),
        (&["run", "--disconnect", "x%@1s+1s"], "percentage"),
        (&["run", "--url", "redis://"], "no host"),
        (&["run", "--url", "redis://:6379"], "host"),
        (&["run", "--url", "redis://127.0.0.1:99999"], "invalid port"),
        (&["run", "--url", "redis://127.0.0.1:0"], "port 0"),
        (&["run", "--url", "redis://127.0.0.1:6379/x"], "database number"),
        (&["run", "--url", "redis//127.0.0.1"], "redis://"),
        (&["run", "--url", "unix:///tmp/redis.sock"], "Unix sockets"),
        (&["run", "--url", "bench:hunter2@127.0.0.1"], "bench:***@127.0.0.1"),
        (&["run", "--url", "redis://bench:***@127.0.0.1:1"], "REDIS_PASSWORD"),
        (&["run", "--password", "hunter2"], "--url"),
        (&["run", "--tls-insecure"], "rediss://"),
        (&["run", "--url", "redis://127.0.0.1:1", "--tls-ca", "ca.pem"], "rediss://"),
        (&["run", "--url", "rediss://127.0.0.1:1", "--tls-ca", "ca.pem", "--tls-insecure"], "choose one"),
        (&["run", "--url", "rediss://127.0.0.1:1", "--tls-ca", "/nonexistent/ca.pem"], "--tls-ca"),
        (&["run", "--assert", "p99<1"], "not a numeric summary.csv column"),
        (&["run", "--assert", "lost=0"], "use =="),
        (&["run", "--assert", "p99_us<2ms"], "unexpected 'm'"),
    ];
    for (args, needle) in cases {
        let err = common::assert_bad_input(args, needle);
        assert!(!err.contains("hunter2"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_port_is_refused_with_exit_code_2() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = eventbench(&["run", "--url", &format!("redis://127.0.0.1:{port}"), "--duration", "1s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach Redis") && err.contains("refused"), "{err}");
}

#[test]
fn failed_assertions_print_the_measured_value_and_exit_3_after_writing_results() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, asserts: &[&str]| {
        let out_dir = dir.path().join(name);
        let mut args =
            vec!["run", "--duration", "1s", "--warmup", "200ms", "--quiet", "--out", out_dir.to_str().unwrap()];
        for a in asserts {
            args.extend(["--assert", a]);
        }
        (eventbench(&args), out_dir)
    };
    let (out, out_dir) =
        run("failing", &["lost==0", "p99_us < 0.001", "delivery_rate >= 0.99*target_rate", "sent>1000000"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let failed: Vec<&str> = err.lines().filter(|l| l.contains("assertion failed")).collect();
    assert_eq!(failed.len(), 2, "{err}");
    assert!(failed[0].contains("p99_us<0.001 (p99_us = "), "{err}");
    assert!(failed[1].contains("sent>1000000 (sent = 1000)"), "{err}");
    assert!(stdout(&out).contains("delivered"), "the summary is still printed");
    assert!(out_dir.join("summary.csv").is_file(), "results are written first");

    // Gates from a scenario file, and all passing.
    let file = dir.path().join("gated.toml");
    std::fs::write(&file, "duration = \"1s\"\nwarmup = \"200ms\"\nassert = [\"lost==0\", \"p99_us<1000000\"]\n")
        .unwrap();
    let out_dir = dir.path().join("passing");
    let out = eventbench(&["run", file.to_str().unwrap(), "--quiet", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let scenario = std::fs::read_to_string(out_dir.join("scenario.toml")).unwrap();
    assert!(scenario.contains("assert = [\"lost==0\", \"p99_us<1000000\"]"), "{scenario}");
}

#[test]
fn a_missing_redis_server_names_both_ways_out() {
    let out = eventbench(&["run", "--redis-server", "/nonexistent/redis-server", "--duration", "1s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("apt-get install redis-server") && err.contains("--url"), "{err}");
}

#[test]
fn scenario_file_errors_name_the_file_the_key_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "rate = 100\nconsumerz = 3\n").unwrap();
    let out = eventbench(&["run", unknown.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown.toml") && err.contains("consumerz") && err.contains("line 2"), "{err}");

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "rate = 100\nduration = \"2s\nproducers = 1\n").unwrap();
    let out = eventbench(&["run", broken.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("broken.toml") && err.contains("line 2, column"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // Passwords never live in files; gates are checked like the flag.
    for (text, needle) in [("password = \"x\"\n", "password"), ("rate = 1\nassert = [\"p99<1\"]\n", "line 2")] {
        let file = dir.path().join("more.toml");
        std::fs::write(&file, text).unwrap();
        let err = stderr(&eventbench(&["run", file.to_str().unwrap()]));
        assert!(err.contains(needle) && err.trim().lines().count() == 1, "{text}: {err}");
    }

    let bad_value = dir.path().join("bad.toml");
    std::fs::write(&bad_value, "payload = 8\n").unwrap();
    let err = stderr(&eventbench(&["run", bad_value.to_str().unwrap()]));
    assert!(err.contains("payload") && err.contains("36"), "{err}");
}

#[test]
fn a_run_writes_its_files_and_can_be_repeated_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let out = eventbench(&[
        "run",
        "--rate",
        "2000",
        "--consumers",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--quiet",
        "--out",
        first.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("delivered"), "{}", stdout(&out));
    for f in [
        "summary.csv",
        "latency.csv",
        "timeseries.csv",
        "consumers.csv",
        "scenario.toml",
        "latency.hlog",
        "latency.svg",
        "timeline.svg",
        "report.html",
    ] {
        assert!(first.join(f).is_file(), "{f} missing");
    }
    let mut rows = csv::Reader::from_path(first.join("summary.csv")).unwrap();
    let summary: Vec<eventbench::rows::SummaryRow> = rows.deserialize().map(Result::unwrap).collect();
    assert_eq!(summary.len(), 1);
    assert_eq!((summary[0].sent, summary[0].expected, summary[0].lost), (2000, 4000, 0));
    assert_eq!(summary[0].status, "ok");

    // The effective scenario repeats the run.
    let second = dir.path().join("second");
    let scenario = first.join("scenario.toml");
    let out = eventbench(&[
        "run",
        scenario.to_str().unwrap(),
        "--quiet",
        "--format",
        "json",
        "--out",
        second.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(stdout(&out).trim()).expect("one JSON object");
    assert_eq!(json["sent"], 2000);
    assert_eq!(json["consumers"], 2);
    assert_eq!(
        std::fs::read_to_string(&scenario).unwrap(),
        std::fs::read_to_string(second.join("scenario.toml")).unwrap()
    );

    // An existing directory is never overwritten.
    let out = eventbench(&["run", "--duration", "1s", "--quiet", "--out", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"));
}

#[test]
fn a_harness_that_cannot_keep_up_says_so() {
    // Three million messages a second from one producer: no machine keeps that schedule.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = eventbench(&[
        "run",
        "--rate",
        "3M",
        "--duration",
        "300ms",
        "--warmup",
        "100ms",
        "--drain",
        "500ms",
        "--quiet",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(err.contains("warning: the harness may have been the limit") && err.contains("send lag p99"), "{err}");
    let mut rows = csv::Reader::from_path(out_dir.join("summary.csv")).unwrap();
    let summary: eventbench::rows::SummaryRow = rows.deserialize().next().unwrap().unwrap();
    assert!(summary.harness_limited);
    assert!(summary.send_lag_p99_us > 1000.0, "{}", summary.send_lag_p99_us);
    assert!(summary.harness_cpu_pct > 0.0 && summary.harness_cpu_pct <= 100.5, "{}", summary.harness_cpu_pct);
}

#[test]
fn scenarios_lists_the_shipped_files() {
    let out = eventbench(&["scenarios"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for name in ["baseline", "fanout", "swarm", "disconnect-loss"] {
        assert!(text.lines().any(|l| l.starts_with(name)), "{name} missing from:\n{text}");
    }
    // Every shipped scenario is valid.
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        let s = eventbench::Scenario::from_file(&path).unwrap();
        s.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(s.description.is_some(), "{} has no description", path.display());
    }
}
