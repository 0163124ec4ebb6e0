//! The producers' side of every transport: a [`Writer`] pipelines one
//! connection's commands (PUBLISH, SPUBLISH or XADD, each a fixed prefix per
//! channel plus the payload) and reads the replies as they come.
//!
//! On a cluster, a [`ClusterProducer`] keeps one writer per node, each
//! channel's messages to the node that owns it. A node that goes away does not end the
//! run: its messages are held (with those it had not acknowledged) and written
//! again once it is back, so a producer loses nothing a retrying client would
//! not; what is still held when the run ends was never written, and is lost.
//!
//! A message answered with `MOVED` is written again, the same bytes, to the
//! node named, and its slot's later messages go there directly; one answered
//! with `ASK` is written again to the node named after `ASKING`, its slot's
//! routing unchanged. Each redirection is still counted.

use super::{Acks, Answered, Finished, ProducerConn};
use crate::connect::resp::{self, Atom, Frame};
use crate::connect::socket::{ReadHalf, WriteHalf};
use crate::connect::{ConnError, Endpoint};
use crate::topology::Redirect;
use crate::wire::Header;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// A producer whose PUBLISH replies are this late, while nothing else shows
/// Redis at work, decides Redis is gone. Redis answers in microseconds; a
/// connection that stays open but silent this long is a stopped server or a
/// cut network, which a closed socket would never show.
pub const STALL_AFTER: Duration = Duration::from_millis(1500);
/// How often the reply reader looks at the clock while waiting (and, on plain
/// TCP, reads what replies came meanwhile).
const STALL_CHECK: Duration = Duration::from_millis(100);
/// On plain TCP, the writer has the replies read once every this many writes,
/// not as each arrives: a paced producer writes once a window, and a reply
/// read per window (a task woken, a read, and the read that finds nothing)
/// cost as much as the write. Replies say nothing about latency; they only
/// need reading before they fill the socket (4 bytes a PUBLISH).
const READ_REPLIES_EVERY: u32 = 8;
/// At the end, a connection whose server showed a sign of life this recently
/// (a reply, or a delivery to this process's consumers) has a busy server, not
/// a dead one: what it has not answered yet is a backlog, not a loss.
const ALIVE_RECENTLY: Duration = Duration::from_millis(300);
/// How long before the stall verdict a silent connection's watchdog asks
/// Redis on a fresh connection whether it still answers at all.
pub const PROBE_LEAD: Duration = Duration::from_millis(500);

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
    /// Reply indices of the other error replies: writes Redis refused.
    refused: RefCell<Vec<u64>>,
    measured: Cell<(u64, u64)>,
    first_error: RefCell<Option<String>>,
    /// Messages written so far (set by the writer at each flush).
    written: Cell<u64>,
    /// Since when a reply has been awaited without any arriving (nor any other
    /// sign of life); `None` when every written message is acknowledged.
    waiting_since: Cell<Option<Instant>>,
    /// The last sign of life: a reply, or deliveries moving (see [`AckState::deliveries`]).
    alive_at: Cell<Option<Instant>>,
    /// Deliveries this process's consumers counted (set once the run hands
    /// them over): while they move, a server silent on this connection is
    /// busy (fanning out what it was sent), not stopped. A busy Redis spends
    /// whole seconds in one turn of its event loop when each PUBLISH goes to
    /// thousands of subscribers, and answers nothing in between; the consumers
    /// are still reading what it wrote before.
    deliveries: std::cell::OnceCell<std::sync::Arc<crate::live::Live>>,
    /// The deliveries counted at the last look.
    deliveries_seen: Cell<u64>,
    /// The writer asking the reader to read the replies now (plain TCP).
    poke: Poke,
}

/// A wake-up from the writer to the reply reader, on one thread: no lock,
/// no allocation (the waker is a reference count).
#[derive(Default)]
struct Poke {
    set: Cell<bool>,
    waker: Cell<Option<std::task::Waker>>,
}

impl Poke {
    fn poke(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.replace(false) {
                std::task::Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                std::task::Poll::Pending
            }
        })
        .await
    }
}

impl AckState {
    /// Whether deliveries moved since the last look.
    fn deliveries_moved(&self) -> bool {
        let Some(live) = self.deliveries.get() else { return false };
        let m = &live.meters;
        let now: u64 =
            m.delivered.iter().chain(&m.duplicates).map(|c| c.load(std::sync::atomic::Ordering::Relaxed)).sum();
        now != self.deliveries_seen.replace(now)
    }

    /// Notes a sign of life: the silence, if any, starts again from now.
    fn alive(&self) {
        let now = Instant::now();
        self.alive_at.set(Some(now));
        if self.waiting_since.get().is_some() {
            self.waiting_since.set(Some(now));
        }
    }
}

/// Reads the replies as they come, concurrently with the writes, so the
/// pipeline never stalls on a round trip. Returns only on failure: the server
/// closed the connection, sent garbage, or stopped answering.
async fn read_replies(mut read: ReadHalf, verb: &'static str, acks: Rc<AckState>, endpoint: Endpoint) -> ConnError {
    let mut watchdog = Watchdog { endpoint, probe: None };
    let e = match read_loop(&mut read, verb, &acks, &mut watchdog).await {
        Err(e) => e,
        Ok(()) => ConnError::Closed,
    };
    if let Some(p) = watchdog.probe.take() {
        p.abort();
    }
    e
}

async fn read_loop(
    read: &mut ReadHalf,
    verb: &'static str,
    acks: &AckState,
    watchdog: &mut Watchdog,
) -> Result<(), ConnError> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    let mut tick = tokio::time::interval(STALL_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether the last read emptied the socket (plain TCP reads on demand).
    let mut drained = false;
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
                        acks.refused.borrow_mut().push(idx);
                        let message = String::from_utf8_lossy(e).into_owned();
                        acks.first_error.borrow_mut().get_or_insert_with(|| message.clone());
                        if !acks.follow.get() {
                            // On one server the first refusal ends the run (a cluster's
                            // producer counts them and carries on): say so now, with
                            // every reply up to this one counted.
                            acks.replies.set(idx + 1);
                            acks.reached.set(acks.reached.get() + reached);
                            return Err(ConnError::Refused { what: verb, message });
                        }
                    }
                }
                _ => {}
            }
            idx += 1;
            start += used;
        }
        acks.replies.set(idx);
        acks.reached.set(acks.reached.get() + reached);
        if idx != before {
            // Progress: Redis is alive, however far behind.
            acks.alive();
        }
        if idx >= acks.written.get() {
            acks.waiting_since.set(None);
        }
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = match read {
            // On demand: when the writer asks, or at the next check. A
            // cluster's writers read as replies come: a redirection is followed at once.
            ReadHalf::Tcp(tcp) if !acks.follow.get() => {
                if drained {
                    tokio::select! {
                        biased;
                        _ = acks.poke.wait() => {}
                        _ = tick.tick() => watchdog.look(verb, acks)?,
                    }
                    drained = false;
                    continue;
                }
                match tcp.try_read(&mut buf[end..]) {
                    // A short read emptied the socket: no second read to hear so.
                    Ok(n) => {
                        drained = n < buf.len() - end;
                        n
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        drained = true;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => tokio::select! {
                biased;
                n = read.read(&mut buf[end..]) => n?,
                _ = tick.tick() => {
                    watchdog.look(verb, acks)?;
                    continue;
                }
            },
        };
        if n == 0 {
            return Err(ConnError::Closed);
        }
        end += n;
    }
}

/// Tells a busy server from a dead one once this connection has gone silent.
struct Watchdog {
    endpoint: Endpoint,
    /// A PING on a fresh connection, under way: whether anything answered.
    probe: Option<JoinHandle<bool>>,
}

impl Watchdog {
    /// A look, once a check: a sign of life elsewhere (deliveries moving, the
    /// probe answered), or the verdict that Redis stopped answering. The
    /// probe starts [`PROBE_LEAD`] before the verdict is due, so that a dead
    /// server is still called dead after [`STALL_AFTER`] and no later.
    fn look(&mut self, verb: &'static str, acks: &AckState) -> Result<(), ConnError> {
        if acks.deliveries_moved() {
            acks.alive();
        }
        if self.probe.as_ref().is_some_and(|p| p.is_finished())
            && futures_now(self.probe.take().expect("checked")) == Some(true)
        {
            acks.alive();
        }
        let Some(since) = acks.waiting_since.get() else { return Ok(()) };
        let silent = since.elapsed();
        if silent >= STALL_AFTER {
            return Err(ConnError::Stalled { what: verb, secs: silent.as_secs_f64() });
        }
        if silent >= STALL_AFTER - PROBE_LEAD && self.probe.is_none() {
            let endpoint = self.endpoint.clone();
            self.probe = Some(tokio::task::spawn_local(async move { answers_ping(&endpoint).await }));
        }
        Ok(())
    }
}

/// Whether a fresh connection's PING is answered at all: an error reply
/// (`-LOADING`, `-BUSY`) is an answer too. A paused Redis (`CLIENT PAUSE
/// WRITE`, as a failover pauses it) holds every PUBLISH, yet answers this.
pub async fn answers_ping(endpoint: &Endpoint) -> bool {
    let Ok(mut conn) = endpoint.connect().await else { return false };
    match conn.call(b"*1\r\n$4\r\nPING\r\n", "PING").await {
        Ok(()) | Err(ConnError::Refused { .. }) => true,
        Err(_) => false,
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

/// Appends one message: the channel's command head, the payload's length,
/// the payload (the header over its first bytes), CRLF.
#[inline]
pub fn encode_message(out: &mut Vec<u8>, head: &[u8], payload: &[u8], header: &Header) {
    out.extend_from_slice(head);
    out.push(b'$');
    crate::connect::resp::push_decimal(out, payload.len());
    out.extend_from_slice(b"\r\n");
    let at = out.len();
    out.extend_from_slice(payload);
    header.encode(&mut out[at..]);
    out.extend_from_slice(b"\r\n");
}

/// One connection's pipelined writes (PUBLISH, SPUBLISH or XADD) from a
/// reused buffer, with a fixed command prefix per channel, and a reader that
/// takes the replies as they come.
pub struct Writer {
    write: WriteHalf,
    /// The command it writes (`PUBLISH`, `XADD`, ...), for messages.
    verb: &'static str,
    /// `*3 $7 PUBLISH $n channel` per channel, built once.
    prefixes: Vec<Vec<u8>>,
    out: Vec<u8>,
    written: u64,
    acks: Rc<AckState>,
    /// The reply reader; `None` once its failure has been reported.
    reader: Option<JoinHandle<ConnError>>,
    /// Writes since the replies were last read.
    unread_writes: u32,
}

impl Writer {
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

    /// Keeps the MOVED and ASK replies for [`Writer::take_redirected`]
    /// instead of only counting them.
    pub fn follow_redirections(&self) {
        self.acks.follow.set(true);
    }

    /// The redirections received since the last call: reply index on this
    /// connection and the error (`MOVED slot host:port`, `ASK slot host:port`).
    pub fn take_redirected(&self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.acks.redirected.borrow_mut())
    }

    /// The refusals received since the last call: reply indices on this connection.
    pub fn take_refused(&self) -> Vec<u64> {
        std::mem::take(&mut self.acks.refused.borrow_mut())
    }

    /// Counts this process's deliveries as signs of life (see [`AckState::deliveries`]).
    pub fn watch_deliveries(&self, live: std::sync::Arc<crate::live::Live>) {
        let _ = self.acks.deliveries.set(live);
    }

    /// Whether the server showed a sign of life just now, on a connection that
    /// is still open: a busy server, not a dead one.
    fn busy(&self) -> bool {
        !self.reader_finished() && self.acks.alive_at.get().is_some_and(|t| t.elapsed() < ALIVE_RECENTLY)
    }

    /// Appends `messages` commands already encoded, for the next flush.
    pub fn queue_encoded(&mut self, bytes: &[u8], messages: u64) {
        self.out.extend_from_slice(bytes);
        self.written += messages;
    }

    /// Connects a producer that writes `prefixes[channel]` + payload per message.
    pub async fn connect(endpoint: &Endpoint, verb: &'static str, prefixes: Vec<Vec<u8>>) -> Result<Writer, ConnError> {
        let conn = endpoint.connect().await?;
        let (read, write) = conn.stream.into_split();
        let acks = Rc::new(AckState::default());
        let reader = Some(tokio::task::spawn_local(read_replies(read, verb, acks.clone(), endpoint.clone())));
        Ok(Writer { write, verb, prefixes, out: Vec::new(), written: 0, acks, reader, unread_writes: 0 })
    }
}

impl ProducerConn for Writer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header, payload: &[u8]) {
        encode_message(&mut self.out, &self.prefixes[channel as usize], payload, header);
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
        self.unread_writes += 1;
        if self.unread_writes >= READ_REPLIES_EVERY {
            self.unread_writes = 0;
            self.acks.poke.poke();
        }
        r
    }

    async fn failure(&mut self) -> ConnError {
        reader_failure(&mut self.reader).await
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        self.acks.measured.set((first, end));
    }

    async fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut error = None;
        while self.acks.replies.get() < self.written && tokio::time::Instant::now() < deadline {
            if self.reader_finished() {
                // Redis went away (or refused a write) before acknowledging everything.
                error = Some(reader_failure(&mut self.reader).await);
                break;
            }
            self.acks.poke.poke();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Still at work when the wait ended: Redis holds what it has not
        // answered yet (a backlog, not a loss), and a consumer still there
        // counts it undelivered.
        let busy = self.busy();
        if let Some(reader) = &self.reader {
            reader.abort();
        }
        if let Some(message) = self.acks.first_error.borrow_mut().take() {
            error = Some(ConnError::Refused { what: self.verb, message });
        }
        let acks = self.acks();
        let answered = if busy && error.is_none() { self.written } else { acks.replies };
        Finished { acks, refused: self.take_refused(), answered: Answered::Prefix(answered), error }
    }

    fn watch_deliveries(&mut self, live: std::sync::Arc<crate::live::Live>) {
        Writer::watch_deliveries(self, live);
    }
}

/// Between attempts to reach a node that went away.
const RETRY: Duration = Duration::from_millis(50);

/// The index of an `ASKING` command in a writer's messages: it is no message of the run.
const ASKING: u64 = u64::MAX;

/// A message a node answered with a redirection: its bytes, to write again where it says.
struct Redirected {
    bytes: Vec<u8>,
    index: u64,
    channel: u32,
    error: Vec<u8>,
}

/// A producer on one server, or on every node of a cluster.
pub enum Producer {
    Single(Writer),
    Cluster(ClusterProducer),
}

impl Producer {
    /// One connection for one node; one per node otherwise.
    pub async fn connect(
        nodes: &[Endpoint],
        node_of: &[usize],
        slots: &[u16],
        verb: &'static str,
        prefixes: Vec<Vec<u8>>,
    ) -> Result<Producer, ConnError> {
        if let [node] = nodes {
            return Ok(Producer::Single(Writer::connect(node, verb, prefixes).await?));
        }
        let mut writers = Vec::new();
        for endpoint in nodes {
            let conn = Writer::connect(endpoint, verb, Vec::new()).await?;
            conn.follow_redirections();
            writers.push(NodeWriter {
                endpoint: Some(endpoint.clone()),
                verb,
                conn: Some(conn),
                ..NodeWriter::default()
            });
        }
        let (node_of, slots) = (node_of.to_vec(), slots.to_vec());
        Ok(Producer::Cluster(ClusterProducer { writers, node_of, slots, prefixes, queued: 0, measured: (0, 0) }))
    }
}

impl ProducerConn for Producer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header, payload: &[u8]) {
        match self {
            Producer::Single(p) => p.queue(channel, header, payload),
            Producer::Cluster(p) => p.queue(channel, header, payload),
        }
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        match self {
            Producer::Single(p) => p.flush().await,
            Producer::Cluster(p) => {
                p.flush().await;
                Ok(())
            }
        }
    }

    async fn failure(&mut self) -> ConnError {
        match self {
            Producer::Single(p) => p.failure().await,
            // A node's failure is handled at the next flush.
            Producer::Cluster(_) => std::future::pending().await,
        }
    }

    fn watch_deliveries(&mut self, live: std::sync::Arc<crate::live::Live>) {
        // A cluster's consumers read from every node: their deliveries say
        // nothing of one node, whose silence ends in a reconnection anyway.
        if let Producer::Single(p) = self {
            p.watch_deliveries(live);
        }
    }

    fn set_measured(&mut self, first: u64, end: u64) {
        match self {
            Producer::Single(p) => p.set_measured(first, end),
            Producer::Cluster(p) => p.measured = (first, end),
        }
    }

    async fn finish(self, timeout: Duration) -> Finished {
        match self {
            Producer::Single(p) => p.finish(timeout).await,
            Producer::Cluster(p) => p.finish(timeout).await,
        }
    }
}

/// One connection per node.
pub struct ClusterProducer {
    writers: Vec<NodeWriter>,
    /// The node (writer) of each channel: where MOVED last said its slot is.
    node_of: Vec<usize>,
    /// The hash slot of each channel.
    slots: Vec<u16>,
    prefixes: Vec<Vec<u8>>,
    /// Messages queued so far: the index of the next one.
    queued: u64,
    /// The measured messages' indices.
    measured: (u64, u64),
}

/// The messages of one node, from queued to acknowledged.
#[derive(Default)]
struct NodeWriter {
    endpoint: Option<Endpoint>,
    /// The command its writer sends, for messages.
    verb: &'static str,
    conn: Option<Writer>,
    connecting: Option<JoinHandle<Result<Writer, ConnError>>>,
    retry_at: Option<tokio::time::Instant>,
    /// Its last connection attempt was refused: nothing listens there (a
    /// node killed and not restarted), so the end of the run does not wait for it.
    gone: bool,
    /// Every message not acknowledged yet, encoded, back to back: first those
    /// written on the current connection, then those not written yet.
    bytes: Vec<u8>,
    /// Each message in `bytes`: length, index ([`ASKING`] for the `ASKING`
    /// before a message sent after an `ASK`), channel.
    messages: VecDeque<(usize, u64, u32)>,
    /// How many of `messages` were written on the current connection.
    written: usize,
    /// Replies of the current connection already taken off `messages`.
    trimmed: u64,
    /// Messages written on the current connection, and the measured ones' range among them.
    on_conn: u64,
    measured_on_conn: Option<(u64, u64)>,
    /// Acknowledgements of connections that failed.
    done: Acks,
    /// Indices of the messages a node refused (errors other than redirections).
    refused: Vec<u64>,
}

impl ClusterProducer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header, payload: &[u8]) {
        let writer = &mut self.writers[self.node_of[channel as usize]];
        let before = writer.bytes.len();
        encode_message(&mut writer.bytes, &self.prefixes[channel as usize], payload, header);
        writer.messages.push_back((writer.bytes.len() - before, self.queued, channel));
        self.queued += 1;
    }

    async fn flush(&mut self) {
        let mut redirected = Vec::new();
        for writer in &mut self.writers {
            writer.flush(self.measured, &mut redirected).await;
        }
        if redirected.is_empty() {
            return;
        }
        for r in redirected {
            self.follow(r);
        }
        // Written again at once: the detour costs a round trip, not a tick.
        for writer in &mut self.writers {
            writer.flush(self.measured, &mut Vec::new()).await;
        }
    }

    /// Queues a redirected message on the node named (a new writer if it is no
    /// node of ours yet); after MOVED its slot's messages go there from now on.
    /// A redirection that names no address is lost (and counted).
    fn follow(&mut self, r: Redirected) {
        let Some(to) = Redirect::parse(&r.error) else { return };
        let seed = self.writers[self.node_of[r.channel as usize]].endpoint.clone().expect("writers have an endpoint");
        let host = if to.host.is_empty() { seed.host.clone() } else { to.host };
        let at =
            self.writers.iter().position(|l| l.endpoint.as_ref().is_some_and(|e| e.host == host && e.port == to.port));
        let at = at.unwrap_or_else(|| {
            let endpoint = Endpoint { host, port: to.port, ..seed };
            let verb = self.writers[0].verb;
            self.writers.push(NodeWriter { endpoint: Some(endpoint), verb, ..NodeWriter::default() });
            self.writers.len() - 1
        });
        if !to.ask {
            for (node, _) in self.node_of.iter_mut().zip(&self.slots).filter(|(_, &s)| s == to.slot) {
                *node = at;
            }
        }
        let writer = &mut self.writers[at];
        if to.ask {
            let before = writer.bytes.len();
            crate::connect::resp::encode_command(&mut writer.bytes, &[b"ASKING"]);
            writer.messages.push_back((writer.bytes.len() - before, ASKING, r.channel));
        }
        writer.bytes.extend_from_slice(&r.bytes);
        writer.messages.push_back((r.bytes.len(), r.index, r.channel));
    }

    /// Waits (at most `timeout`) until every node acknowledged everything;
    /// what a node never answered stays unanswered. A node that refuses
    /// connections (killed, not restarted) is not waited for: it would hold
    /// the drain to the timeout for nothing (a restarted one that is not
    /// ready yet still is).
    async fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.writers.iter().any(|l| !l.messages.is_empty() && !l.gone) && tokio::time::Instant::now() < deadline {
            self.flush().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut acks = Acks::default();
        let mut refused = Vec::new();
        let mut first_unanswered: Vec<Option<u64>> = vec![None; self.prefixes.len()];
        for writer in &mut self.writers {
            // What is redirected now is not followed any more: unanswered.
            writer.fail(&mut Vec::new());
            acks.add(writer.done);
            refused.append(&mut writer.refused);
            for &(_, index, channel) in writer.messages.iter().filter(|(_, index, _)| *index != ASKING) {
                let first = &mut first_unanswered[channel as usize];
                *first = Some(first.map_or(index, |f| f.min(index)));
            }
            if let Some(c) = writer.connecting.take() {
                c.abort();
            }
        }
        refused.sort_unstable();
        Finished { acks, refused, answered: Answered::PerChannel(first_unanswered), error: None }
    }
}

impl NodeWriter {
    /// Takes acknowledged messages off, notices a failed connection, reconnects
    /// when it is time, and writes what the connection has not had yet.
    /// Messages answered with a redirection go to `redirected`.
    async fn flush(&mut self, measured: (u64, u64), redirected: &mut Vec<Redirected>) {
        if self.conn.as_ref().is_some_and(|c| c.failed()) {
            self.fail(redirected);
        }
        if self.conn.is_none() {
            self.reconnect();
        }
        let Some(conn) = &self.conn else { return };
        let acked = (conn.acks().replies - self.trimmed) as usize;
        self.take_acked(acked, redirected);
        self.written -= acked;
        self.trimmed += acked as u64;
        if self.written == self.messages.len() {
            return;
        }
        let Some(conn) = &mut self.conn else { return };
        let start: usize = self.messages.iter().take(self.written).map(|(len, ..)| len).sum();
        for &(_, index, _) in self.messages.iter().skip(self.written) {
            if (measured.0..measured.1).contains(&index) {
                let (first, _) = self.measured_on_conn.get_or_insert((self.on_conn, self.on_conn));
                self.measured_on_conn = Some((*first, self.on_conn + 1));
            }
            self.on_conn += 1;
        }
        conn.queue_encoded(&self.bytes[start..], (self.messages.len() - self.written) as u64);
        self.written = self.messages.len();
        if let Some((first, end)) = self.measured_on_conn {
            conn.set_measured(first, end);
        }
        if conn.flush().await.is_err() {
            self.fail(redirected);
        }
    }

    /// Takes the first `acked` messages off (the current connection answered
    /// them); those it answered with a redirection go to `redirected`.
    fn take_acked(&mut self, acked: usize, redirected: &mut Vec<Redirected>) {
        let redirections = self.conn.as_ref().map(|c| c.take_redirected()).unwrap_or_default();
        let mut redirections = redirections.into_iter().peekable();
        let refusals = self.conn.as_ref().map(|c| c.take_refused()).unwrap_or_default();
        let mut refusals = refusals.into_iter().peekable();
        let mut at = 0;
        for (i, (len, index, channel)) in self.messages.drain(..acked).enumerate() {
            let reply = self.trimmed + i as u64;
            while refusals.next_if(|r| *r < reply).is_some() {}
            if refusals.next_if(|r| *r == reply).is_some() && index != ASKING {
                self.refused.push(index);
            }
            // Replies beyond `acked` (only after a failure) are dropped with their connection.
            while redirections.next_if(|(r, _)| *r < reply).is_some() {}
            if let Some((_, error)) = redirections.next_if(|(r, _)| *r == reply).filter(|_| index != ASKING) {
                redirected.push(Redirected { bytes: self.bytes[at..at + len].to_vec(), index, channel, error });
            }
            at += len;
        }
        self.bytes.drain(..at);
    }

    /// The connection failed: keep what it had not acknowledged, to write again.
    fn fail(&mut self, redirected: &mut Vec<Redirected>) {
        if let Some(conn) = &self.conn {
            let mut acks = conn.acks();
            // Replies taken off already count; the rest of the messages go again.
            acks.replies = self.trimmed + (acks.replies - self.trimmed).min(self.written as u64);
            self.done.add(acks);
            let acked = ((acks.replies - self.trimmed) as usize).min(self.written);
            self.take_acked(acked, redirected);
            self.conn = None;
            self.retry_at = Some(tokio::time::Instant::now() + RETRY);
        }
        (self.written, self.trimmed, self.on_conn, self.measured_on_conn) = (0, 0, 0, None);
    }

    /// Starts or completes a connection attempt, without waiting for it.
    fn reconnect(&mut self) {
        if let Some(attempt) = &self.connecting {
            if !attempt.is_finished() {
                return;
            }
            let attempt = self.connecting.take().expect("checked");
            let attempt = futures_now(attempt);
            self.gone = matches!(attempt, Some(Err(ConnError::Connect { .. })));
            match attempt {
                Some(Ok(conn)) => self.conn = Some(conn),
                _ => self.retry_at = Some(tokio::time::Instant::now() + RETRY),
            }
            return;
        }
        if self.retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            return;
        }
        let (endpoint, verb) = (self.endpoint.clone().expect("writers have an endpoint"), self.verb);
        self.connecting = Some(tokio::task::spawn_local(async move {
            // A restarted master refuses keyed writes (CLUSTERDOWN) until it has
            // rejoined: hold its messages until then rather than have them refused.
            let mut probe = endpoint.connect().await?;
            let info = probe.query(&[b"CLUSTER", b"INFO"], "CLUSTER INFO").await?;
            if !info.first().is_some_and(|i| i.contains("cluster_state:ok")) {
                return Err(ConnError::Unavailable { message: "cluster_state is not ok".into() });
            }
            let conn = Writer::connect(&endpoint, verb, Vec::new()).await?;
            conn.follow_redirections();
            Ok(conn)
        }));
    }
}

/// The result of a finished task.
fn futures_now<T>(handle: JoinHandle<T>) -> Option<T> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut handle = std::pin::pin!(handle);
    match std::future::Future::poll(handle.as_mut(), &mut cx) {
        std::task::Poll::Ready(Ok(v)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Live;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;

    /// A server that takes every write and answers none on the first
    /// connection; on later ones (the watchdog's probes) `+PONG` to each
    /// read if `answers_probes`, nothing otherwise.
    async fn silent_server(answers_probes: bool) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::task::spawn_local(async move {
            let mut first = true;
            while let Ok((mut sock, _)) = listener.accept().await {
                let answer = answers_probes && !first;
                first = false;
                tokio::task::spawn_local(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = sock.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if answer {
                            let _ = sock.write_all(b"+PONG\r\n").await;
                        }
                    }
                });
            }
        });
        let connect_timeout = Duration::from_secs(1);
        Endpoint { host: "127.0.0.1".into(), port, username: None, password: None, connect_timeout, tls: None }
    }

    /// A writer on `endpoint` that has written three messages, none answered.
    async fn three_unanswered(endpoint: &Endpoint) -> Writer {
        let prefix = b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n".to_vec();
        let mut w = Writer::connect(endpoint, "PUBLISH", vec![prefix]).await.unwrap();
        for seq in 0..3 {
            w.queue(0, &Header { producer: 0, channel: 0, seq, intended_ns: 0, sent_ns: 0 }, &[0; 64]);
        }
        w.flush().await.unwrap();
        w
    }

    /// Runs `f` where the writer's reader can be spawned (on this thread).
    fn local<F: std::future::Future<Output = ()>>(f: F) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(tokio::task::LocalSet::new().run_until(f));
    }

    #[test]
    fn a_silent_server_with_no_sign_of_life_is_called_stopped_after_the_stall_time() {
        local(async {
            let mut w = three_unanswered(&silent_server(false).await).await;
            w.watch_deliveries(Arc::new(Live::default()));
            let started = Instant::now();
            let e = tokio::time::timeout(Duration::from_secs(5), w.failure()).await.expect("a verdict");
            assert!(matches!(e, ConnError::Stalled { what: "PUBLISH", .. }), "{e}");
            let took = started.elapsed();
            assert!(took >= STALL_AFTER && took < STALL_AFTER + Duration::from_millis(800), "{took:?}");
        });
    }

    #[test]
    fn deliveries_still_moving_mean_a_busy_server_and_its_unanswered_messages_a_backlog() {
        local(async {
            let mut w = three_unanswered(&silent_server(false).await).await;
            let live = Arc::new(Live::default());
            w.watch_deliveries(live.clone());
            // This process's consumers still read what the server wrote before.
            let moving = live.clone();
            let feeder = tokio::task::spawn_local(async move {
                loop {
                    moving.meters.delivered[1].fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let wait = STALL_AFTER + Duration::from_secs(1);
            assert!(tokio::time::timeout(wait, w.failure()).await.is_err(), "called stopped while deliveries moved");
            let f = w.finish(Duration::from_millis(200)).await;
            feeder.abort();
            assert!(f.error.is_none(), "{:?}", f.error);
            assert_eq!(f.acks.replies, 0);
            assert_eq!(f.answered, Answered::Prefix(3), "held by a working server: not unanswered");
        });
    }

    #[test]
    fn a_server_that_answers_a_fresh_connections_ping_is_busy_not_stopped() {
        local(async {
            let mut w = three_unanswered(&silent_server(true).await).await;
            let wait = STALL_AFTER + Duration::from_secs(1);
            assert!(tokio::time::timeout(wait, w.failure()).await.is_err(), "called stopped though it answered PING");
        });
    }

    #[test]
    fn a_dead_servers_unanswered_messages_stay_unanswered() {
        local(async {
            let w = three_unanswered(&silent_server(false).await).await;
            let f = w.finish(STALL_AFTER + Duration::from_millis(500)).await;
            assert!(matches!(f.error, Some(ConnError::Stalled { .. })), "{:?}", f.error);
            assert_eq!(f.answered, Answered::Prefix(0));
        });
    }
}
