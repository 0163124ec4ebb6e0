//! Several processes, one run: `eventbench run --workers N` (the coordinator)
//! and `eventbench worker` (one share of the swarm).
//!
//! The coordinator runs no share itself: it writes the plan into the control
//! key space ([`control`]), starts its local workers as child processes of
//! its own binary, waits until every worker has joined and connected its
//! swarm, picks a common start a second ahead, and merges what the workers
//! publish ([`merge`]) into one report. Worker `i` of `N` runs a contiguous
//! range of the producers (from the front) and of the consumers (from the
//! back), by their global ids, so that with two workers each one's consumers
//! hear the other's producers.
//!
//! Clocks: every worker measures its wall clock's offset to the control
//! Redis's `TIME` and sets its epoch to the plan's instant on that clock.
//! Latency between a producer and a consumer in different workers is then
//! right to within the sum of their two offsets' uncertainties; the summary
//! reports the largest such sum and counts the latencies below it.

pub mod control;
pub mod lost;
pub mod merge;

use super::setup::{self, Setup};
use super::{meter, Shares};
use crate::connect::{redact_url, ConnError, Endpoint, RedisUrl};
use crate::live::Live;
use crate::results::summarize::HarnessCpu;
use crate::rows::WorkerRow;
use crate::scenario::{Checkpoint as CheckpointEvery, Password, ScenarioError};
use crate::swarm::{Checkpoint, Share, SwarmOutput};
use crate::target::{Target, TargetError};
use crate::Scenario;
use anyhow::{Context, Result};
use control::{Control, Plan, Registration, WorkerCheckpoint, WorkerResult};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Round trips of `TIME` each worker takes to measure its clock's offset.
const OFFSET_ROUNDS: u32 = 20;
/// Between the moment every worker is connected and the common start.
const START_LEAD: Duration = Duration::from_secs(1);
/// How far in the past the plan's epoch lies, so that it is in the past for every worker.
const EPOCH_BACK: Duration = Duration::from_secs(10);

/// What went wrong between the processes of a run.
#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("worker version {worker} does not match the coordinator's {coordinator}; run the same eventbench build on every host")]
    Version { worker: String, coordinator: String },
    #[error("no run {} on the control Redis {url} (not started yet, or over)", run.as_deref().unwrap_or("waiting for workers"))]
    NoRun { run: Option<String>, url: String },
    #[error("several runs wait for workers on {url}: {}; choose one with --run", runs.join(", "))]
    Several { runs: Vec<String>, url: String },
    #[error("run {run} already has its {workers} workers")]
    Full { run: String, workers: u32 },
    #[error("run {run} has {plan} workers, not {expected} (EVENTBENCH_WORKERS, --workers of `eventbench worker`)")]
    Count { run: String, plan: u32, expected: u32 },
    #[error("share {index} of run {run} is taken by another worker (JOB_COMPLETION_INDEX, --index)")]
    Taken { run: String, index: u32 },
    #[error("{0}")]
    Missing(String),
    #[error("worker {who} failed: {message}")]
    Failed { who: String, message: String },
    #[error("interrupted before the run started; nothing was measured")]
    Interrupted,
    /// Not the error's source too: a chain printed with `{:#}` would say it twice ("timed out: timed out").
    #[error("the control Redis {}", control_failure(.0, control::answer_limit()))]
    Control(redis::RedisError),
}

impl From<redis::RedisError> for WorkerError {
    fn from(e: redis::RedisError) -> WorkerError {
        WorkerError::Control(e)
    }
}

/// What the control Redis did, in words, once: a timeout says how long its
/// answer was waited for (`waited`), anything else what it said.
fn control_failure(e: &redis::RedisError, waited: Duration) -> String {
    if e.is_timeout() {
        format!(
            "did not answer within {} (stopped, overloaded, or the network cut)",
            crate::clock::fmt_duration(&waited)
        )
    } else if e.is_connection_refusal() {
        format!("refused the connection ({e})")
    } else if e.is_connection_dropped() {
        format!("closed the connection ({e})")
    } else {
        format!("failed: {e}")
    }
}

impl WorkerError {
    /// Whether the user has to fix the command (exit code 2) rather than the run failing.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            WorkerError::Version { .. }
                | WorkerError::NoRun { .. }
                | WorkerError::Several { .. }
                | WorkerError::Full { .. }
                | WorkerError::Count { .. }
                | WorkerError::Taken { .. }
        )
    }
}

/// `--workers`, `--spawn`, `--control` of `eventbench run`.
#[derive(Debug, Clone, Default)]
pub struct Coordination {
    /// Worker processes in all.
    pub workers: u32,
    /// Of those, how many this process starts itself (the rest join with `eventbench worker`).
    pub spawn: u32,
    /// The Redis the processes meet on (default: the target; on a cluster,
    /// the master that owns the run's control keys).
    pub control: Option<String>,
    /// Longest wait for every worker to join (`--join-timeout`); `None`: [`Coordination::join_wait`]'s default.
    pub join_timeout: Option<Duration>,
}

/// Worker processes a run may have.
pub const MAX_WORKERS: u32 = 256;

impl Coordination {
    /// How long the coordinator waits for every worker to join: `--join-timeout`, else
    /// 30 s when it starts them all itself, 10 minutes when others are to start some.
    pub fn join_wait(&self) -> Duration {
        let default = if self.spawn < self.workers { Duration::from_secs(600) } else { Duration::from_secs(30) };
        self.join_timeout.unwrap_or(default)
    }

    /// Refuses a split that cannot be made.
    pub fn check(&self) -> Result<(), ScenarioError> {
        let invalid = |message: &str| ScenarioError::Invalid { key: "workers", message: message.into() };
        if self.workers == 0 {
            return Err(invalid("--workers must be at least 1"));
        }
        if self.workers > MAX_WORKERS {
            return Err(ScenarioError::Invalid {
                key: "workers",
                message: format!("at most {MAX_WORKERS} worker processes (asked for {})", self.workers),
            });
        }
        if self.spawn > self.workers {
            return Err(invalid("--spawn cannot start more workers than --workers"));
        }
        Ok(())
    }
}

/// The producers and the consumers worker `index` of `workers` runs.
pub fn share_of(index: u32, workers: u32, producers: u32, consumers: u32) -> (Range<u32>, Range<u32>) {
    let part = |i: u32, total: u32| {
        let at = |i: u32| (i as u64 * total as u64 / workers as u64) as u32;
        at(i)..at(i + 1)
    };
    (part(index, producers), part(workers - 1 - index, consumers))
}

/// `0-3`, `5`, or empty.
fn ids(r: &Range<u32>) -> String {
    match r.len() {
        0 => String::new(),
        1 => r.start.to_string(),
        _ => format!("{}-{}", r.start, r.end - 1),
    }
}

/// The control Redis's address and credentials; a masked or missing password is `password`.
fn control_url(url: &str, password: Option<&str>) -> Result<RedisUrl, TargetError> {
    let mut parsed = crate::connect::parse_url(url)
        .map_err(|message| TargetError::Unreachable { url: crate::connect::redact_url(url), message })?;
    if parsed.password.as_deref().is_none_or(|p| p == crate::connect::MASK) {
        parsed.password = password.map(str::to_owned);
    }
    Ok(parsed)
}

async fn connect_control(client: &redis::Client, url: &str, run: &str, timeout: Duration) -> Result<Control> {
    Control::connect(client, run, timeout, Duration::from_secs(3600)).await.map_err(|e| {
        let message = format!("the control Redis {}", control_failure(&e, timeout));
        TargetError::Unreachable { url: crate::connect::redact_url(url), message }.into()
    })
}

/// This host's wall clock against the control Redis's: `rounds` round trips
/// of `TIME` on a plain connection of its own (no multiplexer in between),
/// keeping the tightest; on a busy machine, up to ten times as many (within
/// a second) while the tightest is over a millisecond. Redis read its clock somewhere within that round
/// trip, so the offset is taken at its middle and is right to within half of
/// it, plus `TIME`'s resolution (1 µs). Returns (offset, uncertainty) in ns.
async fn measure_offset(endpoint: &Endpoint, rounds: u32) -> Result<(i64, u64), ConnError> {
    let mut conn = endpoint.connect().await?;
    let mut best: Option<(u64, i64)> = None;
    let started = Instant::now();
    let mut round = 0;
    while round < rounds.max(1)
        || (best.is_some_and(|(rtt, _)| rtt > 1_000_000)
            && round < rounds * 10
            && started.elapsed() < Duration::from_secs(1))
    {
        round += 1;
        let before = crate::clock::realtime_ns();
        let reply = conn.query(&[b"TIME"], "TIME").await?;
        let after = crate::clock::realtime_ns();
        let number = |i: usize| reply.get(i).and_then(|t| t.parse::<u64>().ok());
        let (Some(secs), Some(micros)) = (number(0), number(1)) else {
            return Err(ConnError::Refused { what: "TIME", message: format!("unexpected reply {reply:?}") });
        };
        let rtt = after.saturating_sub(before);
        let offset = (secs * 1_000_000_000 + micros * 1_000) as i64 - (before + rtt / 2) as i64;
        if best.is_none_or(|(b, _)| rtt < b) {
            best = Some((rtt, offset));
        }
    }
    let (rtt, offset) = best.expect("at least one round");
    Ok((offset, rtt / 2 + 1_000))
}

/// The run a worker started without `--run` joins: the only one waiting for
/// workers, within `wait` if there is none yet.
async fn find_run(client: &redis::Client, control: &str, wait: Duration) -> Result<String> {
    let url = crate::connect::redact_url(control);
    let deadline = Instant::now() + wait;
    loop {
        let waited = Duration::from_secs(5);
        let mut runs = control::waiting_runs(client, waited).await.map_err(|e| TargetError::Unreachable {
            url: url.clone(),
            message: format!("the control Redis {}", control_failure(&e, waited)),
        })?;
        match runs.len() {
            1 => return Ok(runs.remove(0)),
            0 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            0 => return Err(WorkerError::NoRun { run: None, url }.into()),
            _ => return Err(WorkerError::Several { runs, url }.into()),
        }
    }
}

/// How a worker joins: what Kubernetes (or the user) tells it.
#[derive(Debug, Clone, Default)]
pub struct Join {
    /// The run (`--run`); default: the only one waiting for workers.
    pub run: Option<String>,
    /// The share to take (`JOB_COMPLETION_INDEX`); default: the next free one.
    pub index: Option<u32>,
    /// The number of workers the run must have (`EVENTBENCH_WORKERS`).
    pub workers: Option<u32>,
    /// How long to wait for a plan that is not there yet.
    pub plan_wait: Duration,
}

/// `eventbench worker`: joins run `join.run` (or the only one waiting for workers)
/// on the control Redis at `control`, runs its share and publishes what it
/// measured. A failure after joining is published too, so the coordinator can name it.
pub async fn work(
    control: &str,
    join: &Join,
    (password, control_password): (Option<String>, Option<String>),
    live: Arc<Live>,
) -> Result<()> {
    let address = control_url(control, control_password.as_deref().or(password.as_deref()))?;
    let client = setup::redis_client(&address, &Scenario::default(), control)?;
    let run = match &join.run {
        Some(run) => run.to_string(),
        None => find_run(&client, control, join.plan_wait).await?,
    };
    let run = run.as_str();
    let mut ctl = connect_control(&client, control, run, Duration::from_secs(5)).await?;
    let deadline = Instant::now() + join.plan_wait;
    let plan = loop {
        if let Some(plan) = ctl.plan().await.map_err(WorkerError::from)? {
            break plan;
        }
        if Instant::now() > deadline {
            let url = crate::connect::redact_url(control);
            return Err(WorkerError::NoRun { run: Some(run.into()), url }.into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if plan.version != control::version() {
        return Err(WorkerError::Version { worker: control::version(), coordinator: plan.version }.into());
    }
    if let Some(expected) = join.workers.filter(|&n| n != plan.workers) {
        return Err(WorkerError::Count { run: run.into(), plan: plan.workers, expected }.into());
    }
    let mut scenario = Scenario::from_toml(&plan.scenario).map_err(|e| WorkerError::Failed {
        who: "plan".into(),
        message: format!("the coordinator's scenario does not parse: {e}"),
    })?;
    // The coordinator's private cluster is its own: the worker only connects to it.
    if scenario.private_cluster == 0 {
        scenario.url = Some(plan.url.clone());
    }
    if let Some(p) = password {
        scenario.password = Some(Password(p));
    }
    // The coordinator applies --redis-config (its secrets come masked): a worker never does.
    scenario.redis_config.clear();
    scenario.validate()?;
    let endpoint = setup::endpoint(&address, &Scenario::default(), control)?;
    let (offset_ns, uncertainty_ns) = measure_offset(&endpoint, OFFSET_ROUNDS).await.map_err(|e| {
        WorkerError::Failed { who: "clock".into(), message: format!("measuring the clock offset: {e}") }
    })?;
    let me = Registration {
        host: hostname(),
        pid: std::process::id(),
        version: control::version(),
        offset_ns,
        uncertainty_ns,
    };
    let index = register(&mut ctl, &me, join.index, run, plan.workers).await?;
    // Alive until the result is out: a worker that stops (SIGSTOP, a frozen host) is seen to.
    let mut beating = ctl.clone();
    let heart = tokio::spawn(async move {
        loop {
            let _ = beating.beat(index).await;
            tokio::time::sleep(BEAT_EVERY).await;
        }
    });
    let _heart = AbortOnDrop(heart);
    let (outcome, cpu) = match run_share(&mut ctl, &plan, &scenario, index, offset_ns, live).await {
        Ok((out, cpu)) => (Ok(out), cpu),
        Err(e) => (Err(format!("{e:#}")), HarnessCpu::default()),
    };
    let failed = outcome.as_ref().err().cloned();
    let (cpu_pct, busiest_thread_pct) = (cpu.process_pct, cpu.busiest_thread_pct);
    ctl.publish(&WorkerResult { index, cpu_pct, busiest_thread_pct, outcome }).await.map_err(WorkerError::from)?;
    match failed {
        Some(message) => Err(WorkerError::Failed { who: format!("{index} (pid {})", me.pid), message }.into()),
        None => Ok(()),
    }
}

/// Registers this worker; with an index asked for (an Indexed Job's pod), it
/// waits until the shares below it are taken, so that it takes that share:
/// shares are handed out in order of joining. Waits while the run is planned.
async fn register(ctl: &mut Control, me: &Registration, asked: Option<u32>, run: &str, workers: u32) -> Result<u32> {
    if let Some(want) = asked {
        if want >= workers {
            return Err(WorkerError::Full { run: run.into(), workers }.into());
        }
        let mut polls = 0u32;
        while (ctl.registrations().await.map_err(WorkerError::from)?.len() as u32) < want {
            polls += 1;
            if polls % 20 == 0 && ctl.plan().await.map_err(WorkerError::from)?.is_none() {
                let url = "the control Redis".into();
                return Err(WorkerError::NoRun { run: Some(run.into()), url }.into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let index = ctl.register(me).await.map_err(WorkerError::from)?;
    if index >= workers {
        return Err(WorkerError::Full { run: run.into(), workers }.into());
    }
    match asked {
        Some(want) if want != index => Err(WorkerError::Taken { run: run.into(), index: want }.into()),
        _ => Ok(index),
    }
}

/// How often a worker's heartbeat comes.
const BEAT_EVERY: Duration = Duration::from_secs(1);
/// A worker whose heartbeat stops this long is given up (it stopped, or its host did).
const BEAT_LOST: Duration = Duration::from_secs(5);
/// A heartbeat this late is said (once), and so is its return: a short network cut shows.
const BEAT_LATE: Duration = Duration::from_millis(2500);

/// A task aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// Runs worker `index`'s share of the plan's swarm, in step with the others.
async fn run_share(
    ctl: &mut Control,
    plan: &Plan,
    scenario: &Scenario,
    index: u32,
    offset_ns: i64,
    live: Arc<Live>,
) -> Result<(SwarmOutput, HarnessCpu)> {
    let (producers, consumers) = share_of(index, plan.workers, scenario.producers, scenario.consumers);
    let files = super::open_files(scenario, producers.len() as u32, consumers.len() as u32);
    crate::sys::raise_fd_limit(files).context("raising the open-file limit")?;
    let driver = setup::prepare(scenario, &plan.url, &plan.nonce).await?.driver;
    let epoch = plan.epoch_unix_ns.saturating_add_signed(-offset_ns);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (start_tx, start_rx) = oneshot::channel();
    let (measured_tx, measured_rx) = oneshot::channel();
    let (all_tx, all_rx) = oneshot::channel();
    // With --checkpoint, this share's copies go to the control keys, for the coordinator to merge.
    let (checkpoint_tx, mut checkpoint_rx) = mpsc::unbounded_channel::<Checkpoint>();
    let checkpoint_to = scenario.checkpoint_every().map(|every| (every, checkpoint_tx));
    let mut forward_ctl = ctl.clone();
    let forward = tokio::spawn(async move {
        while let Some(Checkpoint { out, taken_ns, request }) = checkpoint_rx.recv().await {
            let _ = forward_ctl.put_checkpoint(index, &WorkerCheckpoint { request, taken_ns, out }).await;
        }
    });
    let share = Share {
        producers,
        consumers,
        clock: crate::clock::Clock::at_wall_clock(epoch).ok_or_else(|| WorkerError::Failed {
            who: index.to_string(),
            message: "the run's epoch lies ahead of this host's clock, or before it booted".into(),
        })?,
        ready: ready_tx,
        start: start_rx,
        measured: measured_tx,
        all_measured: all_rx,
        side_tasks: index == 0,
        checkpoints: checkpoint_to,
    };
    let steps = tokio::spawn(follow(ctl.clone(), index, plan.workers, ready_rx, start_tx, measured_rx, all_tx));
    let stop = tokio::spawn(forward_stop(ctl.clone(), live.clone()));
    let meter = tokio::spawn(meter::cpu_over_measured_phase(live.clone()));
    let publishing = tokio::spawn(publish_live(ctl.clone(), index, live.clone()));
    let out = crate::swarm::run_share(scenario, driver, live.clone(), share).await;
    forward.abort();
    let cpu = meter::reading(meter).await;
    steps.abort();
    stop.abort();
    publishing.abort();
    // The last reading, so that the coordinator's live view ends whole.
    let _ = tokio::time::timeout(Duration::from_secs(1), ctl.put_live(index, &live.snapshot())).await;
    Ok((out, cpu))
}

/// The worker's side of the steps every process takes together: connected,
/// start, producers done.
async fn follow(
    mut ctl: Control,
    index: u32,
    workers: u32,
    ready: oneshot::Receiver<()>,
    start: oneshot::Sender<u64>,
    measured: oneshot::Receiver<Vec<u64>>,
    all: oneshot::Sender<Vec<u64>>,
) {
    // Dropping `start` or `all` unanswered tells the swarm that the run was called off.
    if ready.await.is_err() || ctl.mark_ready(index).await.is_err() {
        return;
    }
    let mut polls = 0u32;
    loop {
        match ctl.start().await {
            Ok(Some(at)) => {
                let _ = start.send(at);
                break;
            }
            Ok(None) => {}
            Err(_) => return,
        }
        polls += 1;
        // Every second: is the run still on (the coordinator deletes the plan when it gives up)?
        if polls % 200 == 0 && !matches!(ctl.plan().await, Ok(Some(_))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Ok(mine) = measured.await else { return };
    if ctl.put_measured(index, &mine).await.is_err() {
        return;
    }
    loop {
        match ctl.all_measured(workers).await {
            Ok(Some(sum)) => {
                let _ = all.send(sum);
                return;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}

/// Once a second, this worker's live counters go to the control Redis, for
/// the coordinator's live view and export (a worker's own are all there is).
async fn publish_live(mut ctl: Control, index: u32, live: Arc<Live>) {
    loop {
        tokio::time::sleep(LIVE_EVERY).await;
        live.meters.sample_cpu();
        let _ = tokio::time::timeout(Duration::from_secs(1), ctl.put_live(index, &live.snapshot())).await;
    }
}

/// How often workers publish their live counters and the coordinator reads them.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// Shows the workers' live counters, summed, as the coordinator's own (its
/// swarm is empty): the live view, `--metrics-listen` and `--format jsonl`
/// read them from there. Runs until the caller stops polling it.
async fn follow_live(mut ctl: Control, live: &Live) {
    loop {
        tokio::time::sleep(LIVE_EVERY).await;
        show_live(&mut ctl, live).await;
    }
}

async fn show_live(ctl: &mut Control, live: &Live) {
    use std::sync::atomic::Ordering::Relaxed;
    let Ok(all) = ctl.live().await else { return };
    let mut sum = crate::meters::Snapshot::default();
    all.iter().for_each(|s| sum.add(s));
    live.sent.store(sum.sent_total(), Relaxed);
    live.delivered.store(sum.delivered_total(), Relaxed);
    live.connected.store(sum.connected, Relaxed);
    live.lost_so_far.store(sum.missing, Relaxed);
    live.meters.set(&sum);
}

/// Stops this worker's swarm when the coordinator asks (its Ctrl-C or SIGTERM).
async fn forward_stop(mut ctl: Control, live: Arc<Live>) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if ctl.stop_requested().await.unwrap_or(false) {
            live.request_stop();
            return;
        }
    }
}

/// `eventbench run --workers N`: plans the run on the control Redis, starts
/// `spawn` local workers, waits for all of them, and returns what each
/// measured. The run's clock is set here too (the plan's epoch on this
/// host's clock), so that faults acting on servers run on the same time base.
/// `say` gets the one line a user needs when workers on other hosts are to join.
#[allow(clippy::too_many_arguments)]
pub async fn coordinate(
    scenario: &Scenario,
    opts: &Coordination,
    setup: &Setup,
    live: &Live,
    target: &Target,
    (run_id, nonce): (&str, &str),
    say: impl Fn(&str),
    checkpoints: Option<(Duration, mpsc::UnboundedSender<Checkpoint>)>,
) -> Result<Shares> {
    let url = setup::effective_url(scenario, target.url())?;
    let password = url.password.clone();
    // The run's name in the control key space: its id, or on a cluster whose
    // node the run kills, a variant whose hash slot another master owns.
    let killed = scenario.kill_node.map(|k| k.node as usize);
    let node_of = |run: &str| {
        let slot = crate::topology::key_slot(control::key_of(run, "plan").as_bytes());
        setup.topology.as_ref().and_then(|t| t.node_of_slot(slot))
    };
    let run = (0..64)
        .map(|k| if k == 0 { run_id.to_string() } else { format!("{run_id}.{k}") })
        .find(|r| killed.is_none() || node_of(r) != killed)
        .unwrap_or_else(|| run_id.to_string());
    let run_id = run.as_str();
    let control = match (&opts.control, &setup.topology) {
        (Some(c), _) => c.clone(),
        // On a cluster, the control keys (one hash slot) live on the master that owns them.
        (None, Some(t)) => {
            let node = node_of(run_id).and_then(|n| t.nodes.get(n)).context("no master owns the control slot")?;
            crate::connect::url::with_address(target.url(), &node.host, node.port)
                .map_err(|message| TargetError::Unreachable { url: redact_url(target.url()), message })?
        }
        (None, None) => target.url().to_string(),
    };
    let address = control_url(&control, password.as_deref())?;
    let client = setup::redis_client(&address, scenario, &control)?;
    let mut ctl = connect_control(&client, &control, run_id, scenario.connect_timeout).await?;
    let epoch_unix_ns = ctl.server_time_ns().await.map_err(WorkerError::from)? - EPOCH_BACK.as_nanos() as u64;
    // This host's view of the run's clock, for the faults it runs.
    let endpoint = setup::endpoint(&address, scenario, &control)?;
    let (offset_ns, _) = measure_offset(&endpoint, OFFSET_ROUNDS).await.map_err(|e| WorkerError::Failed {
        who: "coordinator".into(),
        message: format!("measuring the clock offset: {e}"),
    })?;
    let clock = crate::clock::Clock::at_wall_clock(epoch_unix_ns.saturating_add_signed(-offset_ns))
        .context("the run's epoch lies ahead of this host's clock")?;
    live.set_clock(clock);
    let plan = Plan {
        version: control::version(),
        workers: opts.workers,
        // Workers write checkpoints only when this process collects them.
        scenario: Scenario {
            checkpoint: checkpoints.as_ref().map_or(CheckpointEvery::Off, |(every, _)| CheckpointEvery::Every(*every)),
            ..scenario.clone()
        }
        .to_toml(),
        url: redact_url(target.url()),
        nonce: nonce.to_string(),
        epoch_unix_ns,
    };
    ctl.put_plan(&plan).await.map_err(WorkerError::from)?;
    let shown_control = redact_url(&control);
    let result = async {
        let passwords = (password.as_deref(), address.password.as_deref());
        let mut children = Children::spawn(opts.spawn, &shown_control, run_id, passwords)?;
        let join_wait = opts.join_wait();
        if opts.spawn < opts.workers {
            say(&format!(
                "eventbench: waiting up to {} (--join-timeout) for {} more worker(s): eventbench worker --control \
                 {shown_control} --run {run_id}",
                crate::clock::fmt_duration(&join_wait),
                opts.workers - opts.spawn
            ));
        }
        let mut steps = Steps {
            ctl: ctl.clone(),
            children: &mut children,
            results: Vec::new(),
            live,
            beats: Vec::new(),
            lost: Vec::new(),
            say: &say,
        };
        steps.wait(Step::Join, opts.workers, join_wait).await?;
        steps.wait(Step::Connect, opts.workers, scenario.connect_timeout * 2 + Duration::from_secs(30)).await?;
        let now = steps.ctl.server_time_ns().await.map_err(WorkerError::from)?;
        let warmup_start = now - epoch_unix_ns + START_LEAD.as_nanos() as u64;
        steps.ctl.set_start(warmup_start).await.map_err(WorkerError::from)?;
        // The faults this process runs go by the same measured phase as the workers.
        let measure_start = warmup_start + scenario.warmup.as_nanos() as u64;
        let measure_end = measure_start + scenario.duration.as_nanos() as u64;
        live.measure_start_ns.store(measure_start, std::sync::atomic::Ordering::Relaxed);
        live.measure_end_ns.store(measure_end, std::sync::atomic::Ordering::Relaxed);
        let run_wait = START_LEAD + scenario.warmup + scenario.duration + scenario.drain * 3 + Duration::from_secs(30);
        let collecting = collect_checkpoints(steps.ctl.clone(), opts.workers, checkpoints);
        tokio::select! {
            waited = steps.wait(Step::Publish, opts.workers, run_wait) => waited?,
            never = collecting => match never {},
            () = follow_live(ctl.clone(), live) => {}
        }
        // The workers' last readings: each published one before its result.
        let _ = tokio::time::timeout(Duration::from_secs(1), show_live(&mut steps.ctl, live)).await;
        let registrations = steps.ctl.registrations().await.map_err(WorkerError::from)?;
        Ok::<_, anyhow::Error>((std::mem::take(&mut steps.results), std::mem::take(&mut steps.lost), registrations))
    }
    .await;
    // Best effort, and bounded: a control Redis that stopped answering must not hold the end.
    let _ = tokio::time::timeout(Duration::from_secs(1), ctl.delete(opts.workers)).await;
    let (results, lost, registrations) = result?;
    if results.is_empty() {
        let (_, who, message) = lost.into_iter().next().context("no worker published its results")?;
        return Err(WorkerError::Failed { who, message }.into());
    }
    let epoch = SystemTime::UNIX_EPOCH + Duration::from_nanos(epoch_unix_ns);
    Ok(assemble(scenario, opts.workers, (results, lost), &registrations, epoch))
}

/// How often the coordinator looks for the workers' next checkpoint.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);

/// While the run goes on (until the results are in): whenever every worker
/// has published the same new checkpoint to the control keys, merges their
/// copies like their results and hands the merge over. A checkpoint that a
/// worker has already replaced by the time it is read is skipped (the next
/// one comes). Never ends by itself.
async fn collect_checkpoints(
    mut ctl: Control,
    workers: u32,
    checkpoints: Option<(Duration, mpsc::UnboundedSender<Checkpoint>)>,
) -> std::convert::Infallible {
    let Some((_, to)) = checkpoints else { return std::future::pending().await };
    let mut last = 0u64;
    loop {
        tokio::time::sleep(CHECKPOINT_POLL).await;
        let requests = ctl.checkpoint_requests(workers).await.unwrap_or_default();
        let Some(&request) = requests.first() else { continue };
        if request <= last || requests.iter().any(|&r| r != request) {
            continue;
        }
        let copies: Vec<WorkerCheckpoint> =
            ctl.checkpoints(workers).await.unwrap_or_default().into_iter().flatten().collect();
        if copies.len() != workers as usize || copies.iter().any(|c| c.request != request) {
            continue;
        }
        last = request;
        let taken_ns = copies.iter().map(|c| c.taken_ns).min().unwrap_or(0);
        let Ok(out) = merge::merge(copies.into_iter().map(|c| c.out).collect()) else { continue };
        let _ = to.send(Checkpoint { out, taken_ns, request });
    }
}

/// The local worker processes; killed when dropped, and by the kernel if this process dies.
struct Children(Vec<(u32, tokio::process::Child)>);

impl Children {
    /// `passwords`: the target's and the control Redis's, handed over in the
    /// environment (never in the arguments, which `ps` shows).
    fn spawn(n: u32, control: &str, run: &str, passwords: (Option<&str>, Option<&str>)) -> Result<Children> {
        let exe = std::env::current_exe().context("finding eventbench's own binary to start workers")?;
        let mut children = Vec::new();
        for _ in 0..n {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.args(["worker", "--control", control, "--run", run])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true);
            if let Some(p) = passwords.0 {
                cmd.env("REDIS_PASSWORD", p);
            }
            if let Some(p) = passwords.1 {
                cmd.env("EVENTBENCH_CONTROL_PASSWORD", p);
            }
            // SAFETY: prctl is async-signal-safe; it only sets the child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().with_context(|| format!("starting a worker ({})", exe.display()))?;
            children.push((child.id().unwrap_or(0), child));
        }
        Ok(Children(children))
    }

    /// A worker that exited with an error (each one reported once): its pid,
    /// and how it ended and what it said on stderr.
    async fn failed(&mut self) -> Option<(u32, String)> {
        let at = self.0.iter_mut().position(|(_, c)| c.try_wait().ok().flatten().is_some_and(|s| !s.success()))?;
        let (pid, mut child) = self.0.remove(at);
        let status = child.try_wait().ok().flatten()?;
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let read = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err);
            let _ = tokio::time::timeout(Duration::from_secs(1), read).await;
        }
        let said = err.trim().lines().last().unwrap_or("").trim_start_matches("error: ");
        let said = if said.is_empty() { String::new() } else { format!(": {said}") };
        Some((pid, format!("exited with {status}{said}")))
    }
}

/// What the coordinator waits for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Every worker has registered.
    Join,
    /// Every worker's swarm is connected.
    Connect,
    /// Every worker has published its results.
    Publish,
}

impl Step {
    fn verb(self) -> &'static str {
        match self {
            Step::Join => "join",
            Step::Connect => "connect",
            Step::Publish => "publish its results",
        }
    }
}

/// The coordinator's waits, each watching the children, the results and Ctrl-C.
struct Steps<'a> {
    ctl: Control,
    children: &'a mut Children,
    results: Vec<WorkerResult>,
    live: &'a Live,
    /// Each worker's last heartbeat count, when it last rose, and whether its lateness was said.
    beats: Vec<(u64, Instant, bool)>,
    /// Workers that failed once the run had started: (index, name, what happened).
    lost: Vec<(u32, String, String)>,
    /// Where a heartbeat that is late, and one that comes back, are said.
    say: &'a dyn Fn(&str),
}

impl Steps<'_> {
    /// The workers (by index) that have done `step`.
    async fn done(&mut self, step: Step) -> redis::RedisResult<Vec<u32>> {
        Ok(match step {
            Step::Join => (0..self.ctl.registrations().await?.len() as u32).collect(),
            Step::Connect => self.ctl.ready().await?,
            Step::Publish => self.results.iter().map(|r| r.index).chain(self.lost.iter().map(|l| l.0)).collect(),
        })
    }

    /// Waits until all `n` workers have done `step`, at most `timeout`. A
    /// worker that fails, or ends before the run has started, ends the wait.
    async fn wait(&mut self, step: Step, n: u32, timeout: Duration) -> Result<(), WorkerError> {
        let deadline = Instant::now() + timeout;
        let mut stop_sent = false;
        loop {
            while let Some(r) = self.ctl.take_result().await? {
                if self.lost.iter().any(|l| l.0 == r.index) {
                    // Given up (its share stood in for): a result that comes after all would count twice.
                    continue;
                }
                let early = match (&r.outcome, step) {
                    (Err(message), _) => Some(message.clone()),
                    (Ok(out), Step::Join | Step::Connect) => Some(match out.outcome.status {
                        crate::Status::Aborted => out.outcome.reason.clone(),
                        _ => "it ended before the run started".into(),
                    }),
                    (Ok(_), Step::Publish) => None,
                };
                if let Some(message) = early {
                    let who = self.name(r.index).await;
                    self.fail(step, r.index, who, message).await?;
                    continue;
                }
                self.results.push(r);
            }
            if self.done(step).await?.len() >= n as usize {
                return Ok(());
            }
            if let Some((pid, message)) = self.children.failed().await {
                let registered = self.ctl.registrations().await.unwrap_or_default();
                let Some(i) = registered.iter().position(|r| r.pid == pid) else {
                    return Err(WorkerError::Failed { who: format!("pid {pid}"), message });
                };
                let who = self.name(i as u32).await;
                self.fail(step, i as u32, who, message).await?;
            }
            if let Some(index) = self.silent(step, n).await? {
                let who = self.name(index).await;
                let secs = BEAT_LOST.as_secs();
                self.fail(step, index, who, format!("stopped answering (no heartbeat for {secs} s)")).await?;
            }
            if self.live.stop_requested() && !stop_sent {
                self.ctl.request_stop().await?;
                stop_sent = true;
                if step != Step::Publish {
                    return Err(WorkerError::Interrupted);
                }
            }
            if Instant::now() > deadline {
                let missing = self.missing(step, n).await;
                let flag = if step == Step::Join { " (--join-timeout)" } else { "" };
                let waited = crate::clock::fmt_duration(&timeout);
                return Err(WorkerError::Missing(format!("{missing} did not {} within {waited}{flag}", step.verb())));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Worker `index` failed: before the run started, that ends the wait (an
    /// error naming it); once it runs, the others are stopped and the wait
    /// goes on for their results, so that the run's files are whole, with
    /// the lost worker's share stood in for ([`lost`]).
    async fn fail(&mut self, step: Step, index: u32, who: String, message: String) -> Result<(), WorkerError> {
        if step != Step::Publish {
            return Err(WorkerError::Failed { who, message });
        }
        if !self.lost.iter().any(|l| l.0 == index) {
            if self.lost.is_empty() {
                self.ctl.request_stop().await?;
            }
            self.ctl.give_up_measured(index).await?;
            self.lost.push((index, who, message));
        }
        Ok(())
    }

    /// A worker that joined, has not published its result, and whose
    /// heartbeat has not risen for [`BEAT_LOST`]: it stopped, or its host did.
    async fn silent(&mut self, step: Step, n: u32) -> Result<Option<u32>, WorkerError> {
        if step == Step::Join {
            return Ok(None);
        }
        let now = Instant::now();
        if self.beats.is_empty() {
            self.beats = vec![(0, now, false); n as usize];
        }
        let beats = self.ctl.beats(n).await?;
        for (i, beat) in beats.into_iter().enumerate() {
            let (last, since, said) = self.beats[i];
            if beat != last {
                self.beats[i] = (beat, now, false);
                if said {
                    let who = self.name(i as u32).await;
                    let gap = now.duration_since(since).as_secs_f64();
                    (self.say)(&format!(
                        "eventbench: worker {who} answers again, after {gap:.1} s without a heartbeat"
                    ));
                }
                continue;
            }
            let published =
                self.results.iter().any(|r| r.index == i as u32) || self.lost.iter().any(|l| l.0 == i as u32);
            if !published && !said && now.duration_since(since) > BEAT_LATE {
                self.beats[i].2 = true;
                let who = self.name(i as u32).await;
                let (late, lost) = (BEAT_LATE.as_secs_f64(), BEAT_LOST.as_secs());
                (self.say)(&format!(
                    "eventbench: no heartbeat from worker {who} for {late:.1} s (stopped, or its network cut); \
                     given up at {lost} s"
                ));
            }
            if !published && now.duration_since(since) > BEAT_LOST {
                return Ok(Some(i as u32));
            }
        }
        Ok(None)
    }

    /// `1 (pid 4242 on host)`, as far as the worker's registration tells.
    async fn name(&mut self, index: u32) -> String {
        match self.ctl.registrations().await.unwrap_or_default().get(index as usize) {
            Some(r) => format!("{index} (pid {} on {})", r.pid, r.host),
            None => index.to_string(),
        }
    }

    /// Which workers a wait is still missing.
    async fn missing(&mut self, step: Step, n: u32) -> String {
        let done = self.done(step).await.unwrap_or_default();
        if step == Step::Join {
            return format!("{} of {n} workers (only {} joined)", n as usize - done.len(), done.len());
        }
        let mut names = Vec::new();
        for i in (0..n).filter(|i| !done.contains(i)) {
            names.push(format!("worker {}", self.name(i).await));
        }
        names.join(", ")
    }
}

/// What the workers measured (the `lost` ones' shares stood in for), the
/// busiest one's CPU, the clocks' uncertainty, and one row per worker.
fn assemble(
    scenario: &Scenario,
    workers: u32,
    (mut results, lost): (Vec<WorkerResult>, Vec<(u32, String, String)>),
    registrations: &[Registration],
    epoch: SystemTime,
) -> Shares {
    results.sort_by_key(|r| r.index);
    let mut rows = Vec::new();
    let mut outputs = Vec::new();
    let mut cpu = HarnessCpu::default();
    // (has producers, has consumers, uncertainty) per worker.
    let mut sides = Vec::new();
    for r in results {
        let out = r.outcome.expect("failed results end the wait");
        let reg = registrations.get(r.index as usize).cloned().unwrap_or(Registration {
            host: String::new(),
            pid: 0,
            version: String::new(),
            offset_ns: 0,
            uncertainty_ns: 0,
        });
        let (producers, consumers) = share_of(r.index, workers, scenario.producers, scenario.consumers);
        let mut out = out;
        if out.outcome.status == crate::Status::Aborted {
            // Which of the hosts it happened on.
            out.outcome.reason =
                format!("worker {} (pid {} on {}): {}", r.index, reg.pid, reg.host, out.outcome.reason);
        }
        sides.push((!producers.is_empty(), !consumers.is_empty(), reg.uncertainty_ns));
        cpu = cpu.max(HarnessCpu { process_pct: r.cpu_pct, busiest_thread_pct: r.busiest_thread_pct });
        rows.push(WorkerRow {
            worker: r.index,
            host: reg.host,
            pid: reg.pid,
            producer_ids: ids(&producers),
            consumer_ids: ids(&consumers),
            clock_offset_us: reg.offset_ns as f64 / 1e3,
            clock_uncertainty_us: reg.uncertainty_ns as f64 / 1e3,
            threads: out.thread_count as u32,
            sent: out.producers.iter().map(|p| p.sent_measured()).sum(),
            delivered: out.consumers.iter().map(|c| c.stats.delivered).sum(),
            cpu_pct: r.cpu_pct,
            status: out.outcome.status,
        });
        outputs.push(out);
    }
    for (index, who, message) in lost {
        let share = share_of(index, workers, scenario.producers, scenario.consumers);
        let Some((mut out, unseen)) = lost::stand_in(scenario, share.clone(), &outputs, Default::default()) else {
            continue;
        };
        out.outcome = crate::live::Outcome::aborted(format!(
            "worker {who} failed: {message}; its share stands in: {} producer(s) counted by what others received \
             ({unseen} measured messages not seen sent), {} consumer(s)' messages undelivered",
            share.0.len(),
            share.1.len()
        ));
        let reg = registrations.get(index as usize);
        sides.push((!share.0.is_empty(), !share.1.is_empty(), reg.map_or(0, |r| r.uncertainty_ns)));
        rows.push(WorkerRow {
            worker: index,
            host: reg.map(|r| r.host.clone()).unwrap_or_default(),
            pid: reg.map_or(0, |r| r.pid),
            producer_ids: ids(&share.0),
            consumer_ids: ids(&share.1),
            clock_offset_us: reg.map_or(0.0, |r| r.offset_ns as f64 / 1e3),
            clock_uncertainty_us: reg.map_or(0.0, |r| r.uncertainty_ns as f64 / 1e3),
            threads: 0,
            sent: out.producers.iter().map(|p| p.sent_measured()).sum(),
            delivered: 0,
            cpu_pct: 0.0,
            status: out.outcome.status,
        });
        outputs.push(out);
    }
    rows.sort_by_key(|r| r.worker);
    Shares { outputs, cpu, workers: rows, clock_uncertainty_ns: pair_uncertainty(&sides), epoch: Some(epoch) }
}

/// The largest uncertainty of a latency measured across two workers: the
/// sum of the producer's and the consumer's offset uncertainties, over every
/// pair of different workers where one sends and the other receives. Within
/// one worker both ends read the same clock: no uncertainty.
fn pair_uncertainty(sides: &[(bool, bool, u64)]) -> u64 {
    let mut worst = 0;
    for (i, &(sends, _, a)) in sides.iter().enumerate() {
        for (j, &(_, receives, b)) in sides.iter().enumerate() {
            if i != j && sends && receives {
                worst = worst.max(a + b);
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_id_once_producers_from_the_front_consumers_from_the_back() {
        assert_eq!(share_of(0, 2, 1, 1), (0..0, 0..1));
        assert_eq!(share_of(1, 2, 1, 1), (0..1, 0..0), "with two workers, one sends and the other receives");
        assert_eq!(share_of(0, 2, 2, 4), (0..1, 2..4));
        assert_eq!(share_of(1, 2, 2, 4), (1..2, 0..2));
        for (workers, producers, consumers) in [(3, 7, 10), (4, 1, 3), (5, 0, 5000), (1, 3, 3)] {
            let mut p = Vec::new();
            let mut c = Vec::new();
            for i in 0..workers {
                let (a, b) = share_of(i, workers, producers, consumers);
                p.extend(a);
                c.extend(b);
            }
            c.sort_unstable();
            assert_eq!(p, (0..producers).collect::<Vec<_>>());
            assert_eq!(c, (0..consumers).collect::<Vec<_>>());
        }
        assert_eq!((ids(&(0..0)), ids(&(3..4)), ids(&(2..6))), (String::new(), "3".into(), "2-5".into()));
    }

    #[test]
    fn clock_uncertainty_counts_only_pairs_across_workers() {
        assert_eq!(pair_uncertainty(&[(true, true, 40)]), 0, "one process: one clock");
        assert_eq!(pair_uncertainty(&[(true, false, 40), (false, true, 15)]), 55);
        assert_eq!(pair_uncertainty(&[(true, true, 40), (true, true, 15), (false, false, 900)]), 55);
        assert_eq!(pair_uncertainty(&[(true, false, 40), (true, false, 15)]), 0, "nobody receives");
    }
}
