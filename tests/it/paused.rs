//! The harness's own arithmetic on tokio's paused clock: whole runs (swarm,
//! summarize, checkpoints, the capacity search) over the loopback transport
//! on virtual time (`clock::Clock::virtual_`). Time moves only while every
//! task waits, so a schedule is kept to the millisecond tick whatever the
//! machine is doing: counts are exact, and a run of seconds takes a fraction
//! of one. What needs Redis (its replies, its buffers, real pacing) stays
//! in the files of each transport.
//!
//! On virtual time every wake-up lands on tokio's millisecond grid: a
//! message is sent (and delivered) less than a millisecond after it was due,
//! on the tick that follows its deadline. Two tasks woken on one tick run
//! one after the other, in an order no test relies on: where a fault
//! begins or ends on a tick, the messages of that tick fall on either side
//! of it (`within_ticks`), and nowhere else does anything move.

use crate::common::{assert_invariants, quick};
use eventbench::capacity::search::{self, Outcome, Plan, StepPlan, Steps, Verdict};
use eventbench::capacity::slo::Slo;
use eventbench::chaos::EventKind;
use eventbench::pipeline::{self, Mode, Watch};
use eventbench::scenario::{Checkpoint, Rate, TransportKind};
use eventbench::{Live, RunReport, Scenario, Status};
use std::sync::Arc;
use std::time::Duration;

fn loopback(name: &str, rate: f64, secs: f64) -> Scenario {
    Scenario { transport: TransportKind::Loopback, ..quick(name, rate, secs) }
}

/// Runs on the caller's (paused) runtime; checks the invariants every run holds.
async fn run(s: Scenario) -> RunReport {
    let r = eventbench::run_with(s, Arc::new(Live::default())).await.expect("a loopback run on virtual time");
    assert_invariants(&r);
    r
}

/// Whether `n` is `due` give or take the messages due in one tick (1 ms)
/// at `rate` per second at each end: where an instant on the tick grid
/// falls among the messages of its tick (see the top).
fn within_ticks(n: u64, due: u64, rate: u64) -> bool {
    let tick = rate / 1000;
    (due - tick..=due + tick).contains(&n)
}

/// A column per second of the run.
fn per_second<T>(r: &RunReport, f: impl Fn(&eventbench::rows::TimeseriesRow) -> T) -> Vec<T> {
    r.timeseries.iter().map(f).collect()
}

#[tokio::test(start_paused = true)]
async fn a_virtual_run_counts_its_schedule_exactly_and_leaves_the_machines_columns_empty() {
    let s = Scenario { producers: 2, consumers: 3, channels: 2, ..loopback("virtual-clean", 4000.0, 2.0) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert_eq!((m.sent, m.expected, m.delivered), (8000, 24_000, 24_000), "2 s at 4,000/s, 3 consumers");
    assert_eq!((m.lost, m.undelivered, m.duplicates, m.out_of_order), (0, 0, 0, 0), "{m:?}");
    assert_eq!(per_second(&r, |t| (t.sent, t.delivered, t.connected_consumers)), [(4000, 12_000, 3); 2]);
    // Every message leaves on the tick it falls due in, and arrives on it.
    assert!(m.send_lag_p99_us < 1000.0 && m.max_us.is_some_and(|x| x < 1000.0), "{m:?}");
    assert_eq!(m.send_rate, 4000.0, "the run's own send times span the phase exactly");
    assert_eq!((m.threads, m.drain_s), (1, 0.0), "one worker on the caller's runtime; nothing left to drain");
    // The machine's floor and eventbench's CPU are not this run's: not measured, not invented.
    let machine = [m.machine_wakeup_p50_us, m.machine_wakeup_max_us, m.machine_other_cpu_pct, m.steal_pct];
    assert_eq!(machine, [None; 4], "{m:?}");
    assert_eq!((m.harness_cpu_pct, m.harness_thread_max_pct, m.harness_limited), (0.0, 0.0, false), "{m:?}");
}

/// A disconnect of 500 ms at 4,000 msg/s loses exactly 2,000 messages per
/// disconnected consumer, all to the absence; the others lose nothing.
#[tokio::test(start_paused = true)]
async fn a_disconnect_loses_rate_times_downtime_per_consumer_to_the_tick() {
    let s = Scenario {
        consumers: 4,
        channels: 2,
        disconnect: vec!["50%@500ms+500ms".parse().unwrap()],
        ..loopback("virtual-disconnect", 4000.0, 2.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    let closes: Vec<_> = r.events.iter().filter(|e| e.kind == EventKind::Disconnect).collect();
    assert_eq!(closes.len(), 2, "{:?}", r.events);
    for e in &closes {
        // Away on the schedule's instants exactly, and for the messages sent
        // in between: 2,000, but for the ticks it leaves and comes back on.
        assert_eq!((e.at_s, e.downtime_ms), (0.5, Some(500.0)), "{e:?}");
        assert!(within_ticks(e.lost_during, 2000, 4000), "{e:?}");
    }
    assert_eq!(closes[0].lost_during, closes[1].lost_during, "the same outage loses the same messages");
    assert_eq!(r.events.iter().filter(|e| e.kind == EventKind::Resubscribed).count(), 2);
    let lost = closes[0].lost_during;
    assert_eq!((m.lost, m.lost_unsubscribed, m.lost_in_buffer, m.lost_other), (2 * lost, 2 * lost, 0, 0), "{m:?}");
    for c in &r.consumers {
        let away = closes.iter().any(|e| e.consumer == c.consumer);
        let want = if away { (1, lost) } else { (0, 0) };
        assert_eq!((c.disconnects, c.lost), want, "consumer {}", c.consumer);
        assert_eq!(c.delivered + c.lost, 8000, "consumer {}", c.consumer);
    }
    // The outage lies in the first second: its loss lands there, and two are away.
    let seconds = per_second(&r, |t| (t.connected_consumers, t.lost, t.lost_unsubscribed));
    assert_eq!(seconds, [(2, 2 * lost, 2 * lost), (4, 0, 0)]);
    // As PUBLISH's replies would say: each message reached those subscribed.
    assert_eq!(m.expected - m.reached, m.lost_unsubscribed);
}

/// A crash loses everything from its moment on: 1 s of 4,000 msg/s,
/// whatever was still unread in the buffer and the rest to the absence.
#[tokio::test(start_paused = true)]
async fn a_crash_loses_the_rest_of_the_run_to_the_tick() {
    let s =
        Scenario { consumers: 2, crash: vec!["50%@500ms".parse().unwrap()], ..loopback("virtual-crash", 4000.0, 1.5) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    let crash: Vec<_> = r.events.iter().filter(|e| e.kind == EventKind::Crash).collect();
    let [crash] = crash[..] else { panic!("one crash: {:?}", r.events) };
    assert_eq!((crash.at_s, crash.downtime_ms), (0.5, None), "{crash:?}");
    // The second after it, and what it had not read of the tick it crashed on.
    assert!(within_ticks(crash.lost_during, 4000, 4000), "{crash:?}");
    let (gone, kept) = (&r.consumers[crash.consumer as usize], &r.consumers[1 - crash.consumer as usize]);
    assert_eq!((gone.delivered + gone.lost, gone.lost), (6000, crash.lost_during), "{gone:?}");
    assert_eq!((kept.delivered, kept.lost), (6000, 0), "{kept:?}");
    let lost = (m.lost, m.lost_unsubscribed + m.lost_in_buffer, m.lost_other, m.undelivered);
    assert_eq!(lost, (crash.lost_during, crash.lost_during, 0, 0), "{m:?}");
}

/// A consumer that falls a whole log behind is cut off, as Redis cuts off a
/// subscriber over its output-buffer limit: a server-kill event, and what
/// was waiting for it is lost in the buffer. At 50,000 msg/s against a
/// consumer that takes 1 ms a message, the log is nearly full a second into
/// the run; its producer waits for the consumer (`bus::LAP_AFTER`, 1 s),
/// then writes on over it.
#[tokio::test(start_paused = true)]
async fn a_consumer_a_whole_log_behind_is_cut_off_and_loses_its_buffer() {
    let s =
        Scenario { consumers: 1, slow: Some("100%:1ms".parse().unwrap()), ..loopback("virtual-slow", 50_000.0, 2.5) };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert!(m.lost_in_buffer > 0, "{m:?}");
    let kills: Vec<_> = r.events.iter().filter(|e| e.kind == EventKind::ServerKill).collect();
    // From the warmup's start (300 ms before the phase): 1 s to fill the log, 1 s of waiting.
    assert!(!kills.is_empty() && kills[0].at_s > 1.0 && kills[0].at_s < 2.0, "{:?}", r.events);
    assert_eq!(m.lost_other, 0, "every loss has its cause: {m:?}");
}

/// 100,000 msg/s, a message every 10 µs, released a window at a time:
/// the schedule's count exactly, nothing lost or doubled.
#[tokio::test(start_paused = true)]
async fn a_coalesced_rate_sends_its_schedule_exactly() {
    let r = run(loopback("virtual-coalesced", 100_000.0, 1.0)).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    assert_eq!((m.sent, m.unsent, m.delivered), (100_000, 0, 100_000), "{m:?}");
    assert_eq!((m.lost, m.duplicates, m.out_of_order), (0, 0, 0), "{m:?}");
    assert!(m.sustained && !m.harness_limited, "{m:?}");
}

/// Each second of a rate profile sends its stage's integral exactly: a
/// ramp from 0 to 4,000/s over 2 s sends 1,000 then 3,000.
#[tokio::test(start_paused = true)]
async fn each_second_of_a_profile_sends_its_stages_integral_exactly() {
    let s = Scenario {
        producers: 2,
        consumers: 2,
        rate: "0..4k/2s,2k/1s,0/1s,6k/1s,1k/1s".parse().unwrap(),
        duration: Duration::from_secs(6),
        ..loopback("virtual-profile", 1.0, 6.0)
    };
    let r = run(s).await;
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    let want = [1000, 3000, 2000, 0, 6000, 1000];
    assert_eq!(per_second(&r, |t| t.sent), want);
    assert_eq!(per_second(&r, |t| t.target_rate), want.map(|w| w as f64));
    assert_eq!(per_second(&r, |t| t.delivered), want.map(|w| w * 2), "two consumers, nothing lost");
    assert_eq!((m.sent, m.duration_s, m.target_rate), (13_000, 6.0, 13_000.0 / 6.0));
}

/// The phases: warmup messages are sent and read but not counted; the
/// measured phase counts its own; the drain ends at its limit and what a
/// slow consumer had not read by then is undelivered, not lost.
#[tokio::test(start_paused = true)]
async fn warmup_is_not_counted_and_the_drain_ends_at_its_limit() {
    let s = Scenario {
        consumers: 1,
        slow: Some("100%:1ms".parse().unwrap()),
        warmup: Duration::from_millis(500),
        drain: Duration::from_millis(300),
        ..loopback("virtual-phases", 2000.0, 1.0)
    };
    let live = Arc::new(Live::default());
    let r = eventbench::run_with(s, live.clone()).await.expect("a loopback run on virtual time");
    assert_invariants(&r);
    let m = &r.summary;
    assert_eq!(m.status, Status::Ok, "{}", m.reason);
    // 1.5 s at 2,000/s: 1,000 of the warmup, 2,000 measured.
    assert_eq!(live.sent.load(std::sync::atomic::Ordering::Relaxed), 3000);
    assert_eq!((m.sent, m.expected), (2000, 2000));
    // The consumer reads a message a millisecond from the start of the
    // warmup: by the end of the 300 ms drain, 1,800 of them after the
    // first, the warmup's 1,000 first (the read on the drain's last tick
    // may come before its end or after). The rest were still on their way.
    assert_eq!(m.drain_s, 0.3);
    assert!((800..=801).contains(&m.delivered), "{m:?}");
    assert_eq!((m.delivered + m.undelivered, m.lost), (2000, 0), "{m:?}");
    // During the phase it read 500 measured messages: half the offered rate.
    assert_eq!(m.delivery_rate, 500.0);
    assert!(!m.sustained, "{m:?}");
}

/// Checkpoints cut the run at whole seconds a margin behind the moment they
/// are taken: each is a whole result of the seconds before its cut, and the
/// final result is the run's.
#[tokio::test(start_paused = true)]
async fn each_checkpoint_reports_the_whole_seconds_before_its_cut() {
    let s = Scenario {
        consumers: 2,
        checkpoint: Checkpoint::Every(Duration::from_secs(1)),
        ..loopback("virtual-checkpoints", 2000.0, 4.0)
    };
    let target = pipeline::target_for(&s).unwrap();
    let mut taken: Vec<RunReport> = Vec::new();
    let mut keep = |r: RunReport| taken.push(r);
    let watch = Watch { on_checkpoint: Some(&mut keep), ..Watch::default() };
    let live = Arc::new(Live::default());
    let finished = pipeline::execute_with(s, live, &target, &Mode::Local, |_| {}, watch).await.unwrap();
    let seconds: Vec<f64> = taken.iter().map(|r| r.summary.duration_s).collect();
    // Taken 1, 2, 3 and 4 s into the measured phase, each cut 1 s earlier.
    assert_eq!(seconds, [0.0, 1.0, 2.0, 3.0], "{:?}", taken.iter().map(|r| &r.summary.reason).collect::<Vec<_>>());
    for (c, secs) in taken.iter().zip(0u64..) {
        let m = &c.summary;
        assert_eq!(m.status, Status::Incomplete, "{}", m.reason);
        assert_adds_up(c);
        assert_eq!((m.sent, m.expected, m.delivered, m.lost), (2000 * secs, 4000 * secs, 4000 * secs, 0), "{m:?}");
        assert_eq!(c.timeseries.len() as u64, secs);
    }
    let m = &finished.report.summary;
    assert_invariants(&finished.report);
    assert_eq!((m.status, m.sent, m.delivered), (Status::Ok, 8000, 16_000), "{m:?}");
}

/// The capacity search's rules over real runs: a consumer that takes 1 ms
/// a message holds 1,000 msg/s and falls behind above it, so the search
/// finds exactly 1,000 msg/s, confirmed on both sides. Each step is a
/// whole run on virtual time, judged by the SLO as `eventbench capacity`
/// judges it; the budget counts virtual time.
#[tokio::test(start_paused = true)]
async fn the_capacity_search_finds_the_rate_a_slow_consumer_holds() {
    let base = Scenario {
        consumers: 1,
        slow: Some("100%:1ms".parse().unwrap()),
        warmup: Duration::from_millis(500),
        drain: Duration::from_secs(1),
        ..loopback("virtual-capacity", 1000.0, 2.0)
    };
    let slo = Slo::new(["p99_us<20000".parse().unwrap()]);
    let plan = Plan {
        start: 1000.0,
        min_rate: 10.0,
        max_rate: None,
        precision: 0.05,
        confirm: 2,
        tries: 3,
        ceiling: false,
        budget: Duration::from_secs(600),
        step_max: Duration::from_secs(5),
    };
    let mut steps = RealSteps { base, slo, rates: Vec::new() };
    let found = search::search(&plan, &mut steps).await.unwrap();
    assert_eq!(found.max_rate, Some(1000.0), "{:?}", steps.rates);
    let failure = found.first_failure.expect("a rate above it failed");
    assert!(failure > 1000.0 && failure <= 1000.0 * 1.05, "{failure}: {:?}", steps.rates);
    let at = |rate: f64| steps.rates.iter().filter(|(r, _)| *r == rate).map(|(_, v)| *v).collect::<Vec<_>>();
    assert_eq!(at(1000.0), [Verdict::Pass; 3], "the start, and confirmed twice");
    assert_eq!(at(failure), [Verdict::Fail; 3], "the lowest failure, and confirmed twice");
}

/// A checkpoint's totals are its consumers' and its seconds' (its latency
/// histogram is the threads' as copied, past the cut: not compared).
fn assert_adds_up(r: &RunReport) {
    let s = &r.summary;
    assert_eq!(s.delivered + s.lost + s.undelivered, s.expected, "{s:?}");
    let consumers = |f: fn(&eventbench::rows::ConsumerRow) -> u64| r.consumers.iter().map(f).sum::<u64>();
    assert_eq!((consumers(|c| c.expected), consumers(|c| c.delivered)), (s.expected, s.delivered));
    let seconds = |f: fn(&eventbench::rows::TimeseriesRow) -> u64| r.timeseries.iter().map(f).sum::<u64>();
    assert_eq!((seconds(|t| t.sent), seconds(|t| t.delivered)), (s.sent, s.delivered), "{s:?}");
    assert_eq!(r.timeseries.len() as f64, s.duration_s, "one row per reported second");
}

/// `eventbench capacity`'s steps as plain runs, judged by its SLO.
struct RealSteps {
    base: Scenario,
    slo: Slo,
    /// Each step's rate and verdict.
    rates: Vec<(f64, Verdict)>,
}

impl Steps for RealSteps {
    async fn step(&mut self, plan: StepPlan) -> anyhow::Result<Outcome> {
        let started = tokio::time::Instant::now();
        let assert = self.slo.user_gates().to_vec();
        let s = Scenario { rate: Rate::Constant(plan.rate), assert, ..self.base.clone() };
        let r = run(s).await;
        let verdict = self.slo.judge(&r.summary).verdict;
        self.rates.push((plan.rate, verdict));
        let delivered_rate = r.summary.delivery_rate / f64::from(self.base.consumers);
        Ok(Outcome { verdict, elapsed: started.elapsed(), delivered_rate })
    }
}

/// What virtual time cannot run is refused before anything starts: a
/// transport on a server (its replies take the machine's time) and an
/// unlimited rate (it never waits, so virtual time would never reach its end).
#[tokio::test(start_paused = true)]
async fn a_run_virtual_time_cannot_hold_is_refused() {
    let unlimited = eventbench::run_with(loopback("virtual-unlimited", 0.0, 1.0), Arc::new(Live::default())).await;
    let e = format!("{:#}", unlimited.expect_err("rate 0 never ends on a paused clock"));
    assert!(e.contains("rate") && e.contains("paused clock"), "{e}");
    let pubsub = eventbench::run_with(quick("virtual-pubsub", 100.0, 1.0), Arc::new(Live::default())).await;
    let e = format!("{:#}", pubsub.expect_err("Pub/Sub needs a server"));
    assert!(e.contains("pubsub needs a server") && e.contains("paused clock"), "{e}");
}
