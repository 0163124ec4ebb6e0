//! The one share of a run in this process: the swarm, with the steps the
//! shares of a `--workers` run take together (connected, start, producers
//! done) answered in-process.

use super::meter;
use super::Shares;
use crate::clock::Clock;
use crate::drivers::Driver;
use crate::live::Live;
use crate::scenario::Scenario;
use crate::swarm::{self, Checkpoint, Share};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// Slack between "everyone is connected" and the first scheduled message.
const START_SLACK_NS: u64 = 20_000_000;

/// Runs the whole swarm as one share.
/// With `checkpoints`, copies of what it measured so far go there as it runs.
pub async fn run(
    scenario: &Scenario,
    driver: Arc<dyn Driver>,
    live: Arc<Live>,
    checkpoints: Option<(Duration, mpsc::UnboundedSender<Checkpoint>)>,
) -> Shares {
    let clock = Clock::start();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (start_tx, start_rx) = oneshot::channel();
    let (measured_tx, measured_rx) = oneshot::channel();
    let (all_tx, all_rx) = oneshot::channel();
    let share = Share {
        producers: 0..scenario.producers,
        consumers: 0..scenario.consumers,
        clock,
        ready: ready_tx,
        start: start_rx,
        measured: measured_tx,
        all_measured: all_rx,
        side_tasks: true,
        checkpoints,
    };
    // The coordinator's side, in-process: start as soon as everyone is
    // connected; the producers' count is everyone's.
    let steps = async move {
        if ready_rx.await.is_ok() {
            let _ = start_tx.send(clock.now_ns() + START_SLACK_NS);
        }
        if let Ok(measured) = measured_rx.await {
            let _ = all_tx.send(measured);
        }
    };
    let cpu = tokio::spawn(meter::cpu_over_measured_phase(live.clone()));
    let (out, ()) = tokio::join!(swarm::run_share(scenario, driver, live.clone(), share), steps);
    let cpu = meter::reading(cpu).await;
    // Both clocks read together: the wall-clock time of the run's epoch, for
    // the HDR log's StartTime and the report's date.
    let epoch = live.now_ns().and_then(|ns| SystemTime::now().checked_sub(Duration::from_nanos(ns)));
    Shares { outputs: vec![out], cpu, workers: Vec::new(), clock_uncertainty_ns: 0, epoch }
}
