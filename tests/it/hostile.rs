//! Hostile input, as a battery: every line is one command that must be
//! refused before anything runs, with its exit code and a fragment of the one
//! line it prints. Cases from issue 14 (absurd rates, durations and sizes,
//! refused `--redis-config` keys, unusable `--out`, a 120 KB `--assert`) sit
//! beside the ones that already held (malformed numbers, durations,
//! percentages, URLs, TOML, conflicting flags, paths), so none comes back.
//!
//! Then what needs a server: settings Redis refuses (secrets masked),
//! `--redis-config` restored on every way a run can end, a full disk, and an
//! open-file limit too low for the swarm.

use crate::common::{assert_whole_run_dir, bin, stderr, wait_exit, RedisServer};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// One hostile command line: its arguments (`{dir}` is a scratch directory
/// holding the files below), the exit code, and a fragment of what it says.
struct Case {
    args: &'static [&'static str],
    code: i32,
    says: &'static str,
}

const fn case(args: &'static [&'static str], says: &'static str) -> Case {
    Case { args, code: 2, says }
}

/// Scenario files the cases use, by name: (file name, contents).
const FILES: &[(&str, &str)] = &[
    ("forever.toml", "duration = \"100y\"\n"),
    ("max-u64.toml", "duration = \"18446744073709551615s\"\n"),
    ("fast.toml", "rate = 1e19\n"),
    ("unknown-key.toml", "rate = 100\nbogus = 1\n"),
    ("requirepass.toml", "[redis-config]\nrequirepass = \"x\"\n"),
    ("masked.toml", "[redis-config]\nfoo-auth = \"***\"\n"),
    ("negative.toml", "consumers = -1\n"),
    ("password.toml", "password = \"x\"\n"),
    ("unterminated.toml", "rate = 100\nduration = \"2s\nproducers = 1\n"),
    ("bad-assert.toml", "assert = \"lost=0\"\n"),
    ("no-consumers.toml", "consumers = 0\n"),
    ("warmup.toml", "warmup = \"18446744073709551615s\"\nduration = \"1s\"\n"),
    ("slow.toml", "slow = \"100%:100y\"\n"),
    ("wrong-type.toml", "duration = 10\n"),
    ("array-rate.toml", "rate = [1, 2]\n"),
    // Issue 28: values that crashed the reader or were refused without their key.
    ("empty-rate.toml", "rate = []\n"),
    ("nested-rate.toml", "rate = [[]]\n"),
    ("stage-key.toml", "rate = [{ speed = 1, for = \"1s\" }]\n"),
    ("stage-nan.toml", "rate = [{ from = nan, to = 1, for = \"1s\" }]\n"),
    ("producers-string.toml", "producers = \"1\"\n"),
    ("consumers-float.toml", "consumers = 1.5\n"),
    ("disconnect-number.toml", "disconnect = [1]\n"),
    ("url-password.toml", "url = \"redis://:hunter2-s3cret@127.0.0.1:1\"\n"),
    ("url-user-password.toml", "rate = 10\nurl = \"redis://bench:X-s3cret@127.0.0.1:1\"\n"),
];

/// The battery. Every case fails before any server starts or any file is written.
const CASES: &[Case] = &[
    // Rates (issue 14 case 2): no spin, no run that can never finish.
    case(&["run", "--rate", "1e19"], "at most 100000000"),
    case(&["run", "--rate", "1e20"], "at most 100000000"),
    case(&["run", "--rate", "1e30"], "at most 100000000"),
    case(&["run", "--rate", "1e10"], "at most 100000000"),
    case(&["run", "--rate", "1e12"], "at most 100000000"),
    case(&["run", "--rate", "100000001"], "at most 100000000"),
    case(&["run", "--rate", "abc"], "rate"),
    case(&["run", "--rate", "-5"], "rate"),
    case(&["run", "--rate", "inf"], "rate"),
    case(&["run", "--rate", "NaN"], "rate"),
    case(&["run", "--rate", ""], "rate"),
    case(&["run", "--rate", "1.5x"], "rate"),
    case(&["run", "--rate", "0x10"], "rate"),
    case(&["run", "{dir}/fast.toml"], "at most 100000000"),
    // Durations (cases 3 and 4): no allocation sized by them, no overflow.
    case(&["run", "--duration", "100y"], "30 days"),
    case(&["run", "--duration", "18446744073709551615s"], "30 days"),
    case(&["run", "--duration", "31days"], "30 days"),
    case(&["run", "{dir}/forever.toml"], "30 days"),
    case(&["run", "{dir}/max-u64.toml"], "30 days"),
    case(&["run", "--warmup", "18446744073709551615s", "--duration", "1s"], "warmup"),
    case(&["run", "{dir}/warmup.toml"], "warmup"),
    case(&["run", "--drain", "100y"], "drain"),
    case(&["run", "--connect-timeout", "100y"], "connect-timeout"),
    case(&["run", "--transport", "streams", "--claim-idle", "1000y"], "claim-idle"),
    case(&["run", "--duration", "18446744073709551616s"], "duration"),
    case(&["run", "--duration", "0s"], "longer than 0s"),
    case(&["run", "--duration", "soon"], "not a duration"),
    case(&["run", "--duration=-1s"], "not a duration"),
    case(&["run", "--duration", ""], "duration"),
    case(&["run", "--connect-timeout", "0s"], "connect-timeout"),
    // Sizes (cases 10 and 11).
    case(&["run", "--producers", "4294967295"], "at most"),
    case(&["run", "--producers", "4294967296"], "producers"),
    case(&["run", "--producers", "0"], "at least 1"),
    case(&["run", "--consumers", "0"], "at least 1"),
    case(&["run", "{dir}/no-consumers.toml"], "at least 1"),
    case(&["run", "--consumers", "-3"], "consumers"),
    case(&["run", "--consumers", "100001"], "at most"),
    case(&["run", "--channels", "0"], "at least 1"),
    case(&["run", "--channels", "100001"], "at most"),
    case(&["run", "--producers", "2000", "--channels", "1000"], "sequences"),
    case(&["run", "--consumers", "100000", "--producers", "10", "--channels", "100"], "ledgers"),
    case(&["run", "--payload", "10"], "minimum of 36"),
    case(&["run", "--payload", "600000000"], "512 MiB"),
    case(&["run", "--payload", "-1"], "payload"),
    case(&["run", "--threads", "-1"], "threads"),
    case(&["run", "{dir}/negative.toml"], "negative.toml"),
    // Faults and their percentages.
    case(&["run", "--slow", "100%:100y"], "at most 1m"),
    case(&["run", "{dir}/slow.toml"], "at most 1m"),
    case(&["run", "--slow", "100%:0s"], "longer than 0"),
    case(&["run", "--slow", "25%200us"], "PCT:DELAY"),
    case(&["run", "--disconnect", "150%@1s+1s"], "0%..100%"),
    case(&["run", "--disconnect", "NaN%@1s+1s"], "0%..100%"),
    case(&["run", "--disconnect=-1%@1s+1s"], "0%..100%"),
    case(&["run", "--disconnect", "x%@1s+1s"], "percentage"),
    case(&["run", "--disconnect", "50%@1s"], "PCT@AT+FOR"),
    case(&["run", "--disconnect", "50%@18446744073709551615s+18446744073709551615s"], "within --duration"),
    case(&["run", "--disconnect", "50%@1s+0s"], "FOR must be longer than 0s"),
    case(&["run", "--crash", "25%@20s"], "outside the measured phase"),
    case(&["run", "--crash", "25%"], "PCT@AT"),
    case(&["run", "--kill-node", "1@1s+1s"], "--private-cluster"),
    case(&["run", "--private-cluster", "2"], "at least 3"),
    case(&["run", "--private-cluster", "65"], "at most 64"),
    case(&["run", "--transport", "streams", "--replay-at", "20s"], "outside the measured phase"),
    case(&["run", "--transport", "streams", "--groups", "3", "--consumers", "2"], "groups"),
    case(&["run", "--transport", "streams", "--maxlen", "0"], "at least 1"),
    // URLs.
    case(&["run", "--url", "http://127.0.0.1:6379"], "redis://"),
    case(&["run", "--url", "redis://"], "no host"),
    case(&["run", "--url", "redis://127.0.0.1:99999"], "invalid port"),
    case(&["run", "--url", "unix:///tmp/redis.sock"], "Unix sockets"),
    case(&["run", "--url", "redis://127.0.0.1:6379/x"], "database number"),
    case(&["run", "--url", "redis://bench:***@127.0.0.1:1"], "REDIS_PASSWORD"),
    case(&["run", "--url", "redis://[::1"], "not a valid Redis URL"),
    // --assert (case 12 and the grammar).
    case(&["run", "--assert", "p99<1"], "not a numeric summary.csv column"),
    case(&["run", "--assert", "lost=0"], "use =="),
    case(&["run", "--assert", "lost<1/"], "ends too early"),
    case(&["run", "--assert", ""], "no comparison"),
    case(
        &["run", "--assert", "lost<((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))"],
        "too deep",
    ),
    case(&["run", "{dir}/bad-assert.toml"], "use =="),
    // --redis-config (case 5): keys that change credentials are refused, values never echoed.
    case(&["run", "--redis-config", "requirepass X-s3cret"], "refused"),
    case(&["run", "--redis-config", "REQUIREPASS X-s3cret"], "refused"),
    case(&["run", "--redis-config", "masterauth X-s3cret"], "refused"),
    case(&["run", "--redis-config", "masteruser bench"], "refused"),
    case(&["run", "--redis-config", "aclfile /tmp/users.acl"], "refused"),
    case(&["run", "--redis-config", "port 1"], "refused"),
    case(&["run", "--redis-config", "tls-key-file-pass X-s3cret"], "refused"),
    case(&["run", "--redis-config", "replicaof 127.0.0.1 6379"], "refused"),
    case(&["run", "--redis-config", "maxmemory"], "KEY VALUE"),
    case(&["run", "{dir}/requirepass.toml"], "refused"),
    case(&["run", "{dir}/masked.toml"], "masked"),
    // Scenario files.
    case(&["run", "{dir}/unknown-key.toml"], "bogus"),
    case(&["run", "{dir}/password.toml"], "password"),
    case(&["run", "{dir}/unterminated.toml"], "line 2"),
    case(&["run", "{dir}/wrong-type.toml"], "wrong-type.toml"),
    case(&["run", "{dir}/array-rate.toml"], "array-rate.toml"),
    case(&["run", "{dir}/no-such.toml"], "no-such.toml"),
    case(&["run", "{dir}"], "cannot read scenario file"),
    // Conflicting flags.
    case(&["run", "--password", "hunter2"], "--url"),
    case(&["run", "--tls-insecure"], "rediss://"),
    case(&["run", "--url", "rediss://127.0.0.1:1", "--tls-ca", "ca.pem", "--tls-insecure"], "choose one"),
    case(&["run", "--groups", "2", "--consumers", "2"], "streams"),
    case(&["run", "--transport", "streams", "--subscribe", "pattern"], "pattern"),
    case(&["run", "--private-cluster", "3", "--url", "redis://127.0.0.1:1"], "leave out --url"),
    case(&["run", "--bogus"], "--bogus"),
    case(&["frobnicate"], "frobnicate"),
    // Paths (case 8): found before the run.
    case(&["run", "--out", "/proc/eventbench-out"], "cannot hold the results"),
    case(&["run", "--out", "{dir}/a-file"], "already exists"),
    case(&["run", "--out", "{dir}/a-file/sub"], "cannot hold the results"),
    case(&["run", "--out", "/dev/null/x"], "cannot hold the results"),
    case(&["compare", "--out", "/proc/eventbench-out"], "cannot hold the results"),
    case(&["run", "--redis-server", "/nonexistent/redis-server", "--duration", "1s"], "apt-get install"),
    case(&["report", "{dir}/no-such-run"], "no-such-run"),
    // Issue 28, item 6: `rate = []` panicked; item 23: type errors name the key and the forms.
    case(&["run", "{dir}/empty-rate.toml"], "rate: an empty list"),
    case(&["run", "{dir}/nested-rate.toml"], "rate: invalid type: sequence, expected a stage"),
    case(&["run", "{dir}/stage-key.toml"], "unknown key 'speed'"),
    case(&["run", "{dir}/stage-nan.toml"], "rate: NaN"),
    case(&["run", "{dir}/producers-string.toml"], "producers: invalid type"),
    case(&["run", "{dir}/consumers-float.toml"], "consumers: invalid type"),
    case(&["run", "{dir}/disconnect-number.toml"], "disconnect: invalid type"),
    case(&["run", "{dir}/wrong-type.toml"], "duration: invalid type"),
    // Negative values name their flag; an unknown flag gets the command's own usage line.
    case(&["run", "--drain", "-1s"], "invalid value '-1s' for '--drain'"),
    case(&["run", "--groups", "-1"], "invalid value '-1' for '--groups'"),
    case(&["run", "--warmup", "-5s"], "'--warmup'"),
    case(&["capacity", "--precision", "-5%"], "invalid value '-5%' for '--precision'"),
    case(&["run", "--rate", "-1k..1k/1s"], "invalid value '-1k..1k/1s' for '--rate'"),
    case(&["run", "--bogus"], "usage: eventbench run [OPTIONS] [SCENARIO]"),
    case(&["run", "--verbose"], "usage: eventbench run [OPTIONS] [SCENARIO]"),
    // Item 9: caps.
    case(&["run", "--threads", "1000000"], "at most 1024 worker threads"),
    case(&["run", "--threads", "4294967296"], "threads"),
    case(&["run", "--workers", "4294967295", "--spawn", "0"], "at most 256 worker processes"),
    case(&["run", "--workers", "257"], "at most 256 worker processes"),
    case(&["run", "--metrics-listen", "127.0.0.1:0", "--metrics-linger", "100y"], "--metrics-linger"),
    case(&["run", "--metrics-listen", "127.0.0.1:0", "--metrics-linger", "18446744073709551615s"], "--metrics-linger"),
    // Item 4: the join wait has a limit of its own.
    case(&["run", "--workers", "2", "--join-timeout", "0s"], "--join-timeout"),
    case(&["run", "--workers", "2", "--join-timeout", "100y"], "--join-timeout"),
    case(&["run", "--join-timeout", "1m"], "--workers"),
    // Items 13 and 14: names that break a directory, a spreadsheet or a terminal.
    case(&["run", "--name", "{long-name}"], "longer than 100 bytes"),
    case(&["run", "--name", "=cmd|' -C calc'!A0"], "formula"),
    case(&["run", "--name=-x"], "formula"),
    case(&["run", "--name", "+1"], "formula"),
    case(&["run", "--name", "@SUM(A1)"], "formula"),
    case(&["run", "--name", "x\u{1b}]0;pwned\u{7}\u{1b}[2J"], "control character"),
    case(&["run", "--description", "x\u{1b}[2J"], "description"),
    case(&["run", "--rate", "\u{1b}[2J"], "\\u{1b}[2J"),
    // Item 12: a password never comes from a file.
    case(&["run", "{dir}/url-password.toml"], "REDIS_PASSWORD"),
    case(&["run", "{dir}/url-user-password.toml"], "line 2"),
    // Item 15: each transport once.
    case(&["compare", "--transports", "pubsub,pubsub"], "pubsub is given twice"),
    case(&["compare", "--transports", "streams,pubsub,streams"], "streams is given twice"),
    case(&["capacity", "--transports", "pubsub,pubsub"], "pubsub is given twice"),
    // Item 24: what is not a Redis server is bad input with an install hint.
    case(&["run", "--redis-server", "/dev/null"], "apt-get install redis-server"),
    case(&["run", "--redis-server", "{dir}"], "a directory"),
    case(&["run", "--redis-server", "/bin/false"], "is not a Redis server"),
    case(&["run", "--redis-server", "/bin/true", "--private-cluster", "3"], "is not a Redis server"),
    case(&["compare", "--servers", "redis-server,/dev/null"], "/dev/null"),
    // Items 7 and 20: files that are not regular, a run directory with nothing in it.
    case(&["report", "{dir}/empty-run"], "holds no results"),
    case(&["report", "{dir}/fifo-run"], "a FIFO, not a regular file"),
    case(&["report", "{dir}/zero-run"], "a device, not a regular file"),
    case(&["scenarios", "--dir", "{dir}/fifo-scenarios"], "a FIFO, not a regular file"),
    case(&["scenarios", "--dir", "{dir}/zero-scenarios"], "a device, not a regular file"),
    case(&["run", "{dir}/fifo-scenarios/a.toml"], "a FIFO, not a regular file"),
    case(&["run", "{dir}/zero-scenarios/z.toml"], "a device, not a regular file"),
];

/// What the issue 28 cases need beside the files: directories, FIFOs and
/// symlinks to a device; their names, for what must be left behind.
fn odd_files(dir: &Path) -> Vec<String> {
    let fifo = |path: &Path| {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) on a path of our own scratch directory.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "{path:?}");
    };
    std::fs::create_dir(dir.join("empty-run")).unwrap();
    std::fs::create_dir(dir.join("fifo-run")).unwrap();
    fifo(&dir.join("fifo-run/summary.csv"));
    std::fs::create_dir(dir.join("zero-run")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero-run/summary.csv")).unwrap();
    std::fs::create_dir(dir.join("fifo-scenarios")).unwrap();
    fifo(&dir.join("fifo-scenarios/a.toml"));
    std::fs::create_dir(dir.join("zero-scenarios")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero-scenarios/z.toml")).unwrap();
    ["empty-run", "fifo-run", "zero-run", "fifo-scenarios", "zero-scenarios"].map(String::from).to_vec()
}

/// Runs eventbench with `args` in `dir`; its exit code and stderr, or `None`
/// (and the process killed) if it has not exited within `limit`: a hang is a
/// failed case, not a hung suite.
fn within(args: &[String], dir: &Path, limit: Duration) -> (Option<i32>, String) {
    let mut child = bin()
        .args(args)
        .current_dir(dir)
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
        err
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (code, reader.join().unwrap())
}

#[test]
fn the_battery_of_hostile_input_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in FILES {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    std::fs::write(dir.path().join("a-file"), "not a directory").unwrap();
    let odd = odd_files(dir.path());
    let scratch = dir.path().to_str().unwrap();
    assert!(CASES.len() >= 150, "the battery holds {} cases", CASES.len());
    let long_name = "x".repeat(300);
    let mut failed = Vec::new();
    for c in CASES {
        let args: Vec<String> =
            c.args.iter().map(|a| a.replace("{dir}", scratch).replace("{long-name}", &long_name)).collect();
        let started = Instant::now();
        let (code, err) = within(&args, dir.path(), Duration::from_secs(10));
        let took = started.elapsed();
        let problem = if code != Some(c.code) {
            Some(format!("exit {code:?}, not {}", c.code))
        } else if err.trim().lines().count() != 1 {
            Some("not one line".to_string())
        } else if !err.contains(c.says) {
            Some(format!("does not mention {:?}", c.says))
        } else if err.contains("panicked") || err.contains("s3cret") {
            Some("panics or shows the secret".to_string())
        } else if err.trim_end().chars().any(char::is_control) {
            Some("writes a control character to the terminal".to_string())
        } else if took > Duration::from_secs(5) {
            Some(format!("took {took:?}"))
        } else {
            None
        };
        if let Some(problem) = problem {
            failed.push(format!("{args:?}: {problem}: {}", err.trim()));
        }
    }
    assert!(failed.is_empty(), "{} of {} cases failed:\n{}", failed.len(), CASES.len(), failed.join("\n"));
    // Nothing was written anywhere: no results directory, no --out.
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    let mut expected: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    expected.push("a-file".into());
    expected.extend(odd);
    expected.sort();
    assert_eq!(left, expected, "bad input leaves nothing behind");
}

#[test]
fn a_huge_value_is_never_echoed_whole() {
    let huge = "x".repeat(120_000);
    let digits = "1".repeat(120_000);
    let url = format!("redis://{huge}");
    for args in [
        vec!["run", "--assert", huge.as_str()],
        vec!["run", "--assert", &format!("lost<{digits}x")],
        vec!["run", "--rate", &digits],
        vec!["run", "--duration", &huge],
        vec!["run", "--url", &url],
        vec!["run", "--disconnect", &huge],
        vec!["run", &format!("--{huge}")],
    ] {
        let out = bin().args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(300)]);
        assert!(err.len() < 1500, "{} bytes echoed: {}", err.len(), &err[..300]);
        assert!(err.contains("bytes)"), "says how long it was: {err}");
    }
    // A long assertion that parses is still refused: it is written back in every verdict.
    let long = format!("lost<{}", vec!["1"; 600].join("+"));
    let out = bin().args(["run", "--assert", &long]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("longer than 1000 characters"), "{}", stderr(&out));
}

/// `CONFIG GET key` on the test's server.
fn config_get(server: &RedisServer, key: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(key).query(&mut server.client()).unwrap();
    pair.get(1).cloned().unwrap_or_default()
}

#[test]
fn settings_redis_refuses_are_bad_input_and_secret_values_never_show() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let hz = config_get(&server, "hz");
    // A secret-looking setting Redis does not know: refused by Redis, its value masked.
    // The first, valid, setting was applied before the refusal: it goes back at once.
    let o = bin()
        .args(["run", "--url", &server.url(), "--duration", "1s", "--out"])
        .arg(&out)
        .args(["--redis-config", "hz 33", "--redis-config", "zz-token-password hunter2-s3cret"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("zz-token-password ***") && !err.contains("hunter2"), "{err}");
    assert_eq!(config_get(&server, "hz"), hz, "the setting applied before the refusal was restored");
    assert!(!out.exists(), "nothing written for a run that never started");
    // A value Redis refuses for a known key.
    let o = bin()
        .args(["run", "--url", &server.url(), "--duration", "1s", "--redis-config", "maxmemory lots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("maxmemory"), "{}", stderr(&o));
}

#[test]
fn secret_looking_settings_are_masked_in_the_scenario_file_and_its_page() {
    let mut s = eventbench::Scenario::default();
    s.redis_config.insert("zz-auth-token".into(), "hunter2-s3cret".into());
    s.redis_config.insert("hz".into(), "20".into());
    let toml = s.to_toml();
    assert!(!toml.contains("hunter2") && toml.contains("zz-auth-token = \"***\"") && toml.contains("hz = \"20\""));
    // Run again from that file, the masked value is refused rather than set as "***".
    let back = eventbench::Scenario::from_toml(&toml).unwrap();
    assert!(back.validate().unwrap_err().to_string().contains("masked"));
}

/// Starts a run with `--redis-config hz 33` against `server` and waits until the setting is applied.
fn run_with_setting(server: &RedisServer, out: &Path, extra: &[&str]) -> std::process::Child {
    let before = crate::common::calls_of(server.port, "publish");
    let child = bin()
        .args(["run", "--url", &server.url(), "--rate", "1000", "--duration", "30s", "--warmup", "200ms", "--quiet"])
        .args(["--redis-config", "hz 33", "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while config_get(server, "hz") != "33" {
        assert!(Instant::now() < deadline, "the setting was never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Measuring: its first messages written (the 200 ms warmup's are 200).
    crate::common::wait_for_sent(server.port, "pubsub", before + 300, Duration::from_secs(10));
    child
}

#[test]
fn redis_config_is_restored_however_the_run_ends() {
    let server = RedisServer::start(&[]);
    let before = config_get(&server, "hz");
    assert_ne!(before, "33");
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: kill(2) on our own child.
    let kill =
        |child: &std::process::Child, signal: i32| assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    for (what, signals) in [
        ("SIGINT", &[libc::SIGINT][..]),
        ("SIGTERM", &[libc::SIGTERM]),
        ("SIGHUP", &[libc::SIGHUP]),
        ("a second SIGINT", &[libc::SIGINT, libc::SIGINT]),
    ] {
        let out = dir.path().join(what.replace(' ', "-"));
        let mut child = run_with_setting(&server, &out, &[]);
        for &signal in signals {
            kill(&child, signal);
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = wait_exit(&mut child, Duration::from_secs(10));
        assert_eq!(status.code(), Some(130), "{what}");
        assert_eq!(config_get(&server, "hz"), before, "{what}: restored");
        if out.exists() {
            assert_eq!(assert_whole_run_dir(&out).status, "interrupted", "{what}");
        }
    }
    // An error mid-run with the server still there: Redis closes every client connection.
    let out = dir.path().join("killed-clients");
    let mut child = run_with_setting(&server, &out, &["--reconnect", "off"]);
    let _: redis::Value =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut server.client()).unwrap();
    let _: redis::Value =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query(&mut server.client()).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(10));
    let err = stderr(&child.wait_with_output().unwrap());
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(assert_whole_run_dir(&out).status, "aborted");
    assert_eq!(config_get(&server, "hz"), before, "restored after the failure: {err}");
}

/// Runs `args` with the file size limit at `bytes` (SIGXFSZ ignored, so a
/// write past it fails with EFBIG as a full disk fails with ENOSPC).
fn with_file_size_limit(args: &[&str], bytes: u64) -> Output {
    let mut cmd = bin();
    cmd.args(args);
    // SAFETY: setrlimit and signal are async-signal-safe and only affect the child.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn results_that_cannot_be_written_whole_are_an_error_that_names_what_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    // Room for the data files of a short run (a few KB each) but not for its plots (tens of KB).
    let o = with_file_size_limit(
        &["run", "--duration", "1s", "--warmup", "100ms", "--quiet", "--out", out.to_str().unwrap()],
        8 * 1024,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "a result that is not whole is no success: {err}");
    assert!(err.contains("incomplete") && err.contains("summary.csv") && err.contains("timeline.svg"), "{err}");
    let names: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "no temporary file left: {names:?}");
    assert!(!names.iter().any(|n| n == "report.html"), "{names:?}");
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "ok", "the data that was written is whole");
}

/// Whether this process may raise its hard limits (CAP_SYS_RESOURCE, capability 24).
fn may_raise_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap_or("0");
    u64::from_str_radix(caps.trim(), 16).unwrap_or(0) & (1 << 24) != 0
}

#[test]
fn a_swarm_past_the_open_file_limit_is_bad_input_naming_ulimit() {
    // A closed port: should eventbench raise the limit after all, nothing runs.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--url", &url, "--consumers", "5000", "--duration", "1s"]).current_dir(dir.path());
    // SAFETY: setrlimit is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
    let started = Instant::now();
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    if may_raise_limits() {
        assert!(err.contains("cannot reach Redis"), "the limit was raised, so the closed port is what fails: {err}");
    } else {
        assert!(err.contains("5066 open files") && err.contains("at most 1024") && err.contains("ulimit -n"), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Peak resident memory of a process, in KB (VmHWM).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap_or("0 kB");
    line.trim().trim_end_matches("kB").trim().parse().unwrap_or(0)
}

#[test]
fn the_longest_run_takes_memory_for_the_seconds_it_ran_not_the_days_it_declared() {
    use eventbench::stats::{ProducerStats, ThreadStats, Window};
    // Per-second series start empty, whatever the window.
    let window = Window { start_ns: 0, end_ns: eventbench::scenario::MAX_DURATION.as_nanos() as u64 };
    assert!(ThreadStats::new(&window).seconds.is_empty());
    assert!(ProducerStats::new(0, 100_000, &window).sent_per_second.is_empty());

    // 30 days declared (the limit), stopped after a second or two: a few MB, a few rows.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(["run", "--duration", "720h", "--warmup", "200ms", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A measured second (200 ms of warmup, then 1 s, at the default 1000/s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        if let Some((_, port)) = crate::signals::private_server_of(child.id()) {
            break port;
        }
        assert!(Instant::now() < deadline, "no private redis-server appeared");
        std::thread::sleep(Duration::from_millis(10));
    };
    crate::common::wait_for_sent(port, "pubsub", 200 + 1000, Duration::from_secs(15));
    let peak_mb = peak_rss_kb(child.id()) / 1024;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", stderr(&child.wait_with_output().unwrap()));
    assert!(peak_mb > 0 && peak_mb < 200, "peak RSS {peak_mb} MB while measuring a 30-day run");
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "interrupted");
    let rows = csv::Reader::from_path(out.join("timeseries.csv")).unwrap().records().count();
    assert!((1..=5).contains(&rows), "{rows} rows of timeseries.csv for a run stopped after about 2 s");
}

#[test]
fn a_huge_payload_as_fast_as_possible_is_written_a_few_at_a_time() {
    // 20 MB payloads at full speed: 1024 of them per write were 20 GB; within 2 GB of
    // address space the run must complete (what Redis drops for its buffer limits is its own).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    // A second measured: time for a 20 MB write to get out on a busy machine (300 ms sent none once).
    cmd.args(["run", "--payload", "20000000", "--rate", "0", "--duration", "1s", "--warmup", "100ms"])
        .args(["--drain", "200ms", "--quiet", "--out"])
        .arg(&out);
    // SAFETY: setrlimit is async-signal-safe and only affects the child (and its private server).
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 2 << 30, rlim_max: 2 << 30 };
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            Ok(())
        });
    }
    let o = cmd.output().unwrap();
    let err = stderr(&o);
    assert!(!err.contains("memory allocation") && !err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
    let s = assert_whole_run_dir(&out);
    assert!(s.sent > 0 && s.delivered + s.lost + s.undelivered == s.expected, "{s:?}");
}

mod consumers;
mod fuzz;
mod guard;
mod round3;
mod startup;
