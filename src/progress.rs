//! The live view on stderr: elapsed of total, send and delivery rates, loss so
//! far, connected consumers. It only reads the engine's atomic counters.

use crate::live::Live;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running live view; stops when dropped.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing for a run of `total` (warmup + measure) with `consumers`
    /// consumers; each line starts with `label` (the transport, which tells the
    /// runs of a `compare` apart).
    pub fn start(live: Arc<Live>, label: String, total: Duration, consumers: u32) -> Progress {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || draw(live, label, total, consumers, flag));
        Progress { done, thread: Some(thread) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.done.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Erases a live view's line, for an exit that skips its Drop (a second Ctrl-C).
pub fn clear_line() {
    use std::io::{IsTerminal, Write};
    if std::io::stderr().is_terminal() {
        let _ = std::io::stderr().write_all(b"\r\x1b[2K");
    }
}

/// Where a run is: the live view names it, so a drain is not taken for a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting, subscribing, before the run's clock starts.
    Starting,
    Warmup,
    Measuring,
    /// The producers are done; stragglers are awaited.
    Draining,
    /// A stop was requested (Ctrl-C): winding down.
    Stopping,
}

impl Phase {
    /// The phase at `now_ns` of a run whose measured phase is `measured` (ns since its epoch).
    pub fn at(now_ns: Option<u64>, measured: Option<(u64, u64)>, stopping: bool) -> Phase {
        match (now_ns, measured) {
            _ if stopping => Phase::Stopping,
            (Some(now), Some((start, _))) if now < start => Phase::Warmup,
            (Some(now), Some((_, end))) if now < end => Phase::Measuring,
            (Some(_), Some(_)) => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Warmup => "warmup",
            Phase::Measuring => "measuring",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
        }
    }
}

/// How far into its phase a run is, and how long that phase is: the warmup
/// and the measured phase each count their own time (the measured phase's
/// length never includes the warmup). `total` is warmup + measured phase;
/// `now_ns` and `measured` are on the run's clock, as [`Live`] gives them.
pub fn phase_times(
    phase: Phase,
    now_ns: Option<u64>,
    measured: Option<(u64, u64)>,
    total: Duration,
) -> (Duration, Duration) {
    let (Some(now), Some((start, end))) = (now_ns, measured) else { return (Duration::ZERO, Duration::ZERO) };
    let length = Duration::from_nanos(end.saturating_sub(start));
    match phase {
        Phase::Warmup => {
            let warmup = total.saturating_sub(length);
            (warmup.saturating_sub(Duration::from_nanos(start.saturating_sub(now))), warmup)
        }
        Phase::Measuring => (Duration::from_nanos(now.clamp(start, end) - start), length),
        _ => (Duration::ZERO, Duration::ZERO),
    }
}

/// What one frame says after the spinner: label, phase with its time, rates,
/// loss so far and the consumers subscribed (`up`), within 80 columns.
/// `rates` are (sent, delivered) per second; `up` is (subscribed, consumers).
pub fn line(
    label: &str,
    phase: Phase,
    times: (Duration, Duration),
    rates: (f64, f64),
    lost: u64,
    up: (u64, u32),
) -> String {
    let (elapsed, total) = times;
    let time = match phase {
        Phase::Warmup | Phase::Measuring => format!(" {}/{}s", elapsed.as_secs(), total.as_secs()),
        _ => String::new(),
    };
    // A consumer's loss is counted when it is back and sees the gap: while
    // some are away, what is shown is a floor.
    let at_least = if up.0 < u64::from(up.1) { "≥" } else { "" };
    format!(
        "{label} {}{time}  sent {}  delivered {}  lost {at_least}{lost}  up {}/{}",
        phase.word(),
        crate::report::fmt::rate(rates.0),
        crate::report::fmt::rate(rates.1),
        up.0,
        up.1
    )
}

fn draw(live: Arc<Live>, label: String, total: Duration, consumers: u32, done: Arc<AtomicBool>) {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5));
    // `wide_msg` is cut to the terminal's width: a frame never wraps onto a second line.
    bar.set_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("valid template"));
    let (mut last_sent, mut last_delivered, mut last_at) = (0, 0, Instant::now());
    while !done.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let (sent, delivered) = (live.sent.load(Relaxed), live.delivered.load(Relaxed));
        let dt = last_at.elapsed().as_secs_f64().max(1e-3);
        let (now, measured) = (live.now_ns(), live.measured_phase());
        let phase = Phase::at(now, measured, live.stop_requested());
        let rates = ((sent - last_sent) as f64 / dt, (delivered - last_delivered) as f64 / dt);
        let up = (live.connected.load(Relaxed), consumers);
        let times = phase_times(phase, now, measured, total);
        bar.set_message(line(&label, phase, times, rates, live.lost_so_far.load(Relaxed), up));
        bar.tick();
        (last_sent, last_delivered, last_at) = (sent, delivered, Instant::now());
    }
    bar.finish_and_clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_follows_the_run_clock() {
        let measured = Some((1_000, 3_000));
        assert_eq!(Phase::at(None, None, false), Phase::Starting);
        assert_eq!(Phase::at(Some(500), measured, false), Phase::Warmup);
        assert_eq!(Phase::at(Some(1_000), measured, false), Phase::Measuring);
        assert_eq!(Phase::at(Some(3_000), measured, false), Phase::Draining);
        assert_eq!(Phase::at(Some(2_000), measured, true), Phase::Stopping);
    }

    #[test]
    fn each_phase_counts_its_own_time() {
        let s = Duration::from_secs;
        let ns = |secs: u64| secs * 1_000_000_000;
        // 1 s of warmup from the epoch, then 10 s measured: total 11 s.
        let measured = Some((ns(1), ns(11)));
        assert_eq!(phase_times(Phase::Warmup, Some(0), measured, s(11)), (s(0), s(1)));
        assert_eq!(phase_times(Phase::Measuring, Some(ns(1)), measured, s(11)), (s(0), s(10)));
        assert_eq!(phase_times(Phase::Measuring, Some(ns(11)), measured, s(11)), (s(10), s(10)));
        let frame = line(
            "pubsub",
            Phase::Measuring,
            phase_times(Phase::Measuring, Some(ns(10)), measured, s(11)),
            (0.0, 0.0),
            0,
            (1, 1),
        );
        assert!(frame.starts_with("pubsub measuring 9/10s"), "{frame}");
        // A long warmup before a short measured phase: 120 s, then 1 s.
        let measured = Some((ns(120), ns(121)));
        assert_eq!(phase_times(Phase::Warmup, Some(ns(30)), measured, s(121)), (s(30), s(120)));
        assert_eq!(phase_times(Phase::Draining, Some(ns(125)), measured, s(121)), (s(0), s(0)));
    }

    #[test]
    fn a_frame_names_transport_and_phase_and_fits_80_columns() {
        let s = Duration::from_secs;
        let frame = line("streams", Phase::Measuring, (s(5), s(11)), (20_000.0, 80_000.0), 12_345, (2, 4));
        assert!(frame.starts_with("streams measuring 5/11s  sent 20.0k/s"), "{frame}");
        assert!(frame.ends_with("lost ≥12345  up 2/4"), "{frame}");
        // The spinner and its space take 2 columns.
        assert!(frame.chars().count() + 2 <= 80, "{} columns: {frame}", frame.chars().count() + 2);
        let drain = line("pubsub", Phase::Draining, (s(11), s(11)), (0.0, 0.0), 0, (4, 4));
        assert!(drain.ends_with("lost 0  up 4/4"), "{drain}");
        assert!(drain.starts_with("pubsub draining  sent 0/s"), "{drain}");
    }
}
