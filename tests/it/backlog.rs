//! Deep backlogs on Streams against a real redis-server: `--read-count`
//! sets XREADGROUP's COUNT (one entry a read takes one read per entry),
//! `--pause` builds a backlog that drains with nothing lost, and the
//! transports without them refuse them up front.

use crate::common::{assert_bad_input, assert_whole_run_dir, bin, calls_of, stderr, RedisServer};

#[test]
fn read_count_sets_what_each_xreadgroup_takes() {
    let server = RedisServer::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let before = calls_of(server.port, "xreadgroup");
    let out = bin()
        .args(["run", "--url", &server.url(), "--transport", "streams", "--read-count", "1", "--rate", "2000"])
        .args(["--duration", "1s", "--warmup", "300ms", "--drain", "1s", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = assert_whole_run_dir(&dir);
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected);
    assert_eq!((s.lost, s.undelivered), (0, 0), "{s:?}");
    // COUNT 1: every entry, warmup's too, took a read of its own.
    let reads = calls_of(server.port, "xreadgroup") - before;
    assert!(reads >= s.delivered + 300, "{reads} XREADGROUPs for {} deliveries", s.delivered);
    let toml = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    assert!(toml.contains("read-count = 1"), "{toml}");
}

#[test]
fn transports_without_backlogs_refuse_them() {
    for transport in ["pubsub", "sharded", "loopback"] {
        assert_bad_input(&["run", "--transport", transport, "--read-count", "10"], "read-count");
        assert_bad_input(&["run", "--transport", transport, "--pause", "50%@1s+1s"], "pause");
    }
    assert_bad_input(&["run", "--transport", "streams", "--read-count", "0"], "between 1 and");
    assert_bad_input(&["run", "--transport", "streams", "--pause", "50%@9s+2s"], "within --duration");
    assert_bad_input(&["run", "--transport", "streams", "--pause", "50%@1s+0s"], "FOR must be");
}

#[test]
fn a_pause_builds_a_backlog_that_drains_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = bin()
        .args(["run", "--transport", "streams", "--consumers", "2", "--pause", "50%@300ms+700ms", "--rate", "1000"])
        .args(["--duration", "2s", "--warmup", "300ms", "--drain", "2s", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = assert_whole_run_dir(&dir);
    assert_eq!((s.lost, s.undelivered), (0, 0), "{s:?}");
    assert_eq!(s.delivered, s.expected, "the backlog drained: every entry delivered");
    assert_eq!(s.expected, 2 * s.sent);
    // The paused consumer read what was sent at the start of its pause about 700 ms late.
    let max = s.max_us.expect("a latency");
    assert!(max > 400_000.0, "max {max} µs: no backlog built");
    // Connected throughout: no disconnect or resubscription.
    let events = crate::common::events_of(&dir);
    assert!(events.is_empty(), "{events:?}");
}
