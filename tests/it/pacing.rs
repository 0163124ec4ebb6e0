//! Pacing: the window producers release their messages once per, and a
//! producer that falls behind its schedule ending with the measured phase.

use crate::common::{assert_bad_input, quick, run};
use eventbench::scenario::{PacingWindow, Rate};
use eventbench::Scenario;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_producer_far_behind_stops_with_the_phase_and_counts_what_it_did_not_send() {
    // 100M/s is far beyond what one producer writes: it used to send its
    // backlog for a minute after a 1 s phase.
    let s = Scenario { warmup: Duration::ZERO, ..quick("behind", 100e6, 1.0) };
    let started = Instant::now();
    let r = run(s).await;
    let s = &r.summary;
    assert!(s.unsent > 0 && s.harness_limited, "{s:?}");
    // Every measured message of the schedule was either sent or counted unsent.
    assert_eq!(s.sent + s.unsent, 100_000_000, "{s:?}");
    assert_eq!(s.expected, s.sent, "what was not sent is expected of no one");
    // The phase (1 s), the cut-off (0.25 s) and a drain of at most 1 s, with room for a busy machine.
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_producer_that_keeps_up_sends_everything() {
    let r = run(quick("keeps-up", 2_000.0, 1.0)).await;
    assert_eq!((r.summary.sent, r.summary.unsent), (2_000, 0), "{:?}", r.summary);
}

#[tokio::test]
async fn the_window_is_chosen_from_the_latency_gate_and_reported() {
    let gated = |window: PacingWindow, rate: f64| Scenario {
        pacing_window: window,
        assert: vec!["p99_us<2000".parse().unwrap()],
        ..quick("window", rate, 0.5)
    };
    // 60,000/s: a message every 16.7 µs, closer than any window below.
    let auto = run(gated(PacingWindow::Auto, 60_000.0)).await.summary.pacing_window_us;
    // Wide enough to bound the wake-ups (never below the 20 µs default), at most 5% of 2 ms.
    assert!((20.0..=100.0).contains(&auto), "{auto}");
    let fixed = run(gated(PacingWindow::Fixed(Duration::from_micros(50)), 60_000.0)).await.summary;
    assert_eq!(fixed.pacing_window_us, 50.0);
    let none = run(gated(PacingWindow::Fixed(Duration::ZERO), 60_000.0)).await.summary;
    assert_eq!(none.pacing_window_us, 0.0);
    // At 1,000/s every message is a wake-up of its own: no window applies.
    let slow = run(gated(PacingWindow::Auto, 1_000.0)).await.summary;
    assert_eq!(slow.pacing_window_us, 0.0);
    // A scenario file carries the key, and it reads back.
    let s = Scenario { pacing_window: PacingWindow::Fixed(Duration::from_micros(250)), ..Scenario::default() };
    let back = Scenario::from_toml(&toml::to_string(&s).unwrap()).unwrap();
    assert_eq!(back.pacing_window, s.pacing_window);
    assert!(matches!(back.rate, Rate::Constant(_)));
}

#[test]
fn a_bad_window_is_refused_up_front() {
    assert_bad_input(&["run", "--pacing-window", "1s"], "widest");
    assert_bad_input(&["run", "--pacing-window", "soon"], "expected auto");
}
