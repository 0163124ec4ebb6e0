//! What every producer and consumer task of a run shares: the scenario, the
//! clock, the driver, the phases (start, finish), the producers' progress,
//! the first failure. Built by the swarm, read by the drivers' tasks; it is
//! touched a few times per read or write batch, never per message.

use super::Driver;
use crate::chaos::Outage;
use crate::clock::Clock;
use crate::connect::ConnError;
use crate::live::Live;
use crate::scenario::Scenario;
use crate::stats::{ConsumerStats, ProducerStats, ThreadStats, Window};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use tokio::sync::{mpsc, watch, Notify};

/// How much later than its own clock says a process reads another's schedule:
/// well above the clocks' uncertainty between processes (tens to hundreds of µs).
pub const POSITION_SLACK_NS: u64 = 1_000_000;

/// Messages a task sends the swarm, a few per task per run.
#[derive(Debug)]
pub enum Note {
    /// Connected (and subscribed): ready for the start.
    Ready,
    /// A producer is done; its measured messages per channel.
    ProducerDone { measured: Vec<u64> },
    /// It could not connect; the run is over.
    Failed,
}

/// Where tasks send their [`Note`]s.
pub type Notes = mpsc::UnboundedSender<Note>;

/// A worker thread's latency histograms, shared by the tasks of that thread.
pub type StatsCell = Rc<RefCell<Option<ThreadStats>>>;

/// One consumer's results (or, for Streams groups, one group's).
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

/// What a consumer task leaves behind.
#[derive(Debug)]
pub enum Consumed {
    /// Its own accounting (a Pub/Sub subscriber).
    Own(Box<ConsumerOutput>),
    /// Its outages; its deliveries are in a unit it shares ([`Ctx::units`]).
    Shared(Vec<Outage>),
    /// It never connected.
    Nothing,
}

/// The run as its tasks see it.
pub struct Ctx {
    pub scenario: Scenario,
    /// The scenario's faults, as the schedule needs them.
    pub faults: crate::chaos::Plan,
    pub clock: Clock,
    pub driver: Arc<dyn Driver>,
    pub live: Arc<Live>,
    /// Accounting that several consumers share (Streams groups), locked once
    /// per batch read; empty when each consumer accounts for itself.
    pub units: Vec<Mutex<ConsumerStats>>,
    /// The units this process reports.
    pub local_units: Range<u32>,
    /// (warmup start, measured window), sent once everyone is connected.
    pub start: watch::Receiver<Option<(u64, Window)>>,
    /// Set when consumers should stop reading.
    pub finish: watch::Receiver<bool>,
    /// Per (producer, channel): the next sequence number to be written, updated
    /// per batch before its write (so it bounds what Redis may have taken).
    /// Consumers read it when they lose or regain their subscription.
    pub progress: Box<[AtomicU64]>,
    /// The cycle of channels the producers follow (`--channel-skew`); every process builds the same one.
    pub deck: crate::scenario::Deck,
    /// The producers this process runs (the others' positions come from their schedule).
    pub local_producers: Range<u32>,
    /// Whether this process runs the driver's side tasks (one process of a run does).
    pub side_tasks: bool,
    /// With `--kill-node`: the node whose channels are watched, and from when
    /// (set once the measured window is known).
    pub recovery: std::sync::OnceLock<(usize, u64)>,
    /// The first delivery of that node's channels from then on (0: none yet).
    pub recovered_ns: AtomicU64,
    /// What the driver's side tasks measured so far (a backlog sampled once
    /// a second), for checkpoints; the side tasks' own results are the final ones.
    pub side_so_far: Arc<Mutex<super::SideResults>>,
    abort: Mutex<Option<String>>,
    abort_notify: Notify,
}

impl Ctx {
    /// A context for tasks that have not started yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scenario: Scenario,
        clock: Clock,
        driver: Arc<dyn Driver>,
        live: Arc<Live>,
        start: watch::Receiver<Option<(u64, Window)>>,
        finish: watch::Receiver<bool>,
        local_producers: Range<u32>,
        local_units: Range<u32>,
        side_tasks: bool,
    ) -> Ctx {
        let units = (0..driver.shared_units(&scenario))
            .map(|u| Mutex::new(ConsumerStats::new(u, scenario.producers, scenario.channels)))
            .collect();
        let streams = scenario.producers * scenario.channels;
        Ctx {
            progress: (0..streams).map(|_| AtomicU64::new(0)).collect(),
            faults: scenario.fault_plan(),
            deck: crate::scenario::Deck::new(scenario.channel_skew, scenario.channels, scenario.seed),
            scenario,
            clock,
            driver,
            live,
            units,
            local_units,
            start,
            finish,
            local_producers,
            side_tasks,
            recovery: std::sync::OnceLock::new(),
            recovered_ns: AtomicU64::new(0),
            side_so_far: Arc::default(),
            abort: Mutex::new(None),
            abort_notify: Notify::new(),
        }
    }

    /// Records the first failure; it ends the run.
    pub fn fail(&self, who: String, e: impl std::fmt::Display) {
        let mut first = self.abort.lock().expect("abort lock");
        if first.is_none() {
            *first = Some(format!("{who}: {e}"));
        }
        drop(first);
        self.abort_notify.notify_waiters();
        self.live.request_stop();
    }

    /// The first failure, if any.
    pub fn aborted(&self) -> Option<String> {
        self.abort.lock().expect("abort lock").clone()
    }

    /// Notes that messages of `channels` arrived at `now` (with `--kill-node` only):
    /// the first from the watched node after its restart is its recovery.
    #[inline]
    pub fn seen(&self, channels: impl Iterator<Item = u32>, now: u64) {
        let Some(&(node, from)) = self.recovery.get() else { return };
        if now < from || self.recovered_ns.load(Relaxed) != 0 {
            return;
        }
        let node_of = self.driver.node_of();
        if channels.into_iter().any(|c| node_of.get(c as usize) == Some(&node)) {
            let _ = self.recovered_ns.compare_exchange(0, now, Relaxed, Relaxed);
        }
    }

    /// The producers' progress, indexed like a consumer's ledgers.
    pub fn positions(&self) -> Vec<u64> {
        let mut positions: Vec<u64> = self.progress.iter().map(|p| p.load(Relaxed)).collect();
        let Some((warmup_start, window)) = *self.start.borrow() else { return positions };
        // Each worker's clock may be off by its offset's uncertainty: place the
        // boundary a little late, so that a message lost while unsubscribed is never taken for another loss.
        let (s, now) = (&self.scenario, self.clock.now_ns() + POSITION_SLACK_NS);
        for p in (0..s.producers).filter(|p| !self.local_producers.contains(p)) {
            let at = scheduled_positions(s, &self.deck, p, warmup_start, &window, now);
            positions[(p * s.channels) as usize..][..s.channels as usize].copy_from_slice(&at);
        }
        positions
    }

    /// The start, once everyone is connected; `None` if the run was called off.
    pub async fn wait_start(&self) -> Option<(u64, Window)> {
        let mut rx = self.start.clone();
        rx.wait_for(|s| s.is_some()).await.ok().and_then(|s| *s)
    }

    /// A consumer's first connection, as every driver takes it: a failure ends
    /// the run ([`Note::Failed`]); once connected, it counts as subscribed,
    /// says [`Note::Ready`], and waits for the start. Returns the connection
    /// and the measured window, or `None` if the run is off.
    pub async fn enlist<C>(
        &self,
        id: u32,
        connected: Result<C, ConnError>,
        notes: &Notes,
        stats: &StatsCell,
    ) -> Option<(C, Window)> {
        let conn = match connected {
            Ok(c) => c,
            Err(e) => {
                self.fail(format!("consumer {id}"), e);
                let _ = notes.send(Note::Failed);
                return None;
            }
        };
        self.live.connected.fetch_add(1, Relaxed);
        let _ = notes.send(Note::Ready);
        let (_, window) = self.wait_start().await?;
        stats.borrow_mut().get_or_insert_with(|| ThreadStats::new(&window));
        Some((conn, window))
    }

    /// Sleeps until `ns`; false if the run finished first.
    pub async fn sleep_until(&self, ns: u64) -> bool {
        let mut finish = self.finish.clone();
        tokio::select! {
            _ = finish.wait_for(|f| *f) => false,
            _ = self.clock.sleep_until_ns(ns) => true,
        }
    }
}

/// The end of the run as one worker thread sees it: set once, by a task that
/// waits on the `finish` channel, and polled by every consumer of the thread
/// on every read without a lock (polling the channel itself locks a waiter
/// list that every consumer of every thread shares).
#[derive(Default)]
pub struct ThreadFinish {
    set: Cell<bool>,
    /// A slot per waiting future; a dropped one frees its slot for the next,
    /// so that a consumer that makes a new future per batch (a slow one)
    /// keeps the list as long as the futures alive at once, not its batches.
    waiters: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

thread_local! {
    static THREAD_FINISH: ThreadFinish = ThreadFinish::default();
}

impl ThreadFinish {
    pub fn set() {
        THREAD_FINISH.with(|f| {
            f.set.set(true);
            f.free.take();
            f.waiters.take().into_iter().flatten().for_each(Waker::wake);
        });
    }

    /// Resolves once the run is finished. Registers its task's waker once
    /// (again only if the task's waker changes).
    pub fn wait() -> FinishWait {
        FinishWait { slot: None }
    }
}

/// The future of [`ThreadFinish::wait`].
pub struct FinishWait {
    slot: Option<usize>,
}

impl Future for FinishWait {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        THREAD_FINISH.with(|f| {
            if f.set.get() {
                return Poll::Ready(());
            }
            let mut waiters = f.waiters.borrow_mut();
            match self.slot {
                Some(i) if waiters[i].as_ref().is_some_and(|w| w.will_wake(cx.waker())) => {}
                Some(i) => waiters[i] = Some(cx.waker().clone()),
                None => {
                    let i = f.free.borrow_mut().pop().unwrap_or_else(|| {
                        waiters.push(None);
                        waiters.len() - 1
                    });
                    waiters[i] = Some(cx.waker().clone());
                    self.slot = Some(i);
                }
            }
            Poll::Pending
        })
    }
}

impl Drop for FinishWait {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        // After the end (or while the thread's locals are torn down) there is nothing to free.
        let _ = THREAD_FINISH.try_with(|f| {
            if f.set.get() {
                return;
            }
            if let Some(w) = f.waiters.borrow_mut().get_mut(i) {
                *w = None;
                f.free.borrow_mut().push(i);
            }
        });
    }
}

/// What the tasks of one worker thread account into, registered where the
/// thread's checkpoint task can copy it: every task of the thread runs on
/// that thread, so a copy taken between their polls is whole (no delivery
/// half-recorded). Tasks reach their own entry through its `Rc` once per
/// batch, as they reach the thread's [`ThreadStats`]; nothing is locked.
#[derive(Default)]
pub struct ThreadBoard {
    consumers: RefCell<Vec<Rc<RefCell<ConsumerOutput>>>>,
    outages: RefCell<Vec<Rc<RefCell<Vec<Outage>>>>>,
    producers: RefCell<Vec<Rc<RefCell<ProducerStats>>>>,
}

thread_local! {
    static THREAD_BOARD: ThreadBoard = ThreadBoard::default();
}

/// A copy of what one worker thread's tasks hold.
#[derive(Debug, Default)]
pub struct BoardCopy {
    pub consumers: Vec<ConsumerOutput>,
    /// Streams members' outages (their deliveries are in [`Ctx::units`]).
    pub outages: Vec<Outage>,
    pub producers: Vec<ProducerStats>,
}

impl ThreadBoard {
    /// Puts a consumer's own accounting on this thread's board.
    pub fn consumer(out: ConsumerOutput) -> Rc<RefCell<ConsumerOutput>> {
        let out = Rc::new(RefCell::new(out));
        THREAD_BOARD.with(|b| b.consumers.borrow_mut().push(out.clone()));
        out
    }

    /// Puts a Streams member's outages on this thread's board.
    pub fn outages() -> Rc<RefCell<Vec<Outage>>> {
        let outages = Rc::new(RefCell::new(Vec::new()));
        THREAD_BOARD.with(|b| b.outages.borrow_mut().push(outages.clone()));
        outages
    }

    /// Puts a producer's counts on this thread's board.
    pub fn producer(p: ProducerStats) -> Rc<RefCell<ProducerStats>> {
        let p = Rc::new(RefCell::new(p));
        THREAD_BOARD.with(|b| b.producers.borrow_mut().push(p.clone()));
        p
    }

    /// Copies everything on this thread's board (called between the tasks' polls).
    pub fn copy() -> BoardCopy {
        THREAD_BOARD.with(|b| BoardCopy {
            consumers: b.consumers.borrow().iter().map(|c| c.borrow().clone()).collect(),
            outages: b.outages.borrow().iter().flat_map(|o| o.borrow().clone()).collect(),
            producers: b.producers.borrow().iter().map(|p| p.borrow().clone()).collect(),
        })
    }
}

/// Starts this thread's [`ThreadFinish`] and [`ThreadBoard`] afresh, for a
/// thread that runs one swarm after another (a virtual run's caller).
pub fn clear_thread() {
    THREAD_FINISH.with(|f| drop((f.set.take(), f.waiters.take(), f.free.take())));
    THREAD_BOARD.with(|b| drop((b.consumers.take(), b.outages.take(), b.producers.take())));
}

/// Adds a consumer's read batch to live export's counters, by the phase the
/// run was in when it was read. Like summary.csv, only measured messages count.
pub fn count_batch(live: &Live, window: &Window, now_ns: u64, fresh: u64, duplicates: u64, out_of_order: u64) {
    let phase = crate::meters::phase_at(now_ns, window.start_ns, window.end_ns);
    let m = &live.meters;
    for (counter, n) in [(&m.delivered, fresh), (&m.duplicates, duplicates), (&m.out_of_order, out_of_order)] {
        if n > 0 {
            counter[phase].fetch_add(n, Relaxed);
        }
    }
}

/// Where the producers of another process are in their sequences at `now_ns`,
/// per channel, as far as their schedule says: the messages due by then
/// (the producer sends each when it is due, so this is right to within its
/// send lag). Unknown for an unlimited rate: 0.
pub fn scheduled_positions(
    s: &Scenario,
    deck: &crate::scenario::Deck,
    producer: u32,
    warmup_start_ns: u64,
    window: &Window,
    now_ns: u64,
) -> Vec<u64> {
    if s.rate.is_unlimited() {
        return vec![0; s.channels as usize];
    }
    let pacer =
        crate::pacer::Pacer::for_producer(&s.rate, s.producers, warmup_start_ns, window.start_ns, window.end_ns);
    let due = pacer.due_at(now_ns, u64::MAX);
    let offset = deck.offset(producer, s.producers);
    (0..s.channels).map(|c| deck.sent_to(offset, due, c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Rate;

    #[test]
    fn finish_waiters_take_as_many_slots_as_are_alive_and_all_wake() {
        std::thread::spawn(|| {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            let mut kept = Box::pin(ThreadFinish::wait());
            assert!(kept.as_mut().poll(&mut cx).is_pending());
            // A slow consumer's new wait per batch, each polled once and dropped.
            for _ in 0..10_000 {
                let mut w = Box::pin(ThreadFinish::wait());
                assert!(w.as_mut().poll(&mut cx).is_pending());
            }
            THREAD_FINISH.with(|f| assert_eq!(f.waiters.borrow().len(), 2, "one kept, one reused 10,000 times"));
            ThreadFinish::set();
            assert!(kept.as_mut().poll(&mut cx).is_ready());
            assert!(Box::pin(ThreadFinish::wait()).as_mut().poll(&mut cx).is_ready(), "set is for good");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn positions_follow_the_schedule_channel_by_channel() {
        // 2 producers at 1,000/s in all: each sends every 2 ms, round-robin over 3 channels.
        let s = Scenario { producers: 2, channels: 3, rate: Rate::Constant(1000.0), ..Scenario::default() };
        let window = Window { start_ns: 1_000_000, end_ns: 1_000_000_000 };
        let deck = crate::scenario::Deck::new(s.channel_skew, s.channels, s.seed);
        let at = |producer, now_ns| scheduled_positions(&s, &deck, producer, 1_000_000, &window, now_ns);
        assert_eq!(at(0, 0), [0, 0, 0], "before the start");
        assert_eq!(at(0, 1_000_000), [1, 0, 0], "message 0 is due at the start, on channel 0");
        assert_eq!(at(1, 1_000_000), [0, 1, 0], "producer 1 starts on channel 1");
        assert_eq!(at(0, 1_000_000 + 8_000_000), [2, 2, 1], "5 messages due");
        assert_eq!(at(1, 1_000_000 + 8_000_000), [1, 2, 2]);
        assert_eq!(at(0, u64::MAX / 2), [167, 167, 166], "500 messages in the whole schedule, no more");
        let unlimited = Scenario { rate: Rate::Constant(0.0), ..s };
        assert_eq!(
            scheduled_positions(&unlimited, &deck, 0, 0, &Window { start_ns: 0, end_ns: 1_000 }, 500),
            [0, 0, 0]
        );
    }
}
