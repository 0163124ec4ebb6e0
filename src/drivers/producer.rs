//! Producers on a cluster: one pipelined connection per node, each channel's
//! messages to the node that owns it. A node that goes away does not end the
//! run: its messages are held (with those it had not acknowledged) and written
//! again once it is back, so a producer loses nothing a retrying client would
//! not; what is still held when the run ends was never written, and is lost.
//!
//! A message answered with `MOVED` is written again, the same bytes, to the
//! node named, and its slot's later messages go there directly; one answered
//! with `ASK` is written again to the node named after `ASKING`, its slot's
//! routing unchanged. Each redirection is still counted.

use super::pubsub::{encode_message, PubSubProducer};
use super::{Acks, ProducerConn};
use crate::connect::{ConnError, Endpoint};
use crate::topology::Redirect;
use crate::wire::Header;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Between attempts to reach a node that went away.
const RETRY: Duration = Duration::from_millis(50);

/// The index of an `ASKING` command in a lane's messages: it is no message of the run.
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
    Single(PubSubProducer),
    Cluster(ClusterProducer),
}

impl Producer {
    /// One connection for one node; one per node otherwise.
    pub async fn connect(
        nodes: &[Endpoint],
        node_of: &[usize],
        slots: &[u16],
        prefixes: Vec<Vec<u8>>,
        payload_len: usize,
    ) -> Result<Producer, ConnError> {
        if let [node] = nodes {
            return Ok(Producer::Single(PubSubProducer::connect(node, prefixes, payload_len).await?));
        }
        let mut lanes = Vec::new();
        for endpoint in nodes {
            let conn = PubSubProducer::connect(endpoint, Vec::new(), payload_len).await?;
            conn.follow_redirections();
            lanes.push(Lane { endpoint: Some(endpoint.clone()), conn: Some(conn), ..Lane::default() });
        }
        let (node_of, slots) = (node_of.to_vec(), slots.to_vec());
        Ok(Producer::Cluster(ClusterProducer {
            lanes,
            node_of,
            slots,
            prefixes,
            payload_len,
            queued: 0,
            measured: (0, 0),
        }))
    }
}

impl ProducerConn for Producer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header) {
        match self {
            Producer::Single(p) => p.queue(channel, header),
            Producer::Cluster(p) => p.queue(channel, header),
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

    fn set_measured(&mut self, first: u64, end: u64) {
        match self {
            Producer::Single(p) => p.set_measured(first, end),
            Producer::Cluster(p) => p.measured = (first, end),
        }
    }

    async fn finish(self, timeout: Duration) -> Result<Acks, ConnError> {
        match self {
            Producer::Single(p) => p.finish(timeout).await,
            Producer::Cluster(p) => Ok(p.finish(timeout).await),
        }
    }
}

/// One connection per node.
pub struct ClusterProducer {
    lanes: Vec<Lane>,
    /// The node (lane) of each channel: where MOVED last said its slot is.
    node_of: Vec<usize>,
    /// The hash slot of each channel.
    slots: Vec<u16>,
    prefixes: Vec<Vec<u8>>,
    payload_len: usize,
    /// Messages queued so far: the index of the next one.
    queued: u64,
    /// The measured messages' indices.
    measured: (u64, u64),
}

/// The messages of one node, from queued to acknowledged.
#[derive(Default)]
struct Lane {
    endpoint: Option<Endpoint>,
    conn: Option<PubSubProducer>,
    connecting: Option<JoinHandle<Result<PubSubProducer, ConnError>>>,
    retry_at: Option<tokio::time::Instant>,
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
}

impl ClusterProducer {
    #[inline]
    fn queue(&mut self, channel: u32, header: &Header) {
        let lane = &mut self.lanes[self.node_of[channel as usize]];
        let before = lane.bytes.len();
        encode_message(&mut lane.bytes, &self.prefixes[channel as usize], self.payload_len, header);
        lane.messages.push_back((lane.bytes.len() - before, self.queued, channel));
        self.queued += 1;
    }

    async fn flush(&mut self) {
        let mut redirected = Vec::new();
        for lane in &mut self.lanes {
            lane.flush(self.measured, &mut redirected).await;
        }
        if redirected.is_empty() {
            return;
        }
        for r in redirected {
            self.follow(r);
        }
        // Written again at once: the detour costs a round trip, not a tick.
        for lane in &mut self.lanes {
            lane.flush(self.measured, &mut Vec::new()).await;
        }
    }

    /// Queues a redirected message on the node named (a new lane if it is no
    /// node of ours yet); after MOVED its slot's messages go there from now on.
    /// A redirection that names no address is lost (and counted).
    fn follow(&mut self, r: Redirected) {
        let Some(to) = Redirect::parse(&r.error) else { return };
        let seed = self.lanes[self.node_of[r.channel as usize]].endpoint.clone().expect("lanes have an endpoint");
        let host = if to.host.is_empty() { seed.host.clone() } else { to.host };
        let at =
            self.lanes.iter().position(|l| l.endpoint.as_ref().is_some_and(|e| e.host == host && e.port == to.port));
        let at = at.unwrap_or_else(|| {
            let endpoint = Endpoint { host, port: to.port, ..seed };
            self.lanes.push(Lane { endpoint: Some(endpoint), ..Lane::default() });
            self.lanes.len() - 1
        });
        if !to.ask {
            for (node, _) in self.node_of.iter_mut().zip(&self.slots).filter(|(_, &s)| s == to.slot) {
                *node = at;
            }
        }
        let lane = &mut self.lanes[at];
        if to.ask {
            let before = lane.bytes.len();
            crate::connect::resp::encode_command(&mut lane.bytes, &[b"ASKING"]);
            lane.messages.push_back((lane.bytes.len() - before, ASKING, r.channel));
        }
        lane.bytes.extend_from_slice(&r.bytes);
        lane.messages.push_back((r.bytes.len(), r.index, r.channel));
    }

    /// Waits (at most `timeout`) until every node acknowledged everything;
    /// what a node never took is lost.
    async fn finish(mut self, timeout: Duration) -> Acks {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.lanes.iter().any(|l| !l.messages.is_empty()) && tokio::time::Instant::now() < deadline {
            self.flush().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut acks = Acks::default();
        for lane in &mut self.lanes {
            // What is redirected now is not followed any more: lost.
            lane.fail(&mut Vec::new());
            acks.add(lane.done);
            if let Some(c) = lane.connecting.take() {
                c.abort();
            }
        }
        acks
    }
}

impl Lane {
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
        let mut at = 0;
        for (i, (len, index, channel)) in self.messages.drain(..acked).enumerate() {
            let reply = self.trimmed + i as u64;
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
            match futures_now(attempt) {
                Some(Ok(conn)) => self.conn = Some(conn),
                _ => self.retry_at = Some(tokio::time::Instant::now() + RETRY),
            }
            return;
        }
        if self.retry_at.is_some_and(|t| tokio::time::Instant::now() < t) {
            return;
        }
        let endpoint = self.endpoint.clone().expect("lanes have an endpoint");
        self.connecting = Some(tokio::task::spawn_local(async move {
            // A restarted master refuses keyed writes (CLUSTERDOWN) until it has
            // rejoined: hold its messages until then rather than have them refused.
            let mut probe = endpoint.connect().await?;
            let info = probe.query(&[b"CLUSTER", b"INFO"], "CLUSTER INFO").await?;
            if !info.first().is_some_and(|i| i.contains("cluster_state:ok")) {
                return Err(ConnError::Unavailable { message: "cluster_state is not ok".into() });
            }
            let conn = PubSubProducer::connect(&endpoint, Vec::new(), 0).await?;
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
