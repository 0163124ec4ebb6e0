//! A subscribed consumer's connection(s): SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE,
//! the push fast path, a graceful leave, and (sharded, on a cluster) one
//! connection per node, each subscribed again on its own when it is lost.

use crate::connect::resp::{self, Atom, Frame};
use crate::connect::{refusal, Conn, ConnError, Endpoint, Tuning};
use crate::drivers::consume::{Backoff, ShardChange};
use crate::drivers::{ConsumerConn, Delivery};
use std::future::Future;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

impl super::PubSub {
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
        let backoffs = shards.iter().map(|_| Backoff::started(0)).collect();
        let born = std::time::Instant::now();
        let changes = std::collections::VecDeque::new();
        let (left, next, leaving) = (0, 0, false);
        Ok(PubSubConsumer { conns, shards, rejoins, backoffs, born, changes, leave, leaving, left, next, client_id })
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

/// Connects to a shard's node and subscribes again, with the consumer loop's
/// backoff (10 ms doubling to 1 s, each attempt within the connect timeout;
/// kept from the shard's last connection if it did not last) until it works;
/// a refusal ends it. A `MOVED` refusal is followed at once to the node it
/// names; an `ASK` (a slot being migrated) is tried again later. Returns the
/// connection, the node it is on and the backoff. `now` reads the consumer's
/// clock, in ns.
async fn rejoin(
    shard: Rc<Shard>,
    mut backoff: Backoff,
    now: impl Fn() -> u64,
) -> Result<(Conn, Endpoint, Backoff), ConnError> {
    let mut endpoint = shard.endpoint.clone();
    tokio::time::sleep(backoff.before_attempt(now())).await;
    loop {
        let attempt = async {
            let mut conn = endpoint.connect_with(shard.tuning).await?;
            let names: Vec<&[u8]> = shard.names.iter().map(|n| n.as_slice()).collect();
            subscribe(&mut conn, shard.verb, shard.kind, &names).await?;
            Ok::<_, ConnError>(conn)
        };
        match tokio::time::timeout(endpoint.connect_timeout, attempt).await {
            Ok(Ok(conn)) => return Ok((conn, endpoint, backoff)),
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
        tokio::time::sleep(backoff.before_attempt(now())).await;
    }
}

type Rejoin = std::pin::Pin<Box<dyn Future<Output = Result<(Conn, Endpoint, Backoff), ConnError>>>>;

/// A subscribed consumer: one connection, or one per node for sharded Pub/Sub
/// on a cluster. With several, a connection the server closes is subscribed
/// again on its own while the others keep reading ([`ShardChange`]).
pub struct PubSubConsumer {
    /// `None` while that node's connection is being re-established.
    conns: Vec<Option<Conn>>,
    shards: Vec<Shard>,
    rejoins: Vec<Option<Rejoin>>,
    /// Each shard's reconnect backoff, kept across its connections.
    backoffs: Vec<Backoff>,
    /// The time base of the backoffs.
    born: std::time::Instant,
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
    /// Subscribes shard `i` again, on its own, with its backoff.
    fn rejoin(&mut self, i: usize) {
        let born = self.born;
        let now = move || born.elapsed().as_nanos() as u64;
        self.rejoins[i] = Some(Box::pin(rejoin(Rc::new(self.shards[i].clone()), self.backoffs[i], now)));
    }

    /// The server dropped channel `name` of shard `i` (its slot moved): it is
    /// subscribed again on a connection of its own, on the node the old one
    /// redirects to, and is not subscribed anywhere until then.
    fn moved(&mut self, i: usize, name: &[u8]) {
        let shard = &mut self.shards[i];
        let Some(at) = shard.names.iter().position(|n| n == name) else { return };
        let (name, channel) = (shard.names.remove(at), shard.channels.remove(at));
        let moved = Shard { names: vec![name], channels: vec![channel], ..shard.clone() };
        self.shards.push(moved);
        self.conns.push(None);
        self.backoffs.push(Backoff::new());
        self.rejoins.push(None);
        self.rejoin(self.shards.len() - 1);
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
                let (conn, endpoint, backoff) = r?;
                (self.conns[i], self.shards[i].endpoint) = (Some(conn), endpoint);
                self.backoffs[i] = backoff;
                self.backoffs[i].connected(self.born.elapsed().as_nanos() as u64);
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
                    self.rejoin(i);
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

    fn take_change(&mut self) -> Option<ShardChange> {
        self.changes.pop_front()
    }

    fn closed_now(&mut self) -> bool {
        closed_already(self)
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        if let [Some(conn)] = self.conns.as_mut_slice() {
            return conn.fill().await;
        }
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// Whether the connection has already been closed by the server: one read,
/// without waiting (what it reads, if anything, stays in the buffer).
fn closed_already(conn: &mut PubSubConsumer) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let fill = std::pin::pin!(conn.fill());
    matches!(fill.poll(&mut cx), std::task::Poll::Ready(Err(ConnError::Closed | ConnError::Io(_))))
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
