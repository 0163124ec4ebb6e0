//! One time base for the whole run.
//!
//! Every timestamp eventbench writes into a message or a report is nanoseconds
//! since the run's epoch. Using tokio's `Instant` keeps the pacer and phase
//! logic testable with tokio's paused clock.

use tokio::time::{Duration, Instant};

/// The run's epoch; cheap to copy into every task.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// Starts the run's time base now.
    pub fn start() -> Clock {
        Clock { epoch: Instant::now() }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The instant that lies `ns` nanoseconds after the epoch.
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Sleeps until `ns` nanoseconds after the epoch (returns at once if that has passed).
    pub async fn sleep_until_ns(&self, ns: u64) {
        tokio::time::sleep_until(self.instant_at(ns)).await
    }
}
