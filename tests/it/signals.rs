//! Ctrl-C and SIGTERM: stop producing, drain briefly, write the results with
//! `status = interrupted`, stop the private redis-server, exit 130. A second
//! Ctrl-C exits at once, still leaving only whole files.

use crate::common::{assert_whole_run_dir, bin, wait_exit, wait_for_sent};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// The private redis-server eventbench started: its pid and port.
pub(crate) fn private_server_of(pid: u32) -> Option<(i32, u16)> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let children = std::fs::read_to_string(task.ok()?.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into()).collect();
            if !args.first().is_some_and(|a| a.contains("redis-server")) {
                continue;
            }
            // Before Redis sets its process title the port follows --port; after, it is
            // the title "redis-server 127.0.0.1:PORT".
            let port = match args.iter().position(|a| a == "--port") {
                Some(i) => args.get(i + 1)?.parse().ok()?,
                None => args[0].rsplit_once(':')?.1.trim().parse().ok()?,
            };
            return Some((child.parse().ok()?, port));
        }
    }
    None
}

/// Whether a process is gone (or a zombie nobody reaped yet: it runs no more).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Starts a 30 s run on a private server; returns once it is measuring.
fn start_measuring(out: &std::path::Path, own_group: bool) -> (Child, i32) {
    start_run(out, own_group, "pubsub", &[])
}

/// Starts a 30 s run of `transport` (with `extra` flags) on a private server;
/// returns once it is measuring, with the server's pid.
fn start_run(out: &std::path::Path, own_group: bool, transport: &str, extra: &[&str]) -> (Child, i32) {
    let mut cmd = bin();
    cmd.args(["run", "--rate", "2000", "--consumers", "2", "--duration", "30s", "--warmup", "200ms", "--quiet"])
        .args(["--transport", transport])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        // Like a shell job: the terminal's Ctrl-C goes to the whole group.
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (server, port) = loop {
        if let Some(found) = private_server_of(child.id()) {
            break found;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("eventbench exited ({status}) before measuring: {}", stderr_of(&mut child));
        }
        assert!(Instant::now() < deadline, "no private redis-server appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    // 200 ms of warmup, then more than half a second measured (at 2000/s).
    wait_for_sent(port, transport, 400 + 1200, Duration::from_secs(15));
    (child, server)
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

fn assert_gone_soon(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !is_gone(pid) {
        assert!(Instant::now() < deadline, "the private redis-server {pid} was left behind");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interrupt(what: &str, signal: i32, to_group: bool) {
    interrupt_run(what, signal, to_group, "pubsub");
}

fn interrupt_run(what: &str, signal: i32, to_group: bool, transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut child, server) = start_run(&out, to_group, transport, &[]);
    let target = if to_group { -(child.id() as i32) } else { child.id() as i32 };
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child (or its process group).
    assert_eq!(unsafe { libc::kill(target, signal) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = sent.elapsed();
    let err = stderr_of(&mut child);
    eprintln!("{what}: exited {took:?} after the signal: {}", err.trim());
    assert_eq!(status.code(), Some(130), "{what}: {err}");
    assert!(err.contains("interrupted") && !err.contains("panicked"), "{what}: {err}");
    assert_gone_soon(server);
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "interrupted", "{what}: {s:?}");
    assert!(!s.reason.is_empty());
    assert!(s.sent >= 1000 && s.delivered > 0, "{what}: what was measured is kept: {s:?}");
    // The drain let everything sent arrive: the private server outlived the signal.
    assert_eq!((s.lost, s.delivered), (0, s.expected), "{what}: {s:?}");
    assert!(s.duration_s > 0.5 && s.duration_s < 5.0, "{what}: {s:?}");
    assert!(took < Duration::from_secs(4), "{what}: took {took:?} to stop");
}

#[test]
fn ctrl_c_writes_interrupted_results_and_exits_130() {
    interrupt("SIGINT", libc::SIGINT, false);
}

#[test]
fn sigterm_writes_interrupted_results_and_exits_130() {
    interrupt("SIGTERM", libc::SIGTERM, false);
}

#[test]
fn sighup_writes_interrupted_results_and_exits_130() {
    // A closed terminal: handled like Ctrl-C (it used to kill eventbench with no results).
    interrupt("SIGHUP", libc::SIGHUP, false);
}

#[test]
fn sigquit_writes_interrupted_results_and_exits_130() {
    // It killed the process with no results (issue 28, item 20).
    interrupt("SIGQUIT", libc::SIGQUIT, false);
}

#[test]
fn sigusr1_while_measuring_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(["run", "--rate", "1000", "--duration", "2s", "--warmup", "200ms", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (_, port) = loop {
        if let Some(found) = private_server_of(child.id()) {
            break found;
        }
        assert!(Instant::now() < deadline, "no private redis-server appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for_sent(port, "pubsub", 200, Duration::from_secs(10));
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGUSR1) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut child));
    let s = assert_whole_run_dir(&out);
    assert_eq!((s.status.as_str(), s.lost), ("ok", 0), "{s:?}");
}

#[test]
fn ctrl_c_stops_a_streams_run() {
    interrupt_run("SIGINT, streams", libc::SIGINT, false, "streams");
}

#[test]
fn sigterm_stops_a_sharded_run() {
    interrupt_run("SIGTERM, sharded", libc::SIGTERM, false, "sharded");
}

/// Sends `signal` to a run that `prepare` put in a state where stopping is
/// hard (a stalled Redis, slow consumers); the first signal must still end it
/// within about a second (1.5 s here, for a debug build on a busy machine),
/// with whole files marked interrupted and no private server left behind.
fn first_signal_stops(what: &str, transport: &str, extra: &[&str], before: impl FnOnce(i32)) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (mut child, server) = start_run(&out, false, transport, extra);
    before(server);
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = sent.elapsed();
    let err = stderr_of(&mut child);
    eprintln!("{what}: exited {took:?} after the signal: {}", err.trim());
    assert_eq!(status.code(), Some(130), "{what}: {err}");
    assert_gone_soon(server);
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "interrupted", "{what}: {s:?}");
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{what}: {s:?}");
    assert!(took < Duration::from_millis(1500), "{what}: took {took:?} to stop");
}

/// Stops the private server (SIGSTOP): sockets stay open, nothing answers.
fn stall(server: i32) {
    // SAFETY: kill(2) on the private server our child started.
    assert_eq!(unsafe { libc::kill(server, libc::SIGSTOP) }, 0);
    std::thread::sleep(Duration::from_millis(200));
}

#[test]
fn the_first_ctrl_c_stops_a_run_whose_redis_stalled() {
    first_signal_stops("stalled Redis, pubsub", "pubsub", &[], stall);
}

#[test]
fn the_first_ctrl_c_stops_a_sharded_run_whose_redis_stalled() {
    first_signal_stops("stalled Redis, sharded", "sharded", &[], stall);
}

#[test]
fn the_first_ctrl_c_stops_a_streams_run_whose_redis_stalled() {
    // The run ignored it: Streams consumers waited 30 s for a reply.
    first_signal_stops("stalled Redis, streams", "streams", &[], stall);
}

#[test]
fn the_first_ctrl_c_stops_slow_consumers_at_once() {
    // A minute per message: the consumers are asleep over a message when the signal comes.
    first_signal_stops("--slow 100%:1m, pubsub", "pubsub", &["--slow", "100%:1m"], |_| {});
    first_signal_stops("--slow 100%:1m, streams", "streams", &["--slow", "100%:1m"], |_| {});
}

#[test]
fn ctrl_c_during_a_slow_drain_stops_within_a_second() {
    // 1 s measured, then up to 8 s of drain that slow consumers cannot finish (4.6 s to stop, before).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(["run", "--rate", "2000", "--duration", "1s", "--warmup", "200ms", "--drain", "8s", "--quiet"])
        .args(["--slow", "100%:5ms", "--out"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some((_, port)) = private_server_of(child.id()) {
            break port;
        }
        assert!(Instant::now() < deadline, "no private redis-server appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    // Into the drain: every message of the run (200 ms + 1 s at 2000/s) is written.
    wait_for_sent(port, "pubsub", 2400, Duration::from_secs(15));
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(130), "{}", stderr_of(&mut child));
    assert!(took < Duration::from_millis(1500), "took {took:?} to stop");
    assert_eq!(assert_whole_run_dir(&out).status, "interrupted");
}

#[test]
fn a_slow_consumer_never_holds_a_run_past_its_drain() {
    // Ten seconds per message, one measured second, a 1 s drain: done in about 2.5 s, not 12.
    for transport in ["pubsub", "streams"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let started = Instant::now();
        let o = bin()
            .args(["run", "--transport", transport, "--rate", "500", "--duration", "1s", "--warmup", "200ms"])
            .args(["--drain", "1s", "--slow", "100%:10s", "--quiet", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let took = started.elapsed();
        assert_eq!(o.status.code(), Some(0), "{transport}: {}", String::from_utf8_lossy(&o.stderr));
        assert!(took < Duration::from_secs(6), "{transport}: took {took:?}");
        let s = assert_whole_run_dir(&out);
        // What the slow consumer never got to is still queued for it (Pub/Sub's
        // output buffer, the stream): undelivered, not lost.
        assert!(s.undelivered > 0 && s.delivered + s.lost + s.undelivered == s.expected, "{transport}: {s:?}");
    }
}

#[test]
fn ctrl_c_in_a_terminal_reaches_the_whole_group_but_the_server_survives_the_drain() {
    interrupt("SIGINT to the process group", libc::SIGINT, true);
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_leaves_only_whole_files() {
    for gap_ms in [1, 40, 300] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        let (mut child, server) = start_measuring(&out, false);
        // Redis runs in its --dir: the private server's temporary directory.
        let server_dir = std::fs::read_link(format!("/proc/{server}/cwd")).unwrap();
        let pid = child.id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(gap_ms));
        let second = Instant::now();
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = wait_exit(&mut child, Duration::from_secs(15));
        let took = second.elapsed();
        let err = stderr_of(&mut child);
        eprintln!("second Ctrl-C after {gap_ms} ms: exited {took:?} later, results written: {}", out.exists());
        assert_eq!(status.code(), Some(130), "{err}");
        assert!(took < Duration::from_millis(1500), "a second Ctrl-C took {took:?}");
        assert_gone_soon(server);
        assert!(!server_dir.exists(), "{server_dir:?} was left behind");
        // Either no results at all, or whole ones; never a partial file.
        if out.exists() {
            assert_whole_run_dir(&out);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(leftovers.iter().all(|n| n == "run"), "{leftovers:?}");
    }
}
