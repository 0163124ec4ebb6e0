//! Faults a scenario injects, in one place: consumer disconnects
//! (`--disconnect`), crashes (`--crash`), slow consumers (`--slow`) and a
//! cluster node killed and restarted (`--kill-node`), as values of one
//! [`Fault`] type; and the one [`EventKind`] every recorded event has, whether
//! the scenario caused it or Redis did (a server-side kill, a moved slot).
//!
//! A new kind of fault is written here: its form ([`forms`]), its variant
//! of [`Fault`], its schedule, its events. The scenario holds the faults as
//! fields ([`Fault::all`] lists them), the drivers ask this module what
//! happens to each consumer, and the pipeline runs the faults that act on
//! servers through [`NodeControl`].

pub mod forms;

pub use forms::{Crash, Disconnect, KillNode, Percent, Slow};

use crate::live::Live;
use crate::stats::Window;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One fault of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// A share of the consumers leaves gracefully and comes back.
    Disconnect(Disconnect),
    /// A share of the consumers stops for good, without acknowledging what it holds.
    Crash(Crash),
    /// A share of the consumers spends a fixed time on each message.
    Slow(Slow),
    /// A share of the consumers stops reading for a while and stays connected
    /// (Streams: a backlog builds in the stream and drains after).
    Pause(Disconnect),
    /// A node of the private cluster is killed and restarted.
    KillNode(KillNode),
}

/// The faults of a scenario and the size of its swarm: what the schedule needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub faults: Vec<Fault>,
    /// Consumers in the whole run (a share selects the first or last ones of all).
    pub consumers: u32,
}

impl Fault {
    /// Every fault of a scenario, in the order the scenario lists them.
    pub fn all(
        disconnect: &[Disconnect],
        crash: &[Crash],
        slow: Option<Slow>,
        kill_node: Option<KillNode>,
        pause: &[Disconnect],
    ) -> Vec<Fault> {
        let mut faults: Vec<Fault> = disconnect.iter().map(|&d| Fault::Disconnect(d)).collect();
        faults.extend(pause.iter().map(|&p| Fault::Pause(p)));
        faults.extend(crash.iter().map(|&c| Fault::Crash(c)));
        faults.extend(slow.map(Fault::Slow));
        faults.extend(kill_node.map(Fault::KillNode));
        faults
    }

    /// The scenario key that declares it, for messages.
    pub fn key(&self) -> &'static str {
        match self {
            Fault::Disconnect(_) => "disconnect",
            Fault::Crash(_) => "crash",
            Fault::Slow(_) => "slow",
            Fault::Pause(_) => "pause",
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

/// So that an event reads like the CSV it came from (`kind == "server-kill"`).
impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
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

impl Plan {
    /// The disconnects and crash consumer `id` takes part in: each selects the
    /// first PCT of the consumers.
    pub fn outages_of(&self, id: u32, window: &Window) -> Vec<Planned> {
        let at = |d: Duration| window.start_ns + d.as_nanos() as u64;
        let n = self.consumers;
        let mut planned: Vec<Planned> = self
            .faults
            .iter()
            .filter_map(|f| match *f {
                Fault::Disconnect(d) if id < d.share.of(n) => {
                    Some(Planned { down_ns: at(d.at), up_ns: Some(at(d.at + d.down_for)) })
                }
                Fault::Crash(c) if id < c.share.of(n) => Some(Planned { down_ns: at(c.at), up_ns: None }),
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

    /// When consumer `id` stops reading and when it reads again (ns since the
    /// epoch), in order: each `--pause` selects the first PCT of the consumers.
    pub fn pauses_of(&self, id: u32, window: &Window) -> Vec<(u64, u64)> {
        let at = |d: Duration| window.start_ns + d.as_nanos() as u64;
        let mut pauses: Vec<(u64, u64)> = self
            .faults
            .iter()
            .filter_map(|f| match *f {
                Fault::Pause(p) if id < p.share.of(self.consumers) => Some((at(p.at), at(p.at + p.down_for))),
                _ => None,
            })
            .collect();
        pauses.sort_unstable();
        pauses
    }

    /// How long consumer `id` spends on each message: the last PCT of the
    /// consumers are the slow ones (the first ones disconnect: the two stay apart when they can).
    pub fn slow_delay(&self, id: u32) -> Option<Duration> {
        self.faults.iter().find_map(|f| match *f {
            Fault::Slow(slow) if id >= self.consumers - slow.share.of(self.consumers) => Some(slow.delay),
            _ => None,
        })
    }

    /// With `--kill-node`: the node whose channels are watched for the first
    /// delivery after its restart, and from when (ns since the epoch: the
    /// planned restart; the node cannot deliver before it).
    pub fn recovery_watch(&self, window: &Window) -> Option<(usize, u64)> {
        self.faults.iter().find_map(|f| match *f {
            Fault::KillNode(k) => Some((k.node as usize, window.start_ns + (k.at + k.down_for).as_nanos() as u64)),
            _ => None,
        })
    }
}

/// Stops and starts the nodes eventbench started itself (the target implements it).
pub trait NodeControl {
    /// Kills the node on `port` at once (SIGKILL).
    fn kill_node(&self, port: u16) -> Result<(), String>;
    /// Starts it again on the same port, with the same configuration and data.
    fn restart_node(&self, port: u16) -> Result<(), String>;
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
    nodes: &impl NodeControl,
    live: &Live,
    k: KillNode,
    port: u16,
    drain: Duration,
) -> Result<Option<NodeOutage>, String> {
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
    nodes.kill_node(port)?;
    // A stop (Ctrl-C, a failure) cuts the outage short: the node is started
    // again at once (a later run on the same cluster needs it), not waited for.
    tokio::select! {
        _ = until(outage.down_ns + k.down_for.as_nanos() as u64) => {}
        _ = live.stopped() => {}
    }
    nodes.restart_node(port)?;
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    // Up: the process answers (its append-only file loaded). Serving keyed
    // commands again takes Redis longer: a restarted master waits about 2 s
    // before it calls its cluster state ok.
    while now() < end && outage.up_ns.is_none() && !live.stop_requested() {
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
    fn a_pause_selects_the_first_consumers_and_keeps_them_connected() {
        let window = Window { start_ns: 1_000, end_ns: 10_000_000_000 };
        let faults = Fault::all(&[], &[], None, None, &["50%@1s+2s".parse().unwrap()]);
        let plan = Plan { faults, consumers: 4 };
        let s = 1_000_000_000;
        assert_eq!(plan.pauses_of(0, &window), [(1_000 + s, 1_000 + 3 * s)]);
        assert_eq!(plan.pauses_of(1, &window), [(1_000 + s, 1_000 + 3 * s)]);
        assert!(plan.pauses_of(2, &window).is_empty());
        assert!(plan.outages_of(0, &window).is_empty(), "a pause is no outage: the connection stays");
    }

    #[test]
    fn every_fault_of_a_scenario_is_one_value() {
        let faults = Fault::all(
            &["50%@1s+1s".parse().unwrap()],
            &["25%@3s".parse().unwrap()],
            Some("25%:1ms".parse().unwrap()),
            None,
            &[],
        );
        let keys: Vec<_> = faults.iter().map(Fault::key).collect();
        assert_eq!(keys, ["disconnect", "crash", "slow"]);
        let plan = Plan { faults, consumers: 4 };
        let window = Window { start_ns: 1_000, end_ns: 10_000_000_000 };
        let planned = plan.outages_of(0, &window);
        assert_eq!(planned.len(), 2, "consumer 0 disconnects, then crashes: {planned:?}");
        assert_eq!(planned[1].up_ns, None);
        assert_eq!(plan.outages_of(2, &window), []);
        assert_eq!((plan.slow_delay(3), plan.slow_delay(2)), (Some(Duration::from_millis(1)), None));
        assert_eq!(plan.recovery_watch(&window), None);
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
