//! The Streams side of the swarm: group members that read, acknowledge,
//! come back for what they left pending, and claim what crashed members held;
//! plus the coordinator's backlog sampler and replay group.

use super::{planned_outages, reconnect, ConsumerOutput, EventKind, Note, Outage, Planned, Shared, Transport};
use crate::connect::ConnError;
use crate::drivers::streams::{self, Entry, GroupStart, Streams, StreamsConsumer};
use crate::scenario::Scenario;
use crate::stats::{ThreadStats, Window};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an XREADGROUP waits for new entries before checking the clock again.
const BLOCK: Duration = Duration::from_millis(100);

/// Accounting units: one per group (`--groups G`), else one per consumer.
pub(super) fn unit_count(s: &Scenario) -> u32 {
    if s.groups > 0 {
        s.groups
    } else {
        s.consumers
    }
}

fn unit_of(s: &Scenario, consumer: u32) -> u32 {
    if s.groups > 0 {
        consumer % s.groups
    } else {
        consumer
    }
}

fn streams(shared: &Shared) -> &Streams {
    match &shared.transport {
        Transport::Streams(t) => t,
        Transport::PubSub(_) => unreachable!("Streams consumers run on the Streams transport only"),
    }
}

/// The groups' results, each with the outages of its members.
pub(super) fn unit_outputs(shared: &Shared, s: &Scenario, mut outages: Vec<Outage>) -> Vec<ConsumerOutput> {
    outages.sort_by_key(|o| o.closed_ns);
    let local = shared.local_units.start as usize..shared.local_units.end as usize;
    // Pub/Sub has no units.
    shared
        .units
        .get(local)
        .unwrap_or_default()
        .iter()
        .map(|u| {
            let stats = u.lock().expect("unit lock").clone();
            let members: Vec<Outage> = outages.iter().filter(|o| unit_of(s, o.consumer) == stats.id).cloned().collect();
            // Whatever the group had not read by the end is still in the stream: accepted, never delivered.
            let end = Some(stats.positions());
            ConsumerOutput { stats, channels: (0..s.channels).collect(), outages: members, end }
        })
        .collect()
}

/// One group member. Returns its outages; its deliveries are in its group's unit.
pub(super) async fn consumer(
    id: u32,
    shared: Arc<Shared>,
    notes: mpsc::UnboundedSender<Note>,
    thread_stats: Rc<RefCell<Option<ThreadStats>>>,
) -> Vec<Outage> {
    let s = &shared.scenario;
    let unit = unit_of(s, id);
    let group = format!("eventbench-g{unit}");
    let name = format!("c{id}");
    let transport = streams(&shared);
    let conn = match transport.consumer(&group, &name, GroupStart::New).await {
        Ok(c) => c,
        Err(e) => {
            shared.fail(format!("consumer {id}"), e);
            let _ = notes.send(Note::Failed);
            return Vec::new();
        }
    };
    shared.live.connected.fetch_add(1, Relaxed);
    let _ = notes.send(Note::Ready);
    let Some((_, window)) = shared.wait_start().await else { return Vec::new() };
    thread_stats.borrow_mut().get_or_insert_with(|| ThreadStats::new(&window));
    let mut member = Member {
        id,
        unit: unit as usize,
        group,
        name,
        window,
        shared: shared.clone(),
        thread_stats,
        outages: Vec::new(),
        batch: Vec::new(),
        to_ack: Vec::new(),
        pending_first: false,
        next_claim_ns: 0,
    };
    let planned = planned_outages(s, id, &window);
    if let Err(e) = member.run(conn, planned).await {
        shared.fail(format!("consumer {id}"), e);
    }
    member.outages
}

struct Member {
    id: u32,
    unit: usize,
    group: String,
    name: String,
    window: Window,
    shared: Arc<Shared>,
    thread_stats: Rc<RefCell<Option<ThreadStats>>>,
    outages: Vec<Outage>,
    batch: Vec<Entry>,
    /// Processed, to be acknowledged with the next read.
    to_ack: Vec<Entry>,
    /// After coming back: first re-read this member's own pending entries (ID 0).
    pending_first: bool,
    next_claim_ns: u64,
}

impl Member {
    async fn run(&mut self, conn: StreamsConsumer, planned: Vec<Planned>) -> Result<(), ConnError> {
        let clock = self.shared.clock;
        let mut finish = self.shared.finish.clone();
        let mut planned = planned.into_iter().peekable();
        let mut conn = Some(conn);
        loop {
            let next_down = planned.peek().map(|p| p.down_ns);
            let Some(c) = conn.as_mut() else { return Ok(()) };
            tokio::select! {
                biased;
                _ = finish.wait_for(|f| *f) => return Ok(()),
                _ = clock.sleep_until_ns(next_down.unwrap_or(u64::MAX / 4)), if next_down.is_some() => {
                    let Planned { up_ns, .. } = planned.next().expect("peeked");
                    let mut later = self.shared.finish.clone();
                    match up_ns {
                        None => {
                            // A crash: take one more batch into this member's pending list and never
                            // process or acknowledge it; the group's survivors must claim it.
                            let mut held = Vec::new();
                            c.read(false, Duration::from_millis(1), &mut held).await?;
                            drop(conn.take());
                            self.close(EventKind::Crash);
                            let _ = later.wait_for(|f| *f).await;
                            return Ok(());
                        }
                        Some(up) => {
                            drop(conn.take());
                            self.close(EventKind::Disconnect);
                            tokio::select! {
                                _ = later.wait_for(|f| *f) => return Ok(()),
                                _ = clock.sleep_until_ns(up) => {}
                            }
                            conn = self.reconnect().await?;
                        }
                    }
                }
                r = Self::step(c, &mut self.batch, &mut self.to_ack, &mut self.pending_first, &mut self.next_claim_ns, &self.shared) => {
                    let (redelivered, acked) = r?;
                    self.shared.units[self.unit].lock().expect("unit lock").acked += acked;
                    self.record(redelivered);
                    // Acknowledged together with the next read, on the same connection.
                    std::mem::swap(&mut self.batch, &mut self.to_ack);
                }
            }
        }
    }

    /// Acknowledges `to_ack` while reading the next batch into `batch`: idle
    /// entries of the group now and then (XAUTOCLAIM), this member's own
    /// pending entries first after a comeback, else new ones. Returns how many
    /// of the batch are redeliveries, and how many entries Redis acknowledged.
    async fn step(
        conn: &StreamsConsumer,
        batch: &mut Vec<Entry>,
        to_ack: &mut Vec<Entry>,
        pending_first: &mut bool,
        next_claim_ns: &mut u64,
        shared: &Shared,
    ) -> Result<(usize, u64), ConnError> {
        batch.clear();
        let s = &shared.scenario;
        let now = shared.clock.now_ns();
        let reading = async {
            if *next_claim_ns <= now {
                // Claimed entries join this member's pending list: take them before re-reading it.
                conn.autoclaim(s.claim_idle, batch).await?;
                *next_claim_ns = now + (s.claim_idle.as_nanos() as u64 / 2).max(10_000_000);
                if !batch.is_empty() {
                    return Ok(batch.len());
                }
            }
            if *pending_first {
                conn.read(true, BLOCK, batch).await?;
                if !batch.is_empty() {
                    return Ok(batch.len());
                }
                *pending_first = false;
            }
            conn.read(false, BLOCK, batch).await?;
            Ok::<_, ConnError>(0)
        };
        let (acked, redelivered) = tokio::join!(conn.ack(to_ack), reading);
        let acked = acked?;
        to_ack.clear();
        Ok((redelivered?, acked))
    }

    /// Accounts for the batch in this member's group.
    fn record(&mut self, redelivered: usize) {
        let now = self.shared.clock.now_ns();
        let mut unit = self.shared.units[self.unit].lock().expect("unit lock");
        let mut ts = self.thread_stats.borrow_mut();
        let ts = ts.as_mut().expect("thread stats exist once started");
        let mut fresh = 0;
        for e in &self.batch {
            fresh += unit.record(&e.payload, now, &self.window, ts) as u64;
        }
        unit.redelivered += redelivered as u64;
        self.shared.live.delivered.fetch_add(fresh, Relaxed);
        drop(unit);
        self.shared.seen(self.batch.iter().map(|e| e.key as u32), now);
    }

    fn close(&mut self, kind: EventKind) {
        self.shared.live.connected.fetch_sub(1, Relaxed);
        if kind == EventKind::Disconnect {
            self.shared.units[self.unit].lock().expect("unit lock").disconnects += 1;
        }
        let closed_ns = self.shared.clock.now_ns();
        self.outages.push(Outage {
            consumer: self.id,
            kind,
            closed_ns,
            resubscribed_ns: None,
            received: Vec::new(),
            closed: Vec::new(),
            resubscribed: None,
        });
    }

    /// Connects again (with backoff) and arranges to re-read what this member left pending.
    async fn reconnect(&mut self) -> Result<Option<StreamsConsumer>, ConnError> {
        let transport = streams(&self.shared);
        let conn = reconnect(&self.shared, || transport.consumer(&self.group, &self.name, GroupStart::New)).await?;
        if conn.is_some() {
            if let Some(o) = self.outages.last_mut() {
                o.resubscribed_ns = Some(self.shared.clock.now_ns());
            }
            self.shared.live.connected.fetch_add(1, Relaxed);
            self.pending_first = true;
        }
        Ok(conn)
    }
}

/// The replay group's progress.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Replay {
    /// When the group was created, ns since the epoch.
    pub started_ns: u64,
    /// Entries in the streams when it was created.
    pub backlog: u64,
    /// Entries it read.
    pub read: u64,
    /// How long it took to reach the live end of the streams (none if it never did).
    pub catchup_ns: Option<u64>,
    /// Entries it had read by then.
    pub caught_up_read: u64,
}

/// Tasks the coordinator runs beside the swarm, for Streams.
pub(super) struct SideTasks {
    backlog: Option<tokio::task::JoinHandle<Vec<u64>>>,
    replay: Option<tokio::task::JoinHandle<Option<Replay>>>,
}

impl SideTasks {
    /// Waits for the side tasks to wrap up after the finish signal.
    pub(super) async fn finish(self) -> (Vec<u64>, Option<Replay>) {
        let backlog = match self.backlog {
            Some(h) => h.await.unwrap_or_default(),
            None => Vec::new(),
        };
        let replay = match self.replay {
            Some(h) => h.await.ok().flatten(),
            None => None,
        };
        (backlog, replay)
    }
}

/// Starts the backlog sampler and, with `--replay-at`, the replay group.
pub(super) fn side_tasks(shared: &Arc<Shared>, window: Window) -> SideTasks {
    let Transport::Streams(t) = &shared.transport else { return SideTasks { backlog: None, replay: None } };
    if !shared.side_tasks {
        return SideTasks { backlog: None, replay: None };
    }
    let backlog = tokio::spawn(sample_backlog(t.clone(), shared.clock, shared.finish.clone(), window));
    let replay = shared.scenario.replay_at.map(|at| {
        let start = window.start_ns + at.as_nanos() as u64;
        tokio::spawn(replay(t.clone(), shared.clock, shared.finish.clone(), start))
    });
    SideTasks { backlog: Some(backlog), replay }
}

/// XINFO GROUPS at the end of every measured second (and through the drain, for the maximum).
async fn sample_backlog(
    t: Streams,
    clock: crate::clock::Clock,
    mut finish: tokio::sync::watch::Receiver<bool>,
    window: Window,
) -> Vec<u64> {
    let mut samples = vec![0; window.seconds()];
    let Ok(cons) = t.connections().await else { return samples };
    let mut cons: Vec<_> = cons.into_iter().map(Some).collect();
    let mut second = 0usize;
    loop {
        let at = window.start_ns + (second as u64 + 1) * 1_000_000_000;
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return samples,
            _ = clock.sleep_until_ns(at) => {}
        }
        // A node that went away is asked again once it answers (its streams come back with it).
        t.reconnect_missing(&mut cons).await;
        let Some(n) = streams::backlog(&mut cons, &t).await else {
            second += 1;
            continue;
        };
        match samples.get_mut(second) {
            Some(slot) => *slot = n,
            // During the drain: keep the largest in the last slot's shadow for the maximum.
            None => samples.push(n),
        }
        second += 1;
    }
}

/// Creates a group at the beginning of every stream at `start_ns` and reads
/// until it has caught up with what existed then.
async fn replay(
    t: Streams,
    clock: crate::clock::Clock,
    mut finish: tokio::sync::watch::Receiver<bool>,
    start_ns: u64,
) -> Option<Replay> {
    tokio::select! {
        _ = finish.wait_for(|f| *f) => return None,
        _ = clock.sleep_until_ns(start_ns) => {}
    }
    let mut cons = t.connections().await.ok()?;
    let mut backlog = 0u64;
    for (key, &node) in t.keys.iter().zip(&t.node_of) {
        backlog += redis::cmd("XLEN").arg(key).query_async::<u64>(&mut cons[node]).await.ok()?;
    }
    let replay_settings = Streams { batch: 1000, ..t.clone() };
    let reader = replay_settings.consumer("eventbench-replay", "replayer", GroupStart::Beginning).await.ok()?;
    let started_ns = clock.now_ns();
    let mut progress = Replay { started_ns, backlog, read: 0, catchup_ns: None, caught_up_read: 0 };
    let mut batch = Vec::new();
    loop {
        batch.clear();
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return Some(progress),
            r = reader.read(false, BLOCK, &mut batch) => r.ok()?,
        }
        progress.read += batch.len() as u64;
        // Caught up with the live stream: a read that no longer fills a batch,
        // after the entries that existed at creation.
        if progress.catchup_ns.is_none() && progress.read >= backlog && batch.len() < replay_settings.batch {
            progress.catchup_ns = Some(clock.now_ns() - started_ns);
            progress.caught_up_read = progress.read;
        }
        reader.ack(&batch).await.ok()?;
    }
}
