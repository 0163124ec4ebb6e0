//! One share of a run: which producers and consumers this process runs, the
//! common time base, and the hand-offs that keep the shares in step. A run in
//! one process is one share that holds everything; `--workers N` makes N.

use super::Checkpoint;
use crate::clock::Clock;
use std::ops::Range;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

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
    /// Whether this share runs the driver's side tasks (the backlog sampler,
    /// the replay group): one share of a run does, for all.
    pub side_tasks: bool,
    /// With `--checkpoint`: how often, and where the copies of what this
    /// share measured so far go (the pipeline, or a worker's control keys).
    pub checkpoints: Option<(Duration, mpsc::UnboundedSender<Checkpoint>)>,
}
