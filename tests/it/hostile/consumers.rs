//! Issue 28's consumer-side cases, held by the one consumer loop
//! (`drivers::consume`): a server that closes every connection at once is
//! reconnected to with backoff, not hammered; Pub/Sub's output-buffer kills
//! are lost in the buffer, never "other"; a cluster master killed from
//! outside is an outage of Streams members too, and the drain keeps its limit
//! (a stopped one too); a paused Redis is busy, not dead, for Streams members.

use crate::common::{self, bin, events_of, quick, stderr, wait_exit, wait_for_sent, RedisServer};
use eventbench::rows::SummaryRow;
use eventbench::scenario::TransportKind;
use eventbench::target::Target;
use eventbench::{Live, Scenario};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// Connections the Redis at `port` accepted so far (`INFO stats`; the
/// question itself takes one more).
fn connections(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    let line = info.lines().find_map(|l| l.strip_prefix("total_connections_received:")).expect("INFO stats");
    line.trim().parse().unwrap()
}

fn config_set(server: &RedisServer, key: &str, value: &str) {
    let _: () = redis::cmd("CONFIG").arg("SET").arg(key).arg(value).query(&mut server.client()).unwrap();
}

fn summary_of(dir: &std::path::Path) -> SummaryRow {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    r.deserialize().next().expect("one summary row").unwrap()
}

/// Issue 28 item 18: with an output-buffer limit below one reply, Redis
/// closes a Streams member's connection at its first read, every time. The
/// member reconnects with the backoff the manual promises (10 ms doubling to
/// 1 s, kept across connections that do not last), not at once: 22,138
/// connections in 3 s before.
#[test]
fn a_server_that_closes_every_connection_at_once_is_reconnected_to_with_backoff() {
    let server = RedisServer::start(&[]);
    config_set(&server, "client-output-buffer-limit", "normal 1kb 1kb 0");
    let before = connections(server.port);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["run", "--url", &server.url(), "--transport", "streams", "--consumers", "2", "--rate", "2000"]);
    cmd.args(["--payload", "4000", "--warmup", "300ms", "--duration", "3s", "--drain", "1s", "--quiet", "--out"]);
    let o = cmd.arg(&out).output().unwrap();
    let made = connections(server.port) - before - 1;
    let kills = events_of(&out).iter().filter(|e| e.kind == "server-kill").count() as u64;
    eprintln!("{made} connections, {kills} server kills: {}", stderr(&o).trim());
    assert!(kills >= 4, "the limit closed the members again and again: {kills} kills");
    // Each member: at most 8 attempts in its first 1.3 s away, then one a
    // second, over 4.3 s of run and drain (and up to its wind-down); each
    // attempt opens its two connections. The producer, side tasks and
    // telemetry open a few more.
    let bound = 2 * (8 + 6) * 2 + 30;
    assert!(made <= bound, "{made} connections (at most {bound}) for {kills} server kills");
    let s = summary_of(&out);
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
}

/// Issue 28 item 19: output-buffer kills on Pub/Sub in the middle of a fast
/// run: every message lost is lost in the buffer or while unsubscribed
/// (the positions a consumer notes when it subscribes again cover every
/// message written before), none to "other".
#[test]
fn pubsub_output_buffer_kills_leave_nothing_lost_to_other() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut cmd = bin();
    cmd.args(["run", "--url", &server.url(), "--consumers", "2", "--rate", "20000", "--payload", "1000"]);
    cmd.args(["--warmup", "300ms", "--duration", "4s", "--drain", "1s", "--quiet", "--out"]);
    let mut child = cmd.arg(&out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // About 2 s into the run, from what was sent.
    wait_for_sent(server.port, "pubsub", 40_000, Duration::from_secs(30));
    config_set(&server, "client-output-buffer-limit", "pubsub 1kb 1kb 0");
    wait_exit(&mut child, Duration::from_secs(60));
    let s = summary_of(&out);
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
    assert!(s.lost_in_buffer + s.lost_unsubscribed > 0, "the limit cut the subscribers off: {s:?}");
    assert_eq!(s.lost_other, 0, "every loss has its outage: {s:?}");
    let kills = events_of(&out).iter().filter(|e| e.kind == "server-kill").count();
    assert!(kills > 0, "{s:?}");
}

/// The masters' ports of a private cluster, and each one's process id.
fn masters(target: &Target) -> Vec<(u16, i32)> {
    let client = redis::Client::open(target.url()).unwrap();
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
    let t = eventbench::topology::Topology::from_slots(&slots, "127.0.0.1").unwrap();
    t.nodes
        .iter()
        .map(|n| {
            let client = redis::Client::open(format!("redis://127.0.0.1:{}", n.port)).unwrap();
            let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).unwrap();
            let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
            let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).unwrap().trim().parse().unwrap();
            (n.port, pid)
        })
        .collect()
}

/// Waits until the run is 800 ms into its measured phase, on the run's own clock.
async fn into_the_run(live: &Live) {
    loop {
        if let (Some((start, _)), Some(now)) = (live.measured_phase(), live.now_ns()) {
            if now >= start + 800_000_000 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Issue 28 items 5 and 22: a master SIGKILLed from outside the run (not
/// through `--kill-node`) closes the Streams members' connections to it:
/// each member records the outage of that node's streams (`server-kill`), as
/// Pub/Sub and sharded consumers do, no loss lands in `lost_other`, and the
/// drain keeps to `--drain` (it took 7 s against 2 s: the producers waited
/// their 5 s for replies from a node that was gone).
#[tokio::test]
async fn a_master_killed_from_outside_is_an_outage_of_streams_members_and_the_drain_keeps_its_limit() {
    let target = Target::private_cluster(None, 3, false).expect("a private cluster (redis-server, redis-cli)");
    let nodes = masters(&target);
    let drain = Duration::from_secs(2);
    let s = Scenario {
        transport: TransportKind::Streams,
        consumers: 2,
        channels: 3,
        private_cluster: 3,
        drain,
        ..quick("outside-kill", 1000.0, 2.0)
    };
    let live = Arc::new(Live::default());
    let run = eventbench::run_on(s, live.clone(), &target);
    let kill = async {
        into_the_run(&live).await;
        // SAFETY: plain kill(2) on a redis-server the test's cluster started.
        assert_eq!(unsafe { libc::kill(nodes[1].1, libc::SIGKILL) }, 0);
    };
    let (r, ()) = tokio::join!(run, kill);
    let r = r.unwrap();
    common::assert_invariants(&r);
    let m = &r.summary;
    let cut: Vec<u32> = r.events.iter().filter(|e| e.kind == "server-kill").map(|e| e.consumer).collect();
    assert!(cut.contains(&0) && cut.contains(&1), "each member lost node 1's streams: {:?}", r.events);
    assert_eq!(m.lost_other, 0, "{m:?}");
    eprintln!("drain_s {} against --drain {drain:?}", m.drain_s);
    assert!(m.drain_s < drain.as_secs_f64() + 1.0, "drain_s {} against --drain {drain:?}: {m:?}", m.drain_s);
}

/// Issue 28 item 5: a master SIGSTOPped from outside keeps every connection
/// open and answers nothing, so nothing tells the producers it went away:
/// they waited their 5 s for its replies before the drain began (`drain_s`
/// 7.0 against `--drain 2s`). The drain counts from the end of the measured
/// phase and the producers' wait ends with it; what the stopped node never
/// answered is unanswered, never "other", and the run ends within its bound
/// (the cleanup on the stopped node held it another 5 s, `--connect-timeout`).
#[tokio::test]
async fn a_master_stopped_from_outside_holds_the_run_no_longer_than_its_drain() {
    let target = Target::private_cluster(None, 3, false).expect("a private cluster (redis-server, redis-cli)");
    let nodes = masters(&target);
    let drain = Duration::from_secs(2);
    for transport in [TransportKind::Streams, TransportKind::Pubsub] {
        let s = Scenario {
            transport,
            consumers: 2,
            channels: 3,
            private_cluster: 3,
            drain,
            ..quick("outside-stop", 1000.0, 2.0)
        };
        let live = Arc::new(Live::default());
        let run = eventbench::run_on(s, live.clone(), &target);
        let stopped_at = std::cell::Cell::new(None);
        let stop = async {
            into_the_run(&live).await;
            // SAFETY: plain kill(2) on a redis-server the test's cluster started.
            assert_eq!(unsafe { libc::kill(nodes[1].1, libc::SIGSTOP) }, 0);
            stopped_at.set(Some(std::time::Instant::now()));
        };
        let (r, ()) = tokio::join!(run, stop);
        let took = stopped_at.get().expect("stopped").elapsed();
        // SAFETY: as above; the node answers again for the next run and the cleanup.
        assert_eq!(unsafe { libc::kill(nodes[1].1, libc::SIGCONT) }, 0);
        let r = r.unwrap();
        common::assert_invariants(&r);
        let m = &r.summary;
        eprintln!(
            "{transport}: drain_s {} against --drain {drain:?}; the run ended {took:?} after the stop",
            m.drain_s
        );
        assert_eq!(m.lost_other, 0, "{transport}: {m:?}");
        assert!(m.lost_unanswered > 0, "{transport}: the stopped node's messages went unanswered: {m:?}");
        assert!(m.drain_s < drain.as_secs_f64() + 0.5, "{transport}: drain_s {} against --drain {drain:?}", m.drain_s);
        // 1.2 s of the measured phase were left, then the drain, the side tasks'
        // last look (1 s at most) and the cleanup (1 s at most): 9.2 s before.
        assert!(took < Duration::from_millis(1200) + drain + Duration::from_secs(3), "{transport}: {took:?}");
    }
}

/// Issue 28 (brief item 2): a Streams member gave up on its XREADGROUP after
/// 1.6 s of silence and aborted the run, though a paused Redis (`CLIENT
/// PAUSE WRITE`, as a failover pauses it: XREADGROUP is a write) is busy, not
/// dead: it answers a PING on a fresh connection, which the producers'
/// watchdog already took as a sign of life (Pub/Sub ran through the same
/// pause). The member now judges silence the same way: the run completes,
/// nothing is lost, and the 2.5 s the pause held the entries is reported in
/// their latency.
#[test]
fn a_paused_redis_is_busy_not_dead_for_streams_members_too() {
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(["run", "--url", &server.url(), "--transport", "streams", "--consumers", "2"])
        .args(["--rate", "2000", "--duration", "4s", "--warmup", "200ms", "--drain", "3s", "--quiet", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The warmup, then half a second measured.
    wait_for_sent(server.port, "streams", 400 + 1000, Duration::from_secs(15));
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("WRITE").query(&mut server.client()).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let err = stderr(&child.wait_with_output().unwrap());
    assert_eq!(status.code(), Some(0), "{err}");
    let s = common::assert_whole_run_dir(&out);
    assert_eq!(s.status, "ok", "{s:?}");
    assert_eq!((s.lost, s.lost_unanswered), (0, 0), "{s:?}");
    assert_eq!(s.delivered + s.undelivered, s.expected, "{s:?}");
    assert_eq!(s.sent, 8000, "the schedule went on through the pause: {s:?}");
    assert!(s.max_us.is_some_and(|m| m >= 2_000_000.0), "the pause counts in the latency: {s:?}");
}
