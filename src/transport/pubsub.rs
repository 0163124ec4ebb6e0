//! Redis Pub/Sub: PUBLISH from producers, SUBSCRIBE (or PSUBSCRIBE) on consumers.

use super::conn::{Conn, Endpoint, Tuning};
use super::resp::{self, Atom, Frame};
use super::{Acks, ConsumerConn, Delivery, ProducerConn, TransportError};
use crate::wire::Header;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

/// Channel names and payload size shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct PubSub {
    pub endpoint: Endpoint,
    pub channels: Vec<String>,
    /// When set, consumers PSUBSCRIBE to this pattern instead of SUBSCRIBE to each channel.
    pub pattern: Option<String>,
    pub payload_len: usize,
}

impl PubSub {
    pub async fn producer(&self) -> Result<PubSubProducer, TransportError> {
        let conn = self.endpoint.connect().await?;
        let prefixes =
            self.channels.iter().map(|ch| resp::fixed_prefix(b"PUBLISH", ch.as_bytes(), self.payload_len)).collect();
        let (read, write) = conn.stream.into_split();
        let acks = Rc::new(AckState::default());
        let reader = tokio::task::spawn_local(read_replies(read, acks.clone()));
        Ok(PubSubProducer { write, prefixes, payload_len: self.payload_len, out: Vec::new(), written: 0, acks, reader })
    }

    /// Connects and subscribes; returns once Redis confirmed every subscription,
    /// so everything published from then on is delivered. With `want_id` it
    /// also asks for the connection's CLIENT ID, so a watcher can tell when
    /// Redis closes it.
    pub async fn consumer(&self, tuning: Tuning, want_id: bool) -> Result<PubSubConsumer, TransportError> {
        let mut conn = self.endpoint.connect_with(tuning).await?;
        let client_id = match want_id {
            true => Some(client_id(&mut conn).await?),
            false => None,
        };
        let mut cmd = Vec::new();
        let (kind, names): (&[u8], Vec<&[u8]>) = match &self.pattern {
            Some(p) => (b"psubscribe", vec![p.as_bytes()]),
            None => (b"subscribe", self.channels.iter().map(|c| c.as_bytes()).collect()),
        };
        let verb = if self.pattern.is_some() { &b"PSUBSCRIBE"[..] } else { &b"SUBSCRIBE"[..] };
        resp::encode_command(&mut cmd, &[&[verb], names.as_slice()].concat());
        conn.stream.write_all(&cmd).await?;
        let mut confirmed = 0;
        while confirmed < names.len() {
            match resp::parse(conn.pending())? {
                Some((frame, used)) => {
                    if let Frame::Atom(Atom::Error(e)) = frame {
                        let message = String::from_utf8_lossy(e).into_owned();
                        return Err(TransportError::Refused { what: "SUBSCRIBE", message });
                    }
                    if matches!(frame.items().first(), Some(Atom::Bulk(k)) if *k == kind) {
                        confirmed += 1;
                    }
                    conn.consume(used);
                }
                None => conn.fill().await?,
            }
        }
        let leave = if self.pattern.is_some() { b"punsubscribe".as_slice() } else { b"unsubscribe".as_slice() };
        Ok(PubSubConsumer { conn, leave, left: false, client_id })
    }

    /// Waits until the connection with `client_id` is gone from the server,
    /// polling every `every`; calls `before_poll` right before each poll, so the
    /// caller can note what was true just before the one that found it gone.
    /// Redis cuts off a slow subscriber long before the subscriber can tell:
    /// what the kernel already buffered still arrives first, FIN last, seconds
    /// later for a slow reader.
    pub async fn wait_closed(
        &self,
        client_id: i64,
        every: Duration,
        mut before_poll: impl FnMut(),
    ) -> Result<(), TransportError> {
        let mut conn = self.endpoint.connect().await?;
        let mut cmd = Vec::new();
        resp::encode_command(&mut cmd, &[b"CLIENT", b"LIST", b"ID", client_id.to_string().as_bytes()]);
        loop {
            tokio::time::sleep(every).await;
            before_poll();
            conn.stream.write_all(&cmd).await?;
            let listed = loop {
                match resp::parse(conn.pending())? {
                    Some((frame, used)) => {
                        let listed = match frame {
                            Frame::Atom(Atom::Bulk(b)) => !b.is_empty(),
                            Frame::Atom(Atom::Error(e)) => {
                                let message = String::from_utf8_lossy(e).into_owned();
                                return Err(TransportError::Refused { what: "CLIENT LIST", message });
                            }
                            _ => true,
                        };
                        conn.consume(used);
                        break listed;
                    }
                    None => conn.fill().await?,
                }
            };
            if !listed {
                return Ok(());
            }
        }
    }
}

/// Asks for the connection's CLIENT ID.
async fn client_id(conn: &mut Conn) -> Result<i64, TransportError> {
    let mut cmd = Vec::new();
    resp::encode_command(&mut cmd, &[b"CLIENT", b"ID"]);
    conn.stream.write_all(&cmd).await?;
    loop {
        match resp::parse(conn.pending())? {
            Some((Frame::Atom(Atom::Int(id)), used)) => {
                conn.consume(used);
                return Ok(id);
            }
            Some((Frame::Atom(Atom::Error(e)), _)) => {
                let message = String::from_utf8_lossy(e).into_owned();
                return Err(TransportError::Refused { what: "CLIENT ID", message });
            }
            Some(_) => return Err(resp::RespError("unexpected reply to CLIENT ID").into()),
            None => conn.fill().await?,
        }
    }
}

/// Shared between a producer's writer and its reply reader (same thread).
#[derive(Default)]
struct AckState {
    replies: Cell<u64>,
    reached: Cell<u64>,
    errors: Cell<u64>,
    measured: Cell<(u64, u64)>,
    first_error: RefCell<Option<String>>,
}

/// Reads PUBLISH replies as they come, concurrently with the writes, so the
/// pipeline never stalls on a round trip.
async fn read_replies(mut read: tokio::net::tcp::OwnedReadHalf, acks: Rc<AckState>) -> Result<(), TransportError> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    loop {
        // Counted locally and stored once per read: one reply per message.
        let (lo, hi) = acks.measured.get();
        let (mut idx, mut reached) = (acks.replies.get(), 0);
        loop {
            let pending = &buf[start..end];
            if let Some((n, used)) = resp::integer(pending) {
                if (lo..hi).contains(&idx) {
                    reached += n as u64;
                }
                idx += 1;
                start += used;
                continue;
            }
            let Some((frame, used)) = resp::parse(pending)? else { break };
            match frame {
                Frame::Atom(Atom::Int(n)) if (lo..hi).contains(&idx) => reached += n.max(0) as u64,
                Frame::Atom(Atom::Error(e)) => {
                    acks.errors.set(acks.errors.get() + 1);
                    acks.first_error.borrow_mut().get_or_insert_with(|| String::from_utf8_lossy(e).into_owned());
                }
                _ => {}
            }
            idx += 1;
            start += used;
        }
        acks.replies.set(idx);
        acks.reached.set(acks.reached.get() + reached);
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = read.read(&mut buf[end..]).await?;
        if n == 0 {
            return Err(TransportError::Closed);
        }
        end += n;
    }
}

/// A producer: pipelined PUBLISH from a reused buffer.
pub struct PubSubProducer {
    write: OwnedWriteHalf,
    /// `*3 $7 PUBLISH $n channel $len` per channel, built once.
    prefixes: Vec<Vec<u8>>,
    payload_len: usize,
    out: Vec<u8>,
    written: u64,
    acks: Rc<AckState>,
    reader: tokio::task::JoinHandle<Result<(), TransportError>>,
}

impl ProducerConn for PubSubProducer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header) {
        self.out.extend_from_slice(&self.prefixes[channel as usize]);
        let at = self.out.len();
        // Filler is zeros; resize writes them without a second pass.
        self.out.resize(at + self.payload_len, 0);
        header.encode(&mut self.out[at..]);
        self.out.extend_from_slice(b"\r\n");
        self.written += 1;
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        if self.reader.is_finished() {
            return Err(TransportError::Closed);
        }
        let r = self.write.write_all(&self.out).await;
        self.out.clear();
        r.map_err(Into::into)
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        self.acks.measured.set((first, end));
    }

    async fn finish(self, timeout: Duration) -> Result<Acks, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acks.replies.get() < self.written && tokio::time::Instant::now() < deadline {
            if self.reader.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.reader.abort();
        if let Some(message) = self.acks.first_error.borrow_mut().take() {
            return Err(TransportError::Refused { what: "PUBLISH", message });
        }
        Ok(Acks { replies: self.acks.replies.get(), reached: self.acks.reached.get(), errors: self.acks.errors.get() })
    }
}

/// A frame a subscribed consumer reads, as far as it matters to eventbench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A message (`message` or `pmessage`); the payload's range in the buffer.
    Message(Range<usize>),
    /// The confirmation that ends a graceful leave (`leave` with no subscription left).
    Left,
    /// Anything else (confirmations, pongs): skipped.
    Other,
}

/// Parses the first frame of `buf` as a consumer in subscribe mode sees it;
/// `leave` is `unsubscribe` or `punsubscribe`. Returns the frame and its
/// length, or `None` when `buf` holds only part of one.
#[inline]
pub fn parse_push(buf: &[u8], leave: &[u8]) -> Result<Option<(Push, usize)>, resp::RespError> {
    if let Some((payload, used)) = resp::message_push(buf) {
        return Ok(Some((Push::Message(payload), used)));
    }
    let Some((frame, used)) = resp::parse(buf)? else { return Ok(None) };
    let push = match frame.items() {
        [Atom::Bulk(b"message"), _, Atom::Bulk(p)] | [Atom::Bulk(b"pmessage"), _, _, Atom::Bulk(p)] => {
            let offset = p.as_ptr() as usize - buf.as_ptr() as usize;
            Push::Message(offset..offset + p.len())
        }
        [Atom::Bulk(kind), _, Atom::Int(0)] if *kind == leave => Push::Left,
        _ => Push::Other,
    };
    Ok(Some((push, used)))
}

/// A subscribed consumer.
pub struct PubSubConsumer {
    conn: Conn,
    /// The confirmation that ends a graceful leave: `unsubscribe` or `punsubscribe`.
    leave: &'static [u8],
    left: bool,
    /// The server's id for this connection, when asked for.
    pub client_id: Option<i64>,
}

impl ConsumerConn for PubSubConsumer {
    #[inline]
    fn next(&mut self) -> Result<Option<Delivery<'_>>, TransportError> {
        loop {
            match parse_push(self.conn.pending(), self.leave)? {
                None => return Ok(None),
                Some((Push::Message(range), used)) => {
                    return Ok(Some(Delivery { payload: self.conn.take(used, range) }))
                }
                Some((Push::Left, used)) => {
                    self.left = true;
                    self.conn.consume(used);
                }
                Some((Push::Other, used)) => self.conn.consume(used),
            }
        }
    }

    async fn start_leaving(&mut self) -> Result<(), TransportError> {
        let mut cmd = Vec::new();
        let verb = if self.leave == b"punsubscribe" { &b"PUNSUBSCRIBE"[..] } else { &b"UNSUBSCRIBE"[..] };
        resp::encode_command(&mut cmd, &[verb]);
        self.conn.stream.write_all(&cmd).await?;
        Ok(())
    }

    fn has_left(&self) -> bool {
        self.left
    }

    async fn fill(&mut self) -> Result<(), TransportError> {
        self.conn.fill().await
    }
}
