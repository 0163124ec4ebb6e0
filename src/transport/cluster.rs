//! Producers on a cluster: one pipelined connection per node, each channel's
//! messages to the node that owns it. A node that goes away does not end the
//! run: its messages are held (with those it had not acknowledged) and written
//! again once it is back, so a producer loses nothing a retrying client would
//! not; what is still held when the run ends was never written, and is lost.

use super::conn::Endpoint;
use super::pubsub::{encode_message, PubSubProducer};
use super::{Acks, ProducerConn, TransportError};
use crate::wire::Header;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Between attempts to reach a node that went away.
const RETRY: Duration = Duration::from_millis(50);

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
        prefixes: Vec<Vec<u8>>,
        payload_len: usize,
    ) -> Result<Producer, TransportError> {
        if let [node] = nodes {
            return Ok(Producer::Single(PubSubProducer::connect(node, prefixes, payload_len).await?));
        }
        let mut lanes = Vec::new();
        for endpoint in nodes {
            let conn = PubSubProducer::connect(endpoint, Vec::new(), payload_len).await?;
            lanes.push(Lane { endpoint: Some(endpoint.clone()), conn: Some(conn), ..Lane::default() });
        }
        let node_of = node_of.to_vec();
        Ok(Producer::Cluster(ClusterProducer { lanes, node_of, prefixes, payload_len, queued: 0, measured: (0, 0) }))
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

    async fn flush(&mut self) -> Result<(), TransportError> {
        match self {
            Producer::Single(p) => p.flush().await,
            Producer::Cluster(p) => {
                p.flush().await;
                Ok(())
            }
        }
    }

    async fn failure(&mut self) -> TransportError {
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

    async fn finish(self, timeout: Duration) -> Result<Acks, TransportError> {
        match self {
            Producer::Single(p) => p.finish(timeout).await,
            Producer::Cluster(p) => Ok(p.finish(timeout).await),
        }
    }
}

/// One connection per node.
pub struct ClusterProducer {
    lanes: Vec<Lane>,
    /// The node of each channel.
    node_of: Vec<usize>,
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
    connecting: Option<JoinHandle<Result<PubSubProducer, TransportError>>>,
    retry_at: Option<tokio::time::Instant>,
    /// Every message not acknowledged yet, encoded, back to back: first those
    /// written on the current connection, then those not written yet.
    bytes: Vec<u8>,
    /// Length and index of each message in `bytes`.
    messages: VecDeque<(usize, u64)>,
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
        lane.messages.push_back((lane.bytes.len() - before, self.queued));
        self.queued += 1;
    }

    async fn flush(&mut self) {
        for lane in &mut self.lanes {
            lane.flush(self.measured).await;
        }
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
            lane.fail();
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
    async fn flush(&mut self, measured: (u64, u64)) {
        if self.conn.as_ref().is_some_and(|c| c.failed()) {
            self.fail();
        }
        if self.conn.is_none() {
            self.reconnect();
        }
        let Some(conn) = &mut self.conn else { return };
        let acked = (conn.acks().replies - self.trimmed) as usize;
        let len: usize = self.messages.drain(..acked).map(|(len, _)| len).sum();
        self.bytes.drain(..len);
        self.written -= acked;
        self.trimmed += acked as u64;
        if self.written == self.messages.len() {
            return;
        }
        let start: usize = self.messages.iter().take(self.written).map(|(len, _)| len).sum();
        for &(_, index) in self.messages.iter().skip(self.written) {
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
            self.fail();
        }
    }

    /// The connection failed: keep what it had not acknowledged, to write again.
    fn fail(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut acks = conn.acks();
            // Replies taken off already count; the rest of the messages go again.
            acks.replies = self.trimmed + (acks.replies - self.trimmed).min(self.written as u64);
            self.done.add(acks);
            let acked = ((acks.replies - self.trimmed) as usize).min(self.written);
            let len: usize = self.messages.drain(..acked).map(|(len, _)| len).sum();
            self.bytes.drain(..len);
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
                return Err(TransportError::Unavailable { message: "cluster_state is not ok".into() });
            }
            PubSubProducer::connect(&endpoint, Vec::new(), 0).await
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
