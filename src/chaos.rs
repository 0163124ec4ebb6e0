//! Faults a scenario injects, in one place: consumer disconnects
//! (`--disconnect`), crashes (`--crash`), slow consumers (`--slow`) and a
//! cluster node killed and restarted (`--kill-node`), as values of one
//! [`Fault`] type; and the one [`EventKind`] every recorded event has, whether
//! the scenario caused it or Redis did (a server-side kill, a moved slot).
//!
//! A new kind of fault is a variant here (its schedule, its events) plus its
//! form in the scenario; the drivers ask this module what happens to each
//! consumer, and the pipeline runs the faults that act on servers.

use crate::scenario::{KillNode, Scenario};
use crate::stats::Window;
use crate::target::{Target, TargetError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// A share of the consumers leaves gracefully and comes back.
    Disconnect(crate::scenario::Disconnect),
    /// A share of the consumers stops for good, without acknowledging what it holds.
    Crash(crate::scenario::Crash),
    /// A share of the consumers spends a fixed time on each message.
    Slow(crate::scenario::Slow),
    /// A node of the private cluster is killed and restarted.
    KillNode(KillNode),
}

impl Fault {
    /// Every fault of the scenario, in the order the scenario lists them.
    pub fn all(s: &Scenario) -> Vec<Fault> {
        let mut faults: Vec<Fault> = s.disconnect.iter().map(|&d| Fault::Disconnect(d)).collect();
        faults.extend(s.crash.iter().map(|&c| Fault::Crash(c)));
        faults.extend(s.slow.map(Fault::Slow));
        faults.extend(s.kill_node.map(Fault::KillNode));
        faults
    }

    /// The scenario key that declares it, for messages.
    pub fn key(&self) -> &'static str {
        match self {
            Fault::Disconnect(_) => "disconnect",
            Fault::Crash(_) => "crash",
            Fault::Slow(_) => "slow",
            Fault::KillNode(_) => "kill-node",
        }
    }
}

/// What an event in `events.csv` is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// The scenario disconnected a consumer (`--disconnect`).
    #[default]
    Disconnect,
    /// The server closed a consumer's connection (e.g. output buffer limit exceeded).
    ServerKill,
    /// A sharded channel's slot moved to another node: the server dropped the
    /// subscription, and the consumer subscribes again on the new owner.
    SlotMoved,
    /// The consumer subscribed (or joined its group) again.
    Resubscribed,
    /// The scenario stopped a consumer for good (`--crash`), without acknowledging what it held.
    Crash,
    /// A cluster node was killed (`--kill-node`); the row's `consumer` holds the node's index.
    NodeDown,
    /// The killed node answered again.
    NodeUp,
}

impl EventKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Disconnect => "disconnect",
            EventKind::ServerKill => "server-kill",
            EventKind::SlotMoved => "slot-moved",
            EventKind::Resubscribed => "resubscribed",
            EventKind::Crash => "crash",
            EventKind::NodeDown => "node-down",
            EventKind::NodeUp => "node-up",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A span during which a consumer was not subscribed, with the sequence
/// positions that let the summary attribute each lost message to a cause.
/// Positions are per (producer, channel), indexed like the consumer's ledgers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    pub consumer: u32,
    pub kind: EventKind,
    /// When the consumer stopped being subscribed (for a server kill: when it
    /// first saw the connection closed), ns since the epoch.
    pub closed_ns: u64,
    /// When it was subscribed again, if it was.
    pub resubscribed_ns: Option<u64>,
    /// One past the last sequence it had received when the connection ended.
    pub received: Vec<u64>,
    /// Producers' next sequence when the connection ended: messages between
    /// `received` and here were accepted by Redis for this consumer and never
    /// delivered (lost in the buffer). Equal to `received` for a graceful leave.
    pub closed: Vec<u64>,
    /// Producers' next sequence once it was subscribed again: messages between
    /// `closed` and here were published while it was not subscribed.
    /// (All three are empty for Streams, which keeps what absent consumers miss.)
    pub resubscribed: Option<Vec<u64>>,
}

/// A scenario event for one consumer: down at `down_ns`, back at `up_ns`
/// (`None`: a crash, gone for good). Times in ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Planned {
    pub down_ns: u64,
    pub up_ns: Option<u64>,
}

/// The disconnects and crash consumer `id` takes part in: each selects the
/// first PCT of the consumers.
pub fn planned_outages(s: &Scenario, id: u32, window: &Window) -> Vec<Planned> {
    let at = |d: Duration| window.start_ns + d.as_nanos() as u64;
    let mut planned: Vec<Planned> = Fault::all(s)
        .into_iter()
        .filter_map(|f| match f {
            Fault::Disconnect(d) if id < d.share.of(s.consumers) => {
                Some(Planned { down_ns: at(d.at), up_ns: Some(at(d.at + d.down_for)) })
            }
            Fault::Crash(c) if id < c.share.of(s.consumers) => Some(Planned { down_ns: at(c.at), up_ns: None }),
            _ => None,
        })
        .collect();
    planned.sort_unstable();
    // Nothing happens to a consumer after it crashed.
    if let Some(crash) = planned.iter().position(|p| p.up_ns.is_none()) {
        planned.truncate(crash + 1);
    }
    planned
}

/// How long consumer `id` spends on each message: the last PCT of the
/// consumers are the slow ones (the first ones disconnect: the two stay apart when they can).
pub fn slow_delay(s: &Scenario, id: u32) -> Option<Duration> {
    s.slow.filter(|slow| id >= s.consumers - slow.share.of(s.consumers)).map(|slow| slow.delay)
}

/// With `--kill-node`: the node whose channels are watched for the first
/// delivery after its restart, and from when (ns since the epoch: the
/// planned restart; the node cannot deliver before it).
pub fn recovery_watch(s: &Scenario, window: &Window) -> Option<(usize, u64)> {
    s.kill_node.map(|k| (k.node as usize, window.start_ns + (k.at + k.down_for).as_nanos() as u64))
}

/// What happened to the killed node, in ns since the run's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOutage {
    pub node: u32,
    pub down_ns: u64,
    /// When it served again (answered PING), if it did before the run ended.
    pub up_ns: Option<u64>,
}

/// `--kill-node`: kills the node on `port` (SIGKILL: no shutdown, no last
/// write) `k.at` into the measured phase and restarts it `k.down_for` later
/// on the same port, with the same configuration, nodes.conf and append-only
/// file; then waits (until the drain ends) for it to answer. The times come
/// from `live`, the run's clock, in every mode.
pub async fn kill_node(
    target: &Target,
    live: &crate::live::Live,
    k: KillNode,
    port: u16,
    drain: Duration,
) -> Result<Option<NodeOutage>, TargetError> {
    let (start, end) = loop {
        match live.measured_phase() {
            None if live.stop_requested() => return Ok(None),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
            Some(phase) => break phase,
        }
    };
    let end = end + drain.as_nanos() as u64;
    let now = || live.now_ns().unwrap_or(0);
    let until = |ns: u64| tokio::time::sleep(Duration::from_nanos(ns.saturating_sub(now())));
    tokio::select! {
        _ = until(start + k.at.as_nanos() as u64) => {}
        _ = live.stopped() => return Ok(None),
    }
    let mut outage = NodeOutage { node: k.node, down_ns: now(), up_ns: None };
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
    Ok(Some(outage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_of_a_scenario_is_one_value() {
        let s = Scenario {
            consumers: 4,
            disconnect: vec!["50%@1s+1s".parse().unwrap()],
            crash: vec!["25%@3s".parse().unwrap()],
            slow: Some("25%:1ms".parse().unwrap()),
            ..Scenario::default()
        };
        let keys: Vec<_> = Fault::all(&s).iter().map(Fault::key).collect();
        assert_eq!(keys, ["disconnect", "crash", "slow"]);
        let window = Window { start_ns: 1_000, end_ns: 10_000_000_000 };
        let planned = planned_outages(&s, 0, &window);
        assert_eq!(planned.len(), 2, "consumer 0 disconnects, then crashes: {planned:?}");
        assert_eq!(planned[1].up_ns, None);
        assert_eq!(planned_outages(&s, 2, &window), []);
        assert_eq!((slow_delay(&s, 3), slow_delay(&s, 2)), (Some(Duration::from_millis(1)), None));
    }

    #[test]
    fn event_kinds_read_back_as_written() {
        for kind in [EventKind::ServerKill, EventKind::NodeDown, EventKind::SlotMoved] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), kind);
        }
    }
}
