//! The loopback transport: runs with no Redis at all, accounts for every
//! message exactly, and takes the faults as Pub/Sub does (a disconnect loses
//! what is published while the consumer is away; a crash loses the rest).
//! Here on the machine's clock and threads; the faults' arithmetic, exact on
//! virtual time, is in `paused.rs`.

use crate::common::{assert_bad_input, assert_invariants, assert_whole_run_dir, bin, quick};
use eventbench::chaos::EventKind;
use eventbench::scenario::TransportKind;
use eventbench::{Live, Scenario, Status};
use std::sync::Arc;

fn loopback(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario { transport: TransportKind::Loopback, ..quick(name, rate, secs) }
}

async fn run(s: Scenario) -> eventbench::RunReport {
    let r = eventbench::run_with(s, Arc::new(Live::default())).await.expect("a loopback run");
    assert_invariants(&r);
    r
}

/// `--rate 0` with no redis-server anywhere on PATH: it starts none, reaches
/// none, and every message sent reaches every consumer.
#[test]
fn a_loopback_run_needs_no_redis_and_delivers_everything_it_sends() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let status = bin()
        .env("PATH", out.path())
        .args(["run", "--transport", "loopback", "--rate", "0", "--duration", "1s", "--warmup", "0s", "--quiet"])
        .args(["--producers", "2", "--consumers", "3", "--channels", "2", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));
    let s = assert_whole_run_dir(&dir);
    assert!(s.sent > 1000, "{s:?}");
    assert_eq!(s.expected, s.sent * 3, "three consumers of every channel: {s:?}");
    assert_eq!((s.delivered, s.lost, s.undelivered), (s.expected, 0, 0), "{s:?}");
    assert_eq!(s.nodes, 0, "no server: {s:?}");
}

/// A disconnect loses exactly what was published while the consumer was
/// away (by its recorded downtime), all of it to the absence; the other
/// consumer gets everything.
#[tokio::test]
async fn a_disconnect_loses_what_is_published_while_away_and_nothing_else() {
    let s = Scenario {
        consumers: 2,
        channels: 2,
        disconnect: vec!["50%@500ms+500ms".parse().unwrap()],
        ..loopback("loopback-disconnect", 4000.0, 2.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert!(m.lost > 0, "{m:?}");
    assert_eq!((m.lost, m.lost_in_buffer, m.lost_other, m.undelivered), (m.lost_unsubscribed, 0, 0, 0), "{m:?}");
    let away = r.consumers.iter().find(|c| c.lost > 0).expect("the disconnected consumer");
    let other = r.consumers.iter().find(|c| c.lost == 0).expect("the other consumer");
    assert_eq!(other.delivered, other.expected);
    let event = r.events.iter().find(|e| e.kind == EventKind::Disconnect).expect("a disconnect event");
    assert_eq!(event.lost_during, away.lost, "{event:?}");
    assert!(event.downtime_ms.is_some(), "it came back: {event:?}");
    // How much that is (rate × downtime, exactly): `paused::a_disconnect_loses_rate_times_downtime_per_consumer_to_the_tick`.
}

// A crash's arithmetic: `paused::a_crash_loses_the_rest_of_the_run_to_the_tick`.

/// A consumer that falls a whole log behind is cut off (as Redis cuts a
/// subscriber over its output-buffer limit): a server-kill event, and what
/// was waiting for it is lost in the buffer. As fast as the machine goes,
/// which virtual time cannot do (`paused.rs` has it at 50,000 msg/s).
#[tokio::test]
async fn a_consumer_a_whole_log_behind_is_cut_off_and_loses_its_buffer() {
    let s = Scenario { consumers: 1, slow: Some("100%:1ms".parse().unwrap()), ..loopback("loopback-slow", 0.0, 2.5) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert!(m.lost_in_buffer > 0, "{m:?}");
    assert!(r.events.iter().any(|e| e.kind == EventKind::ServerKill), "{:?}", r.events);
}

#[test]
fn options_about_a_server_or_workers_are_refused_for_loopback() {
    let cases: &[(&[&str], &str)] = &[
        (&["--url", "redis://127.0.0.1:1/"], "--url"),
        (&["--private-cluster", "3"], "--private-cluster"),
        (&["--kill-node", "1@1s+1s"], "kill-node"),
        (&["--redis-config", "hz 20"], "--redis-config"),
        (&["--workers", "2"], "one process"),
        (&["--groups", "1"], "groups"),
    ];
    for (args, needle) in cases {
        assert_bad_input(&[&["run", "--transport", "loopback", "--duration", "1s", "--quiet"], *args].concat(), needle);
    }
}
