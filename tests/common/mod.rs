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
        rate,
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

/// delivered + lost == expected, in the summary, per consumer and per second.
pub fn assert_invariants(r: &RunReport) {
    let s = &r.summary;
    assert_eq!(s.delivered + s.lost, s.expected, "summary: delivered + lost == expected");
    let sum = |f: fn(&eventbench::report::rows::ConsumerRow) -> u64| r.consumers.iter().map(f).sum::<u64>();
    assert_eq!(sum(|c| c.expected), s.expected, "consumers' expected add up");
    assert_eq!(sum(|c| c.delivered), s.delivered, "consumers' delivered add up");
    assert_eq!(sum(|c| c.lost), s.lost, "consumers' lost add up");
    assert_eq!(s.lost_unsubscribed + s.lost_in_buffer + s.lost_other, s.lost, "every loss has one cause");
    assert_eq!(sum(|c| c.lost_unsubscribed), s.lost_unsubscribed);
    assert_eq!(sum(|c| c.lost_in_buffer), s.lost_in_buffer);
    assert_eq!(sum(|c| c.lost_other), s.lost_other);
    for c in &r.consumers {
        assert_eq!(c.delivered + c.lost, c.expected, "consumer {}", c.consumer);
        assert_eq!(c.lost_unsubscribed + c.lost_in_buffer + c.lost_other, c.lost, "consumer {}", c.consumer);
    }
    for t in &r.timeseries {
        assert!(t.lost_unsubscribed + t.lost_in_buffer <= t.lost, "second {}", t.second);
    }
    assert_eq!(r.timeseries.iter().map(|t| t.lost_unsubscribed).sum::<u64>(), s.lost_unsubscribed);
    assert_eq!(r.timeseries.iter().map(|t| t.lost_in_buffer).sum::<u64>(), s.lost_in_buffer);
    assert_eq!(r.timeseries.iter().map(|t| t.sent).sum::<u64>(), s.sent, "per-second sent adds up");
    assert_eq!(r.timeseries.iter().map(|t| t.delivered).sum::<u64>(), s.delivered, "per-second delivered adds up");
    assert_eq!(r.timeseries.iter().map(|t| t.lost).sum::<u64>(), s.lost, "per-second lost adds up");
    assert_eq!(r.histogram.len(), s.delivered, "one latency sample per delivered message");
}

/// The eventbench binary.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eventbench"))
}

/// Runs the binary with `args` and returns its output.
pub fn eventbench(args: &[&str]) -> Output {
    bin().args(args).output().expect("running eventbench")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
