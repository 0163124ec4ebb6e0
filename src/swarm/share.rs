//! One process's part of a run that several processes share (`--workers`):
//! which producers and consumers it runs, the common time base, and the
//! hand-offs with the control plane that keep the processes in step.

use crate::clock::Clock;
use crate::pacer::Pacer;
use crate::scenario::Scenario;
use std::ops::Range;
use tokio::sync::oneshot;

/// This process's share of a run, and its links to the other processes.
#[derive(Debug)]
pub struct Share {
    /// Global ids of the producers this process runs.
    pub producers: Range<u32>,
    /// Global ids of the consumers this process runs.
    pub consumers: Range<u32>,
    /// The common time base: every process's epoch is the same wall-clock
    /// instant, each corrected by its own offset to Redis's clock.
    pub clock: Clock,
    /// Told once every local producer and consumer is connected.
    pub ready: oneshot::Sender<()>,
    /// The common start of the warmup, ns since the epoch.
    pub start: oneshot::Receiver<u64>,
    /// Told the local producers' measured messages per channel once they are done.
    pub measured: oneshot::Sender<Vec<u64>>,
    /// All processes' measured messages per channel, once every one has told its own.
    pub all_measured: oneshot::Receiver<Vec<u64>>,
    /// Streams: whether this process samples the backlog (one process of a run does, for all).
    pub side_tasks: bool,
}

/// How much later than its own clock says a worker reads another's schedule:
/// well above the clocks' uncertainty between processes (tens to hundreds of µs).
pub const POSITION_SLACK_NS: u64 = 1_000_000;

/// Where the producers of another process are in their sequences at `now_ns`,
/// per channel, as far as their schedule says: the messages due by then
/// (the producer sends each when it is due, so this is right to within its
/// send lag). Unknown for an unlimited rate: 0.
pub fn scheduled_positions(s: &Scenario, producer: u32, warmup_start_ns: u64, end_ns: u64, now_ns: u64) -> Vec<u64> {
    let channels = s.channels as u64;
    if s.rate <= 0.0 {
        return vec![0; channels as usize];
    }
    let due = Pacer::new(warmup_start_ns, end_ns, s.rate_per_producer()).due_at(now_ns, u64::MAX);
    // Message i goes to channel (i + producer) % channels.
    (0..channels)
        .map(|c| {
            let first = (c + channels - producer as u64 % channels) % channels;
            if due > first {
                (due - first - 1) / channels + 1
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_the_schedule_channel_by_channel() {
        // 2 producers at 1,000/s in all: each sends every 2 ms, round-robin over 3 channels.
        let s = Scenario { producers: 2, channels: 3, rate: 1000.0, ..Scenario::default() };
        let at = |producer, now_ns| scheduled_positions(&s, producer, 1_000_000, 1_000_000_000, now_ns);
        assert_eq!(at(0, 0), [0, 0, 0], "before the start");
        assert_eq!(at(0, 1_000_000), [1, 0, 0], "message 0 is due at the start, on channel 0");
        assert_eq!(at(1, 1_000_000), [0, 1, 0], "producer 1 starts on channel 1");
        assert_eq!(at(0, 1_000_000 + 8_000_000), [2, 2, 1], "5 messages due");
        assert_eq!(at(1, 1_000_000 + 8_000_000), [1, 2, 2]);
        assert_eq!(at(0, u64::MAX / 2), [167, 167, 166], "500 messages in the whole schedule, no more");
        let unlimited = Scenario { rate: 0.0, ..s };
        assert_eq!(scheduled_positions(&unlimited, 0, 0, 1_000, 500), [0, 0, 0]);
    }
}
