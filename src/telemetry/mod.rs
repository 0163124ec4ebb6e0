//! What the server was doing while a run went on: once a second, on every
//! node, eventbench's own connection asks `INFO` (CPU, memory, clients,
//! commands, Pub/Sub channels) and what matters for the transport
//! (`CLIENT LIST TYPE pubsub` for the subscribers' output buffers; `XLEN`
//! and `XINFO GROUPS` for the run's streams). It runs beside the shares in
//! the process that runs the pipeline (the coordinator of a `--workers`
//! run), never on the hot path. A node that is down, slow or refuses a
//! command gives a row of empty cells for that second, never a failed run.

pub mod sample;

pub use sample::Identity;

use crate::live::Live;
use crate::rows::ServerRow;
use redis::aio::MultiplexedConnection;
use sample::Snapshot;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long one node's sample may take; a later one is missing (empty cells).
pub const SAMPLE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most streams per node whose length and groups are sampled each second:
/// more would make the sampling itself a load. With more, those cells stay empty.
pub const MAX_STREAMS_PER_NODE: usize = 1000;

/// One node to watch: its index among the target's masters, a client, and
/// the run's streams it holds (none for Pub/Sub).
pub struct Probe {
    pub node: u32,
    pub client: Arc<redis::Client>,
    pub streams: Vec<String>,
}

/// The latest sampled second of every node, for a reader that polls while
/// the run goes on (a live view, a metrics endpoint). Written once a second.
#[derive(Debug, Default)]
pub struct Latest(Mutex<Vec<ServerRow>>);

impl Latest {
    /// The latest row of each node that has one, by node.
    pub fn rows(&self) -> Vec<ServerRow> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    fn put(&self, row: &ServerRow) {
        let Ok(mut rows) = self.0.lock() else { return };
        match rows.iter_mut().find(|r| r.node == row.node) {
            Some(r) => *r = row.clone(),
            None => {
                rows.push(row.clone());
                rows.sort_by_key(|r| r.node);
            }
        }
    }
}

/// What the telemetry of a run found.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    /// Which server ran (empty when it did not say, or telemetry was off).
    pub identity: Identity,
    /// `server.csv`: by second, then node.
    pub rows: Vec<ServerRow>,
}

async fn connect(client: &redis::Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(SAMPLE_TIMEOUT))
        .set_response_timeout(Some(SAMPLE_TIMEOUT));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// Which server the node behind `client` is (`INFO server`), within `timeout`;
/// empty if it does not say (refused, or gone).
pub async fn identify(client: &redis::Client, timeout: Duration) -> Identity {
    let ask = async {
        let mut con = connect(client).await.ok()?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut con).await.ok()?;
        Identity::from_info(&info)
    };
    tokio::time::timeout(timeout, ask).await.ok().flatten().unwrap_or_default()
}

/// Samples every node once a second from the start of the measured phase
/// until `done` turns true (the shares have ended). `pubsub`: the transport
/// has subscribers whose output buffers matter. Rows by second, then node.
pub async fn watch(
    probes: Vec<Probe>,
    pubsub: bool,
    live: Arc<Live>,
    mut done: watch::Receiver<bool>,
    latest: Arc<Latest>,
) -> Vec<ServerRow> {
    let phase = loop {
        if *done.borrow() {
            return Vec::new();
        }
        match live.measured_phase() {
            Some(phase) => break phase,
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    };
    let nodes = probes.into_iter().map(|probe| {
        let (live, done, latest) = (live.clone(), done.clone(), latest.clone());
        tokio::spawn(watch_node(probe, pubsub, live, phase, done, latest))
    });
    let nodes: Vec<_> = nodes.collect();
    let mut rows = Vec::new();
    for node in nodes {
        rows.extend(node.await.unwrap_or_default());
    }
    let _ = done.wait_for(|d| *d).await;
    rows.sort_by_key(|r| (r.second, r.node));
    rows
}

/// One node's rows: a snapshot at the start of the phase, then one at the
/// end of each second, each row the change over its second. Every second of
/// the measured phase gets its row, even when the shares end right at the
/// phase's end (a drain with nothing left); the drain's seconds get theirs
/// until the shares end. A stop ends it at once, and so do shares that end
/// before the measured phase does.
async fn watch_node(
    probe: Probe,
    pubsub: bool,
    live: Arc<Live>,
    (start_ns, end_ns): (u64, u64),
    mut done: watch::Receiver<bool>,
    latest: Arc<Latest>,
) -> Vec<ServerRow> {
    let now = || live.now_ns().unwrap_or(0);
    let mut con = None;
    let mut rows = Vec::new();
    // The first snapshot when the phase starts: the first second's rates are over that second alone.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_nanos(start_ns.saturating_sub(now()))) => {}
        _ = done.wait_for(|d| *d) => return rows,
    }
    let mut before = tokio::select! {
        s = take(&probe, &mut con, pubsub, &live) => s,
        _ = done.wait_for(|d| *d) => return rows,
    };
    for second in 0u32.. {
        let due = start_ns + (second as u64 + 1) * 1_000_000_000;
        let until_due = tokio::time::sleep(Duration::from_nanos(due.saturating_sub(now())));
        // A second of the measured phase waits for the run's stop only; the drain's for the shares' end too.
        let measured = due <= end_ns;
        let snapshot = if measured {
            tokio::select! {
                biased;
                _ = until_due => {}
                _ = live.stopped() => break,
                // Shares that ended before this second was due: the run was
                // cut short (a worker given up mid-run), and its seconds end.
                _ = done.wait_for(|d| *d) => break,
            }
            take(&probe, &mut con, pubsub, &live).await
        } else {
            tokio::select! {
                _ = until_due => {}
                _ = done.wait_for(|d| *d) => break,
            }
            tokio::select! {
                s = take(&probe, &mut con, pubsub, &live) => s,
                _ = done.wait_for(|d| *d) => break,
            }
        };
        let row = sample::row(second, probe.node, before.as_ref(), snapshot.as_ref());
        latest.put(&row);
        rows.push(row);
        before = snapshot;
    }
    rows
}

/// One snapshot of the node, within [`SAMPLE_TIMEOUT`]; `None` when it did
/// not answer `INFO` (the connection is opened again next time).
async fn take(probe: &Probe, con: &mut Option<MultiplexedConnection>, pubsub: bool, live: &Live) -> Option<Snapshot> {
    let sampled = tokio::time::timeout(SAMPLE_TIMEOUT, async {
        if con.is_none() {
            *con = Some(connect(&probe.client).await?);
        }
        let c = con.as_mut().expect("connected above");
        let info: String = redis::cmd("INFO").query_async(c).await?;
        let mut snapshot = Snapshot::from_info(live.now_ns().unwrap_or(0), &info);
        if pubsub {
            let list: redis::RedisResult<String> =
                redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(c).await;
            snapshot.omem = list.ok().map(|l| sample::omem_of_client_list(&l));
        }
        if !probe.streams.is_empty() && probe.streams.len() <= MAX_STREAMS_PER_NODE {
            let mut pipe = redis::pipe();
            for key in &probe.streams {
                pipe.cmd("XLEN").arg(key).cmd("XINFO").arg("GROUPS").arg(key);
            }
            // A stream not there (yet, or deleted) refuses XINFO: the cells stay empty.
            if let Ok(replies) = pipe.query_async::<Vec<redis::Value>>(c).await {
                let (mut length, mut lag, mut pending) = (0u64, Some(0u64), 0u64);
                for pair in replies.chunks_exact(2) {
                    length += redis::from_redis_value_ref::<u64>(&pair[0]).unwrap_or(0);
                    let (l, p) = sample::groups_lag_pending(&pair[1]);
                    lag = lag.zip(l).map(|(a, b)| a + b);
                    pending += p;
                }
                (snapshot.stream_length, snapshot.group_lag, snapshot.group_pending) =
                    (Some(length), lag, Some(pending));
            }
        }
        Ok::<_, redis::RedisError>(snapshot)
    })
    .await;
    match sampled {
        Ok(Ok(snapshot)) => Some(snapshot),
        Ok(Err(e)) => {
            // A refusal (an ACL user without INFO) leaves the connection as it was.
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error() {
                *con = None;
            }
            None
        }
        Err(_) => {
            *con = None;
            None
        }
    }
}
