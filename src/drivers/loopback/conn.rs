//! The loopback transport's connections: a producer's writer into its log,
//! and a consumer's reader over every log.

use super::bus::{Bus, CAPACITY};
use crate::connect::ConnError;
use crate::drivers::{Acks, Answered, ConsumerConn, Delivery, Finished, ProducerConn};
use crate::wire::{Header, HEADER_LEN};
use std::sync::Arc;
use std::time::Duration;

/// A producer's connection: its messages go into its log as they are queued,
/// and become visible to consumers at the flush.
pub struct Writer {
    bus: Arc<Bus>,
    producer: u32,
    written: u64,
    next_seq: Vec<u64>,
    measured: (u64, u64),
    /// Measured messages published so far, and the subscribers they reached.
    published_measured: u64,
    reached: u64,
    /// The slowest consumer's cursor when last checked.
    slowest: u64,
}

impl Writer {
    pub fn new(bus: Arc<Bus>, producer: u32, channels: u32) -> Writer {
        let next_seq = vec![0; channels as usize];
        Writer { bus, producer, written: 0, next_seq, measured: (0, 0), published_measured: 0, reached: 0, slowest: 0 }
    }
}

impl ProducerConn for Writer {
    #[inline]
    /// Only the header travels: the payload's bytes are drawn and counted, not carried.
    fn queue(&mut self, channel: u32, header: &Header, _payload: &[u8]) {
        self.bus.write(self.producer, self.written, header);
        self.written += 1;
        self.next_seq[channel as usize] = header.seq + 1;
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        let subscribers = self.bus.publish(self.producer, self.written, &self.next_seq);
        // As PUBLISH replies: each measured message reached the consumers subscribed when it was published.
        let measured_now = self.written.clamp(self.measured.0, self.measured.1).saturating_sub(self.measured.0);
        self.reached += (measured_now - self.published_measured) * subscribers;
        self.published_measured = measured_now;
        // Room for the next batch, before it is queued over what a consumer has not read.
        if Bus::may_be_full(self.written, self.slowest) {
            self.slowest = self.bus.room(self.producer, self.written).await;
        }
        Ok(())
    }

    async fn failure(&mut self) -> ConnError {
        // Memory does not fail.
        std::future::pending().await
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        self.measured = (first, end);
    }

    async fn finish(self, _timeout: Duration) -> Finished {
        let acks = Acks { replies: self.written, reached: self.reached, errors: 0, redirections: 0 };
        Finished { acks, refused: Vec::new(), answered: Answered::Prefix(self.written), error: None }
    }
}

/// A consumer's connection: a cursor per log. Dropping it unsubscribes.
pub struct Reader {
    bus: Arc<Bus>,
    consumer: u32,
    cursors: Vec<u64>,
    /// Every log's head as last read (refreshed by `fill`).
    heads: Vec<u64>,
    /// While leaving: the heads when it asked to leave; it reads up to them, no further.
    until: Option<Vec<u64>>,
    /// The header of the message `next` returned, as its payload.
    scratch: [u8; HEADER_LEN],
}

impl Reader {
    /// Subscribes; returns the reader and the next sequence of every
    /// (producer, channel) from which it receives everything.
    pub fn subscribe(bus: Arc<Bus>, consumer: u32) -> (Reader, Vec<u64>) {
        let (heads, positions) = bus.subscribe(consumer);
        let reader = Reader { bus, consumer, cursors: heads.clone(), heads, until: None, scratch: [0; HEADER_LEN] };
        (reader, positions)
    }

    /// Reads every log's head; true if there is something new.
    fn refresh(&mut self) -> bool {
        let mut new = false;
        for (p, h) in self.heads.iter_mut().enumerate() {
            *h = self.bus.head(p);
            new |= *h > self.cursors[p];
        }
        if let Some(until) = &self.until {
            self.heads.iter_mut().zip(until).for_each(|(h, &u)| *h = (*h).min(u));
            new = self.heads.iter().zip(&self.cursors).any(|(h, c)| h > c);
        }
        new
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.bus.away(self.consumer);
    }
}

impl ConsumerConn for Reader {
    /// The next message, producer by producer; `Closed` once a producer has
    /// overwritten what this reader had not read (it fell a whole log behind).
    #[inline]
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError> {
        for p in 0..self.cursors.len() {
            let at = self.cursors[p];
            if at >= self.heads[p] {
                continue;
            }
            if self.heads[p] - at > CAPACITY {
                return Err(ConnError::Closed);
            }
            let Some(h) = self.bus.read(p, at) else { return Err(ConnError::Closed) };
            self.cursors[p] = at + 1;
            h.encode(&mut self.scratch);
            return Ok(Some(Delivery { payload: &self.scratch }));
        }
        Ok(None)
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        // Its own handle on the bus: the wait borrows it while `refresh` takes the reader.
        let bus = self.bus.clone();
        // What it read since the last fill, for producers waiting for room.
        bus.report(self.consumer, &self.cursors);
        loop {
            let published = bus.published();
            tokio::pin!(published);
            published.as_mut().enable();
            if self.refresh() {
                return Ok(());
            }
            published.await;
        }
    }

    async fn start_leaving(&mut self) -> Result<(), ConnError> {
        self.refresh();
        self.until = Some(self.heads.clone());
        Ok(())
    }

    fn has_left(&self) -> bool {
        self.until.as_ref().is_some_and(|u| u.iter().zip(&self.cursors).all(|(u, c)| c >= u))
    }
}
