//! Redis Pub/Sub: PUBLISH from producers, SUBSCRIBE (or PSUBSCRIBE) on consumers.

use super::producer::Producer;
use super::{Acks, ConsumerConn, Delivery, ProducerConn};
use crate::connect::resp::{self, Atom, Frame};
use crate::connect::socket::{ReadHalf, WriteHalf};
use crate::connect::{Conn, ConnError, Endpoint, Tuning};
use crate::wire::Header;
use std::cell::{Cell, RefCell};
use std::future::Future;
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
    /// The masters of a cluster, or just `endpoint`.
    pub nodes: Vec<Endpoint>,
    /// The node (index into `nodes`) that owns each channel.
    pub node_of: Vec<usize>,
    pub channels: Vec<String>,
    /// When set, consumers PSUBSCRIBE to this pattern instead of SUBSCRIBE to each channel.
    pub pattern: Option<String>,
    pub payload_len: usize,
    /// Sharded Pub/Sub: SPUBLISH and SSUBSCRIBE on the node that owns the channel.
    pub sharded: bool,
}

impl PubSub {
    /// A producer writing each channel's messages to the node that owns it.
    pub async fn producer(&self) -> Result<Producer, ConnError> {
        let verb: &[u8] = if self.sharded { b"SPUBLISH" } else { b"PUBLISH" };
        let prefixes =
            self.channels.iter().map(|ch| resp::fixed_prefix(&[verb, ch.as_bytes()], self.payload_len)).collect();
        let slots: Vec<u16> = self.channels.iter().map(|c| crate::topology::key_slot(c.as_bytes())).collect();
        Producer::connect(&self.nodes, &self.node_of, &slots, prefixes, self.payload_len).await
    }

    /// Connects consumer `id` and subscribes; returns once Redis confirmed
    /// every subscription, so everything published from then on is delivered.
    /// Classic Pub/Sub reaches every channel from any node of a cluster (the
    /// consumers are spread over the nodes); sharded Pub/Sub needs a
    /// connection to each node that owns some of the channels. With `want_id`
    /// it also asks for the (first) connection's CLIENT ID, so a watcher can
    /// tell when Redis closes it.
    pub async fn consumer(&self, id: u32, tuning: Tuning, want_id: bool) -> Result<PubSubConsumer, ConnError> {
        let mut conns = Vec::new();
        let mut client_id = None;
        let (kind, verb, leave): (&'static [u8], &'static [u8], &'static [u8]) = match (&self.pattern, self.sharded) {
            (Some(_), _) => (b"psubscribe", b"PSUBSCRIBE", b"punsubscribe"),
            (None, true) => (b"ssubscribe", b"SSUBSCRIBE", b"sunsubscribe"),
            (None, false) => (b"subscribe", b"SUBSCRIBE", b"unsubscribe"),
        };
        let all: Vec<usize> = (0..self.channels.len()).collect();
        let plan: Vec<Subscription> = match (&self.pattern, self.sharded) {
            (Some(p), _) => vec![(id as usize % self.nodes.len(), vec![p.as_bytes()], all)],
            (None, false) => {
                vec![(id as usize % self.nodes.len(), self.channels.iter().map(|c| c.as_bytes()).collect(), all)]
            }
            (None, true) => (0..self.nodes.len())
                .map(|n| {
                    let on: Vec<usize> = all.iter().copied().filter(|&c| self.node_of[c] == n).collect();
                    (n, on.iter().map(|&c| self.channels[c].as_bytes()).collect::<Vec<_>>(), on)
                })
                .filter(|(_, names, _)| !names.is_empty())
                .collect(),
        };
        let mut shards = Vec::new();
        for (node, names, channels) in plan {
            let mut conn = self.nodes[node].connect_with(tuning).await?;
            if want_id && client_id.is_none() {
                client_id = Some(client_id_of(&mut conn).await?);
            }
            subscribe(&mut conn, verb, kind, &names).await?;
            conns.push(Some(conn));
            let names = names.iter().map(|n| n.to_vec()).collect();
            shards.push(Shard { endpoint: self.nodes[node].clone(), names, channels, verb, kind, tuning });
        }
        let rejoins = shards.iter().map(|_| None).collect();
        let changes = std::collections::VecDeque::new();
        let (left, next, leaving) = (0, 0, false);
        Ok(PubSubConsumer { conns, shards, rejoins, changes, leave, leaving, left, next, client_id })
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
    ) -> Result<(), ConnError> {
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
                                return Err(ConnError::Refused { what: "CLIENT LIST", message });
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

/// One connection a consumer subscribes: its node, the names, and the channels' indices in the run.
type Subscription<'a> = (usize, Vec<&'a [u8]>, Vec<usize>);

/// Sends `verb names...` and waits until Redis confirmed each (`kind` pushes).
async fn subscribe(conn: &mut Conn, verb: &[u8], kind: &[u8], names: &[&[u8]]) -> Result<(), ConnError> {
    let mut cmd = Vec::new();
    resp::encode_command(&mut cmd, &[&[verb], names].concat());
    conn.send(&cmd).await?;
    let mut confirmed = 0;
    while confirmed < names.len() {
        match resp::parse(conn.pending())? {
            Some((frame, used)) => {
                if let Frame::Atom(Atom::Error(e)) = frame {
                    let message = String::from_utf8_lossy(e).into_owned();
                    return Err(refusal("SUBSCRIBE", message));
                }
                if matches!(frame.items().first(), Some(Atom::Bulk(k)) if *k == kind) {
                    confirmed += 1;
                }
                conn.consume(used);
            }
            None => conn.fill().await?,
        }
    }
    Ok(())
}

/// An error reply: a node that is still loading or rejoining its cluster is
/// worth trying again, anything else is a refusal.
pub fn refusal(what: &'static str, message: String) -> ConnError {
    let transient = ["CLUSTERDOWN", "LOADING", "TRYAGAIN", "MASTERDOWN"];
    if transient.iter().any(|t| message.starts_with(t)) {
        ConnError::Unavailable { message }
    } else {
        ConnError::Refused { what, message }
    }
}

/// Asks for the connection's CLIENT ID.
async fn client_id_of(conn: &mut Conn) -> Result<i64, ConnError> {
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
                return Err(ConnError::Refused { what: "CLIENT ID", message });
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
    /// Error replies that were MOVED or ASK redirections.
    redirections: Cell<u64>,
    /// Whether the redirections are kept for the writer to follow (on a cluster).
    follow: Cell<bool>,
    /// The redirections not yet taken by the writer: reply index and error text.
    redirected: RefCell<Vec<(u64, Vec<u8>)>>,
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
async fn read_replies(mut read: ReadHalf, acks: Rc<AckState>) -> ConnError {
    match read_loop(&mut read, &acks).await {
        Err(e) => e,
        Ok(()) => ConnError::Closed,
    }
}

async fn read_loop(read: &mut ReadHalf, acks: &AckState) -> Result<(), ConnError> {
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
                    if is_redirection(e) {
                        acks.redirections.set(acks.redirections.get() + 1);
                        if acks.follow.get() {
                            acks.redirected.borrow_mut().push((idx, e.to_vec()));
                        }
                    } else {
                        acks.first_error.borrow_mut().get_or_insert_with(|| String::from_utf8_lossy(e).into_owned());
                    }
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
                    return Err(ConnError::Stalled { secs: since.elapsed().as_secs_f64() });
                }
                continue;
            }
        };
        if n == 0 {
            return Err(ConnError::Closed);
        }
        end += n;
    }
}

/// A `-MOVED slot host:port` or `-ASK slot host:port` error reply.
pub fn is_redirection(error: &[u8]) -> bool {
    error.starts_with(b"MOVED ") || error.starts_with(b"ASK ")
}

/// The error that ended the reply reader (waits for it if it is still running).
/// Takes the handle once it has finished, so it is never polled again.
async fn reader_failure(reader: &mut Option<JoinHandle<ConnError>>) -> ConnError {
    let Some(handle) = reader.as_mut() else { return ConnError::Closed };
    let result = handle.await;
    *reader = None;
    result.unwrap_or(ConnError::Closed)
}

/// Appends one message: the channel's fixed prefix, the payload (header, then zeros), CRLF.
#[inline]
pub fn encode_message(out: &mut Vec<u8>, prefix: &[u8], payload_len: usize, header: &Header) {
    out.extend_from_slice(prefix);
    let at = out.len();
    // Filler is zeros; resize writes them without a second pass.
    out.resize(at + payload_len, 0);
    header.encode(&mut out[at..]);
    out.extend_from_slice(b"\r\n");
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
    reader: Option<JoinHandle<ConnError>>,
}

impl PubSubProducer {
    fn reader_finished(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Whether the connection has failed (its reply reader ended).
    pub fn failed(&self) -> bool {
        self.reader_finished()
    }

    /// What was acknowledged so far.
    pub fn acks(&self) -> Acks {
        let a = &self.acks;
        Acks {
            replies: a.replies.get(),
            reached: a.reached.get(),
            errors: a.errors.get(),
            redirections: a.redirections.get(),
        }
    }

    /// Keeps the MOVED and ASK replies for [`PubSubProducer::take_redirected`]
    /// instead of only counting them.
    pub fn follow_redirections(&self) {
        self.acks.follow.set(true);
    }

    /// The redirections received since the last call: reply index on this
    /// connection and the error (`MOVED slot host:port`, `ASK slot host:port`).
    pub fn take_redirected(&self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.acks.redirected.borrow_mut())
    }

    /// Appends `messages` commands already encoded, for the next flush.
    pub fn queue_encoded(&mut self, bytes: &[u8], messages: u64) {
        self.out.extend_from_slice(bytes);
        self.written += messages;
    }

    /// Connects a producer that writes `prefixes[channel]` + payload per message.
    pub async fn connect(
        endpoint: &Endpoint,
        prefixes: Vec<Vec<u8>>,
        payload_len: usize,
    ) -> Result<PubSubProducer, ConnError> {
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
        encode_message(&mut self.out, &self.prefixes[channel as usize], self.payload_len, header);
        self.written += 1;
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
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

    async fn failure(&mut self) -> ConnError {
        reader_failure(&mut self.reader).await
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        self.acks.measured.set((first, end));
    }

    async fn finish(mut self, timeout: Duration) -> Result<Acks, ConnError> {
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
            return Err(ConnError::Refused { what: "PUBLISH", message });
        }
        Ok(self.acks())
    }
}

/// A frame a subscribed consumer reads, as far as it matters to eventbench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A message (`message` or `pmessage`); the payload's range in the buffer.
    Message(Range<usize>),
    /// A `leave` push (`unsubscribe`, ...): the confirmation that ends a
    /// graceful leave when `remaining` is 0; unasked for, the server dropped
    /// the subscription (a sharded channel whose slot moved to another node).
    Unsubscribed { name: Option<Range<usize>>, remaining: i64 },
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
        [Atom::Bulk(b"message" | b"smessage"), _, Atom::Bulk(p)] | [Atom::Bulk(b"pmessage"), _, _, Atom::Bulk(p)] => {
            let offset = p.as_ptr() as usize - buf.as_ptr() as usize;
            Push::Message(offset..offset + p.len())
        }
        [Atom::Bulk(kind), name, Atom::Int(remaining)] if *kind == leave => {
            let name = match name {
                Atom::Bulk(n) => Some(n.as_ptr() as usize - buf.as_ptr() as usize).map(|at| at..at + n.len()),
                _ => None,
            };
            Push::Unsubscribed { name, remaining: *remaining }
        }
        _ => Push::Other,
    };
    Ok(Some((push, used)))
}

/// What one of a consumer's connections subscribes to, to do it again.
#[derive(Clone)]
struct Shard {
    /// Where the channels are subscribed (after a MOVED: where they went).
    endpoint: Endpoint,
    names: Vec<Vec<u8>>,
    /// The channels' indices in the run, in the order of `names`.
    channels: Vec<usize>,
    verb: &'static [u8],
    kind: &'static [u8],
    tuning: Tuning,
}

/// A change in a sharded consumer's subscriptions: one of its connections
/// (`shard`) closed, or the server dropped some channels because their slot
/// moved, and those `channels` (indices in the run) are not subscribed until
/// that shard is `Back`.
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

/// Connects to a shard's node and subscribes again, with backoff (10 ms doubling
/// to 1 s, each attempt within the connect timeout) until it works; a refusal
/// ends it. A `MOVED` refusal is followed at once to the node it names; an
/// `ASK` (a slot being migrated) is tried again later. Returns the connection
/// and the node it is on.
async fn rejoin(shard: Rc<Shard>) -> Result<(Conn, Endpoint), ConnError> {
    let mut backoff = Duration::from_millis(10);
    let mut endpoint = shard.endpoint.clone();
    loop {
        let attempt = async {
            let mut conn = endpoint.connect_with(shard.tuning).await?;
            let names: Vec<&[u8]> = shard.names.iter().map(|n| n.as_slice()).collect();
            subscribe(&mut conn, shard.verb, shard.kind, &names).await?;
            Ok::<_, ConnError>(conn)
        };
        match tokio::time::timeout(endpoint.connect_timeout, attempt).await {
            Ok(Ok(conn)) => return Ok((conn, endpoint)),
            Ok(Err(ConnError::Refused { message, .. }))
                if crate::topology::Redirect::parse(message.as_bytes()).is_some() =>
            {
                let to = crate::topology::Redirect::parse(message.as_bytes()).expect("checked");
                if !to.ask {
                    endpoint.port = to.port;
                    if !to.host.is_empty() {
                        endpoint.host = to.host;
                    }
                    continue;
                }
            }
            Ok(Err(e @ ConnError::Refused { .. })) => return Err(e),
            _ => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

type Rejoin = std::pin::Pin<Box<dyn Future<Output = Result<(Conn, Endpoint), ConnError>>>>;

/// A subscribed consumer: one connection, or one per node for sharded Pub/Sub
/// on a cluster. With several, a connection the server closes is subscribed
/// again on its own while the others keep reading ([`ShardChange`]).
pub struct PubSubConsumer {
    /// `None` while that node's connection is being re-established.
    conns: Vec<Option<Conn>>,
    shards: Vec<Shard>,
    rejoins: Vec<Option<Rejoin>>,
    changes: std::collections::VecDeque<ShardChange>,
    /// The confirmation that ends a graceful leave: `unsubscribe`, `punsubscribe` or `sunsubscribe`.
    leave: &'static [u8],
    /// Whether this consumer asked to leave: a `leave` push before that is the
    /// server dropping channels whose slot moved.
    leaving: bool,
    /// Connections whose leave Redis confirmed.
    left: usize,
    /// The connection to take messages from next.
    next: usize,
    /// The server's id for the (first) connection, when asked for.
    pub client_id: Option<i64>,
}

impl PubSubConsumer {
    /// The next change in the subscriptions, if any.
    pub fn take_change(&mut self) -> Option<ShardChange> {
        self.changes.pop_front()
    }

    /// The server dropped channel `name` of shard `i` (its slot moved): it is
    /// subscribed again on a connection of its own, on the node the old one
    /// redirects to, and is not subscribed anywhere until then.
    fn moved(&mut self, i: usize, name: &[u8]) {
        let shard = &mut self.shards[i];
        let Some(at) = shard.names.iter().position(|n| n == name) else { return };
        let (name, channel) = (shard.names.remove(at), shard.channels.remove(at));
        let moved = Shard { names: vec![name], channels: vec![channel], ..shard.clone() };
        self.rejoins.push(Some(Box::pin(rejoin(Rc::new(moved.clone())))));
        self.shards.push(moved);
        self.conns.push(None);
        self.changes.push_back(ShardChange::Lost {
            shard: self.shards.len() - 1,
            channels: vec![channel],
            moved: true,
        });
    }

    /// Several connections: reads whichever has bytes first, and takes a
    /// closed one out (to subscribe again) instead of failing.
    fn poll_fill(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), ConnError>> {
        use std::task::Poll;
        for i in 0..self.conns.len() {
            let Some(rejoin) = &mut self.rejoins[i] else { continue };
            if let Poll::Ready(r) = rejoin.as_mut().poll(cx) {
                self.rejoins[i] = None;
                let (conn, endpoint) = r?;
                (self.conns[i], self.shards[i].endpoint) = (Some(conn), endpoint);
                self.changes.push_back(ShardChange::Back { shard: i });
                return Poll::Ready(Ok(()));
            }
        }
        for i in 0..self.conns.len() {
            let Some(conn) = &mut self.conns[i] else { continue };
            // A read is cancel-safe: polled once here, it leaves no bytes behind when dropped.
            let polled = std::pin::pin!(conn.fill()).poll(cx);
            match polled {
                Poll::Pending => {}
                Poll::Ready(Err(ConnError::Closed | ConnError::Io(_))) => {
                    self.conns[i] = None;
                    self.rejoins[i] = Some(Box::pin(rejoin(Rc::new(self.shards[i].clone()))));
                    self.changes.push_back(ShardChange::Lost {
                        shard: i,
                        channels: self.shards[i].channels.clone(),
                        moved: false,
                    });
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(r) => return Poll::Ready(r),
            }
        }
        Poll::Pending
    }
}

impl ConsumerConn for PubSubConsumer {
    #[inline]
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError> {
        let n = self.conns.len();
        for _ in 0..n {
            let i = self.next;
            let mut moved = None;
            if let Some(conn) = &mut self.conns[i] {
                loop {
                    match parse_push(conn.pending(), self.leave)? {
                        None => break,
                        Some((Push::Message(range), used)) => {
                            let conn = self.conns[i].as_mut().expect("just read");
                            return Ok(Some(Delivery { payload: conn.take(used, range) }));
                        }
                        Some((Push::Unsubscribed { name, remaining }, used)) => {
                            moved = name.filter(|_| !self.leaving).map(|r| conn.pending()[r].to_vec());
                            self.left += (self.leaving && remaining == 0) as usize;
                            conn.consume(used);
                            if moved.is_some() {
                                break;
                            }
                        }
                        Some((Push::Other, used)) => conn.consume(used),
                    }
                }
            }
            match moved {
                // Read on from the same connection, once the channel is on its way elsewhere.
                Some(name) => self.moved(i, &name),
                None => self.next = (i + 1) % self.conns.len(),
            }
        }
        Ok(None)
    }

    async fn start_leaving(&mut self) -> Result<(), ConnError> {
        let mut cmd = Vec::new();
        let verb: &[u8] = match self.leave {
            b"punsubscribe" => b"PUNSUBSCRIBE",
            b"sunsubscribe" => b"SUNSUBSCRIBE",
            _ => b"UNSUBSCRIBE",
        };
        resp::encode_command(&mut cmd, &[verb]);
        self.leaving = true;
        // A node being subscribed again is left as it is: nothing to leave there.
        self.rejoins.iter_mut().for_each(|r| *r = None);
        for conn in self.conns.iter_mut().flatten() {
            conn.send(&cmd).await?;
        }
        Ok(())
    }

    fn has_left(&self) -> bool {
        self.left >= self.conns.iter().flatten().count()
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        if let [Some(conn)] = self.conns.as_mut_slice() {
            return conn.fill().await;
        }
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unasked_for_sunsubscribe_names_the_channel_dropped() {
        // What Redis 7.0 sends a shard subscriber when the channel's slot moves away.
        let buf = b"*3\r\n$12\r\nsunsubscribe\r\n$1\r\nb\r\n:0\r\n";
        let Some((Push::Unsubscribed { name: Some(name), remaining: 0 }, used)) =
            parse_push(buf, b"sunsubscribe").unwrap()
        else {
            panic!("not an unsubscribe")
        };
        assert_eq!((&buf[name], used), (&b"b"[..], buf.len()));
        // The answer to SUNSUBSCRIBE on a connection with nothing left: no name.
        let buf = b"*3\r\n$12\r\nsunsubscribe\r\n$-1\r\n:0\r\n";
        let parsed = parse_push(buf, b"sunsubscribe").unwrap();
        assert_eq!(parsed, Some((Push::Unsubscribed { name: None, remaining: 0 }, buf.len())));
        // Another kind than the consumer's own is not its leave.
        assert_eq!(parse_push(buf, b"unsubscribe").unwrap(), Some((Push::Other, buf.len())));
    }
}
