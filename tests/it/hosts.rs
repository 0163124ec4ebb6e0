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
        Hosts::up_with(hosts, "")
    }

    /// Makes `hosts`, each also known by the names of `aliases` ("name=host ...").
    pub fn up_with(hosts: &[&str], aliases: &str) -> Hosts {
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
        let out = Command::new(script())
            .arg("up")
            .args(hosts)
            .env("EB_HOSTS_PREFIX", &prefix)
            .env("EB_HOSTS_ALIASES", aliases)
            .output()
            .unwrap();
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

    /// A redis-server on `host`, listening on its address; waits until it answers.
    pub fn redis(&mut self, host: &str) {
        let addr = self.addr(host);
        self.redis_on(host, &[&addr]);
    }

    /// A redis-server on `host` listening on `binds` (the first one its address); waits until it answers.
    pub fn redis_on(&mut self, host: &str, binds: &[&str]) {
        let addr = binds[0].to_string();
        let dir = self._dir.path().join(host);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = self.command(host, "redis-server");
        cmd.args(["--bind", &binds.join(" "), "--port", &PORT.to_string(), "--protected-mode", "no"])
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
    // The control keys went to the control host, never to the Redis under test:
    // the coordination's commands show in the control Redis's statistics only.
    assert_eq!(hosts.cli("w1", "redis", &["KEYS", "eventbench:ctl:*"]).trim(), "");
    let (target, control) =
        (hosts.cli("w1", "redis", &["INFO", "commandstats"]), hosts.cli("w1", "control", &["INFO", "commandstats"]));
    for command in ["cmdstat_rpush:", "cmdstat_hset:", "cmdstat_lrange:"] {
        assert!(!target.contains(command) && control.contains(command), "{command}\n{target}\n{control}");
    }
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

/// A TCP relay on `host` that takes connections to `listen` (an address
/// made local there) and carries them to `upstream`, holding what goes
/// upstream `delay` before writing it (the way back is not delayed): a slow,
/// asymmetric path without netem, which this kernel lacks. Its threads end
/// with the test's process.
fn delaying_relay(hosts: &Hosts, host: &str, listen: &str, upstream: &str, delay: Duration) {
    let ns = std::fs::File::open(format!("/run/netns/{}", hosts.ns(host))).expect("the host's namespace");
    let (listen, upstream) = (listen.to_string(), upstream.to_string());
    let (ready_tx, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // This thread (and the sockets it makes) enter the host's network namespace; the test's other threads stay.
        let entered = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        let listener = std::net::TcpListener::bind(&listen).expect("binding the relay");
        ready_tx.send(()).unwrap();
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = std::net::TcpStream::connect(&upstream) else { return };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            pump(client.try_clone().unwrap(), server.try_clone().unwrap(), delay);
            pump(server, client, Duration::ZERO);
        }
    });
    ready.recv_timeout(Duration::from_secs(5)).expect("the relay listens");
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                return;
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

#[test]
fn a_worker_behind_a_20_ms_path_arrives_later_and_its_clock_says_how_sure_it_is() {
    let mut hosts = Hosts::up(&["redis", "control", "w1", "w2"]);
    // w2 reaches the Redis under test and the control Redis only through the
    // relay: their addresses are local on w2, and the relay goes on to a
    // second address of each server. w2 must not answer the others' ARP for
    // those addresses (Linux would, from any interface), or their traffic would take the relay too.
    for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        let set = format!("net.ipv4.conf.all.{key}={value}");
        let done = hosts.command("w2", "sysctl").args(["-qw", &set]).status();
        assert!(done.unwrap().success(), "{set}");
    }
    for (server, second) in [("redis", "198.18.0.22"), ("control", "198.18.0.23")] {
        let ns = hosts.ns(server);
        let add = Command::new("ip").args(["-n", &ns, "addr", "add", &format!("{second}/24"), "dev", "eth0"]).status();
        assert!(add.unwrap().success());
        let addr = hosts.addr(server);
        let local = format!("{addr}/32");
        let add = Command::new("ip").args(["-n", &hosts.ns("w2"), "addr", "add", &local, "dev", "lo"]).status();
        assert!(add.unwrap().success());
        hosts.redis_on(server, &[&addr, second]);
        delaying_relay(&hosts, "w2", &format!("{addr}:{PORT}"), &format!("{second}:{PORT}"), Duration::from_millis(20));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (coordinator, _) = coordinate(&mut hosts, &dir, &["w1", "w2"], &["--duration", "2s"]);
    let out = finish(coordinator, Duration::from_secs(30));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let s = assert_whole_run_dir(&dir);
    assert_eq!((s.sent, s.expected, s.lost), (4_000, 16_000, 0), "{s:?}");
    let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    let slow = workers.iter().max_by(|a, b| a.clock_uncertainty_us.total_cmp(&b.clock_uncertainty_us)).unwrap();
    let fast = workers.iter().find(|w| w.worker != slow.worker).unwrap();
    // A 20 ms round trip: its clock is known to within half of it.
    assert!(slow.clock_uncertainty_us >= 10_000.0, "{workers:?}");
    assert!(fast.clock_uncertainty_us < 5_000.0, "{workers:?}");
    assert!(slow.clock_offset_us.abs() <= slow.clock_uncertainty_us + 1_000.0, "{workers:?}");
    assert!(s.clock_uncertainty_us >= 10_000.0, "{s:?}");
    // Its producer's messages reach Redis 20 ms late: the slowest deliveries show it.
    assert!(s.max_us.is_some_and(|m| m >= 20_000.0), "{s:?}");
    // A latency across the two clocks below what they can tell apart is counted and said, never silently wrong.
    if s.latency_below_uncertainty > 0 {
        assert!(err.contains("uncertainty"), "{err}");
    }
    eprintln!(
        "clock uncertainty {} µs (w2 {} µs, offset {} µs), below it {} of {}, p50 {:?} µs, max {:?} µs",
        s.clock_uncertainty_us,
        slow.clock_uncertainty_us,
        slow.clock_offset_us,
        s.latency_below_uncertainty,
        s.delivered,
        s.p50_us,
        s.max_us
    );
}

/// The repository's file `path`.
fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Vec<serde_yaml::Value> {
    let text = repo_file(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    v.as_sequence().unwrap_or_else(|| panic!("a list: {v:?}")).iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

/// Compose's `${VAR:-default}` with the defaults, and a recipe's `/results` in `dir`.
fn resolve(args: &[String], dir: &Path) -> Vec<String> {
    args.iter()
        .map(|a| {
            let mut a = a.clone();
            while let Some(at) = a.find("${") {
                let end = at + a[at..].find('}').unwrap();
                let default = a[at..end].split_once(":-").map_or("", |(_, d)| d).to_string();
                a.replace_range(at..=end, &default);
            }
            a.replace("/results", dir.to_str().unwrap())
        })
        .collect()
}

/// Runs a server's command line as a recipe gives it on `host`, and waits until it answers.
fn serve(hosts: &mut Hosts, host: &str, command: &[String]) {
    let program = match command[0].as_str() {
        "valkey-server" => crate::common::valkey_server(),
        other => PathBuf::from(other),
    };
    let mut cmd = hosts.command(host, program);
    cmd.args(&command[1..]).stdout(Stdio::null());
    hosts.spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !hosts.cli(host, host, &["PING"]).contains("PONG") {
        assert!(Instant::now() < deadline, "{host} ({command:?}) did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a recipe's coordinator and its workers (each with the recipe's
/// environment and `index_env(i)`) on hosts of their own; the coordinator's output.
fn run_recipe(
    hosts: &mut Hosts,
    coordinator: Vec<String>,
    worker: (Vec<String>, Vec<(String, String)>),
    index_env: impl Fn(usize) -> Vec<(String, String)>,
) -> (Output, Vec<u32>) {
    let args: Vec<&str> = coordinator.iter().map(String::as_str).collect();
    let child = hosts.eventbench("coord", &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pids = Vec::new();
    for (i, host) in ["w1", "w2"].into_iter().enumerate() {
        let args: Vec<&str> = worker.0.iter().map(String::as_str).collect();
        let mut cmd = hosts.eventbench(host, &args);
        cmd.envs(worker.1.iter().cloned()).envs(index_env(i)).stdout(Stdio::null()).stderr(Stdio::null());
        pids.push(hosts.spawn(cmd));
    }
    (finish(child, Duration::from_secs(40)), pids)
}

#[test]
fn the_image_and_compose_file_hold_what_the_tests_run() {
    let docker = repo_file("Dockerfile");
    for line in ["ENTRYPOINT [\"eventbench\"]", "EXPOSE 9464", "USER nonroot", "AS build"] {
        assert!(docker.contains(line), "Dockerfile: {line}");
    }
    let compose = yaml("compose.yaml").remove(0);
    let services = &compose["services"];
    let command = |name: &str| strings(&services[name]["command"]);
    assert!(services["worker"]["deploy"]["replicas"].is_u64(), "the worker service scales");
    let mut hosts = Hosts::up(&["redis", "valkey", "control", "coord", "w1", "w2"]);
    for server in ["redis", "valkey", "control"] {
        serve(&mut hosts, server, &command(server));
    }
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = services["worker"]["environment"]
        .as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (k.as_str().unwrap().to_string(), resolve(&[v.as_str().unwrap().to_string()], tmp.path())[0].clone())
        })
        .collect();
    assert!(env.iter().any(|(k, v)| k == "EVENTBENCH_WORKERS" && v == "2"), "{env:?}");
    let (out, _) =
        run_recipe(&mut hosts, resolve(&command("coordinator"), tmp.path()), (command("worker"), env), |_| vec![]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the summary as JSON on stdout");
    assert!(summary.to_string().contains("\"status\":\"ok\""), "{summary}");
    let s = assert_whole_run_dir(&tmp.path().join("run"));
    assert_eq!((s.workers, s.lost), (2, 0), "{s:?}");
}

#[test]
fn the_kubernetes_jobs_run_as_written_with_indexed_workers() {
    let docs: Vec<serde_yaml::Value> = ["coordinator-job.yaml", "workers-job.yaml", "kustomization.yaml"]
        .iter()
        .flat_map(|f| yaml(&format!("deploy/k8s/{f}")))
        .collect();
    let kind = |k: &str, name: &str| {
        docs.iter().find(|d| d["kind"] == k && d["metadata"]["name"] == name).unwrap_or_else(|| panic!("{k} {name}"))
    };
    let coordinator = &kind("Job", "eventbench-coordinator")["spec"]["template"]["spec"]["containers"][0];
    let workers = &kind("Job", "eventbench-workers")["spec"];
    assert_eq!(workers["completionMode"], "Indexed");
    assert!(workers["template"]["spec"]["affinity"]["podAntiAffinity"].is_mapping());
    let worker = &workers["template"]["spec"]["containers"][0];
    let env: Vec<(String, String)> = worker["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    let n = env.iter().find(|(k, _)| k == "EVENTBENCH_WORKERS").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(workers["completions"].as_u64().unwrap().to_string(), n, "one pod per share");
    let args = strings(&coordinator["args"]);
    assert_eq!(args.windows(2).find(|w| w[0] == "--workers").map(|w| w[1].clone()), Some(n));

    let mut hosts = Hosts::up_with(&["redis", "control", "coord", "w1", "w2"], "eventbench-control=control");
    hosts.redis("redis");
    hosts.redis("control");
    // The ConfigMap's file where the pod mounts it, the results volume in a directory.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("scenario.toml"), repo_file("deploy/k8s/scenario.toml")).unwrap();
    let args: Vec<String> =
        resolve(&args, tmp.path()).iter().map(|a| a.replace("/etc/eventbench", tmp.path().to_str().unwrap())).collect();
    // The pods start in the opposite order of their indices: each still takes its own share.
    let (out, pids) = run_recipe(&mut hosts, args, (strings(&worker["args"]), env), |i| {
        vec![("JOB_COMPLETION_INDEX".into(), (1 - i).to_string())]
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the summary as JSON on stdout");
    let dir = tmp.path().join("run");
    let s = assert_whole_run_dir(&dir);
    assert_eq!((s.workers, s.lost), (2, 0), "{s:?}");
    let rows: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    let by_index: Vec<u32> = rows.iter().map(|w| w.pid).collect();
    assert_eq!(by_index, [pids[1], pids[0]], "worker i took share JOB_COMPLETION_INDEX: {rows:?}");
}

#[test]
fn a_worker_whose_clock_is_three_seconds_off_is_caught_and_corrected() {
    let mut hosts = network();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let (url, control) = (hosts.url("redis"), hosts.url("control"));
    let mut args = vec!["run", "--url", &url, "--control", &control, "--workers", "2", "--spawn", "0"];
    args.extend(["--join-timeout", "20s", "--quiet", "--out", dir.to_str().unwrap(), "--duration", "2s"]);
    args.extend(SCENARIO);
    let coordinator = hosts.eventbench("control", &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut pids = Vec::new();
    for (host, skew) in [("w1", "0"), ("w2", "3000")] {
        let mut cmd = hosts.eventbench(host, &["worker", "--control", &control]);
        // w2's wall clock reads 3 s ahead (the offset logic is fed a clock that is off).
        cmd.env("EVENTBENCH_CLOCK_SKEW_MS", skew).stdout(Stdio::null()).stderr(Stdio::null());
        pids.push(hosts.spawn(cmd));
    }
    let out = finish(coordinator, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = assert_whole_run_dir(&dir);
    assert_eq!((s.sent, s.expected, s.lost), (4_000, 16_000, 0), "{s:?}");
    let workers: Vec<WorkerRow> = rows(&dir.join("workers.csv"));
    let off = workers.iter().find(|w| w.pid == pids[1]).unwrap();
    // Detected: about −3 s (Redis's clock against the worker's), and reported in the summary.
    assert!((off.clock_offset_us + 3e6).abs() < 50_000.0, "{workers:?}");
    assert!((s.clock_offset_max_us - 3e6).abs() < 50_000.0, "{s:?}");
    // Corrected: its epoch moved by the offset, the latencies across the two hosts are not 3 s off.
    assert!(s.max_us.is_some_and(|m| m < 1e6), "{s:?}");
    assert!(s.p50_us.is_some_and(|p| p > 0.0), "{s:?}");
}
