//! `--workers` past one machine: the Redis under test, the control Redis and
//! each worker on a host of its own (a network namespace of
//! `scripts/hosts.sh`, joined to the others by a veth pair and a bridge), so
//! that what crosses a network (a cut cable, a killed host, a slow path, a
//! clock of its own) is tested, not only processes sharing loopback.
//!
//! Needs root and iproute2 (`ip netns`): without them a test fails, saying
//! so; it never skips. Each test makes its own network under a prefix of its
//! own (its pid and a counter), so tests running at once never meet, and
//! removes it when it ends (a test killed before it could is cleaned up by
//! the next one: see [`Hosts::up`]).

use crate::common::{assert_whole_run_dir, stderr};
use eventbench::rows::{SummaryRow, WorkerRow};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The Redis port on every host.
const PORT: u16 = 6379;

/// A network of namespaces made by `scripts/hosts.sh`, and the processes
/// started in it; all of them killed and the network removed on drop.
pub struct Hosts {
    prefix: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hosts.sh")
}

impl Hosts {
    /// Makes `hosts` (names as `hosts.sh` takes them: redis, control, coord, w1, ...).
    pub fn up(hosts: &[&str]) -> Hosts {
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the hosts tests need root (network namespaces and veth pairs): run the suite as root, as CI does"
        );
        let ip = Command::new("ip").args(["netns", "list"]).output();
        assert!(
            ip.as_ref().is_ok_and(|o| o.status.success()),
            "the hosts tests need iproute2's `ip netns` (apt-get install iproute2): {ip:?}"
        );
        remove_orphans();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!("ebt{}n{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(script()).arg("up").args(hosts).env("EB_HOSTS_PREFIX", &prefix).output().unwrap();
        assert!(out.status.success(), "scripts/hosts.sh up failed: {}", stderr(&out));
        Hosts { prefix, children: Vec::new(), _dir: tempfile::tempdir().unwrap() }
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// `host`'s address.
    pub fn addr(&self, host: &str) -> String {
        let out = Command::new(script()).args(["addr", host]).output().unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `redis://ADDRESS:6379` of `host`.
    pub fn url(&self, host: &str) -> String {
        format!("redis://{}:{PORT}", self.addr(host))
    }

    /// `program args` as a process on `host`.
    pub fn command(&self, host: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(host)]).arg(program).stdin(Stdio::null());
        cmd
    }

    /// Starts `cmd`, killed when the network goes.
    pub fn spawn(&mut self, mut cmd: Command) -> u32 {
        let child = cmd.spawn().expect("starting a process in a namespace");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// A redis-server (or `server`, e.g. valkey-server) on `host`, listening on its address; waits until it answers.
    pub fn redis(&mut self, host: &str) {
        let addr = self.addr(host);
        let dir = self._dir.path().join(host);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = self.command(host, "redis-server");
        cmd.args(["--bind", &addr, "--port", &PORT.to_string(), "--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null());
        self.spawn(cmd);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ping = self.command(host, "redis-cli").args(["-h", &addr, "-p", &PORT.to_string(), "PING"]).output();
            if ping.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG")) {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server on {host} ({addr}) did not answer within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis-cli` on `host` against `target`'s Redis: its output.
    pub fn cli(&self, host: &str, target: &str, args: &[&str]) -> String {
        let out = self
            .command(host, "redis-cli")
            .args(["-h", &self.addr(target), "-p", &PORT.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Plugs (`up`) or unplugs (`down`) `host`'s cable at the bridge.
    pub fn link(&self, host: &str, state: &str) {
        let out =
            Command::new(script()).args(["link", host, state]).env("EB_HOSTS_PREFIX", &self.prefix).output().unwrap();
        assert!(out.status.success(), "hosts.sh link {host} {state}: {}", stderr(&out));
    }

    /// `eventbench args` on `host`.
    pub fn eventbench(&self, host: &str, args: &[&str]) -> Command {
        let mut cmd = self.command(host, env!("CARGO_BIN_EXE_eventbench"));
        cmd.args(args);
        cmd
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new(script()).arg("down").env("EB_HOSTS_PREFIX", &self.prefix).output();
    }
}

/// Removes the networks of test processes that are gone (killed by a timeout before their drop ran).
fn remove_orphans() {
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else { return };
    let mut prefixes: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ns| ns.strip_prefix("ebt"))
        .filter_map(|rest| {
            let (pid, _) = rest.split_once('n')?;
            let pid: i32 = pid.parse().ok()?;
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            let prefix = format!("ebt{}", rest.split_once('-')?.0);
            (!alive).then_some(prefix)
        })
        .collect();
    prefixes.dedup();
    for prefix in prefixes {
        let _ = Command::new(script()).arg("down").env("EB_HOSTS_PREFIX", &prefix).output();
    }
}

fn rows<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.deserialize().map(|row| row.unwrap_or_else(|e| panic!("{}: {e}", path.display()))).collect()
}

/// The scenario every test runs, unless it says otherwise: 2 producers, 4
/// consumers, so that with 2 workers each one's consumers hear the other's producer.
const SCENARIO: [&str; 12] =
    ["--producers", "2", "--consumers", "4", "--channels", "2", "--rate", "2000", "--warmup", "300ms", "--drain", "1s"];

/// A network with the Redis under test, the control Redis and two worker hosts, both servers started.
fn network() -> Hosts {
    let mut hosts = Hosts::up(&["redis", "control", "w1", "w2"]);
    hosts.redis("redis");
    hosts.redis("control");
    hosts
}

/// Starts the coordinator on the control host (`--spawn 0`: every worker
/// joins from its own host) and then one `eventbench worker` on each of
/// `workers`; returns the coordinator and the workers' pids.
fn coordinate(hosts: &mut Hosts, dir: &Path, workers: &[&str], extra: &[&str]) -> (Child, Vec<u32>) {
    let (url, control) = (hosts.url("redis"), hosts.url("control"));
    let n = workers.len().to_string();
    let mut args = vec!["run", "--url", &url, "--control", &control, "--workers", &n, "--spawn", "0"];
    args.extend(["--join-timeout", "20s", "--quiet", "--out", dir.to_str().unwrap()]);
    args.extend(SCENARIO);
    args.extend(extra);
    let coordinator = hosts.eventbench("control", &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pids = workers
        .iter()
        .map(|w| {
            let mut cmd = hosts.eventbench(w, &["worker", "--control", &control]);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            hosts.spawn(cmd)
        })
        .collect();
    (coordinator, pids)
}

/// Waits for the coordinator (at most `timeout`); its output.
fn finish(child: Child, timeout: Duration) -> Output {
    let pid = child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(timeout);
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    drop(killer);
    out
}

#[test]
fn two_workers_on_their_own_hosts_add_up_like_one_process() {
    let mut hosts = network();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let url = hosts.url("redis");
    let out = hosts
        .eventbench("w1", &[&["run", "--url", &url, "--quiet", "--out", one.to_str().unwrap()], &SCENARIO[..]].concat())
        .args(["--duration", "2s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "one process: {}", stderr(&out));
    let (coordinator, _) = coordinate(&mut hosts, &two, &["w1", "w2"], &["--duration", "2s"]);
    let out = finish(coordinator, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "two workers: {}", stderr(&out));

    let a = assert_whole_run_dir(&one);
    let b = assert_whole_run_dir(&two);
    assert_eq!((a.workers, b.workers), (1, 2));
    assert_eq!((a.sent, a.expected), (4000, 16_000), "2 s at 2000/s, 4 consumers: {a:?}");
    assert_eq!((b.sent, b.expected), (a.sent, a.expected), "the same totals across hosts: {b:?}");
    assert!(a.lost.abs_diff(b.lost) <= a.expected / 10, "lost {} in one process, {} across hosts", a.lost, b.lost);
    let workers: Vec<WorkerRow> = rows(&two.join("workers.csv"));
    let addrs: Vec<String> = workers.iter().map(|w| w.host.clone()).collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.iter().all(|w| w.sent > 0 && w.delivered > 0), "{workers:?}: {addrs:?}");
    // The control keys went to the control host, never to the Redis under test.
    assert_eq!(hosts.cli("w1", "redis", &["KEYS", "eventbench:ctl:*"]).trim(), "");
    let _: Vec<SummaryRow> = rows(&two.join("summary.csv"));
}

/// Waits until the Redis under test has taken `messages` PUBLISHes (the run is under way).
fn wait_for_published(hosts: &Hosts, messages: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = hosts.cli("w1", "redis", &["INFO", "commandstats"]);
        let calls = info
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
            .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .unwrap_or(0);
        if calls >= messages {
            return;
        }
        assert!(Instant::now() < deadline, "the run did not get to {messages} PUBLISHes within 20 s ({calls})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a worker lost mid-run leaves: a whole run directory, exit 1, the
/// reason naming it, its consumers' messages undelivered, what its producer
/// did not get out unsent, and nothing counted twice.
fn assert_lost_worker(dir: &Path, out: &Output, pid: u32) -> (SummaryRow, Vec<WorkerRow>) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    let s = assert_whole_run_dir(dir);
    assert_eq!(s.status, "aborted", "{s:?}");
    assert!(s.reason.contains(&format!("pid {pid} ")) && s.reason.contains("stands in"), "{}", s.reason);
    assert_eq!((s.duplicates, s.foreign), (0, 0), "nothing counted twice: {s:?}");
    let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    assert_eq!(workers.len(), 2, "{workers:?}");
    let dead = workers.iter().find(|w| w.pid == pid).expect("the lost worker has its row");
    let alive = workers.iter().find(|w| w.pid != pid).unwrap();
    assert_eq!((dead.status.as_str(), dead.delivered), ("aborted", 0), "{dead:?}");
    assert!(alive.delivered > 0 && alive.sent > 0, "{alive:?}");
    assert_eq!(workers.iter().map(|w| w.sent).sum::<u64>(), s.sent);
    let consumers: Vec<eventbench::rows::ConsumerRow> = rows(&dir.join("consumers.csv"));
    assert_eq!(consumers.len(), 4, "every consumer has its row");
    let (lo, hi) = dead.consumer_ids.split_once('-').unwrap();
    let dead_ids = lo.parse::<u32>().unwrap()..=hi.parse::<u32>().unwrap();
    for c in &consumers {
        if dead_ids.contains(&c.consumer) {
            assert!(c.expected > 0 && c.delivered == 0 && c.undelivered == c.expected, "{c:?}");
        } else {
            assert!(c.delivered > 0, "{c:?}");
        }
    }
    (s, workers)
}

#[test]
fn a_worker_killed_mid_run_is_named_and_its_share_accounted_for() {
    let mut hosts = network();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (coordinator, pids) = coordinate(&mut hosts, &dir, &["w1", "w2"], &["--duration", "4s"]);
    wait_for_published(&hosts, 2_000);
    unsafe { libc::kill(pids[1] as i32, libc::SIGKILL) };
    let killed = Instant::now();
    let out = finish(coordinator, Duration::from_secs(30));
    let took = killed.elapsed();
    let err = stderr(&out);
    let (s, _) = assert_lost_worker(&dir, &out, pids[1]);
    // Seen within the heartbeat's 5 s, then the others' wind-down and the files.
    eprintln!("the coordinator ended {took:?} after the kill");
    assert!(took < Duration::from_secs(15), "the coordinator took {took:?} to end after the kill: {err}");
    assert!(err.contains("no heartbeat from worker"), "said at 2.5 s: {err}");
    assert!(s.reason.contains("measured messages not seen sent"), "{}", s.reason);
    assert!(s.sent < 8_000, "what the killed worker's producer never got out is not counted as sent: {s:?}");
}

#[test]
fn a_worker_cut_off_for_two_seconds_is_noticed_and_counted_once() {
    let mut hosts = network();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (coordinator, pids) = coordinate(&mut hosts, &dir, &["w1", "w2"], &["--duration", "5s"]);
    wait_for_published(&hosts, 2_000);
    hosts.link("w2", "down");
    std::thread::sleep(Duration::from_secs(2));
    hosts.link("w2", "up");
    let cut = Instant::now();
    let out = finish(coordinator, Duration::from_secs(40));
    eprintln!("the coordinator ended {:?} after the cable came back", cut.elapsed());
    let err = stderr(&out);
    let s = assert_whole_run_dir(&dir);
    assert_eq!((s.duplicates, s.foreign), (0, 0), "nothing counted twice: {s:?}");
    let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    assert_eq!(workers.iter().map(|w| w.sent).sum::<u64>(), s.sent, "{workers:?}");
    if s.status == "aborted" && !s.reason.contains("stands in") {
        // Its producer's writes went unanswered for longer than 1.5 s: the
        // worker ended its share (Redis stopped answering, as far as it
        // could tell), and the run with it, naming the worker.
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(s.reason.contains(&format!("(pid {} on ", pids[1])), "{}", s.reason);
        assert!(s.reason.contains("Redis stopped answering"), "{}", s.reason);
        assert!(s.lost_other <= s.lost, "{s:?}");
    } else if out.status.code() == Some(0) {
        // It came back in time: everything it sent is there, late, and nothing lost without a cause.
        assert!(err.contains("answers again"), "{err}");
        assert_eq!(s.status, "ok", "{s:?}");
        assert_eq!(s.sent + s.unsent, 10_000, "5 s at 2000/s: {s:?}");
        assert_eq!(s.lost_other, 0, "{s:?}");
        assert!(s.max_us.is_some_and(|m| m > 1e6), "its messages arrived late: {s:?}");
    } else {
        // Given up: the same guarantees as a killed worker.
        assert_lost_worker(&dir, &out, pids[1]);
    }
}
