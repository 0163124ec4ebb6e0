//! One run, start to end, the same whether it runs in this process or over
//! worker processes:
//!
//! 1. **set up** once: validate (the scenario, and what the transport and
//!    the mode can honour), reach the target, discover a cluster, build the
//!    driver, apply `--redis-config` on every master, find the fault's node;
//! 2. **shares**: one in this process ([`local`]), or one per worker
//!    process ([`workers`]), each running its part of the swarm through
//!    warmup, measure and drain, while the faults that act on servers run here;
//! 3. **merge** the shares' outputs exactly, clean up (the run's streams,
//!    the settings), and build the results once from what was measured.

pub mod local;
pub mod meter;
pub mod setup;
pub mod workers;

use crate::chaos::{self, NodeOutage};
use crate::live::{self, Live, Outcome};
use crate::results::summarize::{HarnessCpu, RunFacts};
use crate::results::RunReport;
use crate::rows::WorkerRow;
use crate::scenario::Scenario;
use crate::swarm::SwarmOutput;
use crate::target::{ConfigChange, Target, TargetError};
use crate::telemetry::{self, Latest, Telemetry};
use anyhow::Result;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use workers::Coordination;

/// Where the shares of a run go.
#[derive(Debug, Clone)]
pub enum Mode {
    /// One share, in this process.
    Local,
    /// One share per worker process (`--workers N`); this process coordinates.
    Workers(Coordination),
}

/// What the shares of a run measured, before merging.
pub struct Shares {
    pub outputs: Vec<SwarmOutput>,
    /// The busiest share's CPU use.
    pub cpu: HarnessCpu,
    /// One row per worker process (none for a run in one process).
    pub workers: Vec<WorkerRow>,
    /// The largest uncertainty of a latency measured across two processes' clocks, ns.
    pub clock_uncertainty_ns: u64,
    /// The wall-clock time of the run's epoch.
    pub epoch: Option<SystemTime>,
}

/// A finished run: its results, and its workers.
pub struct Finished {
    pub report: RunReport,
    pub workers: Vec<WorkerRow>,
}

/// Runs a scenario (on its own target) and returns what it measured.
pub async fn run(scenario: Scenario) -> Result<RunReport> {
    run_with(scenario, Arc::new(Live::default())).await
}

/// Runs a scenario; `live` lets a caller watch counters and request a stop.
pub async fn run_with(scenario: Scenario, live: Arc<Live>) -> Result<RunReport> {
    check(&scenario, &Mode::Local)?;
    let target = target_for(&scenario)?;
    run_on(scenario, live, &target).await
}

/// Runs a scenario in this process against a Redis the caller holds (so
/// that several runs, as in `compare`, share one private server); the
/// scenario's own `url` is not used.
pub async fn run_on(scenario: Scenario, live: Arc<Live>, target: &Target) -> Result<RunReport> {
    Ok(execute(scenario, live, target, &Mode::Local, |_| {}).await?.report)
}

/// Everything that can be checked before anything runs: the scenario's
/// values, what its transport can honour, and the split of a `--workers` run.
pub fn check(scenario: &Scenario, mode: &Mode) -> Result<(), crate::scenario::ScenarioError> {
    scenario.validate()?;
    crate::drivers::check(scenario, matches!(mode, Mode::Workers(_)))?;
    if let Mode::Workers(opts) = mode {
        opts.check()?;
    }
    if crate::clock::runtime_paused() {
        check_virtual(scenario, mode)?;
    }
    Ok(())
}

/// What a run on virtual time (a caller's paused tokio clock, see `clock`)
/// can be: one whose every wait is the run's own timer. A server, another
/// process or an unlimited rate (which never waits, so time never moves and
/// its end never comes) cannot.
fn check_virtual(scenario: &Scenario, mode: &Mode) -> Result<(), crate::scenario::ScenarioError> {
    let invalid = |key, message: &str| {
        let message = format!("{message}: a run on a paused clock (virtual time) runs on no server, in one process");
        Err(crate::scenario::ScenarioError::Invalid { key, message })
    };
    if crate::drivers::registration(scenario.transport).traits.server {
        return invalid("transport", &format!("{} needs a server", scenario.transport));
    }
    if matches!(mode, Mode::Workers(_)) {
        return invalid("workers", "worker processes run on the machine's clock");
    }
    if scenario.rate.is_unlimited() {
        return invalid("rate", "0 (as fast as possible) never waits, so virtual time would never reach its end");
    }
    Ok(())
}

/// The scenario's Redis, for a run in one process.
pub fn target_for(scenario: &Scenario) -> Result<Target> {
    target_until(scenario, &Mode::Local, &|| false)
}

/// The scenario's Redis (none for a transport that runs on no server), for
/// a run in `mode`, given up when `stop` says so (a signal while private
/// servers start). The open-file limit is raised first to what this process
/// needs ([`process_files`]), so that a private redis-server inherits it too
/// (thousands of consumers need it on both sides).
pub fn target_until(scenario: &Scenario, mode: &Mode, stop: crate::target::Stop) -> Result<Target> {
    // A run this machine cannot open the connections of is bad input, before anything starts.
    crate::sys::raise_fd_limit(process_files(scenario, mode)).map_err(|e| crate::scenario::ScenarioError::Invalid {
        key: if scenario.consumers >= scenario.producers { "consumers" } else { "producers" },
        message: e.to_string(),
    })?;
    match crate::drivers::registration(scenario.transport).traits.server {
        true => Ok(Target::for_scenario_until(scenario, connections(scenario), stop)?),
        false => Ok(Target::none()),
    }
}

/// The one open-file budget: what a process running `producers` and
/// `consumers` of the scenario needs, from its transport's declared files
/// per producer and per consumer, with some to spare. Every check (a run in
/// one process, the coordinator, each worker's share) asks this.
pub fn open_files(scenario: &Scenario, producers: u32, consumers: u32) -> u64 {
    crate::drivers::registration(scenario.transport).traits.open_files(producers, consumers)
}

/// Connections of the whole swarm (open files of a run in one process; a
/// private server takes as many).
pub fn connections(scenario: &Scenario) -> u64 {
    open_files(scenario, scenario.producers, scenario.consumers)
}

/// What the process that sets the run up needs: the whole swarm in one
/// process; under `--workers` only its own side connections, unless it
/// starts a private server (which inherits its limit and takes every
/// connection of the swarm). Each worker checks its own share.
pub fn process_files(scenario: &Scenario, mode: &Mode) -> u64 {
    let private_server = scenario.url.is_none() && crate::drivers::registration(scenario.transport).traits.server;
    match mode {
        Mode::Workers(_) if !private_server => open_files(scenario, 0, 0),
        _ => connections(scenario),
    }
}

/// How far behind the moment it is taken a checkpoint cuts the measured
/// phase: the messages of the seconds before have had this long to arrive.
pub const CHECKPOINT_MARGIN: Duration = Duration::from_secs(1);

/// The longest the end of a run waits for its cleanup (the run's streams
/// unlinked): a node that stopped answering without closing its connections
/// (SIGSTOP, a cut network) held it for the whole `--connect-timeout`.
const CLEANUP: Duration = Duration::from_secs(1);

/// Runs a scenario on `target` in `mode`. `say` gets the one line a user
/// needs when workers on other hosts are to join.
pub async fn execute(
    scenario: Scenario,
    live: Arc<Live>,
    target: &Target,
    mode: &Mode,
    say: impl Fn(&str),
) -> Result<Finished> {
    execute_with(scenario, live, target, mode, say, Watch::default()).await
}

/// What a caller watches while a run goes on.
#[derive(Default)]
pub struct Watch<'a> {
    /// The server's latest sampled second of every node, for a reader that polls it.
    pub latest: Arc<Latest>,
    /// Gets each checkpoint (`--checkpoint`) as it is taken: a whole result,
    /// status `incomplete`, of the seconds measured so far.
    pub on_checkpoint: Option<&'a mut dyn FnMut(RunReport)>,
}

/// [`execute`], watched: see [`Watch`].
pub async fn execute_with(
    scenario: Scenario,
    live: Arc<Live>,
    target: &Target,
    mode: &Mode,
    say: impl Fn(&str),
    watch: Watch<'_>,
) -> Result<Finished> {
    let Watch { latest, on_checkpoint } = watch;
    check(&scenario, mode)?;
    let run_id = run_id(&scenario.name);
    live.meters.set_run_id(&run_id);
    let nonce = run_nonce();
    // A stop while connecting (a Redis that accepts and never answers) ends the run before it starts.
    let setup = tokio::select! {
        setup = setup::prepare(&scenario, target.url(), &nonce) => setup?,
        () = live.stopped() => return Err(workers::WorkerError::Interrupted.into()),
    };
    let kill = match (&scenario.kill_node, &setup.topology) {
        (Some(k), Some(t)) => {
            let port = t.nodes.get(k.node as usize).map(|n| n.port).filter(|&p| target.has_private_port(p));
            let port = port.ok_or(TargetError::NoSuchNode { node: k.node, nodes: t.nodes.len() })?;
            Some((*k, port))
        }
        (Some(k), None) => return Err(TargetError::NoSuchNode { node: k.node, nodes: 0 }.into()),
        _ => None,
    };
    // Every node of a cluster gets the settings: each serves its own clients.
    let (config, applied) = ConfigChange::apply(&setup.nodes, target.url(), &scenario.redis_config).await;
    if let Err(e) = applied {
        // What was changed before the refusal goes back at once.
        let _ = restore_config(config, target, scenario.connect_timeout).await;
        return Err(e.into());
    }
    // Which server runs is asked once, before the run; the samples come beside the shares.
    let identity = match (scenario.server_telemetry, setup.clients.first()) {
        (true, Some(client)) => tokio::select! {
            identity = telemetry::identify(client, scenario.connect_timeout) => identity,
            () = live.stopped() => telemetry::Identity::default(),
        },
        _ => telemetry::Identity::default(),
    };
    let (shares_done, done) = tokio::sync::watch::channel(false);
    let sampling = async {
        if !scenario.server_telemetry {
            return Vec::new();
        }
        let traits = crate::drivers::registration(scenario.transport).traits;
        let probes = setup.clients.iter().enumerate().map(|(node, client)| telemetry::Probe {
            node: node as u32,
            client: client.clone(),
            streams: match traits.probe_keys {
                true => {
                    let on_node = setup.names.iter().zip(&setup.node_of).filter(|(_, &n)| n == node);
                    on_node.map(|(name, _)| name.clone()).collect()
                }
                false => Vec::new(),
            },
        });
        telemetry::watch(probes.collect(), traits.probe_pubsub, live.clone(), done, latest).await
    };
    let every = scenario.checkpoint_every().filter(|_| on_checkpoint.is_some());
    let (checkpoint_tx, checkpoint_rx) = tokio::sync::mpsc::unbounded_channel();
    let checkpoint_to = every.map(|every| (every, checkpoint_tx));
    let processes = match mode {
        Mode::Local => 1,
        Mode::Workers(opts) => opts.workers,
    };
    let counts = (setup.nodes.len() as u32, processes);
    let layout = setup.topology.is_some().then_some((&setup.names[..], &setup.node_of[..]));
    let checkpoints =
        report_checkpoints(&scenario, &run_id, (counts, layout), &identity, &live, checkpoint_rx, on_checkpoint);
    let shares = async {
        let shares = match mode {
            Mode::Local => Ok(local::run(&scenario, setup.driver.clone(), live.clone(), checkpoint_to).await),
            Mode::Workers(opts) => {
                let run = (run_id.as_str(), nonce.as_str());
                workers::coordinate(&scenario, opts, &setup, &live, target, run, &say, checkpoint_to).await
            }
        };
        if shares.is_err() {
            // No run to fault: a fault still waiting for the measured phase gives up.
            live.request_stop();
        }
        let _ = shares_done.send(true);
        shares
    };
    let fault = async {
        match kill {
            Some((k, port)) => chaos::kill_node(target, &live, k, port, scenario.drain).await,
            None => Ok(None),
        }
    };
    // The machine's own floor over the measured phase, beside the shares (`probe`).
    let probe = crate::probe::Probe::start(live.clone());
    let (shares, node_outage, server_rows, ()) = tokio::join!(shares, fault, sampling, checkpoints);
    let machine = probe.finish();
    // A stopped or stalled Redis must not hold the end of the run: cleanup is
    // best effort, within what is left of the wind-down after a stop.
    let cleanup_limit = live.time_left(scenario.connect_timeout.min(CLEANUP)).max(live::AFTER_WIND_DOWN);
    let _ = tokio::time::timeout(cleanup_limit, setup.driver.cleanup()).await;
    let restore_limit = live.time_left(scenario.connect_timeout).max(live::AFTER_WIND_DOWN);
    let restored = restore_config(config, target, restore_limit).await;
    let shares = shares?;
    let mut out = workers::merge::merge(shares.outputs)?;
    let node_outage: Option<NodeOutage> = match node_outage {
        Ok(o) => o,
        // The run's results stand; the run did not do what it was asked to.
        Err(e) => {
            out.outcome = out.outcome.worst(Outcome::aborted(format!("--kill-node: {e}")));
            None
        }
    };
    if let Err(e) = restored {
        // The results stand, but the user's Redis was left changed: they must know.
        out.outcome = out.outcome.worst(Outcome::aborted(format!("--redis-config not restored: {e}")));
    }
    let mut report = crate::results::summarize::summarize(RunFacts {
        run_id,
        scenario,
        out,
        nodes: setup.nodes.len() as u32,
        workers: shares.workers.len().max(1) as u32,
        cpu: shares.cpu,
        clock_uncertainty_ns: shares.clock_uncertainty_ns,
        node_outage,
        epoch: shares.epoch,
        telemetry: Telemetry { identity, rows: server_rows },
        cut_ns: None,
        machine,
    });
    // The clocks' largest measured offset (each worker's epoch is corrected by its own).
    report.summary.clock_offset_max_us = shares.workers.iter().map(|w| w.clock_offset_us.abs()).fold(0.0, f64::max);
    if setup.topology.is_some() {
        crate::results::summarize::with_cluster_layout(&mut report.channels, &setup.names, &setup.node_of);
    }
    Ok(Finished { report, workers: shares.workers })
}

/// On a cluster, each channel's name and the master that owns it (`channels.csv`'s slot and node).
type ClusterLayout<'a> = Option<(&'a [String], &'a [usize])>;

/// Builds a result of each checkpoint as it comes (off the async threads: a
/// long run's seconds take a while) and hands it to `sink`.
async fn report_checkpoints(
    scenario: &Scenario,
    run_id: &str,
    ((nodes, workers), layout): ((u32, u32), ClusterLayout<'_>),
    identity: &telemetry::Identity,
    live: &Live,
    mut checkpoints: tokio::sync::mpsc::UnboundedReceiver<crate::swarm::Checkpoint>,
    mut sink: Option<&mut dyn FnMut(RunReport)>,
) {
    while let Some(crate::swarm::Checkpoint { out, taken_ns, .. }) = checkpoints.recv().await {
        let Some(sink) = sink.as_mut() else { continue };
        let epoch = live.now_ns().and_then(|ns| SystemTime::now().checked_sub(Duration::from_nanos(ns)));
        let facts = RunFacts {
            run_id: run_id.to_string(),
            scenario: scenario.clone(),
            out,
            nodes,
            workers,
            // The CPU meter reads the whole measured phase at its end.
            cpu: HarnessCpu::default(),
            clock_uncertainty_ns: 0,
            node_outage: None,
            epoch,
            // Which server runs; its per-second rows come with the final result.
            telemetry: Telemetry { identity: identity.clone(), rows: Vec::new() },
            cut_ns: Some(taken_ns.saturating_sub(CHECKPOINT_MARGIN.as_nanos() as u64)),
            // The probe reads the whole measured phase at its end.
            machine: Default::default(),
        };
        match tokio::task::spawn_blocking(move || crate::results::summarize::summarize(facts)).await {
            Ok(mut report) => {
                if let Some((names, node_of)) = layout {
                    crate::results::summarize::with_cluster_layout(&mut report.channels, names, node_of);
                }
                sink(report)
            }
            Err(_) => continue,
        }
    }
}

/// Puts a user's Redis back as it was (within `limit`); a private server is
/// about to stop anyway.
async fn restore_config(config: ConfigChange, target: &Target, limit: Duration) -> Result<(), String> {
    if target.is_private() || config.is_empty() {
        config.forget();
        return Ok(());
    }
    config.restore(limit).await
}

/// `NAME-20261126T174000Z-3f9a1c`: the name, when, and a random suffix, so
/// that two runs started in the same second (two coordinators on one
/// control Redis) never share an id.
pub fn run_id(name: &str) -> String {
    format!("{name}-{}-{:06x}", utc_stamp(), crate::sys::random_u32() & 0xff_ffff)
}

/// `20261126T174000Z`: sortable and safe in a directory name.
pub fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "")
}

/// A short token that keeps the channels of concurrent runs apart.
pub(crate) fn run_nonce() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{:08x}", x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_budget_is_the_drivers_and_counted_per_process() {
        // By name, as a user gives it: the pipeline never names a transport.
        let s = |name: &str| Scenario {
            transport: clap::ValueEnum::from_str(name, false).unwrap(),
            producers: 2,
            consumers: 400,
            ..Scenario::default()
        };
        let (pubsub, streams) = (s("pubsub"), s("streams"));
        assert_eq!(connections(&pubsub), 2 * 2 + 400 + 64);
        assert_eq!(connections(&streams), 2 * 2 + 400 * 2 + 64, "a Streams consumer takes two connections");
        // A worker's share of 4: one producer of two, 100 consumers.
        assert_eq!(open_files(&streams, 1, 100), 2 + 200 + 64);
        let workers = Mode::Workers(workers::Coordination { workers: 4, spawn: 4, control: None, join_timeout: None });
        let on_url = Scenario { url: Some("redis://127.0.0.1:1/".into()), ..pubsub.clone() };
        assert_eq!(process_files(&on_url, &workers), 64, "the coordinator of a user's Redis holds no swarm connection");
        assert_eq!(process_files(&on_url, &Mode::Local), 468, "one process holds them all");
        assert_eq!(process_files(&pubsub, &workers), 468, "a private server it starts takes every connection");
    }
}
