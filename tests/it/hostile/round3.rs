//! Issue 28's cases that need a server, a run or a process of their own:
//! failures known at t = 0, a mute or missing server, outputs that cannot
//! be written, odd files in a real run directory, file-size limits,
//! coordinators that collide, and the join wait.

use crate::common::{assert_whole_run_dir, bin, stderr, stdout, RedisServer};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `args` and returns its output and how long it took.
fn timed(cmd: &mut std::process::Command) -> (Output, Duration) {
    let started = Instant::now();
    let o = cmd.output().unwrap();
    (o, started.elapsed())
}

/// A run whose consumers Redis refuses at once is a set-up failure: exit 1
/// within seconds (it took the run's length and drain), with whole files.
fn refused_at_start(what: &str, server: &RedisServer, user: Option<(&str, &str)>, args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let url = match user {
        Some((name, _)) => format!("redis://{name}@127.0.0.1:{}", server.port),
        None => server.url(),
    };
    let mut cmd = bin();
    cmd.args(["run", "--url", &url, "--duration", "20s", "--drain", "2s", "--quiet", "--out"]).arg(&out).args(args);
    if let Some((_, password)) = user {
        cmd.env("REDIS_PASSWORD", password);
    }
    let (o, took) = timed(&mut cmd);
    let err = stderr(&o);
    eprintln!("{what}: exited after {took:?}: {}", err.trim());
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    assert!(took < Duration::from_secs(6), "{what}: took {took:?} for a failure known at t = 0");
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "aborted", "{what}: {s:?}");
    assert!(!s.reason.is_empty() && s.drain_s < 3.0, "{what}: {s:?}");
    // Nothing delivered: no latency to show (item 25), said once, and empty cells rather than 0.0.
    assert_eq!(s.delivered, 0, "{what}: {s:?}");
    assert!(s.p50_us.is_none() && s.p99_us.is_none() && s.max_us.is_none(), "{what}: {s:?}");
    let table = stdout(&o);
    assert!(table.contains("latency  no deliveries") && !table.contains("0.0 µs"), "{what}: {table}");
    let consumers: Vec<eventbench::rows::ConsumerRow> =
        csv::Reader::from_path(out.join("consumers.csv")).unwrap().deserialize().map(Result::unwrap).collect();
    assert!(consumers.iter().all(|c| c.p99_us.is_none()), "{what}: {consumers:?}");
}

#[test]
fn streams_refused_by_maxmemory_is_a_setup_failure() {
    let server = RedisServer::start(&["--maxmemory", "1"]);
    refused_at_start("maxmemory 1, streams", &server, None, &["--transport", "streams"]);
}

#[test]
fn a_user_without_subscribe_is_a_setup_failure() {
    let server = RedisServer::start(&[]);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "nosub", "on", ">pw-nosub", "~*", "&*", "+@all", "-subscribe"][..])
        .query(&mut server.client())
        .unwrap();
    refused_at_start("no +subscribe, pubsub", &server, Some(("nosub", "pw-nosub")), &[]);
}

#[test]
fn a_user_without_xgroup_create_is_a_setup_failure() {
    let server = RedisServer::start(&[]);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "nogroup", "on", ">pw-nogroup", "~*", "&*", "+@all", "-xgroup|create"][..])
        .query(&mut server.client())
        .unwrap();
    let args = ["--transport", "streams"];
    refused_at_start("no +xgroup|create, streams", &server, Some(("nogroup", "pw-nogroup")), &args);
}

#[test]
fn a_server_that_never_answers_ping_fails_within_the_time_it_names() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("redis-server");
    std::fs::write(
        &server,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Redis server v=7.2.0 bits=64'; exit 0; fi\nexec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (o, took) = timed(bin().args(["run", "--quiet", "--redis-server"]).arg(&server).current_dir(dir.path()));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("within 5s"), "{err}");
    assert!(took < Duration::from_secs(8), "the message says 5s and it took {took:?}");
}

#[test]
fn a_private_cluster_without_redis_cli_is_bad_input_with_an_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let server = which("redis-server");
    std::os::unix::fs::symlink(&server, dir.path().join("redis-server")).unwrap();
    let (o, took) =
        timed(bin().args(["run", "--private-cluster", "3", "--quiet"]).env("PATH", dir.path()).current_dir(dir.path()));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("redis-cli") && err.contains("apt-get install redis-tools"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

fn which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).expect("on PATH")
}

/// Runs `args` with stdout on `/dev/full`.
fn to_full(args: &[&str], dir: &Path) -> Output {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    bin().args(args).current_dir(dir).stdout(full).stderr(Stdio::piped()).output().unwrap()
}

#[test]
fn a_full_stdout_is_a_failure_for_man_completions_scenarios_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let json = ["run", "--duration", "300ms", "--warmup", "0s", "--quiet", "--format", "json", "--out"];
    let json: Vec<&str> = json.iter().copied().chain([out.to_str().unwrap()]).collect();
    for args in [&["man"][..], &["completions", "bash"], &["scenarios"], &json] {
        let o = to_full(args, dir.path());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("cannot write to stdout"), "{args:?}: {err}");
    }
    // The run's files were written: only its summary on stdout was lost.
    assert_eq!(assert_whole_run_dir(&out).status, "ok");
}

#[test]
fn a_free_metrics_port_is_said_on_stderr_and_in_the_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["run", "--duration", "300ms", "--warmup", "0s", "--quiet", "--format", "json"])
        .args(["--metrics-listen", "127.0.0.1:0", "--out"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let (err, out) = (stderr(&o), stdout(&o));
    assert_eq!(o.status.code(), Some(0), "{err}");
    let said = err.lines().find_map(|l| l.strip_prefix("eventbench: serving metrics on http://")).expect("said");
    let addr = said.strip_suffix("/metrics").unwrap();
    assert!(!addr.ends_with(":0"), "{addr}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["metrics_listen"].as_str(), Some(addr), "{out}");
}

/// A short run's directory, to be spoiled by a test.
fn a_run(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("run");
    let o =
        bin().args(["run", "--duration", "300ms", "--warmup", "0s", "--quiet", "--out"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    out
}

#[test]
fn report_refuses_a_fifo_and_a_device_in_a_run_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = a_run(dir.path());
    // timeseries.csv as a FIFO nobody writes to: it hung.
    std::fs::remove_file(run.join("timeseries.csv")).unwrap();
    let c = std::ffi::CString::new(run.join("timeseries.csv").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) in our own scratch directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let (o, took) = timed(bin().args(["report"]).arg(&run));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("timeseries.csv: a FIFO"), "{}", stderr(&o));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // latency.hlog as a symlink to /dev/zero: it ran out of memory.
    std::fs::remove_file(run.join("timeseries.csv")).unwrap();
    std::fs::write(run.join("timeseries.csv"), "").unwrap();
    std::fs::remove_file(run.join("latency.hlog")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", run.join("latency.hlog")).unwrap();
    let mut cmd = bin();
    cmd.args(["report"]).arg(&run);
    limit_memory(&mut cmd, 1 << 30);
    let (o, took) = timed(&mut cmd);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("timeseries.csv") || err.contains("latency.hlog: a device"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// An address-space limit for the child: a read without a bound would end in an abort.
fn limit_memory(cmd: &mut std::process::Command, bytes: u64) {
    // SAFETY: setrlimit is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
}

#[test]
fn a_file_size_limit_is_an_error_not_a_kill_and_leaves_no_staging_directory() {
    // SIGXFSZ left at its default (it killed the process): eventbench ignores it itself.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["run", "--duration", "2s", "--warmup", "0s", "--checkpoint", "1s", "--quiet", "--out"]).arg(&out);
    // SAFETY: setrlimit and signal are async-signal-safe and only affect the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            let lim = libc::rlimit { rlim_cur: 8 * 1024, rlim_max: 8 * 1024 };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "an error, not a signal: {:?} {err}", o.status);
    assert!(err.contains("incomplete") || err.contains("File too large"), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&out).into_iter().flatten())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "staging or temporary files left: {left:?}");
}

#[test]
fn two_coordinators_started_together_on_one_control_redis_get_their_own_run_ids() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        bin()
            .args(["run", "--url", &server.url(), "--workers", "1", "--name", "same", "--duration", "500ms"])
            .args(["--warmup", "100ms", "--quiet", "--format", "json", "--out"])
            .arg(dir.path().join(name))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!((a.status.code(), b.status.code()), (Some(0), Some(0)), "{}\n{}", stderr(&a), stderr(&b));
    let id = |o: &Output| serde_json::from_str::<serde_json::Value>(&stdout(o)).unwrap()["run_id"].clone();
    let (ida, idb) = (id(&a), id(&b));
    assert_ne!(ida, idb);
    let shape = ida.as_str().unwrap();
    let suffix = shape.rsplit('-').next().unwrap();
    assert!(shape.starts_with("same-") && suffix.len() == 6, "{shape}");
}

#[test]
fn a_worker_with_no_run_to_join_says_so_and_exits_2() {
    let server = RedisServer::start(&[]);
    let (o, took) = timed(bin().args(["worker", "--control", &server.url()]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no run") && err.contains("waiting for workers"), "{err}");
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[test]
fn the_join_wait_is_said_and_bounded_by_join_timeout() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let (o, took) = timed(
        bin()
            .args(["run", "--url", &server.url(), "--workers", "2", "--spawn", "0", "--join-timeout", "1s"])
            .args(["--duration", "1s", "--quiet"])
            .current_dir(dir.path()),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("waiting up to 1s (--join-timeout)"), "{err}");
    assert!(err.contains("did not join within 1s (--join-timeout)"), "{err}");
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn spawned_workers_reach_a_control_redis_with_a_password_of_its_own() {
    let target = RedisServer::start(&[]);
    let control = RedisServer::start(&["--requirepass", "ctl-s3cret"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let control_url = format!("redis://:ctl-s3cret@127.0.0.1:{}", control.port);
    let o = bin()
        .args(["run", "--url", &target.url(), "--workers", "2", "--control", &control_url])
        .args(["--duration", "500ms", "--warmup", "100ms", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("ctl-s3cret"), "{err}");
    assert_eq!(assert_whole_run_dir(&out).workers, 2);
    for entry in walk(&out) {
        let text = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&text).contains("ctl-s3cret"), "{entry:?} holds the password");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect()
}

#[test]
fn an_a_a_comparison_runs_under_distinct_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let o = bin()
        .args(["compare", "--servers", "redis-server,redis-server", "--name", "aa", "--duration", "300ms"])
        .args(["--warmup", "0s", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ids: Vec<String> = csv::Reader::from_path(out.join("compare.csv"))
        .unwrap()
        .deserialize::<eventbench::rows::SummaryRow>()
        .map(|r| r.unwrap().run_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0].starts_with("aa-") && ids[1].starts_with("aa-2-"), "{ids:?}");
    assert!(out.join("redis-server").is_dir() && out.join("redis-server-2").is_dir());
}

/// The worker processes a coordinator started.
fn workers_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("\0worker\0") {
                found.push(child);
            }
        }
    }
    found
}

/// Starts a 30 s run split over two workers, meeting on `control`; returns once
/// messages go out, which is after both workers joined (a subscribed channel
/// alone is one worker's: stopping the other before it joined made the run
/// end by the join timeout, 30 s, not by the lost heartbeat).
fn split_run(target: &RedisServer, control: &RedisServer, out: &Path) -> std::process::Child {
    let child = bin()
        .args(["run", "--url", &target.url(), "--workers", "2", "--control", &control.url()])
        .args(["--duration", "30s", "--warmup", "200ms", "--connect-timeout", "2s", "--quiet", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::common::wait_for_run(target.port, "pubsub", Duration::from_secs(20));
    crate::common::wait_for_sent(target.port, "pubsub", 1, Duration::from_secs(20));
    child
}

#[test]
fn a_stopped_worker_ends_the_run_within_seconds() {
    let (target, control) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let dir = tempfile::tempdir().unwrap();
    let mut child = split_run(&target, &control, &dir.path().join("run"));
    let workers = workers_of(child.id());
    assert_eq!(workers.len(), 2, "{workers:?}");
    let stopped = Instant::now();
    // SAFETY: kill(2) on a worker our child started.
    assert_eq!(unsafe { libc::kill(workers[1], libc::SIGSTOP) }, 0);
    let status = crate::common::wait_exit(&mut child, Duration::from_secs(30));
    let took = stopped.elapsed();
    let err = stderr(&child.wait_with_output().unwrap());
    eprintln!("a stopped worker: the run ended {took:?} later: {}", err.trim());
    // SAFETY: as above; a stopped process would not see the SIGKILL its parent's death sends otherwise late.
    unsafe { libc::kill(workers[1], libc::SIGCONT) };
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("stopped answering"), "{err}");
    assert!(took < Duration::from_secs(12), "took {took:?} (the heartbeat is lost after 5 s)");
}

#[test]
fn a_stopped_control_redis_ends_the_run_within_its_connect_timeout() {
    let (target, control) = (RedisServer::start(&[]), RedisServer::start(&[]));
    let dir = tempfile::tempdir().unwrap();
    let mut child = split_run(&target, &control, &dir.path().join("run"));
    let stopped = Instant::now();
    control.signal(libc::SIGSTOP);
    let status = crate::common::wait_exit(&mut child, Duration::from_secs(30));
    let took = stopped.elapsed();
    control.signal(libc::SIGCONT);
    let err = stderr(&child.wait_with_output().unwrap());
    eprintln!("a stopped control Redis: the run ended {took:?} later: {}", err.trim());
    assert_ne!(status.code(), Some(0), "{err}");
    assert!(took < Duration::from_secs(8), "took {took:?} (--connect-timeout 2s)");
    // What it waited for and how long, said once.
    assert!(err.contains("the control Redis did not answer within 2s"), "{err}");
    assert_eq!(err.matches("timed out").count(), 0, "{err}");
}
