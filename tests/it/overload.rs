//! Truth past the knee: a backlog is not a loss, every run says whether the
//! system kept up, and the producer side adds up when Redis refuses or stops
//! answering.

use crate::common::{quick, run};
use eventbench::scenario::TransportKind;
use eventbench::{Scenario, Status};
use std::time::Duration;

fn streams(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario { transport: TransportKind::Streams, ..quick(name, rate, secs) }
}

#[tokio::test]
async fn an_overloaded_stream_holds_what_it_could_not_deliver() {
    // As fast as possible into a stream, a short drain: the groups cannot read it all.
    let s = Scenario { producers: 2, consumers: 2, drain: Duration::from_millis(300), ..streams("over", 0.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert_eq!(m.lost, 0, "nothing left the stream: it is all still there: {m:?}");
    assert!(m.undelivered > 0, "the groups fell behind: {m:?}");
    assert_eq!(m.delivered + m.undelivered, m.expected, "{m:?}");
    assert!(!m.sustained, "{m:?}");
    assert!(m.in_flight_end > 0, "{m:?}");
    // The drain starts once the producers are done, which on a busy machine
    // is after the measured phase: by as long as their last message was late
    // (the send rate runs until it went out).
    let last_send_s = (m.sent as f64 / m.send_rate - m.duration_s).max(0.0);
    assert!(m.drain_s >= 0.3, "the groups were behind: the drain ran to its limit: {m:?}");
    assert!(m.drain_s < last_send_s + 1.0, "and stopped there ({last_send_s:.3} s after the phase): {m:?}");
    // What arrived during the measured phase, per second of it, is less than was offered.
    assert!(m.delivery_rate < m.expected as f64 / m.duration_s, "{m:?}");
    assert!(r.consumers.iter().all(|c| c.undelivered > 0 && c.lost == 0), "{:?}", r.consumers);
}

#[tokio::test]
async fn maxlen_trims_are_counted_as_trimmed_and_under_the_outage() {
    let s = Scenario {
        consumers: 2,
        maxlen: Some(500),
        disconnect: vec!["50%@1s+1s".parse().unwrap()],
        ..streams("trim", 5000.0, 3.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert!(
        m.lost_trimmed > 1000,
        "about a second of entries was trimmed before the absent member's group read them: {m:?}"
    );
    assert_eq!((m.lost, m.lost_other, m.lost_in_buffer), (m.lost_trimmed, 0, 0), "{m:?}");
    let outage = r.events.iter().find(|e| e.kind == "disconnect").expect("the disconnect is an event");
    assert!(
        outage.lost_during > 0 && outage.lost_during <= m.lost_trimmed,
        "the trims are put down to the outage that let them happen: {outage:?} of {m:?}"
    );
    assert_eq!(r.timeseries.iter().map(|t| t.lost_trimmed).sum::<u64>(), m.lost_trimmed);
}

#[tokio::test]
async fn an_easy_run_is_sustained() {
    for transport in [TransportKind::Pubsub, TransportKind::Streams] {
        let r = run(Scenario { transport, consumers: 2, ..quick("easy", 1000.0, 2.0) }).await;
        let m = &r.summary;
        assert_eq!(m.status, Status::Ok, "{transport}: {}", m.reason);
        assert!(m.sustained, "{transport}: {m:?}");
        assert_eq!((m.lost, m.undelivered), (0, 0), "{transport}: {m:?}");
        assert!(m.drain_s < 1.0, "{transport}: everything was in well before the drain's limit: {m:?}");
        // What arrived within the phase is what was sent to each consumer, but
        // for what was still on its way at its end: at most the run's own send
        // rate over its slowest delivery (measured), per consumer.
        let arrived = m.delivery_rate * m.duration_s;
        let per_message = m.expected as f64 / m.sent as f64;
        let on_the_way = per_message * (m.send_rate * m.max_us.expect("deliveries have a max") / 1e6 + 1.0);
        assert!(arrived <= m.expected as f64 && m.expected as f64 - arrived <= on_the_way, "{transport}: {m:?}");
        assert!(r.timeseries.iter().all(|t| t.p50_us.is_some()), "every second had deliveries");
    }
}

#[tokio::test]
async fn a_slow_subscriber_still_subscribed_at_the_end_leaves_undelivered_not_lost() {
    let s = Scenario {
        consumers: 1,
        slow: Some("100%:2ms".parse().unwrap()),
        drain: Duration::from_millis(300),
        // Room for the whole run in its output buffer: Redis never cuts it off.
        redis_config: [("client-output-buffer-limit".to_string(), "pubsub 0 0 0".to_string())].into(),
        ..quick("slowsub", 2000.0, 1.5)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert_eq!(m.lost, 0, "Redis still held them for a subscriber that was still there: {m:?}");
    assert!(m.undelivered > 1000, "{m:?}");
    assert!(!m.sustained, "{m:?}");
}

#[test]
fn a_refused_write_is_not_expected_and_ends_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oom");
    let o = crate::common::eventbench(&[
        "run",
        "--transport",
        "streams",
        "--redis-config",
        "maxmemory 3mb",
        "--payload",
        "10000",
        "--rate",
        "2000",
        "--duration",
        "3s",
        "--warmup",
        "0s",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let err = crate::common::stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let s = crate::common::assert_whole_run_dir(&dir);
    assert_eq!(s.status, "aborted", "{s:?}");
    assert!(s.reason.contains("XADD") && s.reason.contains("OOM"), "the refusal names the command: {s:?}");
    assert!(s.write_errors >= 1, "the refusal is counted: {s:?}");
    assert_eq!(s.expected, s.sent - s.write_errors, "a refused write is expected of nobody: {s:?}");
    assert!(s.reached <= s.sent - s.write_errors && s.reached > 0, "reached counts the replies that came: {s:?}");
    assert_eq!(s.lost_in_buffer, 0, "nothing is called accepted that Redis refused or never answered: {s:?}");
    assert!(s.duration_s < 2.0, "the first refusal ended the run: {s:?}");
}

#[test]
fn sustained_gates_a_run_and_a_run_that_fell_behind_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let dir = tmp.path().join(name);
        let args = [
            &["run", "--transport", "streams", "--duration", "1s", "--warmup", "200ms", "--quiet"][..],
            extra,
            &["--assert", "sustained==1", "--out", dir.to_str().unwrap()],
        ]
        .concat();
        crate::common::eventbench(&args)
    };
    let easy = run("easy", &["--rate", "500"]);
    assert_eq!(easy.status.code(), Some(0), "{}", crate::common::stderr(&easy));
    let behind = run("behind", &["--rate", "0", "--producers", "2", "--drain", "200ms"]);
    let err = crate::common::stderr(&behind);
    assert_eq!(behind.status.code(), Some(3), "{err}");
    assert!(err.contains("did not keep up") && err.contains("sustained = false"), "{err}");
    assert!(err.contains("assertion failed: sustained==1"), "{err}");
}

/// A Redis that holds every PUBLISH for 2.5 s (`CLIENT PAUSE WRITE`, as a
/// failover pauses it) is busy, not dead: it still answers a PING on a
/// fresh connection. The producer's watchdog used to call any reply silence
/// of 1.5 s a stopped server and abort, counting what was in flight as
/// lost; the same silence comes from a Redis fanning each PUBLISH out to
/// thousands of subscribers (#28 item 26). The run goes on, nothing is lost,
/// and the wait counts in the latency.
#[test]
fn a_paused_redis_is_busy_not_dead() {
    use crate::common::{assert_whole_run_dir, bin, wait_exit, RedisServer};
    let server = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = bin()
        .args(["run", "--url", &server.url(), "--rate", "2000", "--duration", "4s", "--warmup", "200ms"])
        .args(["--drain", "3s", "--quiet", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The warmup, then half a second measured.
    crate::common::wait_for_sent(server.port, "pubsub", 400 + 1000, Duration::from_secs(15));
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("WRITE").query(&mut server.client()).unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let err = crate::common::stderr(&child.wait_with_output().unwrap());
    assert_eq!(status.code(), Some(0), "{err}");
    let s = assert_whole_run_dir(&out);
    assert_eq!(s.status, "ok", "{s:?}");
    assert_eq!((s.lost, s.lost_unanswered), (0, 0), "{s:?}");
    assert_eq!(s.delivered + s.undelivered, s.expected, "{s:?}");
    assert_eq!(s.sent, 8000, "the schedule went on through the pause: {s:?}");
    assert!(s.max_us.is_some_and(|m| m >= 2_000_000.0), "the pause counts in the latency: {s:?}");
}
