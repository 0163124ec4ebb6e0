//! The framework's consumer loop, for every transport: connects, takes the
//! scenario's faults (disconnect, crash, slow), notices the server closing a
//! connection (or some of its channels), reconnects with one backoff, leaves
//! at the end of the run, records every delivery into the stats and every
//! outage (with the producers' positions that give each lost message its
//! cause) for `events.csv`. Written once, so that the transports cannot
//! diverge on any of it.
//!
//! Generic over the transport's [`Subscriber`] and its [`ConsumerConn`]: the
//! per-message calls are static, with no allocation and no lock per message
//! (a shared unit's lock is taken once per read batch). What only a
//! transport knows stays behind those traits: how it connects, Streams'
//! acknowledgements and redeliveries ([`ConsumerConn::settle`]), which
//! channels a connection lost and got back ([`ShardChange`]), how it
//! crashes, a watcher that sees the server close a slow consumer.

use super::ctx::{count_batch, ThreadBoard, ThreadFinish};
use super::{Consumed, ConsumerConn, ConsumerOutput, Ctx, Notes, StatsCell};
use crate::chaos::{EventKind, Outage, Planned};
use crate::clock::Timer;
use crate::connect::ConnError;
use crate::stats::{ConsumerStats, Window};
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// The first wait before reconnecting, doubled on each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait between two connection attempts; a connection that
/// lived at least this long resets the backoff.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// When Redis closed a connection (ns since the epoch), and the producers' positions just before.
pub type Cutoff = (u64, Vec<u64>);

/// A transport's side of one consumer: how it connects, and what only it
/// knows about a connection's end. The framework's loop ([`run`]) does the rest.
#[allow(async_fn_in_trait)]
pub trait Subscriber {
    type Conn: ConsumerConn;
    /// Connects and subscribes (or joins its group); returns once everything
    /// published from then on will come. `again`: after an outage (Streams
    /// then re-reads its own pending entries first).
    fn connect(&mut self, again: bool) -> impl Future<Output = Result<Self::Conn, ConnError>>;
    /// The shared accounting unit (Streams group) its deliveries go into;
    /// `None`: it accounts for itself.
    fn unit(&self) -> Option<usize> {
        None
    }
    /// Per ledger, an upper bound of what the transport had accepted for this
    /// consumer now (the producers' positions).
    fn positions(&self, ctx: &Ctx) -> Vec<u64> {
        ctx.positions()
    }
    /// A connection is up: watch it from the side, if the transport can tell
    /// a server's close sooner than the reads do (a slow Pub/Sub subscriber).
    fn watch(&mut self, _conn: &Self::Conn) {}
    /// Stops watching; the server's close the watcher saw, if it saw one.
    fn unwatch(&mut self) -> Option<Cutoff> {
        None
    }
}

/// A change in the channels a consumer's connection carries: one of its
/// connections (`shard`: sharded Pub/Sub's per node, Streams' per node on a
/// cluster) closed, or the server dropped some channels because their slot
/// moved; those `channels` (indices in the run) are not subscribed until
/// that shard is `Back`. The other channels keep coming meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardChange {
    /// `moved`: the server dropped the channels (their slot moved); otherwise the connection closed.
    Lost {
        shard: usize,
        channels: Vec<usize>,
        moved: bool,
    },
    Back {
        shard: usize,
    },
}

/// Runs consumer `id` of the run until it finishes: the first connection
/// (a failure there ends the run), then the loop.
pub async fn run<S: Subscriber>(
    id: u32,
    ctx: Arc<Ctx>,
    notes: Notes,
    thread_stats: StatsCell,
    mut side: S,
) -> Consumed {
    let connected = side.connect(false).await;
    let Some((conn, window)) = ctx.enlist(id, connected, &notes, &thread_stats).await else {
        return Consumed::Nothing;
    };
    let s = &ctx.scenario;
    let side_unit = side.unit();
    let account = match side_unit {
        Some(unit) => Account::Unit { unit, outages: ThreadBoard::outages() },
        // On the thread's board, where a checkpoint copies it between polls.
        None => Account::Own(ThreadBoard::consumer(ConsumerOutput {
            stats: ConsumerStats::new(id, s.producers, s.channels),
            channels: (0..s.channels).collect(),
            outages: Vec::new(),
            end: None,
        })),
    };
    let slow = ctx.faults.slow_delay(id);
    let planned = ctx.faults.outages_of(id, &window);
    let pauses = ctx.faults.pauses_of(id, &window);
    let mut c = Consumer {
        id,
        // Only slow consumers sleep per message; a timerfd each would double the open files of a big swarm.
        timer: if slow.is_some() { Timer::precise(ctx.clock) } else { Timer::coarse(ctx.clock) },
        slow,
        retains: super::registration(ctx.driver.kind()).traits.retains,
        backoff: Backoff::started(ctx.clock.now_ns()),
        side,
        window,
        account,
        thread_stats,
        partials: Vec::new(),
        // In a shared unit, the order this consumer received messages in, which `out_of_order` counts by.
        seen: match side_unit {
            Some(_) => vec![0; (s.producers * s.channels) as usize],
            None => Vec::new(),
        },
        ctx: ctx.clone(),
    };
    if let Err(e) = c.run(conn, planned, pauses).await {
        ctx.fail(format!("consumer {id}"), e);
    }
    match c.account {
        Account::Own(out) => Consumed::Own(Box::new(out.borrow().clone())),
        Account::Unit { outages, .. } => Consumed::Shared(outages.take()),
    }
}

/// Where a consumer's deliveries and outages go.
enum Account {
    /// Its own (a subscriber).
    Own(Rc<RefCell<ConsumerOutput>>),
    /// A unit it shares (`Ctx::units`, a Streams group); its outages are its own.
    Unit { unit: usize, outages: Rc<RefCell<Vec<Outage>>> },
}

/// Reconnect backoff, one for every transport: 10 ms doubling to 1 s between
/// attempts, kept across connections that do not last (a server that closes
/// every connection at once, e.g. an output-buffer limit below one reply, is
/// not hammered); a connection that lived [`BACKOFF_MAX`] resets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    delay: Duration,
    last: Last,
}

/// How the last attempt went, for the backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Nothing to hold back: the first attempt goes at once.
    Fresh,
    /// A connection came up then (ns since the epoch).
    UpSince(u64),
    /// The attempt failed.
    Failed,
}

impl Backoff {
    /// A backoff whose first attempt goes at once (a planned comeback).
    pub fn new() -> Backoff {
        Backoff { delay: BACKOFF_MIN, last: Last::Fresh }
    }

    /// How long to wait before the next attempt, at `now_ns`.
    pub fn before_attempt(&mut self, now_ns: u64) -> Duration {
        let lasted = match std::mem::replace(&mut self.last, Last::Failed) {
            Last::Fresh => true,
            Last::UpSince(up) => now_ns.saturating_sub(up) >= BACKOFF_MAX.as_nanos() as u64,
            Last::Failed => false,
        };
        if lasted {
            self.delay = BACKOFF_MIN;
            return Duration::ZERO;
        }
        let wait = self.delay;
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        wait
    }

    /// A backoff for a connection that came up at `now_ns`.
    pub fn started(now_ns: u64) -> Backoff {
        Backoff { delay: BACKOFF_MIN, last: Last::UpSince(now_ns) }
    }

    /// A connection came up at `now_ns`.
    pub fn connected(&mut self, now_ns: u64) {
        self.last = Last::UpSince(now_ns);
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// An open outage of some of a consumer's channels.
struct Partial {
    shard: usize,
    /// Index into the consumer's outages.
    outage: usize,
    /// Which channels it covers.
    on: Vec<bool>,
}

/// One consumer between its connections.
struct Consumer<S: Subscriber> {
    id: u32,
    side: S,
    ctx: Arc<Ctx>,
    window: Window,
    /// Time spent on each message, for slow consumers.
    slow: Option<Duration>,
    timer: Timer,
    /// The transport keeps what an absent consumer misses (no `received` positions).
    retains: bool,
    backoff: Backoff,
    account: Account,
    thread_stats: StatsCell,
    partials: Vec<Partial>,
    /// In a shared unit: one past the highest sequence this consumer received, per ledger.
    seen: Vec<u64>,
}

impl<S: Subscriber> Consumer<S> {
    async fn run(&mut self, conn: S::Conn, planned: Vec<Planned>, pauses: Vec<(u64, u64)>) -> Result<(), ConnError> {
        let clock = self.ctx.clock;
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        let mut planned = planned.into_iter().peekable();
        let mut pauses = pauses.into_iter().peekable();
        self.side.watch(&conn);
        let mut conn = Some(conn);
        while conn.is_some() {
            let next_down = planned.peek().map(|o| o.down_ns);
            let next_pause = pauses.peek().map(|p| p.0);
            tokio::select! {
                biased;
                _ = &mut finished => {
                    let c = conn.take().expect("connected");
                    self.finish(c);
                    return Ok(());
                }
                // `--pause`: no read until it ends, the connection kept (the end of the run ends it too).
                _ = clock.sleep_until_ns(next_pause.unwrap_or(u64::MAX / 4)), if next_pause.is_some() => {
                    let (_, resume) = pauses.next().expect("peeked");
                    self.ctx.sleep_until(resume).await;
                }
                _ = clock.sleep_until_ns(next_down.unwrap_or(u64::MAX / 4)), if next_down.is_some() => {
                    let Planned { up_ns, .. } = planned.next().expect("peeked");
                    let c = conn.take().expect("connected");
                    let Some(up) = up_ns else {
                        self.crash(c).await;
                        break;
                    };
                    self.leave(c).await?;
                    if !self.ctx.sleep_until(up).await {
                        return Ok(());
                    }
                    conn = self.reconnect(false).await?;
                }
                r = conn.as_mut().expect("connected between outages").fill() => {
                    let c = conn.as_mut().expect("connected");
                    match r.and(self.take(c).await) {
                        Ok(()) => {
                            while let Some(change) = c.take_change() {
                                self.shard_changed(change);
                            }
                        }
                        Err(ConnError::Closed | ConnError::Io(_)) => {
                            drop(conn.take());
                            self.server_closed();
                            if !self.ctx.scenario.reconnect {
                                break;
                            }
                            conn = self.reconnect(true).await?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        // Away for good (a crash, no reconnect), or the run finished while reconnecting.
        self.ctx.sleep_until(u64::MAX / 4).await;
        Ok(())
    }

    /// Runs `f` on the stats this consumer's deliveries go into (a shared
    /// unit is locked once for it).
    fn with_stats<R>(&self, f: impl FnOnce(&mut ConsumerStats) -> R) -> R {
        match &self.account {
            Account::Own(out) => f(&mut out.borrow_mut().stats),
            Account::Unit { unit, .. } => f(&mut self.ctx.units[*unit].lock().expect("unit lock")),
        }
    }

    /// Accounts for every complete message the connection holds (a slow
    /// consumer: spends its delay on each, and the end of the run ends the
    /// wait; what it has not taken then stays where it is).
    async fn take(&mut self, conn: &mut S::Conn) -> Result<(), ConnError> {
        let Some(delay) = self.slow else {
            return self.record(conn, usize::MAX);
        };
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        loop {
            if self.record_counted(conn, 1)? == 0 {
                return Ok(());
            }
            let now = self.ctx.clock.now_ns();
            tokio::select! {
                biased;
                _ = &mut finished => return Ok(()),
                _ = self.timer.sleep_until_ns(now.saturating_add(delay.as_nanos() as u64)) => {}
            }
        }
    }

    fn record(&mut self, conn: &mut S::Conn, most: usize) -> Result<(), ConnError> {
        self.record_counted(conn, most).map(|_| ())
    }

    /// Records up to `most` messages the connection holds, in one borrow of
    /// the stats, and adds them to live export's counters; how many it took.
    fn record_counted(&mut self, conn: &mut S::Conn, most: usize) -> Result<usize, ConnError> {
        let now = self.ctx.clock.now_ns();
        let track = self.ctx.recovery.get().is_some();
        let (window, ctx) = (self.window, self.ctx.clone());
        let mut ts = self.thread_stats.borrow_mut();
        let ts = ts.as_mut().expect("thread stats exist once started");
        let seen = &mut self.seen;
        let mut own;
        let mut unit;
        let st: &mut ConsumerStats = match &self.account {
            Account::Own(out) => {
                own = out.borrow_mut();
                &mut own.stats
            }
            Account::Unit { unit: u, .. } => {
                unit = ctx.units[*u].lock().expect("unit lock");
                &mut unit
            }
        };
        let (taken, fresh, dups, late, missing, result) = {
            let before = (st.duplicates, st.out_of_order, st.missing_now);
            let (mut taken, mut fresh) = (0, 0);
            let result = loop {
                if taken == most {
                    break Ok(());
                }
                let d = match conn.next() {
                    Ok(Some(d)) => d,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                if track {
                    let channel = crate::wire::Header::decode(d.payload).map(|h| h.channel);
                    ctx.seen(channel.into_iter(), now);
                }
                let seen = (!seen.is_empty()).then_some(seen.as_mut_slice());
                fresh += st.record_seen_by(d.payload, now, &window, ts, seen) as u64;
                taken += 1;
            };
            conn.settle(st);
            let missing = st.missing_now.wrapping_sub(before.2);
            (taken, fresh, st.duplicates - before.0, st.out_of_order - before.1, missing, result)
        };
        let live = &self.ctx.live;
        live.delivered.fetch_add(fresh, Relaxed);
        count_batch(live, &window, now, fresh, dups, late);
        if missing != 0 {
            live.lost_so_far.fetch_add(missing, Relaxed);
        }
        result.map(|()| taken)
    }

    /// The run finished with the consumer connected: a close that is already
    /// in (or that the watcher saw) is still a server kill, even on a thread
    /// that was too busy to see it before; otherwise what it has not received
    /// is still on its way.
    fn finish(&mut self, mut conn: S::Conn) {
        if conn.closed_now() {
            drop(conn);
            self.server_closed();
            return;
        }
        if let Some(seen) = self.side.unwatch() {
            drop(conn);
            self.server_closed_at(Some(seen));
            return;
        }
        self.with_stats(|st| conn.settle(st));
        if let Account::Own(out) = &self.account {
            let mut out = out.borrow_mut();
            out.end = Some(out.stats.positions());
        }
    }

    /// A scenario disconnect: asks the server to stop sending, takes what it
    /// had already sent, then closes. Everything published after that is
    /// lost because nobody was subscribed (none of it in a buffer); a
    /// transport that retains messages keeps them for the comeback.
    async fn leave(&mut self, mut conn: S::Conn) -> Result<(), ConnError> {
        self.side.unwatch();
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        let left = async {
            conn.start_leaving().await?;
            // The end of the run ends the leave too (a slow consumer may still hold a backlog).
            while !conn.has_left() {
                tokio::select! {
                    biased;
                    _ = &mut finished => break,
                    r = conn.fill() => r?,
                }
                self.take(&mut conn).await?;
            }
            Ok::<_, ConnError>(())
        };
        match left.await {
            Ok(()) => {}
            // Closed by the server while leaving: a server kill, not a leave.
            Err(ConnError::Closed | ConnError::Io(_)) => {
                drop(conn);
                self.server_closed();
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        drop(conn);
        let received = self.received();
        let closed = if self.retains { self.side.positions(&self.ctx) } else { received.clone() };
        self.close(EventKind::Disconnect, self.ctx.clock.now_ns(), received, closed);
        Ok(())
    }

    /// A crash: gone at once, without a word; what was on its way is lost in
    /// the buffer (a transport that retains it keeps it for others to claim).
    async fn crash(&mut self, conn: S::Conn) {
        self.side.unwatch();
        let closed = self.side.positions(&self.ctx);
        conn.crash().await;
        let received = self.received();
        self.close(EventKind::Crash, self.ctx.clock.now_ns(), received, closed);
    }

    /// The server closed the connection: whatever it had queued for us is gone.
    fn server_closed(&mut self) {
        let seen = self.side.unwatch();
        self.server_closed_at(seen);
    }

    fn server_closed_at(&mut self, seen: Option<Cutoff>) {
        let (at, closed) = seen.unwrap_or_else(|| (self.ctx.clock.now_ns(), self.side.positions(&self.ctx)));
        let received = self.received();
        self.close(EventKind::ServerKill, at, received, closed);
    }

    /// One past the last sequence received, per ledger; empty for a
    /// transport that retains what a consumer misses (its group keeps it).
    fn received(&self) -> Vec<u64> {
        match (&self.account, self.retains) {
            (_, true) | (Account::Unit { .. }, _) => Vec::new(),
            (Account::Own(out), false) => out.borrow().stats.positions(),
        }
    }

    fn outages(&self) -> std::cell::RefMut<'_, Vec<Outage>> {
        match &self.account {
            Account::Own(out) => std::cell::RefMut::map(out.borrow_mut(), |o| &mut o.outages),
            Account::Unit { outages, .. } => outages.borrow_mut(),
        }
    }

    fn close(&mut self, kind: EventKind, closed_ns: u64, received: Vec<u64>, closed: Vec<u64>) {
        while let Some(shard) = self.partials.first().map(|p| p.shard) {
            self.end_partial(shard, closed_ns);
        }
        self.ctx.live.connected.fetch_sub(1, Relaxed);
        if kind == EventKind::Disconnect {
            self.with_stats(|st| st.disconnects += 1);
        }
        let consumer = self.id;
        let outage = Outage { consumer, kind, closed_ns, resubscribed_ns: None, received, closed, resubscribed: None };
        self.outages().push(outage);
    }

    /// Connects and subscribes again, with the backoff; `None` if the run
    /// finished first. `after_kill`: the server closed the last connection
    /// (a planned comeback tries at once). A refusal (credentials,
    /// permissions) ends the retries.
    async fn reconnect(&mut self, after_kill: bool) -> Result<Option<S::Conn>, ConnError> {
        let clock = self.ctx.clock;
        if !after_kill {
            self.backoff = Backoff::new();
        }
        let timeout = self.ctx.scenario.connect_timeout;
        let mut finish = self.ctx.finish.clone();
        let conn = loop {
            let wait = self.backoff.before_attempt(clock.now_ns());
            if !wait.is_zero() && !self.ctx.sleep_until(clock.now_ns() + wait.as_nanos() as u64).await {
                return Ok(None);
            }
            tokio::select! {
                _ = finish.wait_for(|f| *f) => return Ok(None),
                r = tokio::time::timeout(timeout, self.side.connect(true)) => match r {
                    Ok(Ok(conn)) => break conn,
                    Ok(Err(e @ ConnError::Refused { .. })) => return Err(e),
                    Ok(Err(_)) | Err(_) => {}
                },
            }
        };
        let now = clock.now_ns();
        self.backoff.connected(now);
        self.side.watch(&conn);
        let positions = self.side.positions(&self.ctx);
        if let Some(outage) = self.outages().last_mut() {
            outage.resubscribed_ns = Some(now);
            outage.resubscribed = Some(positions);
        }
        self.ctx.live.connected.fetch_add(1, Relaxed);
        Ok(Some(conn))
    }

    /// Some channels were lost (one of the consumer's connections closed, or
    /// their slot moved), or are back: an outage of those channels only (for
    /// the others the positions make empty ranges, so no loss is put down to it).
    fn shard_changed(&mut self, change: ShardChange) {
        let now = self.ctx.clock.now_ns();
        let (shard, lost, moved) = match change {
            ShardChange::Lost { shard, channels, moved } => (shard, channels, moved),
            ShardChange::Back { shard } => return self.end_partial(shard, now),
        };
        self.end_partial(shard, now);
        let channels = self.ctx.scenario.channels as usize;
        let mut on = vec![false; channels];
        lost.into_iter().filter(|&c| c < channels).for_each(|c| on[c] = true);
        let closed = self.side.positions(&self.ctx);
        let received: Vec<u64> = match self.retains {
            true => Vec::new(),
            false => {
                let received = self.received();
                (0..closed.len()).map(|i| if on[i % channels] { received[i] } else { closed[i] }).collect()
            }
        };
        // A moved slot's messages published before the move all came before the
        // server's sunsubscribe, on the same connection: what is missing was
        // published after it, while the consumer was not subscribed anywhere.
        let closed = if moved && !self.retains { received.clone() } else { closed };
        let kind = if moved { EventKind::SlotMoved } else { EventKind::ServerKill };
        let outage = Outage {
            consumer: self.id,
            kind,
            closed_ns: now,
            resubscribed_ns: None,
            received,
            closed,
            resubscribed: None,
        };
        let mut outages = self.outages();
        outages.push(outage);
        let outage = outages.len() - 1;
        drop(outages);
        self.partials.push(Partial { shard, outage, on });
    }

    /// Ends the outage of one shard's channels, if one is open.
    fn end_partial(&mut self, shard: usize, now: u64) {
        let Some(at) = self.partials.iter().position(|p| p.shard == shard) else { return };
        let Partial { outage, on, .. } = self.partials.swap_remove(at);
        let channels = on.len();
        let positions = self.side.positions(&self.ctx);
        let mut outages = self.outages();
        let outage = &mut outages[outage];
        let back =
            (0..positions.len()).map(|i| if on[i % channels] { positions[i] } else { outage.closed[i] }).collect();
        outage.resubscribed = Some(back);
        outage.resubscribed_ns = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_to_a_second_and_a_lasting_connection_resets_it() {
        let ms = |n: u64| n * 1_000_000;
        let mut b = Backoff::started(0);
        // A connection that lived a second: reconnect at once.
        assert_eq!(b.before_attempt(ms(1000)), Duration::ZERO);
        assert_eq!(Backoff::new().before_attempt(0), Duration::ZERO, "a planned comeback goes at once");
        b.connected(ms(1000));
        // One closed at once, again and again: 10, 20, 40 ms ... up to 1 s.
        let waits: Vec<u64> = (0..9)
            .map(|i| {
                let w = b.before_attempt(ms(1001 + i)).as_millis() as u64;
                b.connected(ms(1001 + i));
                w
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        // A failed attempt (no connection) waits too.
        assert_eq!(b.before_attempt(ms(1010)), Duration::from_secs(1));
        assert_eq!(b.before_attempt(ms(5000)), Duration::from_secs(1));
        b.connected(ms(5000));
        assert_eq!(b.before_attempt(ms(6000)), Duration::ZERO, "lived a second: reset");
        assert_eq!(b.before_attempt(ms(6000)), BACKOFF_MIN, "and the next failure starts over at 10 ms");
    }
}
