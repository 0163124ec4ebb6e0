//! A Pub/Sub subscriber for the whole run: reads its pushes, records each
//! delivery, leaves and comes back as the scenario says, notices Redis
//! closing it, and for every outage notes where the producers were, so that
//! each lost message gets its cause.

use super::conn::{PubSubConsumer, ShardChange};
use super::PubSub;
use crate::chaos::{EventKind, Outage, Planned};
use crate::clock::Timer;
use crate::connect::{ConnError, Tuning};
use crate::drivers::ctx::{count_batch, ThreadBoard, ThreadFinish};
use crate::drivers::{Consumed, ConsumerConn, ConsumerOutput, Ctx, Notes, StatsCell};
use crate::stats::{ConsumerStats, Window};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Runs subscriber `id` of the run until it finishes.
pub(super) async fn run(
    pubsub: Arc<PubSub>,
    id: u32,
    shared: Arc<Ctx>,
    notes: Notes,
    thread_stats: StatsCell,
) -> Consumed {
    let s = &shared.scenario;
    let slow = shared.faults.slow_delay(id);
    let tuning = match slow {
        // A small receive window and read buffer: the backlog must pile up in Redis, where the limit applies.
        Some(_) => Tuning { recv_buffer: Some(16 * 1024), fixed_buffer: true },
        None => Tuning::default(),
    };
    let connected = pubsub.consumer(id, tuning, slow.is_some()).await;
    let Some((conn, window)) = shared.enlist(id, connected, &notes, &thread_stats).await else {
        return Consumed::Nothing;
    };
    let planned = shared.faults.outages_of(id, &window);
    let mut task = Subscriber {
        pubsub,
        window,
        slow,
        tuning,
        // Only slow consumers sleep per message; a timerfd each would double the open files of a big swarm.
        timer: if slow.is_some() { Timer::precise(shared.clock) } else { Timer::coarse(shared.clock) },
        // On the thread's board, where a checkpoint copies it between polls.
        out: ThreadBoard::consumer(ConsumerOutput {
            stats: ConsumerStats::new(id, s.producers, s.channels),
            channels: (0..s.channels).collect(),
            outages: Vec::new(),
            end: None,
        }),
        thread_stats,
        shared: shared.clone(),
        kill_seen: Rc::default(),
        watcher: None,
        partials: Vec::new(),
    };
    if let Err(e) = task.run(conn, planned).await {
        shared.fail(format!("consumer {id}"), e);
    }
    let out = task.out.borrow().clone();
    Consumed::Own(Box::new(out))
}

/// Whether the connection has already been closed by the server: one read,
/// without waiting (what it reads, if anything, stays in the buffer).
fn closed_already(conn: &mut PubSubConsumer) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let fill = std::pin::pin!(conn.fill());
    matches!(fill.poll(&mut cx), std::task::Poll::Ready(Err(ConnError::Closed | ConnError::Io(_))))
}

/// When Redis closed a connection (ns since the epoch), and the producers' positions just before.
type Cutoff = (u64, Vec<u64>);

/// A subscriber's state between its connections.
struct Subscriber {
    pubsub: Arc<PubSub>,
    window: Window,
    /// Time spent on each message, for slow consumers.
    slow: Option<Duration>,
    tuning: Tuning,
    timer: Timer,
    out: Rc<RefCell<ConsumerOutput>>,
    thread_stats: StatsCell,
    shared: Arc<Ctx>,
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

impl Subscriber {
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
                    // A close that is already in when the run finishes is still a server kill,
                    // even on a thread that was too busy to see it before.
                    if conn.as_mut().is_some_and(closed_already) {
                        drop(conn.take());
                        self.server_closed();
                    }
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
                            let received = self.out.borrow().stats.positions();
                            self.close(EventKind::Crash, clock.now_ns(), received, closed);
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
        let missing_before = self.out.borrow_mut().stats.missing_now;
        let (dups_before, late_before) = {
            let o = self.out.borrow();
            (o.stats.duplicates, o.stats.out_of_order)
        };
        let mut fresh = 0;
        let mut now = clock.now_ns();
        let track = self.shared.recovery.get().is_some();
        // A slow consumer's wait per message ends with the run: what it has not
        // taken by then stays in the buffer (lost there), however long DELAY is.
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        loop {
            let fresh_one = {
                let Ok(Some(d)) = conn.next() else { break };
                if track {
                    let channel = crate::wire::Header::decode(d.payload).map(|h| h.channel);
                    self.shared.seen(channel.into_iter(), now);
                }
                let mut ts = self.thread_stats.borrow_mut();
                let ts = ts.as_mut().expect("thread stats exist once started");
                self.out.borrow_mut().stats.record(d.payload, now, &self.window, ts)
            };
            fresh += fresh_one as u64;
            if let Some(delay) = self.slow {
                tokio::select! {
                    biased;
                    _ = &mut finished => break,
                    _ = self.timer.sleep_until_ns(now.saturating_add(delay.as_nanos() as u64)) => {}
                }
                now = clock.now_ns();
            }
        }
        live.delivered.fetch_add(fresh, Relaxed);
        let (dups, late) = {
            let o = self.out.borrow();
            (o.stats.duplicates - dups_before, o.stats.out_of_order - late_before)
        };
        count_batch(live, &self.window, now, fresh, dups, late);
        let missing_now = self.out.borrow_mut().stats.missing_now;
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
        // The end of the run ends the leave too (a slow consumer may still hold a backlog).
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        while !conn.has_left() {
            tokio::select! {
                biased;
                _ = &mut finished => break,
                r = conn.fill() => r?,
            }
            self.take_messages(&mut conn).await;
        }
        drop(conn);
        let received = self.out.borrow_mut().stats.positions();
        self.close(EventKind::Disconnect, self.shared.clock.now_ns(), received.clone(), received);
        Ok(())
    }

    /// The server closed the connection: whatever it had queued for us is gone.
    fn server_closed(&mut self) {
        self.stop_watching();
        let seen = self.kill_seen.borrow_mut().take();
        let (at, closed) = seen.unwrap_or_else(|| (self.shared.clock.now_ns(), self.shared.positions()));
        let received = self.out.borrow_mut().stats.positions();
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
                let (received, closed) = (self.out.borrow_mut().stats.positions(), self.shared.positions());
                let received: Vec<u64> =
                    (0..closed.len()).map(|i| if on[i % channels] { received[i] } else { closed[i] }).collect();
                // A moved slot's messages published before the move all came before the
                // server's sunsubscribe, on the same connection: what is missing was
                // published after it, while the consumer was not subscribed anywhere.
                let closed = if moved { received.clone() } else { closed };
                let consumer = self.out.borrow_mut().stats.id;
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
                self.out.borrow_mut().outages.push(outage);
                self.partials.push(Partial { shard, outage: self.out.borrow_mut().outages.len() - 1, on });
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
        let mut out = self.out.borrow_mut();
        let outage = &mut out.outages[outage];
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
            self.out.borrow_mut().stats.disconnects += 1;
        }
        let consumer = self.out.borrow_mut().stats.id;
        self.out.borrow_mut().outages.push(Outage {
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
        let (shared, seen, pubsub) = (self.shared.clone(), self.kill_seen.clone(), self.pubsub.clone());
        self.watcher = Some(tokio::task::spawn_local(async move {
            // The kill happened before the poll that found it: take the positions just before that poll.
            let mut before = (0, Vec::new());
            let snapshot = || before = (shared.clock.now_ns(), shared.positions());
            if pubsub.wait_closed(client_id, Duration::from_millis(2), snapshot).await.is_ok() {
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
            let mut out = self.out.borrow_mut();
            out.end = Some(out.stats.positions());
        }
    }

    /// Sleeps until `ns`; false if the run finished first.
    async fn sleep_until(&self, ns: u64) -> bool {
        self.shared.sleep_until(ns).await
    }

    /// Connects and subscribes again, with backoff; `None` if the run finished first.
    async fn resubscribe(&mut self) -> Result<Option<PubSubConsumer>, ConnError> {
        let (pubsub, tuning, want_id) = (self.pubsub.clone(), self.tuning, self.slow.is_some());
        let id = self.out.borrow_mut().stats.id;
        let conn = self.shared.reconnect(|| pubsub.consumer(id, tuning, want_id)).await?;
        if let Some(conn) = &conn {
            self.watch(conn);
            let mut out = self.out.borrow_mut();
            let outage = out.outages.last_mut().expect("resubscribing after an outage");
            outage.resubscribed_ns = Some(self.shared.clock.now_ns());
            outage.resubscribed = Some(self.shared.positions());
            self.shared.live.connected.fetch_add(1, Relaxed);
        }
        Ok(conn)
    }
}
