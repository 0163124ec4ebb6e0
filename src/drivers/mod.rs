//! How messages travel through Redis: one driver per transport, behind the
//! [`Driver`] trait. The swarm never names a transport: it asks the driver
//! for producer connections and consumer tasks, and validation asks the
//! driver's [`Capabilities`] whether it can honour the scenario.
//!
//! Adding a transport is one module here (its [`Registration`]: a kind, what
//! it supports, how to build it on a target) plus its line in [`REGISTRY`].

pub mod consume;
pub mod ctx;
pub mod loopback;
pub mod produce;
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
use serde::{Deserialize, Serialize};
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
    /// Runs producer `id` from connecting until it is done: the framework's
    /// producer loop ([`produce::run`]) over this transport's connection. The
    /// loop is generic over the connection (no allocation or dynamic call per
    /// message); the swarm sees only this task.
    fn producer(self: Arc<Self>, id: u32, ctx: Arc<Ctx>, notes: Notes) -> ProducerTask;
    /// Runs consumer `id` from connecting until the run finishes: the
    /// framework's consumer loop ([`consume::run`]) over this transport's
    /// [`consume::Subscriber`]. It sends [`Note::Ready`] once subscribed (or
    /// [`Note::Failed`]), then records every delivery into `stats` and its
    /// own or its unit's accounting.
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
    /// Deliveries each message makes: one per unit when consumers share
    /// units (a Streams group), else one per consumer. Sizes the swarm's threads.
    fn fanout(&self, s: &Scenario) -> u32 {
        match self.shared_units(s) {
            0 => s.consumers,
            units => units,
        }
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

/// A producer task: its counts, or `None` if it never connected.
pub type ProducerTask = LocalBoxFuture<'static, Option<crate::stats::ProducerStats>>;

/// What a driver's side tasks measured, in the terms the results know: each
/// field feeds named columns (or the loss attribution), whatever transport
/// fills it. A transport without side tasks leaves it empty, and those
/// columns stay 0 or empty. Mergeable: shares' results add up ([`SideResults::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideResults {
    /// Messages the transport holds for consumers that have not acknowledged
    /// them, at the end of each measured second (`timeseries.csv` `backlog`,
    /// `summary.csv` `backlog_max`).
    #[serde(default)]
    pub backlog: Vec<u64>,
    /// A reader that started from the beginning and caught up (`--replay-at`:
    /// `replay_catchup_s`, `replay_rate`).
    #[serde(default)]
    pub replay: Option<Replay>,
    /// For a transport that retains messages ([`Traits::retains`]): per
    /// (producer, channel), the first sequence it still held when the run
    /// finished; anything older left it (trimmed or deleted). `None`: unknown.
    #[serde(default)]
    pub retained: Option<Vec<u64>>,
}

impl SideResults {
    /// Takes in another share's side results: backlogs add second by second,
    /// the one share that ran a replay or read the retention gives it.
    pub fn merge(&mut self, o: SideResults) {
        if self.backlog.len() < o.backlog.len() {
            self.backlog.resize(o.backlog.len(), 0);
        }
        self.backlog.iter_mut().zip(&o.backlog).for_each(|(a, b)| *a += b);
        self.replay = self.replay.or(o.replay);
        self.retained = self.retained.take().or(o.retained);
    }
}

/// A reader that replays a transport's retained messages from the beginning (`--replay-at`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// When the reader started, ns since the epoch.
    pub started_ns: u64,
    /// Messages retained when it started.
    pub backlog: u64,
    /// Messages it read.
    pub read: u64,
    /// How long it took to reach the live end (none if it never did).
    pub catchup_ns: Option<u64>,
    /// Messages it had read by then.
    pub caught_up_read: u64,
}

/// A driver's side tasks, running until the finish signal.
#[derive(Default)]
pub struct SideTasks {
    pub backlog: Option<tokio::task::JoinHandle<Vec<u64>>>,
    pub replay: Option<tokio::task::JoinHandle<Option<Replay>>>,
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
    /// Splitting the swarm over worker processes (`--workers`).
    pub workers: bool,
    /// Deep backlogs: how many entries a read takes (`--read-count`), consumers that stop reading a while (`--pause`).
    pub backlog: bool,
}

impl Capabilities {
    /// Nothing beyond the plain run, to lay a transport's own over.
    pub const NONE: Capabilities = Capabilities {
        pattern: false,
        groups: false,
        maxlen: false,
        replay: false,
        claim: false,
        workers: false,
        backlog: false,
    };
}

/// What the rest of the harness needs to know of a transport, declared by
/// it rather than branched on elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct Traits {
    /// It keeps a message for a consumer that is away (until read, trimmed
    /// or deleted), so what a consumer has not read is undelivered, never
    /// lost for being unread; results attribute loss by this.
    pub retains: bool,
    /// Open files each producer and each consumer takes, in the process
    /// that runs it (and on a private server: one per connection).
    pub files_per_producer: u64,
    pub files_per_consumer: u64,
    /// Whether it runs on a Redis server. Without one, none is started,
    /// reached, configured or sampled, and options about one are refused.
    pub server: bool,
    /// Server telemetry: sample the run's keys (XINFO GROUPS, XLEN).
    pub probe_keys: bool,
    /// Server telemetry: the subscribers' output buffers (CLIENT LIST TYPE pubsub).
    pub probe_pubsub: bool,
    /// One of the transports `compare` runs when none is named.
    pub compared_by_default: bool,
}

impl Traits {
    /// Open files for `producers` and `consumers` of this transport, with
    /// some to spare (the process's own files, side and control connections).
    pub fn open_files(&self, producers: u32, consumers: u32) -> u64 {
        self.files_per_producer * producers as u64 + self.files_per_consumer * consumers as u64 + 64
    }
}

/// Where a run's channels (or streams) are: found by the pipeline on the
/// target, handed to a transport to build its driver.
#[derive(Debug, Clone)]
pub struct Layout {
    pub scenario: Scenario,
    /// The Redis it runs on; `None` for a transport that needs none ([`Traits::server`]).
    pub server: Option<ServerLayout>,
    /// The node that owns each channel (all 0 without a server).
    pub node_of: Vec<usize>,
    /// The run's channel (or stream key) names.
    pub names: Vec<String>,
    /// What every name of the run starts with.
    pub prefix: String,
}

/// The Redis a run's transport talks to.
#[derive(Debug, Clone)]
pub struct ServerLayout {
    /// The URL as given (shown redacted in messages).
    pub url: String,
    /// The seed's data endpoint.
    pub endpoint: Endpoint,
    /// The seed's client for the redis crate (Streams consumers, side connections).
    pub client: Arc<redis::Client>,
    /// The masters: one for a single server.
    pub nodes: Vec<(Endpoint, Arc<redis::Client>)>,
}

impl Layout {
    /// The server of a transport that declared it needs one (setup always gives it one).
    pub fn server(&self) -> Result<&ServerLayout, TargetError> {
        self.server.as_ref().ok_or_else(|| TargetError::Unreachable {
            url: String::new(),
            message: format!("{} needs a Redis server", registration(self.scenario.transport).describe),
        })
    }
}

/// A driver being built on a target.
pub type Building = LocalBoxFuture<'static, Result<Arc<dyn Driver>, TargetError>>;

/// A transport as the registry knows it.
pub struct Registration {
    pub kind: TransportKind,
    /// What it is, for messages: its name and commands.
    pub describe: &'static str,
    pub capabilities: Capabilities,
    pub traits: Traits,
    /// Builds the driver for a run on the target described by the layout
    /// (checking first that the target can carry this transport).
    pub build: fn(Layout) -> Building,
}

/// Every transport eventbench drives.
pub const REGISTRY: &[Registration] =
    &[pubsub::REGISTRATION, sharded::REGISTRATION, streams::REGISTRATION, loopback::REGISTRATION];

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
    let asks: [(&'static str, bool, bool, &str); 7] = [
        ("subscribe", s.subscribe == SubscribeMode::Pattern, caps.pattern, "pattern subscriptions"),
        ("groups", s.groups > 0, caps.groups, "consumer groups"),
        ("maxlen", s.maxlen.is_some(), caps.maxlen, "trimming"),
        ("replay-at", s.replay_at.is_some(), caps.replay, "a replay group"),
        ("claim-idle", s.claim_idle != defaults.claim_idle, caps.claim, "claiming idle entries"),
        ("read-count", s.read_count.is_some(), caps.backlog, "reads of a set COUNT"),
        (
            "pause",
            !s.pause.is_empty(),
            caps.backlog,
            "pauses that keep the connection (a consumer that stops reading is cut off by its output-buffer limit)",
        ),
    ];
    for (key, asked, supported, what) in asks {
        if asked && !supported {
            let describe = registration(s.transport).describe;
            let message = format!("{describe} has no {what}; use {}", supporters(key));
            return Err(ScenarioError::Invalid { key, message });
        }
    }
    if split && !caps.workers {
        let describe = registration(s.transport).describe;
        let message = format!("{describe} runs in one process: it cannot be split over --workers");
        return Err(ScenarioError::Invalid { key: "workers", message });
    }
    check_server(s)?;
    if split && (s.groups > 0 || s.replay_at.is_some()) {
        let key = if s.groups > 0 { "groups" } else { "replay-at" };
        let message =
            "--groups and --replay-at run in one process only (a group's members are not split over workers yet)";
        return Err(ScenarioError::Invalid { key, message: message.into() });
    }
    Ok(())
}

/// A transport without a server refuses every option about one.
fn check_server(s: &Scenario) -> Result<(), ScenarioError> {
    let reg = registration(s.transport);
    if reg.traits.server {
        return Ok(());
    }
    let defaults = Scenario::default();
    let asks: [(&'static str, bool); 10] = [
        ("url", s.url.is_some()),
        ("cluster", s.cluster),
        ("private-cluster", s.private_cluster > 0),
        ("redis-server", s.redis_server.is_some()),
        ("redis-config", !s.redis_config.is_empty()),
        ("kill-node", s.kill_node.is_some()),
        ("user", s.user.is_some()),
        ("password", s.password.is_some()),
        ("tls-ca", s.tls_ca.is_some()),
        ("tls-insecure", s.tls_insecure != defaults.tls_insecure),
    ];
    match asks.into_iter().find(|(_, asked)| *asked) {
        Some((key, _)) => {
            let message = format!("{} runs on no Redis server: --{key} has nothing to act on", reg.describe);
            Err(ScenarioError::Invalid { key, message })
        }
        None => Ok(()),
    }
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
                "read-count" | "pause" => c.backlog,
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
    /// Appends one message to the pending write: `payload` (its length is the
    /// message's), with the header written over its first bytes.
    fn queue(&mut self, channel: u32, header: &Header, payload: &[u8]);
    /// Writes everything queued in one pipelined write.
    fn flush(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Resolves when the connection has failed (closed by the server, or no
    /// reply for too long); pending while it is healthy. Lets an idle producer
    /// notice a dead server without waiting for its next write.
    fn failure(&mut self) -> impl Future<Output = ConnError>;
    /// Hands over this process's delivery counters: while they move, a
    /// server silent on this connection is busy, not stopped (a backlog is
    /// not a loss). Nothing to do for a connection that cannot stall.
    fn watch_deliveries(&mut self, _live: std::sync::Arc<crate::live::Live>) {}
    /// Marks which messages (by index on this connection) are in the measured phase,
    /// so that acknowledgements are counted for those only.
    fn set_measured(&mut self, first: u64, end: u64);
    /// Waits (at most `timeout`) for the replies to every message written, and
    /// returns what was acknowledged, refused and left unanswered.
    fn finish(self, timeout: std::time::Duration) -> impl Future<Output = Finished>;
}

/// One consumer's connection: fill a buffer from the socket, then take the
/// messages from it one by one. A consumer that stops taking stops reading, so
/// a slow consumer is slow where Redis can see it. The framework's consumer
/// loop ([`consume::run`]) drives it; a transport implements this and
/// [`consume::Subscriber`] (how it connects).
#[allow(async_fn_in_trait)]
pub trait ConsumerConn {
    /// The next complete message already read, if any.
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError>;
    /// Reads more bytes from the socket (waits until some arrive). The
    /// server closing the connection is `Closed` (or `Io`): the loop records
    /// a server kill and reconnects; any other error ends the run.
    fn fill(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Asks the server to stop sending (a graceful leave); messages already on
    /// their way still arrive through [`ConsumerConn::next`] until
    /// [`ConsumerConn::has_left`] turns true.
    fn start_leaving(&mut self) -> impl Future<Output = Result<(), ConnError>>;
    /// Whether the server confirmed the leave.
    fn has_left(&self) -> bool;
    /// After each read batch was taken, and at the end of the run: adds what
    /// the transport counts itself to the stats the deliveries went into
    /// (Streams: entries redelivered, entries acknowledged).
    fn settle(&mut self, _stats: &mut crate::stats::ConsumerStats) {}
    /// A change in the channels this connection carries (a sharded consumer's
    /// connection to one node closed, or came back), if any.
    fn take_change(&mut self) -> Option<consume::ShardChange> {
        None
    }
    /// Whether the server has already closed the connection, found without
    /// waiting (at the end of the run: a close already in is still a server kill).
    fn closed_now(&mut self) -> bool {
        false
    }
    /// A crash: gone at once, without a word (Streams first takes one more
    /// batch into its pending list, never to be acknowledged).
    fn crash(self) -> impl Future<Output = ()>
    where
        Self: Sized,
    {
        async move { drop(self) }
    }
}
