//! Redis Streams next to Pub/Sub: the same disconnect loses nothing, crashed
//! members' entries are claimed, groups share the work, replays catch up.

use crate::common;
use crate::common::{eventbench, quick, run, stderr};
use eventbench::scenario::TransportKind;
use eventbench::target::Target;
use eventbench::{Live, Scenario, Status};
use std::sync::Arc;

/// Streams runs drain longer: returning consumers work through a backlog, and
/// the drain ends as soon as everything expected has arrived anyway.
fn streams(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario { transport: TransportKind::Streams, drain: std::time::Duration::from_secs(4), ..quick(name, rate, secs) }
}

#[tokio::test]
async fn the_same_disconnect_loses_on_pubsub_and_not_on_streams() {
    let target = Target::private(None).expect("redis-server (scripts/test.sh installs it)");
    let base = Scenario {
        consumers: 4,
        disconnect: vec!["50%@1s+1s".parse().unwrap()],
        drain: std::time::Duration::from_secs(4),
        // Two seconds after the outage for the backlog to drain before the last sample.
        ..quick("dl", 4000.0, 4.0)
    };
    let mut reports = Vec::new();
    for transport in [TransportKind::Pubsub, TransportKind::Streams] {
        let s = Scenario { transport, ..base.clone() };
        let r = eventbench::run_on(s, Arc::new(Live::default()), &target).await.unwrap();
        common::assert_invariants(&r);
        assert_eq!(r.summary.status, Status::Ok, "{}", r.summary.reason);
        reports.push(r);
    }
    let (pubsub, streams) = (&reports[0].summary, &reports[1].summary);
    // What Pub/Sub sent while each consumer was away: its own send rate over
    // each recorded downtime (events), not the schedule's 4,000/s over 1 s.
    let closes = reports[0].events.iter().filter(|e| e.kind == "disconnect");
    let arithmetic: f64 = closes.map(|e| pubsub.send_rate * e.downtime_ms.expect("it came back") / 1e3).sum();
    assert!((pubsub.lost as f64 - arithmetic).abs() / arithmetic < 0.15, "pubsub lost {} of {arithmetic}", pubsub.lost);
    assert_eq!((streams.lost, streams.delivered), (0, streams.expected), "{streams:?}");
    assert_eq!(streams.expected, pubsub.expected, "expected means the same on both transports");
    assert_eq!(streams.reached, streams.sent, "every XADD acknowledged");
    // The outage shows as a backlog that grows, then drains, and as latency.
    assert!(streams.backlog_max >= 4000, "backlog max {}", streams.backlog_max);
    let during = &reports[1].timeseries[1];
    assert!(during.backlog >= 4000 && during.max_us.is_some_and(|m| m > 900_000.0), "{during:?}");
    let last = reports[1].timeseries.last().unwrap().backlog;
    assert!(last < streams.backlog_max / 4, "the backlog drained: {last} left of {}", streams.backlog_max);
    assert!(
        streams.max_us.is_some_and(|m| m > 900_000.0),
        "the disconnected consumers' messages waited ~1 s: {streams:?}"
    );
}

#[tokio::test]
async fn groups_share_the_work_and_each_message_arrives_once_per_group() {
    let s = Scenario { consumers: 4, groups: 2, channels: 2, producers: 2, ..streams("groups", 3000.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(m.expected, m.sent * 2, "once per group");
    assert_eq!((m.delivered, m.lost, m.duplicates), (m.expected, 0, 0), "{m:?}");
    assert_eq!(r.consumers.len(), 2, "one accounting row per group");
    assert!(m.acked >= m.delivered, "everything processed was acknowledged (warmup too): {m:?}");
}

/// Issue 29 items 4 and 5: members of one group compete for its entries, so
/// one member's arrivals never make another's out of order (`out_of_order`
/// is per member); and with nothing left in flight the drain ends at once,
/// as it does without groups, instead of running its whole limit.
#[tokio::test]
async fn a_group_of_four_without_faults_is_in_order_and_drains_at_once() {
    let drain = std::time::Duration::from_secs(3);
    let s = Scenario { consumers: 4, groups: 1, channels: 2, producers: 2, drain, ..streams("group4", 4000.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!((m.delivered, m.lost), (m.expected, 0), "{m:?}");
    assert_eq!(m.out_of_order, 0, "each member received its entries in order: {m:?}");
    assert!(m.drain_s < drain.as_secs_f64() / 2.0, "the drain ended once everything was in: {m:?}");
}

#[tokio::test]
async fn crashed_members_entries_are_claimed_and_nothing_is_lost() {
    let s = Scenario {
        consumers: 4,
        groups: 2,
        crash: vec!["25%@1s".parse().unwrap()],
        claim_idle: std::time::Duration::from_millis(300),
        ..streams("crash", 3000.0, 3.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    assert_eq!(r.events.iter().filter(|e| e.kind == "crash").count(), 1, "{:?}", r.events);
    assert_eq!((m.lost, m.delivered), (0, m.expected), "{m:?}");
    assert!(m.redelivered > 0, "the crashed member's entries were claimed: {m:?}");
}

#[tokio::test]
async fn a_replay_group_reads_everything_and_catches_up() {
    let s = Scenario { replay_at: Some(std::time::Duration::from_secs(1)), ..streams("replay", 2000.0, 3.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    let catchup = m.replay_catchup_s.expect("the replay caught up");
    assert!(catchup > 0.0 && catchup < 2.0, "{catchup}");
    assert!(m.replay_rate.unwrap() > 2000.0, "catching up means reading faster than the live rate: {m:?}");
    assert_eq!(m.lost, 0);
}

#[tokio::test]
async fn trimmed_streams_still_deliver_to_consumers_that_keep_up() {
    // MAXLEN ~ 2000 at 1000/s leaves consumers two seconds of slack.
    let r = run(Scenario { maxlen: Some(2000), consumers: 2, ..streams("maxlen", 1000.0, 2.0) }).await;
    assert_eq!((r.summary.lost, r.summary.status), (0, Status::Ok), "{:?}", r.summary);
}

#[test]
fn compare_writes_both_runs_and_a_side_by_side_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    let o = eventbench(&[
        "compare",
        "--consumers",
        "2",
        "--rate",
        "2000",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("pubsub") && table.contains("streams") && table.contains("backlog max"), "{table}");
    let rows: Vec<eventbench::rows::SummaryRow> =
        csv::Reader::from_path(out.join("compare.csv")).unwrap().deserialize().map(Result::unwrap).collect();
    assert_eq!(rows.iter().map(|r| r.transport.as_str()).collect::<Vec<_>>(), ["pubsub", "streams"]);
    // Without a scenario file or --name, each run is named after its own transport.
    assert!(rows[0].run_id.starts_with("pubsub-") && rows[1].run_id.starts_with("streams-"), "{rows:?}");
    assert!(out.join("pubsub/summary.csv").is_file() && out.join("streams/events.csv").is_file());
    // The same runs in pictures: each run's page, and the comparison page linking both.
    for f in ["pubsub/report.html", "streams/report.html", "compare-latency.svg", "compare-timeline.svg"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let page = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(page.contains("href=\"pubsub/report.html\"") && page.contains("href=\"streams/report.html\""));
    assert!(page.contains("href=\"compare.csv\""), "the page links the CSV beside it");
    assert!(std::fs::read_to_string(out.join("streams/timeline.svg")).unwrap().contains("backlog"));

    let o = eventbench(&["run", "--groups", "2", "--consumers", "2", "--duration", "1s"]);
    assert_eq!(o.status.code(), Some(2), "--groups is for streams only");
    assert!(stderr(&o).contains("streams"), "{}", stderr(&o));
}

#[tokio::test]
async fn without_survivors_a_crashed_groups_entries_stay_in_the_stream() {
    // One group per consumer: nobody can claim what the crashed consumer left.
    let r =
        run(Scenario { consumers: 2, crash: vec!["50%@1s".parse().unwrap()], ..streams("alone", 2000.0, 2.0) }).await;
    let m = &r.summary;
    assert_eq!(r.summary.status, Status::Ok, "{}", m.reason);
    // About 1 s of messages never read, and still in the stream (or the crashed
    // member's pending list) at the end: undelivered, not lost.
    assert!(m.undelivered >= 1900, "about 1 s of messages never read: {m:?}");
    assert_eq!(m.lost, 0, "Redis still holds every entry: {m:?}");
    assert!(!m.sustained, "{m:?}");
    assert!(m.backlog_max >= 1900, "{m:?}");
}
