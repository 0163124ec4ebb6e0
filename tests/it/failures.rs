//! Redis failing under a run: killed, shut down, stopped (a network cut as
//! seen from the client: the connection stays open and goes silent), or never
//! answering at all. eventbench must notice within 2 seconds, keep what it
//! measured, write it with `status = aborted` and a reason, and exit 1.

use crate::common;
use crate::common::{assert_whole_run_dir, bin, wait_exit, RedisServer};
use eventbench::rows::EventRow;
use std::io::Read;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn spawn_run(url: &str, out: &std::path::Path, transport: &str, consumers: &str, extra: &[&str]) -> Child {
    bin()
        .args(["run", "--url", url, "--transport", transport, "--rate", "2000", "--producers", "2"])
        .args(["--consumers", consumers, "--duration", "30s"])
        .args(["--warmup", "200ms", "--quiet", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

/// Starts a 30 s run of `transport` against a test server, lets it measure
/// for a second, breaks the server with `how`, and checks what eventbench
/// leaves behind. Returns the time from the break to eventbench's exit, the
/// reason, and the run directory's events.
fn redis_dies(what: &str, transport: &str, how: impl FnOnce(&RedisServer)) -> (Duration, String, Vec<EventRow>) {
    let what = format!("{what} ({transport})");
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = spawn_run(&server.url(), &out, transport, "2", &[]);
    // 200 ms of warmup, then more than a second measured (at 2000/s).
    common::wait_for_sent(server.port, transport, 400 + 2200, Duration::from_secs(15));
    let broken = Instant::now();
    how(&server);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = broken.elapsed();
    let err = stderr_of(&mut child);
    eprintln!("{what}: eventbench exited {took:?} after the failure: {}", err.trim());
    assert_eq!(status.code(), Some(1), "{what}: {err}");
    assert!(err.contains("run aborted") && err.contains("partial results in"), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");

    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "aborted", "{what}");
    assert!(!s.reason.is_empty(), "{what}: aborted without a reason");
    assert!(err.contains(&s.reason), "{what}: stderr says why: {err}");
    // Nothing measured before the failure is lost: about a second at 2000/s, to 2 consumers.
    assert!(s.sent >= 1500 && s.delivered >= 3000, "{what}: {s:?}");
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{what}: accounting holds in an aborted run");
    assert!(s.duration_s > 0.8 && s.duration_s < 5.0, "{what}: measured until the failure, not 30 s: {s:?}");
    (took, s.reason, common::events_of(&out))
}

/// A killed Redis: noticed at once, whatever the transport, and each consumer's loss of it is an event.
fn killed(transport: &str) {
    let (took, reason, events) = redis_dies("SIGKILL", transport, |s| s.signal(libc::SIGKILL));
    assert!(took < Duration::from_secs(2), "{transport}: noticed after {took:?}");
    assert!(reason.contains("closed") || reason.contains("reset") || reason.contains("pipe"), "{reason}");
    let kills: Vec<u32> = events.iter().filter(|e| e.kind == "server-kill").map(|e| e.consumer).collect();
    assert!(!kills.is_empty(), "{transport}: events.csv has a server-kill row: {events:?}");
}

#[test]
fn a_killed_redis_aborts_the_run_at_once() {
    killed("pubsub");
}

#[test]
fn a_killed_redis_aborts_a_sharded_run_at_once() {
    killed("sharded");
}

#[test]
fn a_killed_redis_aborts_a_streams_run_at_once_with_server_kill_events() {
    killed("streams");
}

#[test]
fn producers_alone_notice_a_killed_redis() {
    // No consumer to notice first: the only one is slow, sleeping over its
    // first message, so the producers' own detection is what ends the run.
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = spawn_run(&server.url(), &out, "pubsub", "1", &["--slow", "100%:1m"]);
    // 200 ms of warmup, then more than a second measured (at 2000/s).
    common::wait_for_sent(server.port, "pubsub", 400 + 2200, Duration::from_secs(15));
    let broken = Instant::now();
    server.signal(libc::SIGKILL);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let took = broken.elapsed();
    let err = stderr_of(&mut child);
    eprintln!("SIGKILL, producers only: eventbench exited {took:?} after the failure: {}", err.trim());
    assert_eq!(status.code(), Some(1), "{err}");
    let s = assert_whole_run_dir(&out);
    assert!(s.reason.starts_with("producer"), "{s:?}");
    assert!(s.sent >= 1500, "{s:?}");
    assert!(took < Duration::from_secs(2), "noticed after {took:?}");
}

#[test]
fn a_redis_shut_down_mid_run_aborts_the_run() {
    let (took, reason, _) = redis_dies("SHUTDOWN", "pubsub", |s| {
        let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut s.client());
    });
    assert!(took < Duration::from_secs(2), "noticed after {took:?}");
    assert!(reason.contains("closed"), "{reason}");
}

/// SIGSTOP keeps every socket open and unanswered: what a network cut looks
/// like. The run must end within about 2 s whatever the transport, and say
/// which command went unanswered.
fn stalled(transport: &str, verbs: &[&str]) {
    let (took, reason, _) = redis_dies("SIGSTOP", transport, |s| s.signal(libc::SIGSTOP));
    assert!(reason.contains("stopped answering"), "{reason}");
    assert!(verbs.iter().any(|v| reason.contains(&format!("no reply to {v} "))), "{transport}: {reason}");
    // 1.5 s watchdog, then a short wind-down and the files.
    assert!(took < Duration::from_millis(3000), "{transport}: noticed after {took:?}");
}

#[test]
fn a_silent_redis_is_noticed_by_the_producers_watchdog() {
    stalled("pubsub", &["PUBLISH"]);
}

#[test]
fn a_silent_redis_ends_a_sharded_run() {
    stalled("sharded", &["SPUBLISH"]);
}

#[test]
fn a_silent_redis_ends_a_streams_run_and_names_its_commands() {
    // The run hung until Redis came back (25 s), and named PUBLISH.
    stalled("streams", &["XADD", "XREADGROUP"]);
}

#[test]
fn a_host_that_accepts_but_never_answers_gives_up_after_the_connect_timeout() {
    // A loopback listener that never accepts: the kernel completes the TCP
    // handshake, then AUTH and PING wait forever.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    for (url, timeout) in
        [(format!("redis://127.0.0.1:{port}"), "1s"), (format!("redis://bench:pw-silent-42@127.0.0.1:{port}"), "700ms")]
    {
        let started = Instant::now();
        let out = common::eventbench(&["run", "--url", &url, "--connect-timeout", timeout, "--duration", "1s"]);
        let took = started.elapsed();
        let err = common::stderr(&out);
        eprintln!("silent host, --connect-timeout {timeout}: gave up after {took:?}: {}", err.trim());
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("timed out") && err.contains("--connect-timeout"), "{err}");
        assert!(!err.contains("pw-silent-42"), "{err}");
        assert!(took >= Duration::from_millis(600) && took < Duration::from_secs(3), "{took:?}");
    }
    drop(silent);
}

#[test]
fn a_failed_write_leaves_no_temporary_file() {
    use eventbench::report::files::write_atomic;
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("summary.csv"), b"a,b\n1,2\n").unwrap();
    // Renaming over a directory fails after the temporary file was written.
    std::fs::create_dir(dir.path().join("latency.csv")).unwrap();
    assert!(write_atomic(&dir.path().join("latency.csv"), b"x\n").is_err());
    let mut names: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["latency.csv", "summary.csv"], "only whole files, no .eventbench-* leftovers");
    assert_eq!(std::fs::read(dir.path().join("summary.csv")).unwrap(), b"a,b\n1,2\n");
}
