//! What a run shares with whoever watches it while it goes on (the live
//! view, the CPU meter, a signal handler, a fault schedule), and how it ended.

use crate::clock::Clock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Counters the live view and the drain logic read while the run goes on.
/// Updated once per write or read batch, not per message.
#[derive(Debug, Default)]
pub struct Live {
    /// Messages written, warmup included.
    pub sent: AtomicU64,
    /// First deliveries of measured messages.
    pub delivered: AtomicU64,
    /// Consumers currently subscribed.
    pub connected: AtomicU64,
    /// Messages missing so far (gaps seen by consumers, warmup included).
    pub lost_so_far: AtomicU64,
    /// Nanoseconds since the epoch at which the measured phase starts and ends (0 until known).
    pub measure_start_ns: AtomicU64,
    pub measure_end_ns: AtomicU64,
    /// What live export reads beyond these (counts by phase, latency buckets, CPU).
    pub meters: crate::meters::Meters,
    /// The run's clock, once started.
    clock: Mutex<Option<Clock>>,
    stop: AtomicBool,
    /// When the stop was first requested.
    stopped_at: Mutex<Option<tokio::time::Instant>>,
    stop_notify: Notify,
}

/// How long a run may take, from a stop request (a signal, or a failure), to
/// wind down: producers' last replies and the drain. Cleanup and restoring
/// settings get [`AFTER_WIND_DOWN`] each on top when it is spent, so that the
/// first Ctrl-C ends a run within a second even when Redis no longer answers.
pub const WIND_DOWN: Duration = Duration::from_millis(500);
/// The least time cleanup and restoring `--redis-config` each get after a stop.
pub const AFTER_WIND_DOWN: Duration = Duration::from_millis(100);

impl Live {
    /// Asks the run to stop producing, drain briefly and report (Ctrl-C).
    pub fn request_stop(&self) {
        if let Ok(mut at) = self.stopped_at.lock() {
            at.get_or_insert_with(tokio::time::Instant::now);
        }
        self.stop.store(true, Relaxed);
        self.stop_notify.notify_waiters();
    }

    /// When a requested stop must be wound down by ([`WIND_DOWN`] after the request).
    pub fn wind_down_by(&self) -> Option<tokio::time::Instant> {
        self.stopped_at.lock().ok()?.map(|at| at + WIND_DOWN)
    }

    /// `normal`, or less once a stop was requested: what is left of the wind-down.
    pub fn time_left(&self, normal: Duration) -> Duration {
        match self.wind_down_by() {
            Some(by) => normal.min(by.saturating_duration_since(tokio::time::Instant::now())),
            None => normal,
        }
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Resolves once a stop is requested.
    pub async fn stopped(&self) {
        loop {
            let notified = self.stop_notify.notified();
            if self.stop_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Sets the run's time base (once its epoch is known).
    pub fn set_clock(&self, clock: Clock) {
        *self.clock.lock().expect("clock lock") = Some(clock);
    }

    /// Nanoseconds since the run's epoch, if the run has started.
    pub fn now_ns(&self) -> Option<u64> {
        self.clock.lock().ok()?.map(|c| c.now_ns())
    }

    /// One reading of every live counter, for live export.
    pub fn snapshot(&self) -> crate::meters::Snapshot {
        self.meters.snapshot(self.lost_so_far.load(Relaxed), self.connected.load(Relaxed))
    }

    /// The measured phase (start, end) in ns since the epoch, once known.
    pub fn measured_phase(&self) -> Option<(u64, u64)> {
        match (self.measure_start_ns.load(Relaxed), self.measure_end_ns.load(Relaxed)) {
            (0, _) | (_, 0) => None,
            known => Some(known),
        }
    }
}

/// How a run ended; `summary.csv` writes it in lower case, with the reason
/// (what failed, or what interrupted it) in a column of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Ok,
    /// Stopped early on request (Ctrl-C, SIGTERM).
    Interrupted,
    /// Stopped early because something failed.
    Aborted,
    /// A checkpoint of a run still going on (`--checkpoint`): the seconds
    /// measured so far; the run's final result replaces it. Found after a
    /// run, it means eventbench was killed (or its host lost) before the end.
    Incomplete,
}

impl Status {
    /// `ok`, `interrupted`, `aborted` or `incomplete`, as `summary.csv` writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Interrupted => "interrupted",
            Status::Aborted => "aborted",
            Status::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// So that a row's status reads like the CSV it came from (`status == "ok"`).
impl PartialEq<&str> for Status {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// How a run ended and why: the status, and the reason when it is not `ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub status: Status,
    /// What failed or stopped the run; empty when it is `ok`.
    pub reason: String,
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::default()
    }

    pub fn aborted(reason: impl Into<String>) -> Outcome {
        Outcome { status: Status::Aborted, reason: reason.into() }
    }

    pub fn interrupted() -> Outcome {
        Outcome { status: Status::Interrupted, reason: "interrupted by signal".into() }
    }

    /// The worse of two outcomes (a merged run is as bad as its worst part).
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.status > self.status {
            other
        } else {
            self
        }
    }
}
