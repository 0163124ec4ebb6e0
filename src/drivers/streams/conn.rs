//! Redis Streams: producers XADD through the same pipelined writer as PUBLISH;
//! consumers read with XREADGROUP (COUNT, BLOCK), acknowledge with XACK in
//! batches, and take over idle entries of crashed group members with
//! XAUTOCLAIM. On one server a consumer reads and acknowledges on a raw
//! connection, its replies read in place (`reply`); group creation and
//! claims, and everything on a cluster, go through the redis crate.

use crate::connect::{resp, Conn, ConnError, Endpoint};
use crate::drivers::consume::ShardChange;
use crate::drivers::producer::{answers_ping, Producer, PROBE_LEAD};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use std::future::Future;
use std::time::Duration;

/// Stream keys and settings shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct Streams {
    /// Producers' raw connections.
    pub endpoint: Endpoint,
    /// Consumers' and the coordinator's connections: the same address,
    /// credentials and TLS as `endpoint`.
    pub client: std::sync::Arc<redis::Client>,
    /// The masters of a cluster (raw endpoint and client of each), or just the server above.
    pub nodes: Vec<(Endpoint, std::sync::Arc<redis::Client>)>,
    /// The node (index into `nodes`) that owns each key.
    pub node_of: Vec<usize>,
    /// One stream per channel.
    pub keys: Vec<String>,
    /// Approximate trimming (`XADD MAXLEN ~ N`).
    pub maxlen: Option<u64>,
    /// Entries per XREADGROUP and XAUTOCLAIM.
    pub batch: usize,
}

/// Defined beside the reader of XREADGROUP replies, which fills it, so that
/// `reply` needs nothing of this module.
pub use super::reply::Entry;

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// Only entries added from now on (`$`).
    New,
    /// The whole stream (`0`): a replay.
    Beginning,
}

/// Between attempts to reach a node that went away.
const RETRY: Duration = Duration::from_millis(50);

impl Streams {
    /// A producer writing `XADD key [MAXLEN ~ N] * d <payload>` to the node that owns the key.
    pub async fn producer(&self) -> Result<Producer, ConnError> {
        let maxlen = self.maxlen.map(|n| n.to_string());
        let prefixes = self
            .keys
            .iter()
            .map(|key| {
                let mut args: Vec<&[u8]> = vec![b"XADD", key.as_bytes()];
                if let Some(n) = &maxlen {
                    args.extend([&b"MAXLEN"[..], b"~", n.as_bytes()]);
                }
                args.extend([&b"*"[..], b"d"]);
                resp::command_head(&args)
            })
            .collect();
        let endpoints: Vec<Endpoint> = self.nodes.iter().map(|(e, _)| e.clone()).collect();
        let slots: Vec<u16> = self.keys.iter().map(|k| crate::topology::key_slot(k.as_bytes())).collect();
        Producer::connect(&endpoints, &self.node_of, &slots, "XADD", prefixes).await
    }

    /// A control connection for the coordinator (backlog, replay).
    pub async fn connection(&self) -> Result<MultiplexedConnection, ConnError> {
        connect(&self.client, self.endpoint.connect_timeout).await
    }

    /// A control connection to each node.
    pub async fn connections(&self) -> Result<Vec<MultiplexedConnection>, ConnError> {
        let mut cons = Vec::new();
        for (_, client) in &self.nodes {
            cons.push(connect(client, self.endpoint.connect_timeout).await?);
        }
        Ok(cons)
    }

    /// Connects again to the nodes whose control connection is gone (those that answer).
    pub async fn reconnect_missing(&self, cons: &mut [Option<MultiplexedConnection>]) {
        for (con, (_, client)) in cons.iter_mut().zip(&self.nodes).filter(|(c, _)| c.is_none()) {
            *con = connect(client, self.endpoint.connect_timeout).await.ok();
        }
    }

    /// Connects consumer `name` of `group`, creating the group on every stream
    /// if it does not exist yet.
    pub async fn consumer(&self, group: &str, name: &str, start: GroupStart) -> Result<StreamsConsumer, ConnError> {
        let id = match start {
            GroupStart::New => "$",
            GroupStart::Beginning => "0",
        };
        let mut lanes = Vec::new();
        for (node, (_, client)) in self.nodes.iter().enumerate() {
            let keys: Vec<(usize, String)> =
                (0..self.keys.len()).filter(|&k| self.node_of[k] == node).map(|k| (k, self.keys[k].clone())).collect();
            if keys.is_empty() {
                continue;
            }
            let mut con = connect(client, self.endpoint.connect_timeout).await?;
            create_groups(&mut con, &keys, group, id).await?;
            lanes.push(NodeReader {
                client: client.clone(),
                con: Some(con),
                ctl: None,
                keys: std::sync::Arc::new(keys),
                inflight: None,
                retry_at: None,
                pending_from: None,
                down: false,
            });
        }
        let single = self.nodes.len() == 1;
        if !single {
            // Reads stay in flight on each node while another answers: acknowledgements
            // must not queue behind a blocked XREADGROUP.
            for lane in &mut lanes {
                lane.ctl = Some(connect(&lane.client, self.endpoint.connect_timeout).await?);
            }
        }
        let lean = match single {
            true => {
                let conn = self.endpoint.connect().await?;
                let lean = Lean { conn: Some(conn), out: Vec::new(), acks_queued: 0, acked: 0, owed: Owed::default() };
                Some(std::sync::Mutex::new(lean))
            }
            false => None,
        };
        Ok(StreamsConsumer {
            lanes: std::sync::Mutex::new(lanes),
            group: group.into(),
            name: name.into(),
            count: self.batch,
            connect_timeout: self.endpoint.connect_timeout,
            endpoint: self.endpoint.clone(),
            single,
            lean,
            changes: std::sync::Mutex::default(),
        })
    }
}

/// A reply this late means Redis stopped answering (a stopped server, a cut
/// network), as for the producers: a blocking read waits [`READ_BLOCK`] at
/// most, and Redis answers anything else in microseconds.
pub const RESPONSE_TIMEOUT: Duration =
    Duration::from_millis(crate::drivers::producer::STALL_AFTER.as_millis() as u64 + READ_BLOCK.as_millis() as u64);

/// Awaits an exchange on a single server's raw connection. Silence for
/// [`RESPONSE_TIMEOUT`] means Redis stopped answering (a stopped server, a
/// cut network), unless it shows signs of life meanwhile, as the producers'
/// watchdog judges PUBLISH and XADD: a PING answered on a fresh connection
/// (asked [`PROBE_LEAD`] before the verdict is due) starts the silence
/// again. A paused Redis (`CLIENT PAUSE WRITE`, as a failover pauses it)
/// holds every XREADGROUP, a write, for as long as the pause, yet answers
/// that PING: it is busy, not dead, and the run goes on.
async fn while_alive<T>(
    endpoint: &Endpoint,
    exchange: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ConnError> {
    tokio::pin!(exchange);
    let mut since = tokio::time::Instant::now();
    loop {
        if let Ok(r) = tokio::time::timeout_at(since + RESPONSE_TIMEOUT - PROBE_LEAD, &mut exchange).await {
            return r;
        }
        let verdict = since + RESPONSE_TIMEOUT;
        let alive = tokio::select! {
            r = &mut exchange => return r,
            alive = tokio::time::timeout_at(verdict, answers_ping(endpoint)) => alive.unwrap_or(false),
        };
        if alive {
            since = tokio::time::Instant::now();
            continue;
        }
        return match tokio::time::timeout_at(verdict, &mut exchange).await {
            Ok(r) => r,
            Err(_) => Err(ConnError::Stalled { what: "XREADGROUP", secs: RESPONSE_TIMEOUT.as_secs_f64() }),
        };
    }
}

/// The longest BLOCK of any XREADGROUP a run sends.
pub const READ_BLOCK: Duration = Duration::from_millis(100);

async fn connect(client: &redis::Client, timeout: Duration) -> Result<MultiplexedConnection, ConnError> {
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(timeout)).set_response_timeout(Some(RESPONSE_TIMEOUT));
    Ok(client.get_multiplexed_async_connection_with_config(&config).await?)
}

/// (index into the run's keys, key) of the streams on one node.
type NodeKeys = std::sync::Arc<Vec<(usize, String)>>;

/// A read in flight on one node: the new connections (reads, control) if it had to connect, and what it read.
type Read =
    (Option<(MultiplexedConnection, MultiplexedConnection)>, Option<Vec<String>>, Result<Vec<Entry>, ConnError>);

/// One node's streams, as one consumer reads them.
struct NodeReader {
    client: std::sync::Arc<redis::Client>,
    /// `None` after a failure, until a read connects again.
    con: Option<MultiplexedConnection>,
    /// On a cluster: acknowledgements and claims, beside the blocking reads of `con`.
    ctl: Option<MultiplexedConnection>,
    /// (index into the run's keys, key) of the streams on this node.
    keys: NodeKeys,
    inflight: Option<tokio::task::JoinHandle<Read>>,
    retry_at: Option<tokio::time::Instant>,
    /// After a reconnect: where this consumer's own pending entries continue, per key.
    pending_from: Option<Vec<String>>,
    /// Its connection failed (not for a moved slot) and has not read since:
    /// its streams are an outage of this consumer's.
    down: bool,
}

impl NodeReader {
    /// A read, claim or acknowledgement failed: connect again after a while, or
    /// at once to the node a `MOVED` names (the streams' slot moved there;
    /// the stream and its groups moved with it, and if not, the read creates the group).
    /// Returns whether this made the node's streams an outage (they were being read).
    fn failed(&mut self, e: &ConnError) -> bool {
        let was_up = self.con.is_some();
        (self.con, self.ctl, self.pending_from) = (None, None, None);
        let moved = moved_to(e).and_then(|to| client_at(&self.client, &to.host, to.port));
        let lost = was_up && moved.is_none() && !self.down;
        self.down |= lost;
        let retry = if moved.is_some() { Duration::ZERO } else { RETRY };
        if let Some(client) = moved {
            self.client = std::sync::Arc::new(client);
        }
        self.retry_at = Some(tokio::time::Instant::now() + retry);
        lost
    }

    /// The change that losing this node's streams is.
    fn lost(&self, shard: usize) -> ShardChange {
        ShardChange::Lost { shard, channels: self.keys.iter().map(|(k, _)| *k).collect(), moved: false }
    }
}

/// The node a `MOVED` error names; `None` for any other error.
fn moved_to(e: &ConnError) -> Option<crate::topology::Redirect> {
    let ConnError::Redis(e) = e else { return None };
    let text = format!("{} {}", e.code()?, e.detail()?);
    crate::topology::Redirect::parse(text.as_bytes()).filter(|r| !r.ask)
}

/// `client`'s settings (credentials, TLS) for another node; keeps the host when `host` is empty.
fn client_at(client: &redis::Client, host: &str, port: u16) -> Option<redis::Client> {
    use redis::ConnectionAddr;
    let info = client.get_connection_info().clone();
    let keep = |old: &String| if host.is_empty() { old.clone() } else { host.to_string() };
    let addr = match info.addr().clone() {
        ConnectionAddr::Tcp(old, _) => ConnectionAddr::Tcp(keep(&old), port),
        ConnectionAddr::TcpTls { host: old, insecure, tls_params, .. } => {
            ConnectionAddr::TcpTls { host: keep(&old), port, insecure, tls_params }
        }
        _ => return None,
    };
    redis::Client::open(info.set_addr(addr)).ok()
}

/// One member of a consumer group: one connection per node that holds some of the streams.
pub struct StreamsConsumer {
    lanes: std::sync::Mutex<Vec<NodeReader>>,
    group: String,
    name: String,
    count: usize,
    connect_timeout: Duration,
    /// Where a PING on a fresh connection asks whether a silent server is alive.
    endpoint: Endpoint,
    /// Not a cluster: one connection, whose errors end the run. On a cluster
    /// every node's streams are a lane of their own, even when only one node has
    /// any: a lane follows its streams when their slot moves.
    single: bool,
    /// Not a cluster: the reads and acknowledgements, on a raw connection of
    /// their own, parsed in place (`reply`); the crate's connection keeps the
    /// rest (groups, claims).
    lean: Option<std::sync::Mutex<Lean>>,
    /// On a cluster: nodes whose streams were lost (their connection failed)
    /// or are read again, for the consumer's outages.
    changes: std::sync::Mutex<std::collections::VecDeque<ShardChange>>,
}

/// A single server's XREADGROUP and XACK, pipelined on a raw connection: the
/// acknowledgements of a batch go out in the same write as the next read.
struct Lean {
    /// `None` once it failed (the member then connects again, whole).
    conn: Option<Conn>,
    /// XACK commands waiting for the next read, and then that read.
    out: Vec<u8>,
    /// How many XACK commands `out` holds.
    acks_queued: usize,
    /// Entries Redis acknowledged in replies read so far, not yet taken.
    acked: u64,
    /// Replies still due to an exchange that was cancelled (a fault's
    /// schedule, the end of the run): read and put aside by the next one.
    owed: Owed,
}

/// Replies a raw connection still has to read, in this order.
#[derive(Debug, Default, Clone, Copy)]
struct Owed {
    /// XACK replies, counted when they come.
    acks: usize,
    /// XREADGROUP replies: those owed from a cancelled exchange are dropped
    /// (their entries wait in the member's pending list, as when the crate's
    /// connection drops the reply to a cancelled request); the last one is the
    /// current read's.
    reads: usize,
}

/// The raw connection while an exchange runs: if the exchange is cancelled,
/// it goes back with the replies it still owes.
struct Exchange<'a> {
    lean: &'a std::sync::Mutex<Lean>,
    conn: Option<Conn>,
    owed: Owed,
    /// Whether the whole command was written (else the connection is unusable).
    sent: bool,
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if let (Some(conn), true) = (self.conn.take(), self.sent) {
            let mut l = self.lean.lock().unwrap_or_else(|p| p.into_inner());
            (l.conn, l.owed) = (Some(conn), self.owed);
        }
    }
}

/// Appends one bulk-string argument, without allocating.
fn push_arg(out: &mut Vec<u8>, arg: &[u8]) {
    use std::io::Write;
    let _ = write!(out, "${}\r\n", arg.len());
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

fn push_array(out: &mut Vec<u8>, len: usize) {
    use std::io::Write;
    let _ = write!(out, "*{len}\r\n");
}

/// XREADGROUP on one node as `member` (group, consumer): own pending entries
/// after `from` (an ID per key), or new ones (`>`, waiting up to `block`).
/// With `create_missing`, a node without the group gets it, from the start
/// (`0`, `MKSTREAM`), and is read again: on a cluster the streams' slot moved
/// there without them (nothing was migrated), so every entry there came after the move.
async fn xreadgroup(
    con: &mut MultiplexedConnection,
    (group, name): (&str, &str),
    create_missing: bool,
    count: usize,
    keys: &[(usize, String)],
    from: Option<&[String]>,
    block: Duration,
) -> Result<Vec<Entry>, ConnError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(group).arg(name).arg("COUNT").arg(count);
    if from.is_none() {
        cmd.arg("BLOCK").arg(block.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS");
    for (_, key) in keys {
        cmd.arg(key);
    }
    match from {
        Some(ids) => {
            for id in ids {
                cmd.arg(id);
            }
        }
        None => {
            for _ in keys {
                cmd.arg(">");
            }
        }
    }
    let reply: Value = match cmd.query_async(con).await {
        Err(e) if create_missing && e.code() == Some("NOGROUP") => {
            create_groups(con, keys, group, "0").await?;
            cmd.query_async(con).await?
        }
        other => other?,
    };
    let mut out = Vec::new();
    if let Value::Array(streams) = reply {
        for stream in streams {
            let Value::Array(mut kv) = stream else { continue };
            let (Some(Value::Array(entries)), Some(Value::BulkString(key))) = (kv.pop(), kv.pop()) else {
                continue;
            };
            let Some(&(key, _)) = keys.iter().find(|(_, k)| k.as_bytes() == key.as_slice()) else { continue };
            entries_into(key, entries, &mut out);
        }
    }
    Ok(out)
}

/// `XGROUP CREATE key group id MKSTREAM` for each key, unless the group exists.
async fn create_groups(
    con: &mut MultiplexedConnection,
    keys: &[(usize, String)],
    group: &str,
    id: &str,
) -> Result<(), ConnError> {
    for (_, key) in keys {
        let created: redis::RedisResult<()> =
            redis::cmd("XGROUP").arg("CREATE").arg(key).arg(group).arg(id).arg("MKSTREAM").query_async(con).await;
        match created {
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            other => other?,
        }
    }
    Ok(())
}

impl StreamsConsumer {
    fn lanes(&self) -> std::sync::MutexGuard<'_, Vec<NodeReader>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// XREADGROUP: this consumer's own pending entries (`own_pending`, ID 0),
    /// or new ones (`>`, waiting up to `block`). Appends to `out`.
    pub async fn read(&self, own_pending: bool, block: Duration, out: &mut Vec<Entry>) -> Result<(), ConnError> {
        if let Some(lean) = &self.lean {
            return self.lean_read(lean, own_pending, block, out).await;
        }
        let single = {
            let lanes = self.lanes();
            match lanes.as_slice() {
                [lane] if self.single => {
                    Some((lane.con.clone().expect("a single node's connection stays"), lane.keys.clone()))
                }
                _ => None,
            }
        };
        let zeros = |keys: &[(usize, String)]| vec!["0".to_string(); keys.len()];
        if let Some((mut con, keys)) = single {
            // A clone shares the one connection: reads and acknowledgements pipeline on it.
            let from = own_pending.then(|| zeros(&keys));
            let read =
                xreadgroup(&mut con, (&self.group, &self.name), false, self.count, &keys, from.as_deref(), block)
                    .await?;
            out.extend(read);
            return Ok(());
        }
        if own_pending {
            for (i, mut con, keys) in self.up().1 {
                let from = zeros(&keys);
                match xreadgroup(&mut con, (&self.group, &self.name), false, self.count, &keys, Some(&from), block)
                    .await
                {
                    Ok(read) => out.extend(read),
                    Err(e) => self.lane_failed(i, &e),
                }
            }
            return Ok(());
        }
        self.start_reads(block);
        // Whichever nodes answer first; the other reads stay in flight for the next call.
        let taken = std::future::poll_fn(|cx| {
            let mut lanes = self.lanes();
            let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            let mut any = false;
            for (i, lane) in lanes.iter_mut().enumerate() {
                let Some(handle) = &mut lane.inflight else { continue };
                let std::task::Poll::Ready(result) = std::pin::Pin::new(handle).poll(cx) else { continue };
                lane.inflight = None;
                any = true;
                let (fresh, from, read) = result.unwrap_or((None, None, Err(ConnError::Closed)));
                if let Some((con, ctl)) = fresh {
                    (lane.con, lane.ctl) = (Some(con), Some(ctl));
                }
                match read {
                    Ok(read) => {
                        if std::mem::take(&mut lane.down) {
                            changes.push_back(ShardChange::Back { shard: i });
                        }
                        // Own pending entries come a batch at a time: the next read continues after this one's.
                        lane.pending_from = from.filter(|_| !read.is_empty()).map(|mut ids| {
                            for e in &read {
                                if let Some(j) = lane.keys.iter().position(|(k, _)| *k == e.key) {
                                    ids[j] = String::from_utf8_lossy(&e.id).into_owned();
                                }
                            }
                            ids
                        });
                        out.extend(read);
                    }
                    Err(e) => {
                        if lane.failed(&e) {
                            changes.push_back(lane.lost(i));
                        }
                    }
                }
            }
            if any {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        });
        let _ = tokio::time::timeout(block + RETRY, taken).await;
        Ok(())
    }

    /// Starts a read on every node that has none in flight; a node whose
    /// connection failed is connected again first (when its retry is due), and
    /// then gives back this consumer's entries it had not acknowledged.
    fn start_reads(&self, block: Duration) {
        let mut lanes = self.lanes();
        for lane in lanes.iter_mut().filter(|l| l.inflight.is_none()) {
            if lane.con.is_none() && lane.retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
                continue;
            }
            let (con, client, keys) = (lane.con.clone(), lane.client.clone(), lane.keys.clone());
            let (group, name, count, timeout) =
                (self.group.clone(), self.name.clone(), self.count, self.connect_timeout);
            let from = lane.pending_from.clone();
            lane.inflight = Some(tokio::spawn(async move {
                match con {
                    Some(mut con) => {
                        let read =
                            xreadgroup(&mut con, (&group, &name), true, count, &keys, from.as_deref(), block).await;
                        (None, from, read)
                    }
                    None => {
                        let pair = async {
                            Ok::<_, ConnError>((connect(&client, timeout).await?, connect(&client, timeout).await?))
                        };
                        match pair.await {
                            Ok((mut con, ctl)) => {
                                let from = vec!["0".to_string(); keys.len()];
                                let read =
                                    xreadgroup(&mut con, (&group, &name), true, count, &keys, Some(&from), block).await;
                                (Some((con, ctl)), Some(from), read)
                            }
                            Err(e) => (None, None, Err(e)),
                        }
                    }
                }
            }));
        }
    }

    /// [`StreamsConsumer::read`] on the raw connection: the queued XACKs and
    /// the XREADGROUP in one write, their replies read in place.
    async fn lean_read(
        &self,
        lean: &std::sync::Mutex<Lean>,
        own_pending: bool,
        block: Duration,
        out: &mut Vec<Entry>,
    ) -> Result<(), ConnError> {
        let lock = || lean.lock().unwrap_or_else(|p| p.into_inner());
        let keys = self.lanes()[0].keys.clone();
        let (conn, mut cmd, queued, owed) = {
            let mut l = lock();
            (l.conn.take(), std::mem::take(&mut l.out), std::mem::take(&mut l.acks_queued), l.owed)
        };
        let conn = conn.ok_or(ConnError::Closed)?;
        let ms = block.as_millis().max(1).to_string();
        let count = self.count.to_string();
        let blocking = if own_pending { 0 } else { 2 };
        push_array(&mut cmd, 6 + blocking + 1 + 2 * keys.len());
        for arg in
            [&b"XREADGROUP"[..], b"GROUP", self.group.as_bytes(), self.name.as_bytes(), b"COUNT", count.as_bytes()]
        {
            push_arg(&mut cmd, arg);
        }
        if !own_pending {
            push_arg(&mut cmd, b"BLOCK");
            push_arg(&mut cmd, ms.as_bytes());
        }
        push_arg(&mut cmd, b"STREAMS");
        for (_, key) in keys.iter() {
            push_arg(&mut cmd, key.as_bytes());
        }
        for _ in keys.iter() {
            push_arg(&mut cmd, if own_pending { b"0" } else { b">" });
        }
        // Owed replies come first: a cancelled exchange's acks, its read, then
        // this one's. Acks owed from before are all answered before its read.
        let mut x = Exchange {
            lean,
            conn: Some(conn),
            owed: Owed { acks: owed.acks + queued, reads: owed.reads + 1 },
            sent: false,
        };
        let mut acks_first = owed.acks;
        let exchange = async {
            let conn = x.conn.as_mut().expect("taken above");
            conn.send(&cmd).await?;
            x.sent = true;
            let mut acked = 0u64;
            let mut scratch = Vec::new();
            loop {
                // The acks due before the next read reply.
                let due = if x.owed.reads > 1 { acks_first } else { x.owed.acks };
                let mut read_acks = 0;
                while read_acks < due {
                    if let Some((n, used)) = resp::integer(conn.pending()) {
                        acked += n.max(0) as u64;
                        read_acks += 1;
                        conn.consume(used);
                        continue;
                    }
                    let used = match resp::parse(conn.pending())? {
                        None => break,
                        Some((resp::Frame::Atom(resp::Atom::Error(e)), _)) => {
                            return Err(ConnError::Refused { what: "XACK", message: String::from_utf8_lossy(e).into() })
                        }
                        Some((_, used)) => used,
                    };
                    read_acks += 1;
                    conn.consume(used);
                }
                x.owed.acks -= read_acks;
                if x.owed.reads > 1 {
                    acks_first -= read_acks;
                }
                if read_acks == due {
                    let last = x.owed.reads == 1;
                    let into = if last { &mut *out } else { &mut scratch };
                    match super::reply::read_entries(conn.pending(), &keys, into) {
                        Ok(Some(used)) => {
                            conn.consume(used);
                            x.owed.reads -= 1;
                            scratch.clear();
                            if last {
                                return Ok(acked);
                            }
                            // The cancelled exchange's acks were all before it; this one's come next.
                            acks_first = 0;
                            continue;
                        }
                        Ok(None) => {}
                        Err(super::reply::ReplyError::Refused(message)) => {
                            return Err(ConnError::Refused { what: "XREADGROUP", message })
                        }
                        Err(super::reply::ReplyError::Malformed(e)) => return Err(e.into()),
                    }
                }
                conn.fill().await?;
            }
        };
        // Given up after RESPONSE_TIMEOUT of silence, unless Redis shows it is alive meanwhile.
        let result = while_alive(&self.endpoint, exchange).await;
        cmd.clear();
        let conn = x.conn.take();
        let mut l = lock();
        if l.out.is_empty() {
            // The buffer back, unless acknowledgements were queued meanwhile.
            l.out = cmd;
        }
        let acked = result?;
        l.acked += acked;
        (l.conn, l.owed) = (conn, Owed::default());
        Ok(())
    }

    /// What Redis acknowledged on the raw connection and was not yet counted
    /// (the replies to the last batch's XACKs come with the next read).
    pub fn take_acked(&self) -> u64 {
        self.lean.as_ref().map_or(0, |l| std::mem::take(&mut l.lock().unwrap_or_else(|p| p.into_inner()).acked))
    }

    fn lane_failed(&self, i: usize, e: &ConnError) {
        let mut lanes = self.lanes();
        if lanes[i].failed(e) {
            let lost = lanes[i].lost(i);
            self.changes.lock().unwrap_or_else(|p| p.into_inner()).push_back(lost);
        }
    }

    /// The next change in the nodes this consumer reads (a cluster's node lost, or back), if any.
    pub fn take_change(&self) -> Option<ShardChange> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    /// The control connection and keys of each node that is up; a single node's errors end the run.
    fn up(&self) -> (bool, Vec<(usize, MultiplexedConnection, NodeKeys)>) {
        let lanes = self.lanes();
        let single = self.single;
        let up =
            lanes.iter().enumerate().filter_map(|(i, l)| Some((i, l.ctl.clone().or(l.con.clone())?, l.keys.clone())));
        (single, up.collect())
    }

    /// XAUTOCLAIM on every stream: takes over entries of this group that were
    /// delivered to some consumer and not acknowledged for `min_idle`.
    pub async fn autoclaim(&self, min_idle: Duration, out: &mut Vec<Entry>) -> Result<(), ConnError> {
        let (single, up) = self.up();
        for (i, mut con, keys) in up {
            for (key, name) in keys.iter() {
                match self.autoclaim_one(&mut con, *key, name, min_idle, out).await {
                    Ok(()) => {}
                    Err(e) if single => return Err(e),
                    Err(e) => {
                        self.lane_failed(i, &e);
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    async fn autoclaim_one(
        &self,
        con: &mut MultiplexedConnection,
        key: usize,
        name: &str,
        min_idle: Duration,
        out: &mut Vec<Entry>,
    ) -> Result<(), ConnError> {
        let mut start = b"0-0".to_vec();
        loop {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(name)
                .arg(&self.group)
                .arg(&self.name)
                .arg(min_idle.as_millis() as u64)
                .arg(&start)
                .arg("COUNT")
                .arg(self.count)
                .query_async(con)
                .await?;
            let Value::Array(mut parts) = reply else { break };
            parts.truncate(2);
            let (Some(Value::Array(entries)), Some(Value::BulkString(next))) = (parts.pop(), parts.pop()) else {
                break;
            };
            entries_into(key, entries, out);
            if next == b"0-0" {
                break;
            }
            start = next;
        }
        Ok(())
    }

    /// XACK the given entries, one command per stream, pipelined per node;
    /// returns how many Redis acknowledged. On a cluster, what a node that is
    /// down could not acknowledge stays pending, and comes back with the node.
    pub async fn ack(&self, entries: &[Entry]) -> Result<u64, ConnError> {
        if let Some(lean) = &self.lean {
            // Queued for the next read's write; what earlier ones acknowledged is counted now.
            let mut l = lean.lock().unwrap_or_else(|p| p.into_inner());
            let keys = self.lanes()[0].keys.clone();
            let l = &mut *l;
            for (key, name) in keys.iter() {
                let ids = entries.iter().filter(|e| e.key == *key).count();
                if ids == 0 {
                    continue;
                }
                push_array(&mut l.out, 3 + ids);
                push_arg(&mut l.out, b"XACK");
                push_arg(&mut l.out, name.as_bytes());
                push_arg(&mut l.out, self.group.as_bytes());
                for e in entries.iter().filter(|e| e.key == *key) {
                    push_arg(&mut l.out, &e.id);
                }
                l.acks_queued += 1;
            }
            return Ok(std::mem::take(&mut l.acked));
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let (single, up) = self.up();
        let mut total = 0;
        for (i, mut con, keys) in up {
            let mut pipe = redis::pipe();
            for (key, name) in keys.iter() {
                let ids: Vec<&[u8]> = entries.iter().filter(|e| e.key == *key).map(|e| e.id.as_slice()).collect();
                if !ids.is_empty() {
                    pipe.cmd("XACK").arg(name).arg(&self.group).arg(ids);
                }
            }
            if pipe.is_empty() {
                continue;
            }
            match pipe.query_async::<Vec<u64>>(&mut con).await {
                Ok(counts) => total += counts.iter().sum::<u64>(),
                Err(e) if single => return Err(e.into()),
                Err(e) => self.lane_failed(i, &e.into()),
            }
        }
        Ok(total)
    }
}

impl Drop for StreamsConsumer {
    fn drop(&mut self) {
        for lane in self.lanes().iter_mut() {
            if let Some(h) = lane.inflight.take() {
                h.abort();
            }
        }
    }
}

/// Appends `[id, [field, value, ...]]` entries; deleted entries (a nil body) are skipped.
pub(super) fn entries_into(key: usize, entries: Vec<Value>, out: &mut Vec<Entry>) {
    for entry in entries {
        let Value::Array(mut parts) = entry else { continue };
        parts.truncate(2);
        let (Some(Value::Array(fields)), Some(Value::BulkString(id))) = (parts.pop(), parts.pop()) else { continue };
        let payload = fields.into_iter().nth(1).and_then(|v| match v {
            Value::BulkString(b) => Some(b),
            _ => None,
        });
        out.push(Entry { key, id, payload: payload.unwrap_or_default() });
    }
}

/// Entries added to the streams and not yet acknowledged, over every group
/// (XINFO GROUPS: `lag` not yet delivered, `pending` delivered but not
/// acknowledged), summed over the nodes that answer; a node that does not is
/// left out and its connection dropped (`cons[node] = None`). `None` when no node answered.
pub async fn backlog(cons: &mut [Option<MultiplexedConnection>], t: &Streams) -> Option<u64> {
    let mut total = None;
    for (key, &node) in t.keys.iter().zip(&t.node_of) {
        let Some(con) = &mut cons[node] else { continue };
        let xinfo = redis::cmd("XINFO").arg("GROUPS").arg(key).clone();
        let groups: Value = match xinfo.query_async(con).await {
            Ok(v) => v,
            // The stream's slot moved: ask the node it is on now (it stays there,
            // but this is once a second).
            Err(e) if e.code() == Some("MOVED") => {
                let at = moved_to(&e.into()).and_then(|to| client_at(&t.nodes[node].1, &to.host, to.port));
                let Some(client) = at else { continue };
                let Ok(mut there) = connect(&client, t.endpoint.connect_timeout).await else { continue };
                match xinfo.query_async(&mut there).await {
                    Ok(v) => v,
                    Err(_) => continue,
                }
            }
            Err(_) => {
                cons[node] = None;
                continue;
            }
        };
        let total = total.get_or_insert(0);
        let Value::Array(groups) = groups else { continue };
        for group in groups {
            let Value::Array(fields) = group else { continue };
            let field = |name: &[u8]| -> i64 {
                fields
                    .chunks(2)
                    .find_map(|kv| match kv {
                        [Value::BulkString(k), Value::Int(n)] if k == name => Some(*n),
                        _ => None,
                    })
                    .unwrap_or(0)
            };
            *total += (field(b"lag") + field(b"pending")).max(0) as u64;
        }
    }
    total
}
