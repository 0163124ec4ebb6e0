//! Producers, consumers and the phases of a run (warmup, measure, drain).
//!
//! The swarm runs on worker threads, each a single-threaded tokio runtime, so
//! the tasks of a thread share that thread's [`ThreadStats`] without locks or
//! atomics on the per-message path. Producers and consumers are spread over the
//! threads round-robin. Coordination (ready, start, producers done, finish)
//! goes through channels a handful of times per run, never per message.

use crate::chaos::Outage;
use crate::clock;
use crate::drivers::ctx::{BoardCopy, ThreadBoard, ThreadFinish};
use crate::drivers::{Consumed, ConsumerOutput, Ctx, Driver, Note, Notes, SideResults, StatsCell};
use crate::live::{Live, Outcome};
use crate::meters::{LatencyBuckets, LatencySnapshot};
#[cfg(test)]
use crate::scenario::Rate;
use crate::scenario::Scenario;
use crate::stats::{ProducerStats, ThreadStats, Window};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// After a failure, how long consumers may still read what is already on
/// their sockets, so that nothing measured before it is dropped.
const ABORT_DRAIN: Duration = crate::drivers::produce::ABORT_DRAIN;
/// Longest wait for the driver's side tasks after the finish signal (one may
/// be waiting on a Redis that stopped answering).
const SIDE_TASKS_END: Duration = Duration::from_secs(1);

pub mod share;

pub use share::Share;

/// Everything the swarm measured, merged over threads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwarmOutput {
    pub window: Window,
    pub threads: ThreadStats,
    /// What the driver's side tasks measured (backlog, replay, retention).
    #[serde(default)]
    pub side: SideResults,
    pub consumers: Vec<ConsumerOutput>,
    pub producers: Vec<ProducerStats>,
    pub outcome: Outcome,
    /// Worker threads used.
    pub thread_count: usize,
    /// With `--kill-node`: when a consumer first received a message of the
    /// killed node's channels after its restart, ns since the epoch.
    #[serde(default)]
    pub recovered_ns: Option<u64>,
    /// From the end of the measured phase until the drain ended: everything
    /// expected was in, or the drain's limit (or an abort) came first.
    #[serde(default)]
    pub drain_ns: u64,
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
/// worker thread takes on its own while every message is a wake-up of its
/// own: at 50,000 msg/s, 1 → 1 (a wake-up every 20 µs), one thread was 90%
/// busy and marked the run harness-limited, with a p50 of 87 µs where two
/// threads gave 50 µs for the same CPU (`scripts/efficiency.sh`, quiet).
const LIGHT_LOAD: f64 = 50_000.0;

/// The same where every producer releases its messages once a window
/// (its period is shorter than the pacing window): a fifth of what one
/// thread reaches in a rate-0 run. One thread then wakes about once a
/// window (its timer; the replies and the deliveries Redis writes together
/// come while it is awake, or with the next timer) where two threads each
/// woke for their own: at 100,000 msg/s, 0.90 CPU against 1.12.
const LIGHT_LOAD_COALESCED: f64 = 250_000.0;

/// Consumers per message up to which a delivery burst is short enough to
/// share a thread with the producer (about a microsecond each).
const LIGHT_FANOUT: u32 = 64;

/// Threads for `--threads 0`: one for a light, paced run, else one per CPU.
/// On a machine Redis shares, a second harness thread for a light run only
/// takes a CPU from Redis, and it costs latency: a message then wakes a
/// thread that has slept since the last one, where a single thread is still
/// awake from its own send when the delivery comes back.
/// `fanout`: deliveries each message makes (the driver's [`Driver::fanout`]).
fn auto_threads(s: &Scenario, fanout: u32, cpus: usize) -> usize {
    let operations = s.rate.peak() * (1.0 + f64::from(fanout));
    let window_ns = s.pacing_window_ns(s.producers);
    let coalesced = s.rate.lowest() / f64::from(s.producers.max(1)) > 1e9 / window_ns.max(1) as f64;
    let limit = if coalesced { LIGHT_LOAD_COALESCED } else { LIGHT_LOAD };
    let light = !s.rate.is_unlimited() && operations <= limit && fanout <= LIGHT_FANOUT;
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

/// Runs this process's share of the swarm of `scenario` through `driver`.
///
/// On a virtual clock (`clock::Clock::virtual_`) the share runs as one
/// worker whose tasks are the caller's runtime's (a `LocalSet`): a paused
/// clock belongs to one runtime, and a thread of its own would run on the
/// machine's time.
pub async fn run_share(scenario: &Scenario, driver: Arc<dyn Driver>, live: Arc<Live>, share: Share) -> SwarmOutput {
    if share.clock.is_virtual() {
        let tasks = tokio::task::LocalSet::new();
        return tasks.run_until(share_run(scenario, driver, live, share)).await;
    }
    share_run(scenario, driver, live, share).await
}

async fn share_run(scenario: &Scenario, driver: Arc<dyn Driver>, live: Arc<Live>, share: Share) -> SwarmOutput {
    let (producer_ids, consumer_ids) = (share.producers.clone(), share.consumers.clone());
    let (local_producers, local_consumers) = (producer_ids.len() as u32, consumer_ids.len() as u32);
    let parts = (local_producers + local_consumers) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_count = match scenario.threads {
        _ if share.clock.is_virtual() => 1,
        0 => auto_threads(scenario, driver.fanout(scenario), cpus),
        n => n,
    };
    let thread_count = thread_count.clamp(1, parts.max(1));
    let mut assignments = layout(local_producers, local_consumers, thread_count);
    for a in &mut assignments {
        a.producers.iter_mut().for_each(|id| *id += producer_ids.start);
        a.consumers.iter_mut().for_each(|id| *id += consumer_ids.start);
    }

    let Share {
        clock,
        ready: ready_tx,
        start: start_at,
        measured: measured_tx,
        all_measured,
        side_tasks,
        checkpoints,
        ..
    } = share;
    live.set_clock(clock);
    let (start_tx, start_rx) = watch::channel(None);
    let (finish_tx, finish_rx) = watch::channel(false);
    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    // Units several consumers share are all in this share (groups run in one
    // process); otherwise each consumer is its own.
    let units = driver.shared_units(scenario);
    let local_units = if units > 0 && units != scenario.consumers { 0..units } else { consumer_ids.clone() };
    let shared = Arc::new(Ctx::new(
        scenario.clone(),
        clock,
        driver,
        live.clone(),
        start_rx,
        finish_rx,
        producer_ids.clone(),
        local_units,
        side_tasks,
    ));

    let (request_tx, request_rx) = watch::channel(0u64);
    let (copy_tx, copy_rx) = mpsc::unbounded_channel();
    let workers = Workers::start(&shared, assignments, &note_tx, (request_rx.clone(), copy_tx.clone()));
    drop(copy_tx);
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
    // Every share starts at the same instant, once all of them are connected
    // (a share that failed to connect says nothing, and ends its run at once).
    // A share that failed drops its `ready` unanswered here, not at its end:
    // the side that waits for it (in-process, or a worker's) moves on at once.
    let readied = match shared.aborted() {
        None => ready_tx.send(()).is_ok(),
        Some(_) => {
            drop(ready_tx);
            false
        }
    };
    let warmup_start = if readied {
        match start_at.await {
            Ok(at) => at,
            Err(_) => {
                shared.fail("worker".into(), "the coordinator called the run off before it started");
                clock.now_ns()
            }
        }
    } else {
        clock.now_ns()
    };
    let measure_start = warmup_start + scenario.warmup.as_nanos() as u64;
    let window = Window { start_ns: measure_start, end_ns: measure_start + scenario.duration.as_nanos() as u64 };
    if let Some(watch) = shared.faults.recovery_watch(&window) {
        let _ = shared.recovery.set(watch);
    }
    live.measure_start_ns.store(window.start_ns, Relaxed);
    live.measure_end_ns.store(window.end_ns, Relaxed);
    let _ = start_tx.send(Some((warmup_start, window)));
    let side = shared.driver.side_tasks(&shared, window);
    let checkpointing = checkpoints.map(|(every, to)| {
        let taking = take_checkpoints(shared.clone(), every, window, thread_count, (request_tx, copy_rx), to);
        tokio::spawn(taking)
    });

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
    // The drain starts once every share's producers are done.
    let _ = measured_tx.send(measured_per_channel.clone());
    // After a failure, nothing is planned to end: the drain is counted from now, not from the planned end.
    let latest = match shared.aborted() {
        Some(_) => clock.now_ns(),
        None => window.end_ns + (scenario.drain * 2 + Duration::from_secs(5)).as_nanos() as u64,
    };
    measured_per_channel = tokio::select! {
        all = all_measured => all.unwrap_or_else(|_| vec![u64::MAX / 4; scenario.channels as usize]),
        _ = clock.sleep_until_ns(latest) => vec![u64::MAX / 4; scenario.channels as usize],
    };
    let expected: u64 = measured_per_channel.iter().sum::<u64>().saturating_mul(shared.local_units.len() as u64);
    let mut drain_end = tokio::time::Instant::now()
        + scenario.drain.min(Duration::from_nanos(
            (window.end_ns + scenario.drain.as_nanos() as u64).saturating_sub(clock.now_ns()),
        ));
    loop {
        let aborted = shared.aborted().is_some();
        if aborted {
            drain_end = drain_end.min(tokio::time::Instant::now() + ABORT_DRAIN);
        }
        // After a failure the consumers get their ABORT_DRAIN even when everything
        // is in: they see what failed (Redis closing them is an event) before the finish.
        let all_in = live.delivered.load(Relaxed) >= expected;
        if tokio::time::Instant::now() >= drain_end || (all_in && !aborted) {
            break;
        }
        // A stop (Ctrl-C) during the drain ends it too: the run winds down within a second.
        if let Some(by) = live.wind_down_by() {
            drain_end = drain_end.min(by);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_ns = clock.now_ns().saturating_sub(window.end_ns);
    let _ = finish_tx.send(true);
    if let Some(taking) = checkpointing {
        // The last copy is handed over (or given up) before the final result is built.
        let _ = taking.await;
    }
    let side = side.finish(live.time_left(SIDE_TASKS_END).max(crate::live::AFTER_WIND_DOWN)).await;

    let outputs = workers.join().await;
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
    consumers.extend(shared.driver.unit_outputs(&shared, outages));
    consumers.sort_by_key(|c| c.stats.id);
    producers.sort_by_key(|p| p.id);
    let outcome = match shared.aborted() {
        Some(reason) => Outcome::aborted(reason),
        None if panicked => Outcome::aborted("a worker thread panicked"),
        None if live.stop_requested() => Outcome::interrupted(),
        None => Outcome::ok(),
    };
    let recovered_ns = Some(shared.recovered_ns.load(Relaxed)).filter(|&ns| ns > 0);
    let threads = merged.unwrap_or_else(|| ThreadStats::new(&window));
    SwarmOutput { window, threads, side, consumers, producers, outcome, thread_count, recovered_ns, drain_ns }
}

/// The share's workers: a thread each, or on a virtual clock one set of
/// tasks on the caller's runtime (which [`run_share`] runs in a `LocalSet`).
enum Workers {
    Threads(Vec<std::thread::JoinHandle<ThreadOutput>>),
    Virtual(Vec<tokio::task::JoinHandle<ThreadOutput>>),
}

impl Workers {
    fn start(shared: &Arc<Ctx>, assignments: Vec<Assignment>, notes: &Notes, link: CheckpointLink) -> Workers {
        let each = |a| (shared.clone(), a, notes.clone(), (link.0.clone(), link.1.clone()));
        if shared.clock.is_virtual() {
            let tasks = assignments.into_iter().map(|a| {
                let (shared, a, notes, link) = each(a);
                tokio::task::spawn_local(async move {
                    // The caller's thread may have run a swarm before: its end and its tasks are not this one's.
                    crate::drivers::ctx::clear_thread();
                    worker_tasks(shared, a, notes, link).await
                })
            });
            return Workers::Virtual(tasks.collect());
        }
        let threads = assignments.into_iter().enumerate().map(|(t, a)| {
            let (shared, a, notes, link) = each(a);
            std::thread::Builder::new()
                .name(format!("eventbench-{t}"))
                .spawn(move || worker_thread(shared, a, notes, link))
                .expect("spawning a worker thread")
        });
        Workers::Threads(threads.collect())
    }

    /// Each worker's output, or `Err` for one that panicked.
    async fn join(self) -> Vec<Result<ThreadOutput, ()>> {
        match self {
            Workers::Threads(handles) => {
                let joined = tokio::task::spawn_blocking(move || {
                    handles.into_iter().map(|h| h.join().map_err(drop)).collect::<Vec<_>>()
                });
                joined.await.expect("joining worker threads")
            }
            Workers::Virtual(tasks) => {
                let mut out = Vec::with_capacity(tasks.len());
                for t in tasks {
                    out.push(t.await.map_err(drop));
                }
                out
            }
        }
    }
}

fn worker_thread(shared: Arc<Ctx>, a: Assignment, notes: Notes, link: CheckpointLink) -> ThreadOutput {
    clock::tighten_timer_slack();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building a tokio runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker_tasks(shared, a, notes, link))
}

/// What a worker thread runs: its producers and consumers, and beside them
/// the thread's finish, the sealing of past seconds, its checkpoint copies
/// and its live latency.
async fn worker_tasks(shared: Arc<Ctx>, a: Assignment, notes: Notes, link: CheckpointLink) -> ThreadOutput {
    let stats: StatsCell = StatsCell::default();
    let mut finish = shared.finish.clone();
    tokio::task::spawn_local(async move {
        let _ = finish.wait_for(|f| *f).await;
        ThreadFinish::set();
    });
    tokio::task::spawn_local(seal_past_seconds(shared.clone(), stats.clone()));
    tokio::task::spawn_local(answer_checkpoints(link, stats.clone()));
    let live_latency = Arc::new(LatencyBuckets::default());
    shared.live.meters.register(live_latency.clone());
    tokio::task::spawn_local(publish_latency(stats.clone(), live_latency.clone()));
    let producers: Vec<_> = a
        .producers
        .iter()
        .map(|&id| tokio::task::spawn_local(shared.driver.clone().producer(id, shared.clone(), notes.clone())))
        .collect();
    let mut out = ThreadOutput { stats: None, consumers: Vec::new(), producers: Vec::new(), outages: Vec::new() };
    let consumers: Vec<_> = a
        .consumers
        .iter()
        .map(|&id| {
            let task = shared.driver.clone().consumer(id, shared.clone(), notes.clone(), stats.clone());
            tokio::task::spawn_local(task)
        })
        .collect();
    for c in consumers {
        match c.await {
            Ok(Consumed::Own(c)) => out.consumers.push(*c),
            Ok(Consumed::Shared(outages)) => out.outages.extend(outages),
            Ok(Consumed::Nothing) | Err(_) => {}
        }
    }
    for p in producers {
        if let Ok(Some(p)) = p.await {
            out.producers.push(p);
        }
    }
    // The thread's last latencies, so that export's final histogram holds every one.
    if let Some(t) = stats.borrow().as_ref() {
        live_latency.set(&LatencySnapshot::of(&t.latency));
    }
    out.stats = stats.borrow_mut().take();
    out
}

/// Seconds of send time further back than this are sealed: few messages
/// arrive later than that, and one that does opens its second again.
const SEAL_AFTER_S: u64 = 3;

/// Once a second, compresses the thread's per-second histograms of seconds
/// long past, so that a long run's memory stays flat.
async fn seal_past_seconds(shared: Arc<Ctx>, stats: StatsCell) {
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

/// A copy of what a share measured so far, taken while the run goes on.
#[derive(Debug)]
pub struct Checkpoint {
    /// Merged over the share's threads like its final output.
    pub out: SwarmOutput,
    /// When it was asked for, ns since the epoch: every message due before
    /// then had been written by the time its producer's copy was taken.
    pub taken_ns: u64,
    /// Which checkpoint of the run (1, 2, ...), the same in every share.
    pub request: u64,
}

/// A worker thread's copy for checkpoint request `.0`.
type ThreadCopy = (u64, Option<ThreadStats>, BoardCopy);
/// A worker thread's side of the checkpoints: the requests, and where its copies go.
type CheckpointLink = (watch::Receiver<u64>, mpsc::UnboundedSender<ThreadCopy>);

/// Longest wait for every thread's copy; a thread that is still busy after
/// this skips the checkpoint (the next one comes soon enough).
const COPY_WAIT: Duration = Duration::from_secs(5);

/// On each request, copies what this thread's tasks hold. It runs between
/// their polls, so the copy is whole; a message per thread per checkpoint.
async fn answer_checkpoints(link: CheckpointLink, stats: StatsCell) {
    let (mut requests, copies) = link;
    while requests.changed().await.is_ok() {
        let request = *requests.borrow_and_update();
        let thread = stats.borrow().clone();
        if copies.send((request, thread, ThreadBoard::copy())).is_err() {
            return;
        }
    }
}

/// Every `every` of the measured phase and the drain, until the run
/// finishes: asks each thread for a copy, merges them like the final
/// output, and hands the result over.
async fn take_checkpoints(
    shared: Arc<Ctx>,
    every: Duration,
    window: Window,
    threads: usize,
    link: (watch::Sender<u64>, mpsc::UnboundedReceiver<ThreadCopy>),
    to: mpsc::UnboundedSender<Checkpoint>,
) {
    let (requests, mut copies) = link;
    let mut finish = shared.finish.clone();
    for request in 1u64.. {
        let at = window.start_ns.saturating_add(every.as_nanos() as u64 * request);
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return,
            _ = shared.clock.sleep_until_ns(at) => {}
        }
        let taken_ns = shared.clock.now_ns();
        if requests.send(request).is_err() {
            return;
        }
        let mut got = Vec::with_capacity(threads);
        let deadline = tokio::time::Instant::now() + COPY_WAIT;
        while got.len() < threads {
            match tokio::time::timeout_at(deadline, copies.recv()).await {
                Ok(Some(copy)) if copy.0 == request => got.push(copy),
                Ok(Some(_stale)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if got.len() < threads {
            continue;
        }
        let out = merge_copies(&shared, window, threads, got);
        if to.send(Checkpoint { out, taken_ns, request }).is_err() {
            return;
        }
    }
}

/// How often a thread's latencies go to live export's buckets.
const PUBLISH_LATENCY_EVERY: Duration = Duration::from_millis(250);

/// Publishes the thread's latency histogram (the one the results come from)
/// to live export's buckets every [`PUBLISH_LATENCY_EVERY`]: the per-message
/// path records into the HDR histogram only, and export costs it nothing.
async fn publish_latency(stats: StatsCell, buckets: Arc<LatencyBuckets>) {
    let finished = ThreadFinish::wait();
    tokio::pin!(finished);
    loop {
        tokio::select! {
            _ = &mut finished => return,
            _ = tokio::time::sleep(PUBLISH_LATENCY_EVERY) => {}
        }
        if let Some(t) = stats.borrow().as_ref() {
            buckets.set(&LatencySnapshot::of(&t.latency));
        }
    }
}

/// The threads' copies as one output, the way the final one is merged.
fn merge_copies(shared: &Ctx, window: Window, thread_count: usize, copies: Vec<ThreadCopy>) -> SwarmOutput {
    let mut merged: Option<ThreadStats> = None;
    let (mut consumers, mut producers, mut outages) = (Vec::new(), Vec::new(), Vec::new());
    for (_, stats, board) in copies {
        match (&mut merged, stats) {
            (Some(m), Some(s)) => m.merge(&s),
            (None, s) => merged = s,
            (Some(_), None) => {}
        }
        consumers.extend(board.consumers);
        producers.extend(board.producers);
        outages.extend(board.outages);
    }
    consumers.extend(shared.driver.unit_outputs(shared, outages));
    consumers.sort_by_key(|c| c.stats.id);
    producers.sort_by_key(|p| p.id);
    SwarmOutput {
        window,
        threads: merged.unwrap_or_else(|| ThreadStats::new(&window)),
        side: shared.side_so_far.lock().map(|b| b.clone()).unwrap_or_default(),
        consumers,
        producers,
        outcome: Outcome::ok(),
        thread_count,
        recovered_ns: Some(shared.recovered_ns.load(Relaxed)).filter(|&ns| ns > 0),
        drain_ns: 0,
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

    /// Each consumer gets every message.
    fn auto_threads_of(s: &Scenario, cpus: usize) -> usize {
        auto_threads(s, s.consumers, cpus)
    }

    #[test]
    fn light_paced_runs_take_one_thread() {
        let s = |rate: f64, consumers: u32| Scenario { rate: Rate::Constant(rate), consumers, ..Scenario::default() };
        assert_eq!(auto_threads_of(&s(1_000.0, 1), 8), 1);
        assert_eq!(auto_threads_of(&s(5_000.0, 4), 8), 1, "25,000 operations/s");
        assert_eq!(auto_threads_of(&s(0.0, 1), 8), 8, "as fast as possible");
        assert_eq!(auto_threads_of(&s(50_000.0, 1), 8), 8, "100,000 wake-ups/s, one per message");
        assert_eq!(auto_threads_of(&s(100_000.0, 1), 8), 1, "200,000 operations/s, released once a window");
        assert_eq!(auto_threads_of(&s(150_000.0, 1), 8), 8, "300,000 operations/s");
        let two = Scenario { producers: 2, ..s(100_000.0, 1) };
        assert_eq!(auto_threads_of(&two, 8), 8, "each producer's period is the window: a wake-up per message");
        let ramp = Scenario { rate: "0..100k/10s".parse().unwrap(), ..s(0.0, 1) };
        assert_eq!(auto_threads_of(&ramp, 8), 8, "a ramp from 0 passes the rates that take a wake-up a message");
        assert_eq!(auto_threads_of(&s(20.0, 5_000), 8), 8, "bursts of 5,000 deliveries");
        let grouped = s(10_000.0, 16);
        assert_eq!(auto_threads(&grouped, 1, 8), 1, "16 consumers sharing one group: one delivery per message");
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
