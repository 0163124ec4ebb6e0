//! The loopback bus: one log per producer, a ring of message headers that
//! its producer writes and every subscribed consumer reads at its own
//! cursor. Fan-out costs one write per message, whatever the consumers.
//!
//! Nothing here locks or allocates per message. Each slot is a seqlock (a
//! stamp written before and after its words), so a reader that was lapped
//! by its producer finds out instead of reading a torn header. A producer
//! publishes its head (and its channels' next sequences, under the log's own
//! seqlock) once per write batch, and wakes waiting consumers once per batch.
//!
//! A producer whose log is nearly a whole log ahead of a subscribed
//! consumer waits for it (as a socket's flow control would), at most
//! [`LAP_AFTER`]; then it writes on, and a consumer still that far behind
//! is cut off, as Redis cuts off a subscriber over its output-buffer limit.
//! So `--rate 0` measures how fast the harness's producers and consumers
//! go together, and a slow consumer is still cut off.

use crate::wire::Header;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{fence, AtomicU64};
use tokio::sync::Notify;

/// Messages a log holds: a consumer further behind than this has lost what
/// was overwritten, as a Pub/Sub subscriber past its output-buffer limit.
pub const CAPACITY: u64 = 1 << 16;

/// Room a producer keeps ahead of its slowest consumer: more than a write batch.
const MARGIN: u64 = CAPACITY / 4;

/// Longest a producer waits for a consumer a whole log behind.
pub const LAP_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A consumer's cursor while it is not subscribed.
const AWAY: u64 = u64::MAX;

/// A slot's stamp while its producer rewrites it.
const WRITING: u64 = u64::MAX;

/// One message: its stamp (log index + 1 once written) and its header.
#[derive(Default)]
struct Slot {
    stamp: AtomicU64,
    /// producer << 32 | channel, seq, intended_ns, sent_ns.
    words: [AtomicU64; 4],
}

/// One producer's messages.
struct Log {
    slots: Box<[Slot]>,
    /// Messages published (written and flushed).
    head: AtomicU64,
    /// Per channel: the next sequence as of `head`.
    next_seq: Box<[AtomicU64]>,
    /// Seqlock over (`head`, `next_seq`): odd while a flush publishes them.
    version: AtomicU64,
}

/// Every producer's log, and the consumers' wake-up.
pub struct Bus {
    logs: Box<[Log]>,
    channels: u32,
    /// Woken once per flush: consumers waiting for messages.
    published: Notify,
    /// Consumers subscribed now (a flush's measured messages reached each).
    subscribed: AtomicU64,
    /// Per consumer, per producer: how far it has read (reported once per
    /// read batch; [`AWAY`] while not subscribed).
    cursors: Box<[Box<[AtomicU64]>]>,
    /// Producers waiting for a consumer to make room; consumers wake them.
    waiting: AtomicU64,
    consumed: Notify,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("producers", &self.logs.len()).field("channels", &self.channels).finish()
    }
}

impl Bus {
    pub fn new(producers: u32, channels: u32, consumers: u32) -> Bus {
        let log = || Log {
            slots: (0..CAPACITY).map(|_| Slot::default()).collect(),
            head: AtomicU64::new(0),
            next_seq: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            version: AtomicU64::new(0),
        };
        let row = || (0..producers).map(|_| AtomicU64::new(AWAY)).collect();
        Bus {
            logs: (0..producers).map(|_| log()).collect(),
            channels,
            published: Notify::new(),
            subscribed: AtomicU64::new(0),
            cursors: (0..consumers).map(|_| row()).collect(),
            waiting: AtomicU64::new(0),
            consumed: Notify::new(),
        }
    }

    /// The furthest behind subscribed consumer's cursor on `producer`'s log.
    fn slowest(&self, producer: usize) -> u64 {
        self.cursors.iter().map(|c| c[producer].load(Acquire)).min().unwrap_or(AWAY)
    }

    /// Waits (at most [`LAP_AFTER`]) until every subscribed consumer is far
    /// enough behind `written` for the next batch not to overwrite what it
    /// has not read. Returns the slowest cursor seen (to skip the next check).
    pub async fn room(&self, producer: u32, written: u64) -> u64 {
        let p = producer as usize;
        let deadline = tokio::time::Instant::now() + LAP_AFTER;
        loop {
            let consumed = self.consumed.notified();
            tokio::pin!(consumed);
            consumed.as_mut().enable();
            self.waiting.fetch_add(1, Release);
            let slowest = self.slowest(p);
            if slowest == AWAY || written.saturating_sub(slowest) <= CAPACITY - MARGIN {
                self.waiting.fetch_sub(1, Release);
                return slowest;
            }
            let timed_out = tokio::select! {
                _ = consumed => false,
                _ = tokio::time::sleep_until(deadline) => true,
            };
            self.waiting.fetch_sub(1, Release);
            if timed_out {
                return written;
            }
        }
    }

    /// Whether a producer at `written`, whose slowest consumer was last at `slowest`, must check for room.
    #[inline]
    pub fn may_be_full(written: u64, slowest: u64) -> bool {
        written.saturating_sub(slowest) > CAPACITY - MARGIN
    }

    /// A consumer reports how far it has read (once per read batch); wakes
    /// a producer that waits for room.
    pub fn report(&self, consumer: u32, cursors: &[u64]) {
        let row = &self.cursors[consumer as usize];
        row.iter().zip(cursors).for_each(|(a, &b)| a.store(b, Release));
        if self.waiting.load(Acquire) > 0 {
            self.consumed.notify_waiters();
        }
    }

    /// A consumer leaves: it holds no producer back.
    pub fn away(&self, consumer: u32) {
        self.cursors[consumer as usize].iter().for_each(|c| c.store(AWAY, Release));
        self.subscribed.fetch_sub(1, Relaxed);
        if self.waiting.load(Acquire) > 0 {
            self.consumed.notify_waiters();
        }
    }

    pub fn producers(&self) -> usize {
        self.logs.len()
    }

    /// Writes message `index` of `producer`'s log (not visible before [`Bus::publish`]).
    #[inline]
    pub fn write(&self, producer: u32, index: u64, h: &Header) {
        let slot = &self.logs[producer as usize].slots[(index % CAPACITY) as usize];
        slot.stamp.store(WRITING, Relaxed);
        fence(Release);
        let w = &slot.words;
        w[0].store((h.producer as u64) << 32 | h.channel as u64, Relaxed);
        w[1].store(h.seq, Relaxed);
        w[2].store(h.intended_ns, Relaxed);
        w[3].store(h.sent_ns, Relaxed);
        slot.stamp.store(index + 1, Release);
    }

    /// Publishes `producer`'s messages up to `head`, with each channel's next
    /// sequence; wakes the waiting consumers. Returns the consumers subscribed then.
    pub fn publish(&self, producer: u32, head: u64, next_seq: &[u64]) -> u64 {
        let log = &self.logs[producer as usize];
        let v = log.version.load(Relaxed);
        log.version.store(v + 1, Relaxed);
        fence(Release);
        log.next_seq.iter().zip(next_seq).for_each(|(a, &b)| a.store(b, Relaxed));
        log.head.store(head, Release);
        log.version.store(v + 2, Release);
        self.published.notify_waiters();
        self.subscribed.load(Relaxed)
    }

    /// Message `index` of `producer`'s log, if it still holds it.
    #[inline]
    pub fn read(&self, producer: usize, index: u64) -> Option<Header> {
        let slot = &self.logs[producer].slots[(index % CAPACITY) as usize];
        let stamp = slot.stamp.load(Acquire);
        if stamp != index + 1 {
            return None;
        }
        let w = &slot.words;
        let (pc, seq, intended_ns, sent_ns) =
            (w[0].load(Relaxed), w[1].load(Relaxed), w[2].load(Relaxed), w[3].load(Relaxed));
        fence(Acquire);
        if slot.stamp.load(Relaxed) != stamp {
            return None;
        }
        Some(Header { producer: (pc >> 32) as u32, channel: pc as u32, seq, intended_ns, sent_ns })
    }

    /// `producer`'s published head.
    #[inline]
    pub fn head(&self, producer: usize) -> u64 {
        self.logs[producer].head.load(Acquire)
    }

    /// Every log's head, and the next sequence of every (producer, channel)
    /// as of that head (indexed like a consumer's ledgers), read consistently.
    pub fn snapshot(&self) -> (Vec<u64>, Vec<u64>) {
        let mut heads = Vec::with_capacity(self.logs.len());
        let mut positions = Vec::with_capacity(self.logs.len() * self.channels as usize);
        for log in self.logs.iter() {
            loop {
                let v1 = log.version.load(Acquire);
                if v1 % 2 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let head = log.head.load(Relaxed);
                let at = positions.len();
                positions.extend(log.next_seq.iter().map(|s| s.load(Relaxed)));
                fence(Acquire);
                if log.version.load(Relaxed) == v1 {
                    heads.push(head);
                    break;
                }
                positions.truncate(at);
            }
        }
        (heads, positions)
    }

    /// Consumer `consumer` subscribes: counted from now, reading from every log's head.
    pub fn subscribe(&self, consumer: u32) -> (Vec<u64>, Vec<u64>) {
        self.subscribed.fetch_add(1, Relaxed);
        let (heads, positions) = self.snapshot();
        self.report(consumer, &heads);
        (heads, positions)
    }

    /// Resolves at the next publish after `enable` was called on it.
    pub fn published(&self) -> tokio::sync::futures::Notified<'_> {
        self.published.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(seq: u64) -> Header {
        Header { producer: 1, channel: (seq % 3) as u32, seq, intended_ns: seq * 10, sent_ns: seq * 10 + 1 }
    }

    #[test]
    fn a_message_is_read_back_whole_until_it_is_overwritten() {
        let bus = Bus::new(2, 3, 1);
        bus.write(1, 0, &h(0));
        assert_eq!(bus.head(1), 0, "written, not yet published");
        assert_eq!(bus.publish(1, 1, &[1, 0, 0]), 0, "nobody subscribed");
        assert_eq!(bus.read(1, 0), Some(h(0)));
        assert_eq!(bus.read(1, 1), None, "not written yet");
        bus.write(1, CAPACITY, &h(7));
        assert_eq!(bus.read(1, 0), None, "lapped: the slot holds a later message");
        assert_eq!(bus.read(1, CAPACITY), Some(h(7)));
        let (heads, positions) = bus.subscribe(0);
        assert_eq!((heads, positions), (vec![0, 1], vec![0, 0, 0, 1, 0, 0]));
        assert_eq!(bus.publish(1, 2, &[1, 1, 0]), 1, "one subscriber reached");
    }
}
