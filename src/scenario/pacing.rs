//! `--pacing-window auto|DURATION`: how long a producer may hold the
//! messages that fall due before it writes them, in one write.
//!
//! A wake-up costs tens of microseconds of CPU on a VM (timer, scheduler, the
//! write, and the reply and delivery it sets off): a producer that woke for
//! every message spent a core pacing 100,000 msg/s, and capacity searches
//! ended at eventbench's limit instead of Redis's. Releasing what fell due
//! once a window bounds the wake-ups a second, whatever the rate. Every
//! message keeps its own deadline, so what the window adds to a message's
//! wait counts in its latency: the window is a trade of latency for CPU, and
//! `auto` takes it only as far as the run's latency budget allows.
//!
//! A periodic timer does not make a window's wake-up cheaper: Linux re-arms
//! an interval timerfd only when its count is read, so it trades the one-shot
//! `timerfd_settime` for a `read`, one system call a wake-up either way (an
//! unread periodic timerfd fires once and never again).

use crate::clock::{fmt_duration, parse_duration};
use std::fmt;
use std::time::Duration;

/// The window without a latency budget to take from: today's fixed window,
/// measured to keep the median where message-by-message pacing had it
/// (Pub/Sub 1 → 1 at 100,000/s: p50 93 µs, p99 0.41 ms, 0.90 CPU).
pub const DEFAULT_WINDOW_NS: u64 = 20_000;
/// What share of the tightest latency gate (`--slo`, `--assert`) a window may
/// take: a message waits at most one window for its release, so a p99 gate
/// of 2 ms leaves at least 95% of itself to Redis and the network.
pub const BUDGET_SHARE: f64 = 0.05;
/// The share of one CPU that the producers of a process may spend on
/// waking up; the window widens until their wake-ups fit in it.
pub const WAKEUP_CPU_SHARE: f64 = 0.2;
/// The widest window accepted: beyond it a "paced" run is a burst a second.
pub const MAX_WINDOW: Duration = Duration::from_millis(100);

/// The option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PacingWindow {
    /// Wide enough to bound the wake-ups a second, within the latency budget.
    #[default]
    Auto,
    /// This window (0: every message is a wake-up of its own).
    Fixed(Duration),
}

impl std::str::FromStr for PacingWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(PacingWindow::Auto),
            "0" => Ok(PacingWindow::Fixed(Duration::ZERO)),
            other => match parse_duration(other) {
                Ok(d) if d > MAX_WINDOW => {
                    Err(format!("{} is wider than the widest window, {}", fmt_duration(&d), fmt_duration(&MAX_WINDOW)))
                }
                Ok(d) => Ok(PacingWindow::Fixed(d)),
                Err(_) => Err(format!(
                    "{}: expected auto, or a duration like 100us or 1ms (0: a wake-up per message)",
                    crate::text::quote(s)
                )),
            },
        }
    }
}

impl fmt::Display for PacingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacingWindow::Auto => f.write_str("auto"),
            PacingWindow::Fixed(d) if d.is_zero() => f.write_str("0"),
            PacingWindow::Fixed(d) => f.write_str(&fmt_duration(d)),
        }
    }
}

impl serde::Serialize for PacingWindow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for PacingWindow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a window is chosen from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowInputs {
    /// The tightest latency ceiling of the run's gates, µs (`p99_us<2000`: 2000).
    pub latency_gate_us: Option<f64>,
    /// Producers this process paces (they share its wake-up budget).
    pub local_producers: u32,
    /// CPU one wake-up costs on this machine, ns (`clock::wakeup_cost_ns`).
    pub wakeup_cost_ns: u64,
}

impl PacingWindow {
    /// The window, ns, that a producer of this process releases its messages
    /// once per (a period longer than it is paced message by message anyway).
    pub fn window_ns(&self, inputs: WindowInputs) -> u64 {
        match self {
            PacingWindow::Fixed(d) => d.as_nanos() as u64,
            PacingWindow::Auto => auto_window_ns(inputs),
        }
    }
}

/// `auto`: wide enough that the process's producers together wake at most
/// [`WAKEUP_CPU_SHARE`] of a CPU's worth a second, never narrower than
/// [`DEFAULT_WINDOW_NS`], and never wider than [`BUDGET_SHARE`] of the
/// tightest latency gate. Without a gate there is no budget to spend, and
/// the window stays at the default.
fn auto_window_ns(i: WindowInputs) -> u64 {
    let Some(gate_us) = i.latency_gate_us.filter(|g| g.is_finite() && *g > 0.0) else {
        return DEFAULT_WINDOW_NS;
    };
    let budget_ns = (gate_us * 1e3 * BUDGET_SHARE) as u64;
    // Wake-ups a second the share affords, split among the producers: each
    // producer's window is the inverse of its part.
    let wakeups_per_s = WAKEUP_CPU_SHARE * 1e9 / i.wakeup_cost_ns.max(1) as f64;
    let needed_ns = (f64::from(i.local_producers.max(1)) * 1e9 / wakeups_per_s) as u64;
    needed_ns.max(DEFAULT_WINDOW_NS).min(budget_ns).min(MAX_WINDOW.as_nanos() as u64)
}

/// The window that actually applies to a producer whose messages come
/// `period_ns` apart at the fastest: none where the period is as long as the
/// window (each message is then a wake-up of its own anyway).
pub fn applied_window_ns(window_ns: u64, period_ns: f64) -> u64 {
    if period_ns < window_ns as f64 {
        window_ns
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(gate: Option<f64>, producers: u32) -> WindowInputs {
        WindowInputs { latency_gate_us: gate, local_producers: producers, wakeup_cost_ns: 25_000 }
    }

    #[test]
    fn forms_read_back() {
        for (text, w) in [
            ("auto", PacingWindow::Auto),
            ("0", PacingWindow::Fixed(Duration::ZERO)),
            ("100us", PacingWindow::Fixed(Duration::from_micros(100))),
            ("2ms", PacingWindow::Fixed(Duration::from_millis(2))),
        ] {
            let parsed: PacingWindow = text.parse().unwrap();
            assert_eq!(parsed, w);
            assert_eq!(parsed.to_string().parse::<PacingWindow>().unwrap(), w);
        }
        assert!("1s".parse::<PacingWindow>().unwrap_err().contains("widest"));
        assert!("soon".parse::<PacingWindow>().unwrap_err().contains("expected auto"));
    }

    #[test]
    fn auto_without_a_gate_keeps_the_default() {
        assert_eq!(PacingWindow::Auto.window_ns(inputs(None, 1)), DEFAULT_WINDOW_NS);
    }

    #[test]
    fn auto_widens_to_bound_wakeups_within_the_budget() {
        // 25 µs a wake-up, a fifth of a CPU: 8,000 wake-ups a second, so
        // one producer's window is 125 µs, capped by 5% of a 2 ms gate.
        assert_eq!(PacingWindow::Auto.window_ns(inputs(Some(2000.0), 1)), 100_000);
        assert_eq!(PacingWindow::Auto.window_ns(inputs(Some(5000.0), 1)), 125_000);
        // Four producers share the budget: each wakes a quarter as often.
        assert_eq!(PacingWindow::Auto.window_ns(inputs(Some(20_000.0), 4)), 500_000);
        // A tight gate leaves the window narrower than the default.
        assert_eq!(PacingWindow::Auto.window_ns(inputs(Some(100.0), 1)), 5_000);
        // A cheap wake-up needs no window wider than the default.
        let cheap = WindowInputs { wakeup_cost_ns: 1_000, ..inputs(Some(20_000.0), 1) };
        assert_eq!(PacingWindow::Auto.window_ns(cheap), DEFAULT_WINDOW_NS);
    }

    #[test]
    fn a_window_applies_only_where_messages_come_closer_than_it() {
        assert_eq!(applied_window_ns(100_000, 10_000.0), 100_000);
        assert_eq!(applied_window_ns(100_000, 1_000_000.0), 0);
        assert_eq!(applied_window_ns(0, 10.0), 0);
    }
}
