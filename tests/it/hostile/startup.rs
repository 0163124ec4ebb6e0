//! Signals during start-up (issue 28, item 2): a SIGINT, SIGTERM, SIGHUP or
//! SIGQUIT while a private cluster or server starts, or while eventbench
//! waits for a Redis that accepts and never answers, ends the run within
//! the wind-down (`live::WIND_DOWN`, 500 ms; 1.5 s here for a debug build on
//! a busy machine): exit 130, one line, nothing written, nothing left running.
//! Each test waits for its phase by a condition, never by a fixed sleep.

use crate::common::{bin, stderr, wait_exit};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bound a stop must meet from the signal to the exit.
const STOP_BOUND: Duration = Duration::from_millis(1500);

/// The process ids of `pid`'s children, with their command lines.
fn children(pid: u32) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return found };
    for task in tasks.flatten() {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace().filter_map(|c| c.parse::<i32>().ok()) {
            let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            found.push((child, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Whether a process is gone (or a zombie: it runs no more).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (at most 20 s) until `ready` holds for eventbench's children; a run that exits first fails.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn(&[(i32, String)]) -> bool) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = children(child.id());
        if ready(&now) {
            return now.into_iter().map(|(pid, _)| pid).collect();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what}: eventbench exited ({status}) before the phase: {}", stderr_of(child));
        }
        assert!(Instant::now() < deadline, "{what}: the phase never came");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

/// Sends `signal` and checks the stop: exit 130 within [`STOP_BOUND`], one
/// line, no results directory, and none of `started` left running.
fn assert_stops(mut child: Child, what: &str, signal: i32, started: &[i32], out: &Path) -> Duration {
    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let took = sent.elapsed();
    let err = stderr_of(&mut child);
    eprintln!("{what}: stopped {took:?} after the signal: {}", err.trim());
    assert_eq!(status.code(), Some(130), "{what}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    assert!(err.contains("interrupted before the run started"), "{what}: {err}");
    assert!(took < STOP_BOUND, "{what}: took {took:?} to stop");
    assert!(!out.exists(), "{what}: nothing was measured, nothing is written");
    let deadline = Instant::now() + Duration::from_secs(3);
    for &pid in started {
        while !gone(pid) {
            assert!(Instant::now() < deadline, "{what}: process {pid} was left running");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    took
}

/// `run` with `args` and `--out` in a scratch directory, stdout and stderr piped.
fn spawn_run(args: &[&str], out: &Path) -> Child {
    bin()
        .arg("run")
        .args(args)
        .args(["--duration", "20s", "--quiet", "--out"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A port that accepts connections and never answers: a stalled Redis.
/// Returns the port and the count of connections accepted so far.
fn silent_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

/// Signals a run that waits for a Redis that accepts and never answers (`--connect-timeout 20s`).
fn stop_while_connecting(transport: &str, signal: i32, what: &str) {
    let (port, accepted) = silent_listener();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let url = format!("redis://127.0.0.1:{port}");
    let mut child = spawn_run(&["--url", &url, "--transport", transport, "--connect-timeout", "20s"], &out);
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(child.try_wait().unwrap().is_none(), "{what}: exited before connecting");
        assert!(Instant::now() < deadline, "{what}: never connected");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_stops(child, what, signal, &[], &out);
}

#[test]
fn sigint_while_connecting_stops_a_pubsub_run() {
    stop_while_connecting("pubsub", libc::SIGINT, "SIGINT while connecting, pubsub");
}

#[test]
fn sigterm_while_connecting_stops_a_streams_run() {
    stop_while_connecting("streams", libc::SIGTERM, "SIGTERM while connecting, streams");
}

#[test]
fn sighup_while_connecting_stops_a_sharded_run() {
    stop_while_connecting("sharded", libc::SIGHUP, "SIGHUP while connecting, sharded");
}

#[test]
fn sigquit_while_connecting_stops_a_run() {
    stop_while_connecting("pubsub", libc::SIGQUIT, "SIGQUIT while connecting, pubsub");
}

/// A "server" that says it is one and then never listens: its PING never comes.
fn mute_server(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("redis-server");
    std::fs::write(
        &path,
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Redis server v=7.2.0 sha=00000000:0 bits=64'; exit 0; fi\n\
         exec sleep 60\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Signals a run whose private server is starting and never answers PING.
fn stop_while_the_server_starts(transport: &str, signal: i32, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = mute_server(dir.path());
    let out = dir.path().join("run");
    let mut child = spawn_run(&["--redis-server", server.to_str().unwrap(), "--transport", transport], &out);
    let started = wait_until(&mut child, what, |c| c.iter().any(|(_, cmd)| cmd.starts_with("sleep 60")));
    assert_stops(child, what, signal, &started, &out);
}

#[test]
fn sigint_while_a_mute_private_server_starts_stops_a_pubsub_run() {
    stop_while_the_server_starts("pubsub", libc::SIGINT, "SIGINT while the server starts, pubsub");
}

#[test]
fn sigterm_while_a_mute_private_server_starts_stops_a_streams_run() {
    stop_while_the_server_starts("streams", libc::SIGTERM, "SIGTERM while the server starts, streams");
}

#[test]
fn sighup_while_a_mute_private_server_starts_stops_a_sharded_run() {
    stop_while_the_server_starts("sharded", libc::SIGHUP, "SIGHUP while the server starts, sharded");
}

/// Signals a run on a private cluster of three once `nodes` of its servers run.
fn stop_while_the_cluster_starts(transport: &str, signal: i32, nodes: usize, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = spawn_run(&["--private-cluster", "3", "--transport", transport], &out);
    let servers = |c: &[(i32, String)]| c.iter().filter(|(_, cmd)| cmd.contains("redis-server")).count();
    let started = wait_until(&mut child, what, |c| servers(c) >= nodes);
    assert_stops(child, what, signal, &started, &out);
}

#[test]
fn sigint_while_the_first_cluster_node_starts_stops_a_sharded_run() {
    stop_while_the_cluster_starts("sharded", libc::SIGINT, 1, "SIGINT at the first node, sharded cluster");
}

#[test]
fn sigterm_while_the_cluster_forms_stops_a_streams_run() {
    stop_while_the_cluster_starts("streams", libc::SIGTERM, 3, "SIGTERM while the cluster forms, streams");
}

#[test]
fn sighup_while_the_cluster_starts_stops_a_pubsub_run() {
    stop_while_the_cluster_starts("pubsub", libc::SIGHUP, 2, "SIGHUP at the second node, pubsub cluster");
}

#[test]
fn sigint_while_compare_connects_stops_the_comparison() {
    let (port, accepted) = silent_listener();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let url = format!("redis://127.0.0.1:{port}");
    let child = bin()
        .args(["compare", "--url", &url, "--connect-timeout", "20s", "--duration", "20s", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "never connected");
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Instant::now();
    let mut child = child;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let took = sent.elapsed();
    let err = stderr(&child.wait_with_output().unwrap());
    eprintln!("SIGINT while compare connects: stopped {took:?} after the signal: {}", err.trim());
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(took < STOP_BOUND, "took {took:?}");
}
