//! A loopback consumer for the whole run: reads the logs, records each
//! delivery, and takes the scenario's faults as a Pub/Sub subscriber does. A
//! disconnect drains what was published before it, then misses what is
//! published while it is away; a crash loses what it had not read; a
//! consumer that falls a whole log behind is cut off (a server kill) and
//! loses what was waiting for it.

use super::bus::Bus;
use super::conn::Reader;
use crate::chaos::{EventKind, Outage, Planned};
use crate::clock::Timer;
use crate::connect::ConnError;
use crate::drivers::ctx::{count_batch, ThreadBoard, ThreadFinish};
use crate::drivers::{Consumed, ConsumerConn, ConsumerOutput, Ctx, Notes, StatsCell};
use crate::stats::{ConsumerStats, Window};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Runs consumer `id` until the run finishes.
pub(super) async fn run(bus: Arc<Bus>, id: u32, shared: Arc<Ctx>, notes: Notes, thread_stats: StatsCell) -> Consumed {
    let s = &shared.scenario;
    let (reader, _) = Reader::subscribe(bus.clone(), id);
    let Some((reader, window)) = shared.enlist(id, Ok(reader), &notes, &thread_stats).await else {
        return Consumed::Nothing;
    };
    let slow = shared.faults.slow_delay(id);
    let mut task = Consumer {
        bus,
        window,
        slow,
        // Only slow consumers sleep per message.
        timer: if slow.is_some() { Timer::precise(shared.clock) } else { Timer::coarse(shared.clock) },
        out: ThreadBoard::consumer(ConsumerOutput {
            stats: ConsumerStats::new(id, s.producers, s.channels),
            channels: (0..s.channels).collect(),
            outages: Vec::new(),
            end: None,
        }),
        thread_stats,
        shared: shared.clone(),
    };
    let planned = shared.faults.outages_of(id, &window);
    task.run(reader, planned).await;
    let out = task.out.borrow().clone();
    Consumed::Own(Box::new(out))
}

struct Consumer {
    bus: Arc<Bus>,
    window: Window,
    slow: Option<Duration>,
    timer: Timer,
    out: Rc<RefCell<ConsumerOutput>>,
    thread_stats: StatsCell,
    shared: Arc<Ctx>,
}

impl Consumer {
    async fn run(&mut self, reader: Reader, planned: Vec<Planned>) {
        let clock = self.shared.clock;
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        let mut planned = planned.into_iter().peekable();
        let mut reader = Some(reader);
        while let Some(conn) = reader.as_mut() {
            let next_down = planned.peek().map(|o| o.down_ns);
            tokio::select! {
                biased;
                _ = &mut finished => break,
                _ = clock.sleep_until_ns(next_down.unwrap_or(u64::MAX / 4)), if next_down.is_some() => {
                    let Planned { up_ns, .. } = planned.next().expect("peeked");
                    let conn = reader.take().expect("connected");
                    match up_ns {
                        // A crash: gone at once; what it had not read is lost with it.
                        None => self.cut_off(conn, EventKind::Crash),
                        Some(up) => {
                            self.leave(conn).await;
                            if self.shared.sleep_until(up).await {
                                reader = Some(self.subscribe());
                            }
                        }
                    }
                }
                r = conn.fill() => {
                    if let Err(ConnError::Closed) = r.and(self.take_messages(conn).await) {
                        let conn = reader.take().expect("connected");
                        self.cut_off(conn, EventKind::ServerKill);
                        if self.shared.scenario.reconnect {
                            reader = Some(self.subscribe());
                        }
                    }
                }
            }
        }
        if let Some(conn) = reader {
            // Still subscribed: what it has not read yet is on its way, not lost.
            self.shared.live.connected.fetch_sub(1, Relaxed);
            let mut out = self.out.borrow_mut();
            out.end = Some(out.stats.positions());
            drop(conn);
        } else {
            self.shared.sleep_until(u64::MAX / 4).await;
        }
    }

    /// Accounts for every message already published; a slow consumer spends
    /// its delay on each. `Closed` if it fell a whole log behind.
    async fn take_messages(&mut self, conn: &mut Reader) -> Result<(), ConnError> {
        let (live, clock) = (&self.shared.live, self.shared.clock);
        let before = {
            let o = self.out.borrow();
            (o.stats.missing_now, o.stats.duplicates, o.stats.out_of_order)
        };
        let (mut fresh, mut now) = (0, clock.now_ns());
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        let result = loop {
            let fresh_one = {
                let d = match conn.next() {
                    Ok(Some(d)) => d,
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                };
                let mut ts = self.thread_stats.borrow_mut();
                let ts = ts.as_mut().expect("thread stats exist once started");
                self.out.borrow_mut().stats.record(d.payload, now, &self.window, ts)
            };
            fresh += fresh_one as u64;
            if let Some(delay) = self.slow {
                tokio::select! {
                    biased;
                    _ = &mut finished => break Ok(()),
                    _ = self.timer.sleep_until_ns(now.saturating_add(delay.as_nanos() as u64)) => {}
                }
                now = clock.now_ns();
            }
        };
        live.delivered.fetch_add(fresh, Relaxed);
        let o = self.out.borrow();
        count_batch(live, &self.window, now, fresh, o.stats.duplicates - before.1, o.stats.out_of_order - before.2);
        if o.stats.missing_now != before.0 {
            live.lost_so_far.fetch_add(o.stats.missing_now.wrapping_sub(before.0), Relaxed);
        }
        result
    }

    /// A scenario disconnect: stops taking new messages, reads what was
    /// published before, and leaves. What is published while it is away is
    /// lost to it, as nobody was subscribed.
    async fn leave(&mut self, mut conn: Reader) {
        let _ = conn.start_leaving().await;
        // The end of the run ends the leave too.
        let finished = ThreadFinish::wait();
        tokio::pin!(finished);
        loop {
            if self.take_messages(&mut conn).await.is_err() {
                // Lapped while leaving: what it had not read is lost in the buffer.
                return self.cut_off(conn, EventKind::ServerKill);
            }
            if conn.has_left() {
                break;
            }
            tokio::select! {
                biased;
                _ = &mut finished => break,
                _ = conn.fill() => {}
            }
        }
        drop(conn);
        let received = self.out.borrow().stats.positions();
        self.close(EventKind::Disconnect, received.clone(), received);
    }

    /// Gone at once (a crash, or cut off for falling behind): what was
    /// published and not read is lost in the buffer, the rest to the absence.
    fn cut_off(&mut self, conn: Reader, kind: EventKind) {
        drop(conn);
        let (_, closed) = self.bus.snapshot();
        let received = self.out.borrow().stats.positions();
        self.close(kind, received, closed);
    }

    fn close(&mut self, kind: EventKind, received: Vec<u64>, closed: Vec<u64>) {
        self.shared.live.connected.fetch_sub(1, Relaxed);
        let mut out = self.out.borrow_mut();
        if kind == EventKind::Disconnect {
            out.stats.disconnects += 1;
        }
        let consumer = out.stats.id;
        let closed_ns = self.shared.clock.now_ns();
        out.outages.push(Outage {
            consumer,
            kind,
            closed_ns,
            resubscribed_ns: None,
            received,
            closed,
            resubscribed: None,
        });
    }

    /// Subscribes again: everything published from now on comes.
    fn subscribe(&mut self) -> Reader {
        let mut out = self.out.borrow_mut();
        let (reader, positions) = Reader::subscribe(self.bus.clone(), out.stats.id);
        let outage = out.outages.last_mut().expect("subscribing again after an outage");
        outage.resubscribed_ns = Some(self.shared.clock.now_ns());
        outage.resubscribed = Some(positions);
        self.shared.live.connected.fetch_add(1, Relaxed);
        reader
    }
}
