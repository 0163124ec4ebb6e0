//! How messages travel through Redis: one driver per transport, behind the
//! [`Driver`] trait. The swarm never names a transport: it asks the driver
//! for producer connections and consumer tasks, and validation asks the
//! driver's [`Capabilities`] whether it can honour the scenario.
//!
//! Adding a transport is one module here (its [`Registration`]: a kind, what
//! it supports, how to build it on a target) plus its line in [`REGISTRY`].

pub mod ctx;
pub mod producer;
pub mod pubsub;
pub mod sharded;
pub mod streams;

pub use ctx::{Consumed, ConsumerOutput, Ctx, Note, Notes, StatsCell};

use crate::connect::{ConnError, Endpoint};
use crate::scenario::{Scenario, ScenarioError, SubscribeMode, TransportKind};
use crate::stats::Window;
use crate::target::TargetError;
use crate::wire::Header;
use producer::Producer;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A future run on the current thread (the swarm's tasks are thread-local).
pub type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One transport, set up on one target for one run.
pub trait Driver: Send + Sync + std::fmt::Debug + 'static {
    /// Which transport this is.
    fn kind(&self) -> TransportKind;
    /// The cluster node (index into the run's masters) that owns each channel; all 0 on one server.
    fn node_of(&self) -> &[usize];
    /// Opens one producer connection (one per node of a cluster).
    fn producer(&self) -> LocalBoxFuture<'_, Result<Producer, ConnError>>;
    /// Runs consumer `id` from connecting until the run finishes: it sends
    /// [`Note::Ready`] once subscribed (or [`Note::Failed`]), then records
    /// every delivery into `stats` and its own or its unit's accounting.
    fn consumer(
        self: Arc<Self>,
        id: u32,
        ctx: Arc<Ctx>,
        notes: Notes,
        stats: StatsCell,
    ) -> LocalBoxFuture<'static, Consumed>;
    /// How many accounting units several consumers share (Streams groups); 0
    /// when each consumer accounts for itself.
    fn shared_units(&self, _s: &Scenario) -> u32 {
        0
    }
    /// The shared units' results, each with its members' outages.
    fn unit_outputs(&self, _ctx: &Ctx, _outages: Vec<crate::chaos::Outage>) -> Vec<ConsumerOutput> {
        Vec::new()
    }
    /// Tasks beside the swarm for the measured phase and the drain (backlog
    /// sampling, a replay group), in the one share that runs them.
    fn side_tasks(&self, _ctx: &Arc<Ctx>, _window: Window) -> SideTasks {
        SideTasks::default()
    }
    /// Removes what the run left on the server (best effort).
    fn cleanup(&self) -> LocalBoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What a driver's side tasks measured.
#[derive(Debug, Default)]
pub struct SideResults {
    /// Entries not yet acknowledged, summed over groups, at the end of each measured second.
    pub backlog: Vec<u64>,
    /// The replay group's progress, with `--replay-at`.
    pub replay: Option<streams::side::Replay>,
    /// Streams: per (producer, channel), the first sequence still in the
    /// stream when the run finished; anything older left it (trimmed or deleted).
    pub retained: Option<Vec<u64>>,
}

/// A driver's side tasks, running until the finish signal.
#[derive(Default)]
pub struct SideTasks {
    pub backlog: Option<tokio::task::JoinHandle<Vec<u64>>>,
    pub replay: Option<tokio::task::JoinHandle<Option<streams::side::Replay>>>,
    pub retained: Option<tokio::task::JoinHandle<Option<Vec<u64>>>>,
}

impl SideTasks {
    /// Waits (at most `limit`) for the side tasks to wrap up after the finish
    /// signal; one still waiting for Redis then is stopped, with nothing to show.
    pub async fn finish(self, limit: std::time::Duration) -> SideResults {
        let deadline = tokio::time::Instant::now() + limit;
        let backlog = match self.backlog {
            Some(h) => within(h, deadline).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let replay = match self.replay {
            Some(h) => within(h, deadline).await.flatten(),
            None => None,
        };
        let retained = match self.retained {
            Some(h) => within(h, deadline).await.flatten(),
            None => None,
        };
        SideResults { backlog, replay, retained }
    }
}

/// The task's result if it ends by `deadline`; else it is aborted.
async fn within<T>(mut h: tokio::task::JoinHandle<T>, deadline: tokio::time::Instant) -> Option<T> {
    match tokio::time::timeout_at(deadline, &mut h).await {
        Ok(r) => r.ok(),
        Err(_) => {
            h.abort();
            None
        }
    }
}

/// What a transport can do; validation refuses, up front, a scenario that asks for more.
#[derive(Debug, Clone, Copy, Default)]
pub struct Capabilities {
    /// One pattern subscription for all channels (`--subscribe pattern`).
    pub pattern: bool,
    /// Consumer groups sharing the work (`--groups`), in one process.
    pub groups: bool,
    /// Trimming (`--maxlen`).
    pub maxlen: bool,
    /// A group replaying the streams from the beginning (`--replay-at`), in one process.
    pub replay: bool,
    /// Taking over what crashed consumers held (`--claim-idle`).
    pub claim: bool,
}

/// Where a run's channels (or streams) are: found by the pipeline on the
/// target, handed to a transport to build its driver.
#[derive(Debug, Clone)]
pub struct Layout {
    pub scenario: Scenario,
    /// The URL as given (shown redacted in messages).
    pub url: String,
    /// The seed's data endpoint.
    pub endpoint: Endpoint,
    /// The seed's client for the redis crate (Streams consumers, side connections).
    pub client: Arc<redis::Client>,
    /// The masters: one for a single server.
    pub nodes: Vec<(Endpoint, Arc<redis::Client>)>,
    /// The node that owns each channel.
    pub node_of: Vec<usize>,
    /// The run's channel (or stream key) names.
    pub names: Vec<String>,
    /// What every name of the run starts with.
    pub prefix: String,
}

/// A driver being built on a target.
pub type Building = LocalBoxFuture<'static, Result<Arc<dyn Driver>, TargetError>>;

/// A transport as the registry knows it.
pub struct Registration {
    pub kind: TransportKind,
    /// What it is, for messages: its name and commands.
    pub describe: &'static str,
    pub capabilities: Capabilities,
    /// Builds the driver for a run on the target described by the layout
    /// (checking first that the target can carry this transport).
    pub build: fn(Layout) -> Building,
}

/// Every transport eventbench drives.
pub const REGISTRY: &[Registration] = &[pubsub::REGISTRATION, sharded::REGISTRATION, streams::REGISTRATION];

/// The registration of `kind`.
pub fn registration(kind: TransportKind) -> &'static Registration {
    REGISTRY.iter().find(|r| r.kind == kind).expect("every transport kind is registered")
}

/// Whether the scenario's transport can honour everything the scenario asks,
/// in one process or split over `--workers` (`split`): an option it cannot
/// honour is refused before anything runs, never ignored.
pub fn check(s: &Scenario, split: bool) -> Result<(), ScenarioError> {
    let caps = registration(s.transport).capabilities;
    let defaults = Scenario::default();
    let asks: [(&'static str, bool, bool, &str); 5] = [
        ("subscribe", s.subscribe == SubscribeMode::Pattern, caps.pattern, "pattern subscriptions"),
        ("groups", s.groups > 0, caps.groups, "consumer groups"),
        ("maxlen", s.maxlen.is_some(), caps.maxlen, "trimming"),
        ("replay-at", s.replay_at.is_some(), caps.replay, "a replay group"),
        ("claim-idle", s.claim_idle != defaults.claim_idle, caps.claim, "claiming idle entries"),
    ];
    for (key, asked, supported, what) in asks {
        if asked && !supported {
            let describe = registration(s.transport).describe;
            let message = format!("{describe} has no {what}; use {}", supporters(key));
            return Err(ScenarioError::Invalid { key, message });
        }
    }
    if split && (s.groups > 0 || s.replay_at.is_some()) {
        let key = if s.groups > 0 { "groups" } else { "replay-at" };
        let message =
            "--groups and --replay-at run in one process only (a group's members are not split over workers yet)";
        return Err(ScenarioError::Invalid { key, message: message.into() });
    }
    Ok(())
}

/// The transports that support the option `key`, for messages.
fn supporters(key: &str) -> String {
    let names: Vec<String> = REGISTRY
        .iter()
        .filter(|r| {
            let c = r.capabilities;
            match key {
                "subscribe" => c.pattern,
                "groups" => c.groups,
                "maxlen" => c.maxlen,
                "replay-at" => c.replay,
                _ => c.claim,
            }
        })
        .map(|r| format!("--transport {}", r.kind))
        .collect();
    names.join(" or ")
}

/// A message as a consumer sees it, borrowed from the connection's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The payload, header first.
    pub payload: &'a [u8],
}

/// What the server acknowledged of a producer's messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acks {
    /// Replies received, one per message sent.
    pub replies: u64,
    /// For the measured messages: the sum of PUBLISH's reply (subscribers reached).
    pub reached: u64,
    /// Error replies.
    pub errors: u64,
    /// Error replies that were cluster redirections (MOVED, ASK).
    pub redirections: u64,
}

impl Acks {
    /// Adds another connection's acknowledgements.
    pub fn add(&mut self, o: Acks) {
        self.replies += o.replies;
        self.reached += o.reached;
        self.errors += o.errors;
        self.redirections += o.redirections;
    }
}

/// What a producer's connection knew of its messages at the end.
#[derive(Debug)]
pub struct Finished {
    /// The replies that arrived.
    pub acks: Acks,
    /// Indices (counted from the producer's first message) of the writes Redis refused.
    pub refused: Vec<u64>,
    /// Which messages Redis answered.
    pub answered: Answered,
    /// Why the connection ended early, if it did (Redis gone, stalled, or a refusal).
    pub error: Option<ConnError>,
}

/// Which of a producer's messages Redis answered (refused ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Every message with an index below this one (one connection answers in order).
    Prefix(u64),
    /// Per channel: the index of the first message not answered (`None`: all were).
    PerChannel(Vec<Option<u64>>),
}

/// One producer's connection: queue messages, then write them in one go.
#[allow(async_fn_in_trait)]
pub trait ProducerConn {
    /// Appends one message to the pending write; `payload_len` bytes in all.
    fn queue(&mut self, channel: u32, header: &Header);
    /// Writes everything queued in one pipelined write.
    fn flush(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Resolves when the connection has failed (closed by the server, or no
    /// reply for too long); pending while it is healthy. Lets an idle producer
    /// notice a dead server without waiting for its next write.
    fn failure(&mut self) -> impl Future<Output = ConnError>;
    /// Marks which messages (by index on this connection) are in the measured phase,
    /// so that acknowledgements are counted for those only.
    fn set_measured(&mut self, first: u64, end: u64);
    /// Waits (at most `timeout`) for the replies to every message written, and
    /// returns what was acknowledged, refused and left unanswered.
    fn finish(self, timeout: std::time::Duration) -> impl Future<Output = Finished>;
}

/// One consumer's connection: fill a buffer from the socket, then take the
/// messages from it one by one. A consumer that stops taking stops reading, so
/// a slow consumer is slow where Redis can see it.
#[allow(async_fn_in_trait)]
pub trait ConsumerConn {
    /// The next complete message already read, if any.
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError>;
    /// Reads more bytes from the socket (waits until some arrive).
    fn fill(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Asks the server to stop sending (a graceful leave); messages already on
    /// their way still arrive through [`ConsumerConn::next`] until
    /// [`ConsumerConn::has_left`] turns true.
    fn start_leaving(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Whether the server confirmed the leave.
    fn has_left(&self) -> bool;
}
