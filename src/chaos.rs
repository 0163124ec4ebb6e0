//! `--kill-node`: a node of the private cluster is killed (SIGKILL: no
//! shutdown, no last write) during the measured phase and restarted on the
//! same port, with the same configuration, nodes.conf and append-only file.

use crate::results::rows::EventRow;
use crate::scenario::KillNode;
use crate::swarm::Live;
use crate::target::{Target, TargetError};
use crate::RunReport;
use std::time::Duration;

/// What happened to the killed node, in ns since the run's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOutage {
    pub node: u32,
    pub down_ns: u64,
    /// When it served again (cluster_state:ok), if it did before the run ended.
    pub up_ns: Option<u64>,
    /// When a consumer first received a message of the node's channels after that.
    pub recovered_ns: Option<u64>,
}

/// Kills and restarts the node on `port` as `k` says; then waits (until the
/// run is over) for the first delivery from its channels.
pub async fn kill_node(
    target: &Target,
    live: &Live,
    k: KillNode,
    port: u16,
    drain: Duration,
) -> Result<NodeOutage, TargetError> {
    let start = loop {
        match live.measure_start_ns.load(std::sync::atomic::Ordering::Relaxed) {
            0 if live.stop_requested() => {
                return Ok(NodeOutage { node: k.node, down_ns: 0, up_ns: None, recovered_ns: None })
            }
            0 => tokio::time::sleep(Duration::from_millis(5)).await,
            ns => break ns,
        }
    };
    let end = live.measure_end_ns.load(std::sync::atomic::Ordering::Relaxed) + drain.as_nanos() as u64;
    let now = || live.now_ns().unwrap_or(0);
    let until = |ns: u64| tokio::time::sleep(Duration::from_nanos(ns.saturating_sub(now())));
    until(start + k.at.as_nanos() as u64).await;
    let mut outage = NodeOutage { node: k.node, down_ns: now(), up_ns: None, recovered_ns: None };
    target.kill_node(port)?;
    until(outage.down_ns + k.down_for.as_nanos() as u64).await;
    target.restart_node(port)?;
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| TargetError::Restart(e.to_string()))?;
    // Up: the process answers (its append-only file loaded). Serving keyed
    // commands again takes Redis longer: a restarted master waits about 2 s
    // before it calls its cluster state ok.
    while now() < end && outage.up_ns.is_none() {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            if redis::cmd("PING").query_async::<String>(&mut con).await.is_ok() {
                outage.up_ns = Some(now());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some(up) = outage.up_ns else { return Ok(outage) };
    while now() < end && !live.stop_requested() {
        if let Some(seen) = live.node_seen_ns(k.node as usize).filter(|&s| s > up) {
            outage.recovered_ns = Some(seen);
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(outage)
}

/// Adds the node's events (`node-down`, `node-up`; `consumer` holds the node's
/// index) and the time to recover to the report.
pub fn report(report: &mut RunReport, o: NodeOutage) {
    if o.down_ns == 0 {
        return;
    }
    let start = report.window.start_ns;
    let at_s = |ns: u64| (ns as f64 - start as f64) / 1e9;
    let node_event = |at: u64, kind: &str, downtime_ms| EventRow {
        at_s: at_s(at),
        consumer: o.node,
        kind: kind.into(),
        downtime_ms,
        lost_during: 0,
    };
    report.events.push(node_event(o.down_ns, "node-down", None));
    if let Some(up) = o.up_ns {
        report.events.push(node_event(up, "node-up", Some((up - o.down_ns) as f64 / 1e6)));
    }
    report.events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    report.summary.recover_ms = o.up_ns.zip(o.recovered_ns).map(|(up, seen)| (seen - up) as f64 / 1e6);
}
