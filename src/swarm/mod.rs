//! Producers, consumers and the phases of a run (warmup, measure, drain).
//!
//! The swarm runs on worker threads, each a single-threaded tokio runtime, so
//! the tasks of a thread share that thread's [`ThreadStats`] without locks or
//! atomics on the per-message path. Producers and consumers are spread over the
//! threads round-robin. Coordination (ready, start, producers done, finish)
//! goes through channels a handful of times per run, never per message.

use crate::clock::{self, Clock, Timer};
use crate::connect::conn::Tuning;
use crate::connect::ConnError;
use crate::drivers::producer::Producer;
use crate::drivers::pubsub::{PubSub, PubSubConsumer, ShardChange};
use crate::drivers::streams::Streams;
use crate::drivers::{ConsumerConn, ProducerConn};
use crate::pacer::Pacer;
use crate::scenario::{Scenario, TransportKind};
use crate::stats::{ConsumerStats, ProducerStats, ThreadStats, Window};
use crate::wire::Header;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// Most messages a producer writes in one pipelined write.
const MAX_BATCH: u64 = 1024;
/// Slack between "everyone is connected" and the first scheduled message.
const START_SLACK_NS: u64 = 20_000_000;
/// After a failure, how long consumers may still read what is already on
/// their sockets, so that nothing measured before it is dropped.
const ABORT_DRAIN: Duration = Duration::from_millis(250);

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
    /// The run's clock, once started.
    clock: Mutex<Option<Clock>>,
    /// Per cluster node, with `--kill-node`: when a consumer last received a
    /// message of one of that node's channels (ns since the epoch, 0 before the first).
    node_seen_ns: std::sync::OnceLock<Box<[AtomicU64]>>,
    stop: AtomicBool,
    stop_notify: Notify,
}

impl Live {
    /// Asks the run to stop producing, drain briefly and report (Ctrl-C).
    pub fn request_stop(&self) {
        self.stop.store(true, Relaxed);
        self.stop_notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Relaxed)
    }

    async fn stopped(&self) {
        loop {
            let notified = self.stop_notify.notified();
            if self.stop_requested() {
                return;
            }
            notified.await;
        }
    }

    /// When a consumer last received a message of a channel of `node` (ns
    /// since the epoch); tracked with `--kill-node` only.
    pub fn node_seen_ns(&self, node: usize) -> Option<u64> {
        Some(self.node_seen_ns.get()?.get(node)?.load(Relaxed))
    }

    /// Nanoseconds since the run's epoch, if the run has started.
    pub fn now_ns(&self) -> Option<u64> {
        self.clock.lock().ok()?.map(|c| c.now_ns())
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Ok,
    /// Stopped early on request (Ctrl-C, SIGTERM).
    Interrupted,
    /// Stopped early because something failed; the reason says what.
    Aborted(String),
}

impl Status {
    /// `ok`, `interrupted` or `aborted`, as `summary.csv` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Interrupted => "interrupted",
            Status::Aborted(_) => "aborted",
        }
    }
}

pub mod share;
pub mod streams;

pub use share::Share;

/// The transport a run drives.
#[derive(Debug, Clone)]
pub enum Transport {
    PubSub(PubSub),
    Streams(Streams),
}

impl Transport {
    async fn producer(&self) -> Result<Producer, ConnError> {
        match self {
            Transport::PubSub(t) => t.producer().await,
            Transport::Streams(t) => t.producer().await,
        }
    }

    /// The cluster node of each channel (all 0 on a single server).
    fn node_of(&self) -> &[usize] {
        match self {
            Transport::PubSub(t) => &t.node_of,
            Transport::Streams(t) => &t.node_of,
        }
    }

    fn node_count(&self) -> usize {
        match self {
            Transport::PubSub(t) => t.nodes.len(),
            Transport::Streams(t) => t.nodes.len(),
        }
    }
}

/// Why a consumer stopped being subscribed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// The scenario disconnected it (`--disconnect`).
    Disconnect,
    /// The server closed its connection (e.g. output buffer limit exceeded).
    ServerKill,
    /// A sharded channel's slot moved to another node: the server dropped the
    /// subscription, and the consumer subscribes again on the new owner.
    SlotMoved,
    /// It subscribed again.
    Resubscribed,
    /// The scenario stopped it for good (`--crash`), without acknowledging what it held.
    Crash,
}

impl EventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Disconnect => "disconnect",
            EventKind::ServerKill => "server-kill",
            EventKind::SlotMoved => "slot-moved",
            EventKind::Resubscribed => "resubscribed",
            EventKind::Crash => "crash",
        }
    }
}

/// A span during which a consumer was not subscribed, with the sequence
/// positions that let the summary attribute each lost message to a cause.
/// Positions are per (producer, channel), indexed like the consumer's ledgers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    pub consumer: u32,
    pub kind: EventKind,
    /// When the consumer stopped being subscribed (for a server kill: when it
    /// first saw the connection closed), ns since the epoch.
    pub closed_ns: u64,
    /// When it was subscribed again, if it was.
    pub resubscribed_ns: Option<u64>,
    /// One past the last sequence it had received when the connection ended.
    pub received: Vec<u64>,
    /// Producers' next sequence when the connection ended: messages between
    /// `received` and here were accepted by Redis for this consumer and never
    /// delivered (lost in the buffer). Equal to `received` for a graceful leave.
    pub closed: Vec<u64>,
    /// Producers' next sequence once it was subscribed again: messages between
    /// `closed` and here were published while it was not subscribed.
    /// (All three are empty for Streams, which keeps what absent consumers miss.)
    pub resubscribed: Option<Vec<u64>>,
}

/// One consumer's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerOutput {
    pub stats: ConsumerStats,
    /// The channels it subscribed to.
    pub channels: Vec<u32>,
    pub outages: Vec<Outage>,
    /// If still subscribed at the end of the run: one past the last sequence
    /// received, per ledger. Anything after it was still queued in Redis.
    pub end: Option<Vec<u64>>,
}

/// Everything the swarm measured, merged over threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmOutput {
    pub window: Window,
    pub threads: ThreadStats,
    /// Streams: entries not yet acknowledged, summed over groups, sampled at the end of each measured second.
    pub backlog: Vec<u64>,
    /// Streams: the replay group's progress, with `--replay-at`.
    pub replay: Option<streams::Replay>,
    pub consumers: Vec<ConsumerOutput>,
    pub producers: Vec<ProducerStats>,
    pub status: Status,
    /// Worker threads used.
    pub thread_count: usize,
}

/// Read-only facts every task needs.
struct Shared {
    scenario: Scenario,
    clock: Clock,
    transport: Transport,
    live: Arc<Live>,
    /// Streams: the accounting of each consumer group, shared by its members
    /// and locked once per batch read.
    units: Vec<Mutex<ConsumerStats>>,
    /// (warmup start, measured window), sent once everyone is connected.
    start: watch::Receiver<Option<(u64, Window)>>,
    /// Set when consumers should stop reading.
    finish: watch::Receiver<bool>,
    /// Per (producer, channel): the next sequence number to be written, updated
    /// per batch. Consumers read it when they lose or regain their subscription.
    progress: Box<[AtomicU64]>,
    /// The first failure; it ends the run.
    abort: Mutex<Option<String>>,
    /// In a run shared by several processes: the producers this one runs
    /// (the others' positions come from their schedule).
    local_producers: Option<std::ops::Range<u32>>,
    /// Streams: the groups (accounting units) this process reports.
    local_units: std::ops::Range<u32>,
    /// Whether this process samples the backlog and runs the replay group (one process of a run does).
    side_tasks: bool,
    abort_notify: Notify,
}

impl Shared {
    fn fail(&self, who: String, e: impl std::fmt::Display) {
        let mut first = self.abort.lock().expect("abort lock");
        if first.is_none() {
            *first = Some(format!("{who}: {e}"));
        }
        drop(first);
        self.abort_notify.notify_waiters();
        self.live.request_stop();
    }

    fn aborted(&self) -> Option<String> {
        self.abort.lock().expect("abort lock").clone()
    }

    fn pubsub(&self) -> &PubSub {
        match &self.transport {
            Transport::PubSub(t) => t,
            Transport::Streams(_) => unreachable!("Pub/Sub consumers run on the Pub/Sub transport only"),
        }
    }

    /// Notes that messages of `channels` arrived at `now` (with `--kill-node` only).
    fn seen(&self, channels: impl Iterator<Item = u32>, now: u64) {
        let Some(seen) = self.live.node_seen_ns.get() else { return };
        let node_of = self.transport.node_of();
        for c in channels {
            if let Some(node) = node_of.get(c as usize) {
                seen[*node].fetch_max(now, Relaxed);
            }
        }
    }

    /// The producers' progress, indexed like a consumer's ledgers.
    fn positions(&self) -> Vec<u64> {
        let mut positions: Vec<u64> = self.progress.iter().map(|p| p.load(Relaxed)).collect();
        let Some(local) = &self.local_producers else { return positions };
        let Some((warmup_start, window)) = *self.start.borrow() else { return positions };
        // Each worker's clock may be off by its offset's uncertainty: place the
        // boundary a little late, so that a message lost while unsubscribed is never taken for another loss.
        let (s, now) = (&self.scenario, self.clock.now_ns() + share::POSITION_SLACK_NS);
        for p in (0..s.producers).filter(|p| !local.contains(p)) {
            let at = share::scheduled_positions(s, p, warmup_start, window.end_ns, now);
            positions[(p * s.channels) as usize..][..s.channels as usize].copy_from_slice(&at);
        }
        positions
    }

    async fn wait_start(&self) -> Option<(u64, Window)> {
        let mut rx = self.start.clone();
        rx.wait_for(|s| s.is_some()).await.ok().and_then(|s| *s)
    }
}

/// Messages a task sends the coordinator, a few per task per run.
enum Note {
    Ready,
    ProducerDone { measured: Vec<u64> },
    Failed,
}

/// What one worker thread runs.
#[derive(Default)]
struct Assignment {
    producers: Vec<u32>,
    consumers: Vec<u32>,
}

/// Spreads producers and consumers over `threads` worker threads. Producers
/// get threads of their own (a share in proportion to their number, at least
/// one) so that a burst of deliveries never delays a scheduled send: a
/// producer that shared its thread with 2,500 consumers lagged 70 ms behind
/// its schedule at p99, 4 ms on its own. One thread runs everything.
/// Per-message operations per second (sends plus deliveries) that one
/// worker thread takes on its own: a twentieth of what one thread reaches in a
/// rate-0 run, so a light run never waits on itself.
const LIGHT_LOAD: f64 = 50_000.0;

/// Consumers per message up to which a delivery burst is short enough to
/// share a thread with the producer (about a microsecond each).
const LIGHT_FANOUT: u32 = 64;

/// Threads for `--threads 0`: one for a light, paced run, else one per CPU.
/// On a machine Redis shares, a second harness thread for a light run only
/// takes a CPU from Redis, and it costs latency: a message then wakes a
/// thread that has slept since the last one, where a single thread is still
/// awake from its own send when the delivery comes back.
fn auto_threads(s: &Scenario, cpus: usize) -> usize {
    let fanout = match (s.transport, s.groups) {
        (TransportKind::Streams, g) if g > 0 => g,
        _ => s.consumers,
    };
    let light = s.rate > 0.0 && s.rate * (1.0 + f64::from(fanout)) <= LIGHT_LOAD && fanout <= LIGHT_FANOUT;
    if light {
        1
    } else {
        cpus
    }
}

fn layout(producers: u32, consumers: u32, threads: usize) -> Vec<Assignment> {
    let mut out: Vec<Assignment> = (0..threads.max(1)).map(|_| Assignment::default()).collect();
    let (p, c) = (producers as usize, consumers as usize);
    let producer_threads = match (threads, p, c) {
        (0 | 1, _, _) | (_, 0, _) | (_, _, 0) => out.len(),
        _ => (threads * p / (p + c)).clamp(1, threads - 1),
    };
    for i in 0..p {
        out[i % producer_threads].producers.push(i as u32);
    }
    let first = if producer_threads == out.len() { 0 } else { producer_threads };
    let consumer_threads = out.len() - first;
    for i in 0..c {
        out[first + i % consumer_threads].consumers.push(i as u32);
    }
    out
}

struct ThreadOutput {
    stats: Option<ThreadStats>,
    consumers: Vec<ConsumerOutput>,
    producers: Vec<ProducerStats>,
    /// Streams consumers' outages (their accounting lives in `Shared::units`).
    outages: Vec<Outage>,
}

/// Runs the swarm of `scenario` against the Redis at `endpoint`.
pub async fn run(scenario: &Scenario, transport: Transport, live: Arc<Live>) -> SwarmOutput {
    run_share(scenario, transport, live, None).await
}

/// Runs this process's `share` of the swarm (all of it if `None`).
pub async fn run_share(
    scenario: &Scenario,
    transport: Transport,
    live: Arc<Live>,
    share: Option<Share>,
) -> SwarmOutput {
    let (producer_ids, consumer_ids) = match &share {
        Some(s) => (s.producers.clone(), s.consumers.clone()),
        None => (0..scenario.producers, 0..scenario.consumers),
    };
    let (local_producers, local_consumers) = (producer_ids.len() as u32, consumer_ids.len() as u32);
    let parts = (local_producers + local_consumers) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_count = if scenario.threads == 0 { auto_threads(scenario, cpus) } else { scenario.threads };
    let thread_count = thread_count.clamp(1, parts.max(1));
    let mut assignments = layout(local_producers, local_consumers, thread_count);
    for a in &mut assignments {
        a.producers.iter_mut().for_each(|id| *id += producer_ids.start);
        a.consumers.iter_mut().for_each(|id| *id += consumer_ids.start);
    }

    let shared_run = share.is_some();
    let side_tasks = share.as_ref().is_none_or(|s| s.side_tasks);
    let (clock, ready_tx, start_at, measured_tx, all_measured) = match share {
        Some(s) => (s.clock, Some(s.ready), Some(s.start), Some(s.measured), Some(s.all_measured)),
        None => (Clock::start(), None, None, None, None),
    };
    *live.clock.lock().expect("clock lock") = Some(clock);
    if scenario.kill_node.is_some() {
        let _ = live.node_seen_ns.set((0..transport.node_count()).map(|_| AtomicU64::new(0)).collect());
    }
    let (start_tx, start_rx) = watch::channel(None);
    let (finish_tx, finish_rx) = watch::channel(false);
    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        clock,
        units: match &transport {
            Transport::Streams(_) => (0..streams::unit_count(scenario))
                .map(|u| Mutex::new(ConsumerStats::new(u, scenario.producers, scenario.channels)))
                .collect(),
            Transport::PubSub(_) => Vec::new(),
        },
        transport,
        live: live.clone(),
        start: start_rx,
        finish: finish_rx,
        progress: (0..scenario.producers * scenario.channels).map(|_| AtomicU64::new(0)).collect(),
        abort: Mutex::new(None),
        abort_notify: Notify::new(),
        local_producers: shared_run.then(|| producer_ids.clone()),
        // A split run has one group per consumer (see workers::check).
        local_units: if shared_run { consumer_ids.clone() } else { 0..streams::unit_count(scenario) },
        side_tasks,
    });

    let handles: Vec<_> = assignments
        .into_iter()
        .enumerate()
        .map(|(t, a)| {
            let shared = shared.clone();
            let notes = note_tx.clone();
            std::thread::Builder::new()
                .name(format!("eventbench-{t}"))
                .spawn(move || worker_thread(shared, a, notes))
                .expect("spawning a worker thread")
        })
        .collect();
    drop(note_tx);

    // Everyone connected (or someone failed)?
    let mut ready = 0;
    while ready < parts {
        match note_rx.recv().await {
            Some(Note::Ready) => ready += 1,
            Some(Note::Failed) | None => break,
            Some(Note::ProducerDone { .. }) => {}
        }
    }
    // Every process starts at the same instant, once all of them are connected
    // (a process that failed to connect says nothing, and ends its run at once).
    let told_ready = ready_tx.filter(|_| shared.aborted().is_none()).map(|ready| ready.send(()));
    let warmup_start = match (told_ready, start_at) {
        (Some(Ok(())), Some(start)) => match start.await {
            Ok(at) => at,
            Err(_) => {
                shared.fail("worker".into(), "the coordinator called the run off before it started");
                clock.now_ns()
            }
        },
        _ => clock.now_ns() + START_SLACK_NS,
    };
    let measure_start = warmup_start + scenario.warmup.as_nanos() as u64;
    let window = Window { start_ns: measure_start, end_ns: measure_start + scenario.duration.as_nanos() as u64 };
    live.measure_start_ns.store(window.start_ns, Relaxed);
    live.measure_end_ns.store(window.end_ns, Relaxed);
    let _ = start_tx.send(Some((warmup_start, window)));
    let side = streams::side_tasks(&shared, window);

    // Wait for the producers, then drain until every expected message is in.
    let mut measured_per_channel = vec![0u64; scenario.channels as usize];
    let mut producers_done = 0;
    while producers_done < local_producers && shared.aborted().is_none() {
        match note_rx.recv().await {
            Some(Note::ProducerDone { measured }) => {
                producers_done += 1;
                measured_per_channel.iter_mut().zip(measured).for_each(|(a, b)| *a += b);
            }
            Some(_) => {}
            None => break,
        }
    }
    if let (Some(measured), Some(all_measured)) = (measured_tx, all_measured) {
        // Producers elsewhere: the drain starts once every process's producers are done.
        let _ = measured.send(measured_per_channel.clone());
        let latest = window.end_ns + (scenario.drain * 2 + Duration::from_secs(5)).as_nanos() as u64;
        measured_per_channel = tokio::select! {
            all = all_measured => all.unwrap_or_else(|_| vec![u64::MAX / 4; scenario.channels as usize]),
            _ = clock.sleep_until_ns(latest) => vec![u64::MAX / 4; scenario.channels as usize],
        };
    }
    let expected: u64 = measured_per_channel.iter().sum::<u64>().saturating_mul(local_consumers as u64);
    let drain = if live.stop_requested() { scenario.drain.min(Duration::from_secs(1)) } else { scenario.drain };
    let mut drain_end = tokio::time::Instant::now() + drain;
    while live.delivered.load(Relaxed) < expected && tokio::time::Instant::now() < drain_end {
        if shared.aborted().is_some() {
            drain_end = drain_end.min(tokio::time::Instant::now() + ABORT_DRAIN);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = finish_tx.send(true);
    let (backlog, replay) = side.finish().await;

    let outputs = tokio::task::spawn_blocking(move || handles.into_iter().map(|h| h.join()).collect::<Vec<_>>())
        .await
        .expect("joining worker threads");
    // The first thread's stats take the others in: no second copy of every per-second histogram.
    let mut merged: Option<ThreadStats> = None;
    let mut consumers = Vec::new();
    let mut producers = Vec::new();
    let mut outages = Vec::new();
    let mut panicked = false;
    for out in outputs {
        match out {
            Ok(out) => {
                match (&mut merged, out.stats) {
                    (Some(m), Some(s)) => m.merge(&s),
                    (None, s) => merged = s,
                    (Some(_), None) => {}
                }
                consumers.extend(out.consumers);
                producers.extend(out.producers);
                outages.extend(out.outages);
            }
            Err(_) => panicked = true,
        }
    }
    consumers.extend(streams::unit_outputs(&shared, scenario, outages));
    consumers.sort_by_key(|c| c.stats.id);
    producers.sort_by_key(|p| p.id);
    let status = match shared.aborted() {
        Some(reason) => Status::Aborted(reason),
        None if panicked => Status::Aborted("a worker thread panicked".into()),
        None if live.stop_requested() => Status::Interrupted,
        None => Status::Ok,
    };
    let threads = merged.unwrap_or_else(|| ThreadStats::new(&window));
    SwarmOutput { window, threads, backlog, replay, consumers, producers, status, thread_count }
}

fn worker_thread(shared: Arc<Shared>, a: Assignment, notes: mpsc::UnboundedSender<Note>) -> ThreadOutput {
    clock::tighten_timer_slack();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let stats: Rc<RefCell<Option<ThreadStats>>> = Rc::default();
        let mut finish = shared.finish.clone();
        tokio::task::spawn_local(async move {
            let _ = finish.wait_for(|f| *f).await;
            ThreadFinish::set();
        });
        tokio::task::spawn_local(seal_past_seconds(shared.clone(), stats.clone()));
        let producers: Vec<_> = a
            .producers
            .iter()
            .map(|&id| tokio::task::spawn_local(producer(id, shared.clone(), notes.clone())))
            .collect();
        let mut out = ThreadOutput { stats: None, consumers: Vec::new(), producers: Vec::new(), outages: Vec::new() };
        match &shared.transport {
            Transport::PubSub(_) => {
                let consumers: Vec<_> = a
                    .consumers
                    .iter()
                    .map(|&id| tokio::task::spawn_local(consumer(id, shared.clone(), notes.clone(), stats.clone())))
                    .collect();
                for c in consumers {
                    if let Ok(Some(c)) = c.await {
                        out.consumers.push(c);
                    }
                }
            }
            Transport::Streams(_) => {
                let consumers: Vec<_> = a
                    .consumers
                    .iter()
                    .map(|&id| {
                        tokio::task::spawn_local(streams::consumer(id, shared.clone(), notes.clone(), stats.clone()))
                    })
                    .collect();
                for c in consumers {
                    if let Ok(outages) = c.await {
                        out.outages.extend(outages);
                    }
                }
            }
        }
        for p in producers {
            if let Ok(Some(p)) = p.await {
                out.producers.push(p);
            }
        }
        out.stats = stats.borrow_mut().take();
        out
    })
}

/// Seconds of send time further back than this are sealed: few messages
/// arrive later than that, and one that does opens its second again.
const SEAL_AFTER_S: u64 = 3;

/// Once a second, compresses the thread's per-second histograms of seconds
/// long past, so that a long run's memory stays flat.
async fn seal_past_seconds(shared: Arc<Shared>, stats: Rc<RefCell<Option<ThreadStats>>>) {
    let Some((_, window)) = shared.wait_start().await else { return };
    let finished = ThreadFinish::wait();
    tokio::pin!(finished);
    loop {
        tokio::select! {
            _ = &mut finished => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let past_s = shared.clock.now_ns().saturating_sub(window.start_ns) / 1_000_000_000;
        if let Some(t) = stats.borrow_mut().as_mut() {
            t.seal(past_s.saturating_sub(SEAL_AFTER_S) as usize);
        }
    }
}

async fn producer(id: u32, shared: Arc<Shared>, notes: mpsc::UnboundedSender<Note>) -> Option<ProducerStats> {
    let who = format!("producer {id}");
    let mut conn = match shared.transport.producer().await {
        Ok(c) => c,
        Err(e) => {
            shared.fail(who, e);
            let _ = notes.send(Note::Failed);
            return None;
        }
    };
    let _ = notes.send(Note::Ready);
    let (warmup_start, window) = shared.wait_start().await?;
    let s = &shared.scenario;
    let channels = s.channels as u64;
    let mut stats = ProducerStats::new(id, s.channels, &window);
    let mut pacer = Pacer::new(warmup_start, window.end_ns, s.rate_per_producer());
    // From the total rate: all producers together spin at most a tenth of one CPU.
    let mut timer = Timer::precise(shared.clock).spinning(clock::spin_for_rate(s.rate));
    let mut next_seq = vec![0u64; s.channels as usize];
    let mut measured: Option<(u64, u64)> = None;
    let result: Result<(), ConnError> = async {
        // Made once: a new one per batch would lock the stop Notify each time.
        let stopped = shared.live.stopped();
        tokio::pin!(stopped);
        loop {
            let batch = tokio::select! {
                biased;
                _ = &mut stopped => None,
                e = conn.failure() => return Err(e),
                b = pacer.next_batch(&mut timer, MAX_BATCH) => b,
            };
            let Some(b) = batch else { break };
            for i in b.first..b.first + b.count {
                let intended_ns = pacer.deadline_ns(i).unwrap_or(b.now_ns);
                let channel = ((i + id as u64) % channels) as u32;
                let seq = &mut next_seq[channel as usize];
                let h = Header { producer: id, channel, seq: *seq, intended_ns, sent_ns: b.now_ns };
                *seq += 1;
                conn.queue(channel, &h);
                stats.record(&h, &window);
                if window.second_of(intended_ns).is_some() {
                    let (first, _) = measured.get_or_insert((i, i));
                    measured = Some((*first, i + 1));
                }
            }
            if let Some((first, end)) = measured {
                conn.set_measured(first, end);
            }
            conn.flush().await?;
            shared.live.sent.fetch_add(b.count, Relaxed);
            let progress = &shared.progress[(id * s.channels) as usize..][..s.channels as usize];
            for (p, &next) in progress.iter().zip(&next_seq) {
                p.store(next, Relaxed);
            }
        }
        // After another task's failure, Redis is likely gone: do not wait long for its replies.
        let wait = if shared.aborted().is_some() { ABORT_DRAIN } else { Duration::from_secs(5) };
        let acks = conn.finish(wait).await?;
        stats.reached = acks.reached;
        stats.redirections = acks.redirections;
        stats.write_errors = acks.errors - acks.redirections;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        shared.fail(who, e);
    }
    let _ = notes.send(Note::ProducerDone { measured: stats.measured_count.clone() });
    Some(stats)
}

async fn consumer(
    id: u32,
    shared: Arc<Shared>,
    notes: mpsc::UnboundedSender<Note>,
    thread_stats: Rc<RefCell<Option<ThreadStats>>>,
) -> Option<ConsumerOutput> {
    let s = &shared.scenario;
    // The last consumers are the slow ones, the first ones disconnect: the two stay apart when they can.
    let slow = s.slow.filter(|slow| id >= s.consumers - slow.share.of(s.consumers)).map(|slow| slow.delay);
    let tuning = match slow {
        // A small receive window and read buffer: the backlog must pile up in Redis, where the limit applies.
        Some(_) => Tuning { recv_buffer: Some(16 * 1024), fixed_buffer: true },
        None => Tuning::default(),
    };
    let conn = match shared.pubsub().consumer(id, tuning, slow.is_some()).await {
        Ok(c) => c,
        Err(e) => {
            shared.fail(format!("consumer {id}"), e);
            let _ = notes.send(Note::Failed);
            return None;
        }
    };
    shared.live.connected.fetch_add(1, Relaxed);
    let _ = notes.send(Note::Ready);
    let (_, window) = shared.wait_start().await?;
    thread_stats.borrow_mut().get_or_insert_with(|| ThreadStats::new(&window));
    let planned = planned_outages(s, id, &window);
    let mut task = Consumer {
        window,
        slow,
        tuning,
        // Only slow consumers sleep per message; a timerfd each would double the open files of a big swarm.
        timer: if slow.is_some() { Timer::precise(shared.clock) } else { Timer::coarse(shared.clock) },
        out: ConsumerOutput {
            stats: ConsumerStats::new(id, s.producers, s.channels),
            channels: (0..s.channels).collect(),
            outages: Vec::new(),
            end: None,
        },
        thread_stats,
        shared: shared.clone(),
        kill_seen: Rc::default(),
        watcher: None,
        partials: Vec::new(),
    };
    if let Err(e) = task.run(conn, planned).await {
        shared.fail(format!("consumer {id}"), e);
    }
    Some(task.out)
}

/// Connects a consumer again: attempts bounded by the connect timeout, with
/// backoff between them (10 ms doubling to 1 s); `None` once the run
/// finishes. A refusal (credentials, permissions) ends the retries.
async fn reconnect<T, F: std::future::Future<Output = Result<T, ConnError>>>(
    shared: &Shared,
    mut connect: impl FnMut() -> F,
) -> Result<Option<T>, ConnError> {
    let mut backoff = Duration::from_millis(10);
    let mut finish = shared.finish.clone();
    loop {
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return Ok(None),
            r = tokio::time::timeout(shared.scenario.connect_timeout, connect()) => match r {
                Ok(Ok(conn)) => return Ok(Some(conn)),
                Ok(Err(e @ ConnError::Refused { .. })) => return Err(e),
                Ok(Err(_)) | Err(_) => {}
            },
        }
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// A scenario event for one consumer: down at `down_ns`, back at `up_ns`
/// (`None`: a crash, gone for good). Times in ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Planned {
    down_ns: u64,
    up_ns: Option<u64>,
}

/// The disconnects and crash consumer `id` takes part in: each selects the
/// first PCT of the consumers.
fn planned_outages(s: &Scenario, id: u32, window: &Window) -> Vec<Planned> {
    let at = |d: Duration| window.start_ns + d.as_nanos() as u64;
    let disconnects = s
        .disconnect
        .iter()
        .filter(|d| id < d.share.of(s.consumers))
        .map(|d| Planned { down_ns: at(d.at), up_ns: Some(at(d.at + d.down_for)) });
    let crashes =
        s.crash.iter().filter(|c| id < c.share.of(s.consumers)).map(|c| Planned { down_ns: at(c.at), up_ns: None });
    let mut planned: Vec<Planned> = disconnects.chain(crashes).collect();
    planned.sort_unstable();
    // Nothing happens to a consumer after it crashed.
    if let Some(crash) = planned.iter().position(|p| p.up_ns.is_none()) {
        planned.truncate(crash + 1);
    }
    planned
}

/// The end of the run as one worker thread sees it: set once, by a task that
/// waits on the `finish` channel, and polled by every consumer of the thread
/// on every read without a lock (polling the channel itself locks a waiter
/// list that every consumer of every thread shares).
#[derive(Default)]
struct ThreadFinish {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

thread_local! {
    static THREAD_FINISH: ThreadFinish = ThreadFinish::default();
}

impl ThreadFinish {
    fn set() {
        THREAD_FINISH.with(|f| {
            f.set.set(true);
            f.waiters.take().into_iter().for_each(Waker::wake);
        });
    }

    /// Resolves once the run is finished. Registers its task's waker once
    /// (again only if the task's waker changes).
    fn wait() -> impl Future<Output = ()> {
        let mut slot: Option<usize> = None;
        std::future::poll_fn(move |cx| {
            THREAD_FINISH.with(|f| {
                if f.set.get() {
                    return Poll::Ready(());
                }
                let mut waiters = f.waiters.borrow_mut();
                match slot {
                    Some(i) if waiters[i].will_wake(cx.waker()) => {}
                    Some(i) => waiters[i] = cx.waker().clone(),
                    None => {
                        slot = Some(waiters.len());
                        waiters.push(cx.waker().clone());
                    }
                }
                Poll::Pending
            })
        })
    }
}

/// When Redis closed a connection (ns since the epoch), and the producers' positions just before.
type Cutoff = (u64, Vec<u64>);

/// A consumer's state between its connections.
struct Consumer {
    window: Window,
    /// Time spent on each message, for slow consumers.
    slow: Option<Duration>,
    tuning: Tuning,
    timer: Timer,
    out: ConsumerOutput,
    thread_stats: Rc<RefCell<Option<ThreadStats>>>,
    shared: Arc<Shared>,
    /// When Redis closed a slow consumer's connection, and the producers'
    /// positions then, as seen by its watcher.
    kill_seen: Rc<RefCell<Option<Cutoff>>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
    /// Sharded on a cluster: the connections whose channels are being subscribed again.
    partials: Vec<Partial>,
}

/// An open outage of some of a sharded consumer's channels.
struct Partial {
    /// The consumer's connection (see [`ShardChange`]).
    shard: usize,
    /// Index into the consumer's outages.
    outage: usize,
    /// Which channels it covers.
    on: Vec<bool>,
}

impl Consumer {
    async fn run(&mut self, conn: PubSubConsumer, planned: Vec<Planned>) -> Result<(), ConnError> {
        let clock = self.shared.clock;
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        let mut planned = planned.into_iter().peekable();
        self.watch(&conn);
        let mut conn = Some(conn);
        loop {
            let next_down = planned.peek().map(|o| o.down_ns);
            tokio::select! {
                biased;
                _ = &mut finished => {
                    self.finish(conn.is_some());
                    return Ok(());
                }
                _ = clock.sleep_until_ns(next_down.unwrap_or(u64::MAX / 4)), if next_down.is_some() => {
                    let Planned { up_ns, .. } = planned.next().expect("peeked");
                    let Some(up) = up_ns else {
                        // A crash: gone at once, no UNSUBSCRIBE; what was on its way is lost in the buffer.
                        if conn.take().is_some() {
                            self.stop_watching();
                            let closed = self.shared.positions();
                            self.close(EventKind::Crash, clock.now_ns(), self.out.stats.positions(), closed);
                        }
                        self.sleep_until(u64::MAX / 4).await;
                        self.finish(false);
                        return Ok(());
                    };
                    if let Some(c) = conn.take() {
                        self.leave(c).await?;
                    }
                    if !self.sleep_until(up).await {
                        self.finish(false);
                        return Ok(());
                    }
                    conn = self.resubscribe().await?;
                }
                r = conn.as_mut().expect("connected between outages").fill() => match r {
                    Ok(()) => {
                        let c = conn.as_mut().expect("connected");
                        self.take_messages(c).await;
                        while let Some(change) = c.take_change() {
                            self.shard_changed(change);
                        }
                    }
                    Err(ConnError::Closed | ConnError::Io(_)) => {
                        drop(conn.take());
                        self.server_closed();
                        if !self.shared.scenario.reconnect {
                            self.sleep_until(u64::MAX / 4).await;
                            self.finish(false);
                            return Ok(());
                        }
                        conn = self.resubscribe().await?;
                    }
                    Err(e) => return Err(e),
                },
            }
            if conn.is_none() {
                // Reconnecting was cut short by the end of the run.
                self.finish(false);
                return Ok(());
            }
        }
    }

    /// Accounts for every complete message in the buffer. A slow consumer
    /// spends its delay on each, and watches for Redis closing it meanwhile.
    async fn take_messages(&mut self, conn: &mut PubSubConsumer) {
        let live = &self.shared.live;
        let clock = self.shared.clock;
        let missing_before = self.out.stats.missing_now;
        let mut fresh = 0;
        let mut now = clock.now_ns();
        let track = self.shared.live.node_seen_ns.get().is_some();
        loop {
            let fresh_one = {
                let Ok(Some(d)) = conn.next() else { break };
                if track {
                    let channel = crate::wire::Header::decode(d.payload).map(|h| h.channel);
                    self.shared.seen(channel.into_iter(), now);
                }
                let mut ts = self.thread_stats.borrow_mut();
                let ts = ts.as_mut().expect("thread stats exist once started");
                self.out.stats.record(d.payload, now, &self.window, ts)
            };
            fresh += fresh_one as u64;
            if let Some(delay) = self.slow {
                self.timer.sleep_until_ns(now + delay.as_nanos() as u64).await;
                now = clock.now_ns();
            }
        }
        live.delivered.fetch_add(fresh, Relaxed);
        let missing_now = self.out.stats.missing_now;
        if missing_now != missing_before {
            live.lost_so_far.fetch_add(missing_now.wrapping_sub(missing_before), Relaxed);
        }
    }

    /// A scenario disconnect: UNSUBSCRIBE, take what Redis had already sent,
    /// then close. Everything published after that is lost because nobody was
    /// subscribed, none of it in a buffer.
    async fn leave(&mut self, mut conn: PubSubConsumer) -> Result<(), ConnError> {
        self.stop_watching();
        conn.start_leaving().await?;
        while !conn.has_left() {
            conn.fill().await?;
            self.take_messages(&mut conn).await;
        }
        drop(conn);
        let received = self.out.stats.positions();
        self.close(EventKind::Disconnect, self.shared.clock.now_ns(), received.clone(), received);
        Ok(())
    }

    /// The server closed the connection: whatever it had queued for us is gone.
    fn server_closed(&mut self) {
        self.stop_watching();
        let seen = self.kill_seen.borrow_mut().take();
        let (at, closed) = seen.unwrap_or_else(|| (self.shared.clock.now_ns(), self.shared.positions()));
        let received = self.out.stats.positions();
        self.close(EventKind::ServerKill, at, received, closed);
    }

    /// A sharded consumer lost one of its connections (or some channels, whose
    /// slot moved), or has it back: an outage of those channels only (for the
    /// others, the positions make empty ranges, so no loss is put down to it).
    fn shard_changed(&mut self, change: ShardChange) {
        let now = self.shared.clock.now_ns();
        match change {
            ShardChange::Lost { shard, channels: lost, moved } => {
                self.end_partial(shard, now);
                let channels = self.shared.scenario.channels as usize;
                let mut on = vec![false; channels];
                lost.into_iter().filter(|&c| c < channels).for_each(|c| on[c] = true);
                let (received, closed) = (self.out.stats.positions(), self.shared.positions());
                let received: Vec<u64> =
                    (0..closed.len()).map(|i| if on[i % channels] { received[i] } else { closed[i] }).collect();
                // A moved slot's messages published before the move all came before the
                // server's sunsubscribe, on the same connection: what is missing was
                // published after it, while the consumer was not subscribed anywhere.
                let closed = if moved { received.clone() } else { closed };
                let consumer = self.out.stats.id;
                let kind = if moved { EventKind::SlotMoved } else { EventKind::ServerKill };
                let outage = Outage {
                    consumer,
                    kind,
                    closed_ns: now,
                    resubscribed_ns: None,
                    received,
                    closed,
                    resubscribed: None,
                };
                self.out.outages.push(outage);
                self.partials.push(Partial { shard, outage: self.out.outages.len() - 1, on });
            }
            ShardChange::Back { shard } => self.end_partial(shard, now),
        }
    }

    /// Ends the outage of one shard's channels, if one is open.
    fn end_partial(&mut self, shard: usize, now: u64) {
        let Some(at) = self.partials.iter().position(|p| p.shard == shard) else { return };
        let Partial { outage, on, .. } = self.partials.swap_remove(at);
        let channels = on.len();
        let positions = self.shared.positions();
        let outage = &mut self.out.outages[outage];
        let back =
            (0..positions.len()).map(|i| if on[i % channels] { positions[i] } else { outage.closed[i] }).collect();
        outage.resubscribed = Some(back);
        outage.resubscribed_ns = Some(now);
    }

    fn close(&mut self, kind: EventKind, closed_ns: u64, received: Vec<u64>, closed: Vec<u64>) {
        while let Some(shard) = self.partials.first().map(|p| p.shard) {
            self.end_partial(shard, closed_ns);
        }
        self.shared.live.connected.fetch_sub(1, Relaxed);
        if kind == EventKind::Disconnect {
            self.out.stats.disconnects += 1;
        }
        let consumer = self.out.stats.id;
        self.out.outages.push(Outage {
            consumer,
            kind,
            closed_ns,
            resubscribed_ns: None,
            received,
            closed,
            resubscribed: None,
        });
    }

    /// For a slow consumer: watches from the side for Redis closing `conn`.
    fn watch(&mut self, conn: &PubSubConsumer) {
        let Some(client_id) = conn.client_id else { return };
        let (shared, seen) = (self.shared.clone(), self.kill_seen.clone());
        self.watcher = Some(tokio::task::spawn_local(async move {
            // The kill happened before the poll that found it: take the positions just before that poll.
            let mut before = (0, Vec::new());
            let snapshot = || before = (shared.clock.now_ns(), shared.positions());
            if shared.pubsub().wait_closed(client_id, Duration::from_millis(2), snapshot).await.is_ok() {
                *seen.borrow_mut() = Some(before);
            }
        }));
    }

    fn stop_watching(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }

    /// At the end of the run: a kill the watcher saw but the consumer had not
    /// reached yet becomes an outage; whatever Redis accepted and had not
    /// delivered yet is lost in the buffer.
    fn finish(&mut self, connected: bool) {
        self.stop_watching();
        let killed = self.kill_seen.borrow().is_some();
        if connected && killed {
            self.server_closed();
        } else if connected {
            self.out.end = Some(self.out.stats.positions());
        }
    }

    /// Sleeps until `ns`; false if the run finished first.
    async fn sleep_until(&self, ns: u64) -> bool {
        let mut finish = self.shared.finish.clone();
        tokio::select! {
            _ = finish.wait_for(|f| *f) => false,
            _ = self.shared.clock.sleep_until_ns(ns) => true,
        }
    }

    /// Connects and subscribes again, with backoff; `None` if the run finished first.
    async fn resubscribe(&mut self) -> Result<Option<PubSubConsumer>, ConnError> {
        let (transport, tuning, want_id) = (self.shared.pubsub(), self.tuning, self.slow.is_some());
        let id = self.out.stats.id;
        let conn = reconnect(&self.shared, || transport.consumer(id, tuning, want_id)).await?;
        if let Some(conn) = &conn {
            self.watch(conn);
            let outage = self.out.outages.last_mut().expect("resubscribing after an outage");
            outage.resubscribed_ns = Some(self.shared.clock.now_ns());
            outage.resubscribed = Some(self.shared.positions());
            self.shared.live.connected.fetch_add(1, Relaxed);
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(producers: u32, consumers: u32, threads: usize) -> Vec<(usize, usize)> {
        layout(producers, consumers, threads).iter().map(|a| (a.producers.len(), a.consumers.len())).collect()
    }

    #[tokio::test]
    async fn thread_finish_releases_every_waiter_once_set() {
        let (a, b) = (ThreadFinish::wait(), ThreadFinish::wait());
        tokio::pin!(a, b);
        let short = Duration::from_millis(20);
        assert!(tokio::time::timeout(short, &mut a).await.is_err(), "not before it is set");
        assert!(tokio::time::timeout(short, &mut a).await.is_err(), "polled again: still waiting");
        let setter = async {
            tokio::time::sleep(short).await;
            ThreadFinish::set();
        };
        tokio::join!(setter, &mut a, &mut b);
        ThreadFinish::wait().await;
    }

    #[test]
    fn light_paced_runs_take_one_thread() {
        let s = |rate: f64, consumers: u32| Scenario { rate, consumers, ..Scenario::default() };
        assert_eq!(auto_threads(&s(1_000.0, 1), 8), 1);
        assert_eq!(auto_threads(&s(5_000.0, 4), 8), 1, "25,000 operations/s");
        assert_eq!(auto_threads(&s(0.0, 1), 8), 8, "as fast as possible");
        assert_eq!(auto_threads(&s(30_000.0, 1), 8), 8, "60,000 operations/s");
        assert_eq!(auto_threads(&s(20.0, 5_000), 8), 8, "bursts of 5,000 deliveries");
        let grouped = Scenario { transport: TransportKind::Streams, groups: 1, ..s(10_000.0, 16) };
        assert_eq!(auto_threads(&grouped, 8), 1, "16 consumers sharing one group: one delivery per message");
    }

    #[test]
    fn producers_get_threads_of_their_own() {
        assert_eq!(shape(1, 1, 2), [(1, 0), (0, 1)]);
        assert_eq!(shape(1, 5000, 2), [(1, 0), (0, 5000)]);
        assert_eq!(shape(1, 5000, 4), [(1, 0), (0, 1667), (0, 1667), (0, 1666)]);
        assert_eq!(shape(8, 32, 2), [(8, 0), (0, 32)]);
        assert_eq!(shape(4, 4, 8), [(1, 0), (1, 0), (1, 0), (1, 0), (0, 1), (0, 1), (0, 1), (0, 1)]);
        assert_eq!(shape(3, 1, 2), [(3, 0), (0, 1)], "a consumer thread is always left");
        assert_eq!(shape(2, 3, 1), [(2, 3)]);
        assert_eq!(shape(0, 3, 2), [(0, 2), (0, 1)]);
        assert_eq!(shape(2, 0, 2), [(1, 0), (1, 0)]);
        let all = layout(3, 7, 3);
        let mut ids: Vec<u32> = all.iter().flat_map(|a| a.consumers.iter().copied()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..7).collect::<Vec<_>>(), "every consumer exactly once");
    }
}
