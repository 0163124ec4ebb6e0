//! A Streams group member for the whole run: reads with XREADGROUP,
//! acknowledges with the next read, comes back for what it left pending,
//! claims what crashed members held, and, when slow, reads no more than it
//! processes, so its backlog grows in the stream where Redis keeps it.

use super::conn::{Entry, GroupStart, Streams, StreamsConsumer};
use crate::chaos::{EventKind, Outage, Planned};
use crate::clock::Timer;
use crate::connect::ConnError;
use crate::drivers::ctx::{count_batch, ThreadBoard, ThreadFinish};
use crate::drivers::{Consumed, ConsumerOutput, Ctx, Notes, StatsCell};
use crate::scenario::Scenario;
use crate::stats::Window;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// How long an XREADGROUP waits for new entries before checking the clock again.
const BLOCK: Duration = super::conn::READ_BLOCK;

/// Whether Redis closed the connection (or refuses new ones): the server went
/// away, rather than answering with an error.
fn closed_by_server(e: &ConnError) -> bool {
    match e {
        ConnError::Closed | ConnError::Io(_) | ConnError::Connect { .. } => true,
        ConnError::Redis(r) => !r.is_timeout() && (r.is_connection_dropped() || r.is_connection_refusal()),
        _ => false,
    }
}

/// A reply that did not come within the response timeout: Redis stopped
/// answering (a stopped server or a cut network), said as the producers say it.
fn stalled(e: ConnError) -> ConnError {
    match e {
        ConnError::Redis(r) if r.is_timeout() => {
            ConnError::Stalled { what: "XREADGROUP", secs: super::conn::RESPONSE_TIMEOUT.as_secs_f64() }
        }
        e => e,
    }
}

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

/// The groups' results, each with the outages of its members.
pub(super) fn unit_outputs(shared: &Ctx, mut outages: Vec<Outage>) -> Vec<ConsumerOutput> {
    let s = &shared.scenario;
    outages.sort_by_key(|o| o.closed_ns);
    let local = shared.local_units.start as usize..shared.local_units.end as usize;
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

/// Runs group member `id` until the run finishes. Its deliveries go into its group's unit.
pub(super) async fn run(
    streams: Arc<Streams>,
    id: u32,
    shared: Arc<Ctx>,
    notes: Notes,
    thread_stats: StatsCell,
) -> Consumed {
    let s = &shared.scenario;
    let unit = unit_of(s, id);
    let group = format!("eventbench-g{unit}");
    let name = format!("c{id}");
    let slow = shared.faults.slow_delay(id);
    // A slow member reads one entry at a time: what it has not processed stays in the stream.
    let streams = match slow {
        Some(_) => Arc::new(Streams { batch: 1, ..(*streams).clone() }),
        None => streams,
    };
    let connected = streams.consumer(&group, &name, GroupStart::New).await;
    let Some((conn, window)) = shared.enlist(id, connected, &notes, &thread_stats).await else {
        return Consumed::Nothing;
    };
    let mut member = Member {
        id,
        unit: unit as usize,
        group,
        name,
        window,
        streams,
        slow: slow.map(|d| (d, Timer::precise(shared.clock))),
        shared: shared.clone(),
        thread_stats,
        outages: ThreadBoard::outages(),
        batch: Vec::new(),
        to_ack: Vec::new(),
        pending_first: false,
        next_claim_ns: 0,
    };
    let planned = shared.faults.outages_of(id, &window);
    if let Err(e) = member.run(conn, planned).await {
        shared.fail(format!("consumer {id}"), e);
    }
    Consumed::Shared(member.outages.take())
}

struct Member {
    id: u32,
    unit: usize,
    group: String,
    name: String,
    window: Window,
    streams: Arc<Streams>,
    /// For a slow member: the time it spends on each entry, and its timer.
    slow: Option<(Duration, Timer)>,
    shared: Arc<Ctx>,
    thread_stats: StatsCell,
    /// On the thread's board, where a checkpoint copies them between polls.
    outages: std::rc::Rc<std::cell::RefCell<Vec<Outage>>>,
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
            // The finish is polled last: a reply (or the connection's end) that is
            // already in when the run finishes is still taken, so a Redis that died
            // just before is recorded as such even on a thread that was busy.
            tokio::select! {
                biased;
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
                    let (redelivered, acked) = match r {
                        Ok(done) => done,
                        Err(e) if closed_by_server(&e) => {
                            // Redis closed the connection (killed, shut down, CLIENT KILL): an event,
                            // as for Pub/Sub; what the stream holds waits for the member's return.
                            drop(conn.take());
                            self.batch.clear();
                            self.to_ack.clear();
                            self.close(EventKind::ServerKill);
                            if !self.shared.scenario.reconnect {
                                let _ = self.shared.finish.clone().wait_for(|f| *f).await;
                                return Ok(());
                            }
                            conn = self.reconnect().await?;
                            continue;
                        }
                        Err(e) => return Err(stalled(e)),
                    };
                    self.shared.units[self.unit].lock().expect("unit lock").acked += acked;
                    self.record(redelivered);
                    self.process().await;
                    // Acknowledged together with the next read, on the same connection.
                    std::mem::swap(&mut self.batch, &mut self.to_ack);
                }
                _ = finish.wait_for(|f| *f) => {
                    // The replies to the last acknowledgements came with the last read.
                    let acked = conn.as_ref().map_or(0, |c| c.take_acked());
                    self.shared.units[self.unit].lock().expect("unit lock").acked += acked;
                    return Ok(());
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
        shared: &Ctx,
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
        let (missing, dups, late) = (unit.missing_now, unit.duplicates, unit.out_of_order);
        for e in &self.batch {
            fresh += unit.record(&e.payload, now, &self.window, ts) as u64;
        }
        unit.redelivered += redelivered as u64;
        let live = &self.shared.live;
        live.delivered.fetch_add(fresh, Relaxed);
        count_batch(live, &self.window, now, fresh, unit.duplicates - dups, unit.out_of_order - late);
        if unit.missing_now != missing {
            live.lost_so_far.fetch_add(unit.missing_now.wrapping_sub(missing), Relaxed);
        }
        drop(unit);
        self.shared.seen(self.batch.iter().map(|e| e.key as u32), now);
    }

    /// A slow member spends its delay on each entry before it reads the next;
    /// the end of the run ends the wait.
    async fn process(&mut self) {
        let Some((delay, timer)) = &mut self.slow else { return };
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        for _ in 0..self.batch.len() {
            let now = self.shared.clock.now_ns();
            tokio::select! {
                _ = &mut finished => return,
                _ = timer.sleep_until_ns(now.saturating_add(delay.as_nanos() as u64)) => {}
            }
        }
    }

    fn close(&mut self, kind: EventKind) {
        self.shared.live.connected.fetch_sub(1, Relaxed);
        if kind == EventKind::Disconnect {
            self.shared.units[self.unit].lock().expect("unit lock").disconnects += 1;
        }
        let closed_ns = self.shared.clock.now_ns();
        // The group keeps what the member misses (no `received`): the producers'
        // positions only say which entries were written while it was away.
        self.outages.borrow_mut().push(Outage {
            consumer: self.id,
            kind,
            closed_ns,
            resubscribed_ns: None,
            received: Vec::new(),
            closed: self.shared.positions(),
            resubscribed: None,
        });
    }

    /// Connects again (with backoff) and arranges to re-read what this member left pending.
    async fn reconnect(&mut self) -> Result<Option<StreamsConsumer>, ConnError> {
        let (streams, group, name) = (&self.streams, &self.group, &self.name);
        let conn = self.shared.reconnect(|| streams.consumer(group, name, GroupStart::New)).await?;
        if conn.is_some() {
            if let Some(o) = self.outages.borrow_mut().last_mut() {
                o.resubscribed_ns = Some(self.shared.clock.now_ns());
                o.resubscribed = Some(self.shared.positions());
            }
            self.shared.live.connected.fetch_add(1, Relaxed);
            self.pending_first = true;
        }
        Ok(conn)
    }
}
