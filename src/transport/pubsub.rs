//! Redis Pub/Sub: PUBLISH from producers, SUBSCRIBE (or PSUBSCRIBE) on consumers.

use super::conn::{Conn, Endpoint, Tuning};
use super::resp::{self, Atom, Frame};
use super::stream::{ReadHalf, WriteHalf};
use super::{Acks, ConsumerConn, Delivery, ProducerConn, TransportError};
use crate::wire::Header;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A producer whose PUBLISH replies are this late decides Redis is gone. Redis
/// answers in microseconds; a connection that stays open but silent this long
/// is a stopped server or a cut network, which a closed socket would never show.
pub const STALL_AFTER: Duration = Duration::from_millis(1500);
/// How often the reply reader looks at the clock while waiting.
const STALL_CHECK: Duration = Duration::from_millis(100);

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
        let prefixes =
            self.channels.iter().map(|ch| resp::fixed_prefix(&[b"PUBLISH", ch.as_bytes()], self.payload_len)).collect();
        PubSubProducer::connect(&self.endpoint, prefixes, self.payload_len).await
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
        conn.send(&cmd).await?;
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
            conn.send(&cmd).await?;
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
    conn.send(&cmd).await?;
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
    /// Messages written so far (set by the writer at each flush).
    written: Cell<u64>,
    /// Since when a reply has been awaited without any arriving; `None` when
    /// every written message is acknowledged.
    waiting_since: Cell<Option<Instant>>,
}

/// Reads PUBLISH replies as they come, concurrently with the writes, so the
/// pipeline never stalls on a round trip. Returns only on failure: the server
/// closed the connection, sent garbage, or stopped answering.
async fn read_replies(mut read: ReadHalf, acks: Rc<AckState>) -> TransportError {
    match read_loop(&mut read, &acks).await {
        Err(e) => e,
        Ok(()) => TransportError::Closed,
    }
}

async fn read_loop(read: &mut ReadHalf, acks: &AckState) -> Result<(), TransportError> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut tick = tokio::time::interval(STALL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Counted locally and stored once per read: one reply per message.
        let (lo, hi) = acks.measured.get();
        let before = acks.replies.get();
        let (mut idx, mut reached) = (before, 0);
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
                // PUBLISH: the subscribers reached; XADD: the entry's id, one entry stored.
                Frame::Atom(Atom::Int(n)) if (lo..hi).contains(&idx) => reached += n.max(0) as u64,
                Frame::Atom(Atom::Bulk(_)) if (lo..hi).contains(&idx) => reached += 1,
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
        if idx >= acks.written.get() {
            acks.waiting_since.set(None);
        } else if idx != before {
            // Progress: Redis is alive, however far behind.
            acks.waiting_since.set(Some(Instant::now()));
        }
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = tokio::select! {
            biased;
            n = read.read(&mut buf[end..]) => n?,
            _ = tick.tick() => {
                if let Some(since) = acks.waiting_since.get().filter(|s| s.elapsed() >= STALL_AFTER) {
                    return Err(TransportError::Stalled { secs: since.elapsed().as_secs_f64() });
                }
                continue;
            }
        };
        if n == 0 {
            return Err(TransportError::Closed);
        }
        end += n;
    }
}

/// The error that ended the reply reader (waits for it if it is still running).
/// Takes the handle once it has finished, so it is never polled again.
async fn reader_failure(reader: &mut Option<JoinHandle<TransportError>>) -> TransportError {
    let Some(handle) = reader.as_mut() else { return TransportError::Closed };
    let result = handle.await;
    *reader = None;
    result.unwrap_or(TransportError::Closed)
}

/// A producer: pipelined writes (PUBLISH, or XADD for Streams) from a reused
/// buffer, with a fixed command prefix per channel.
pub struct PubSubProducer {
    write: WriteHalf,
    /// `*3 $7 PUBLISH $n channel $len` per channel, built once.
    prefixes: Vec<Vec<u8>>,
    payload_len: usize,
    out: Vec<u8>,
    written: u64,
    acks: Rc<AckState>,
    /// The reply reader; `None` once its failure has been reported.
    reader: Option<JoinHandle<TransportError>>,
}

impl PubSubProducer {
    fn reader_finished(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Connects a producer that writes `prefixes[channel]` + payload per message.
    pub async fn connect(
        endpoint: &Endpoint,
        prefixes: Vec<Vec<u8>>,
        payload_len: usize,
    ) -> Result<PubSubProducer, TransportError> {
        let conn = endpoint.connect().await?;
        let (read, write) = conn.stream.into_split();
        let acks = Rc::new(AckState::default());
        let reader = Some(tokio::task::spawn_local(read_replies(read, acks.clone())));
        Ok(PubSubProducer { write, prefixes, payload_len, out: Vec::new(), written: 0, acks, reader })
    }
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
        if self.reader_finished() {
            return Err(reader_failure(&mut self.reader).await);
        }
        if self.acks.replies.get() >= self.acks.written.get() {
            self.acks.waiting_since.set(Some(Instant::now()));
        }
        self.acks.written.set(self.written);
        let (write, out) = (&mut self.write, &self.out);
        // A stopped server stops reading, so the write can block for good:
        // the reader's verdict must be able to end it.
        let r = tokio::select! {
            r = async {
                write.write_all(out).await?;
                write.flush().await
            } => r.map_err(Into::into),
            e = reader_failure(&mut self.reader) => Err(e),
        };
        self.out.clear();
        r
    }

    async fn failure(&mut self) -> TransportError {
        reader_failure(&mut self.reader).await
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        self.acks.measured.set((first, end));
    }

    async fn finish(mut self, timeout: Duration) -> Result<Acks, TransportError> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.acks.replies.get() < self.written && tokio::time::Instant::now() < deadline {
            if self.reader_finished() {
                // Redis went away before acknowledging everything.
                return Err(reader_failure(&mut self.reader).await);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if let Some(reader) = &self.reader {
            reader.abort();
        }
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
        self.conn.send(&cmd).await?;
        Ok(())
    }

    fn has_left(&self) -> bool {
        self.left
    }

    async fn fill(&mut self) -> Result<(), TransportError> {
        self.conn.fill().await
    }
}
