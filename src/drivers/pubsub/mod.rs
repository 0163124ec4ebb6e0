//! Redis Pub/Sub: PUBLISH from producers, SUBSCRIBE (or PSUBSCRIBE) on
//! consumers; fire-and-forget, so a consumer that is away or cut off misses
//! what is published meanwhile. Sharded Pub/Sub (`super::sharded`) is the
//! same driver with SPUBLISH and SSUBSCRIBE.

pub mod conn;
mod subscriber;

use super::producer::Producer;
use super::{
    Capabilities, Consumed, Ctx, Driver, Layout, LocalBoxFuture, Notes, ProducerTask, Registration, StatsCell, Traits,
};
use crate::connect::{resp, ConnError, Endpoint};
use crate::scenario::{SubscribeMode, TransportKind};
use crate::target::TargetError;
use std::sync::Arc;

/// Pub/Sub as the registry knows it.
pub const REGISTRATION: Registration = Registration {
    kind: TransportKind::Pubsub,
    describe: "Pub/Sub (PUBLISH, SUBSCRIBE)",
    capabilities: Capabilities { pattern: true, workers: true, ..Capabilities::NONE },
    traits: TRAITS,
    build: |layout| Box::pin(async move { Ok(Arc::new(PubSub::new(layout, false)?) as Arc<dyn Driver>) }),
};

/// Pub/Sub and sharded Pub/Sub: fire-and-forget, one connection per client.
pub const TRAITS: Traits = Traits {
    retains: false,
    files_per_producer: 2,
    files_per_consumer: 1,
    server: true,
    probe_keys: false,
    probe_pubsub: true,
    compared_by_default: true,
};

/// Channel names shared by every connection of a run.
#[derive(Debug, Clone)]
pub struct PubSub {
    pub endpoint: Endpoint,
    /// The masters of a cluster, or just `endpoint`.
    pub nodes: Vec<Endpoint>,
    /// The node (index into `nodes`) that owns each channel.
    pub node_of: Vec<usize>,
    pub channels: Vec<String>,
    /// When set, consumers PSUBSCRIBE to this pattern instead of SUBSCRIBE to each channel.
    pub pattern: Option<String>,
    /// Sharded Pub/Sub: SPUBLISH and SSUBSCRIBE on the node that owns the channel.
    pub sharded: bool,
}

impl PubSub {
    /// A producer writing each channel's messages to the node that owns it.
    pub async fn producer(&self) -> Result<Producer, ConnError> {
        let verb = if self.sharded { "SPUBLISH" } else { "PUBLISH" };
        let prefixes = self.channels.iter().map(|ch| resp::command_head(&[verb.as_bytes(), ch.as_bytes()])).collect();
        let slots: Vec<u16> = self.channels.iter().map(|c| crate::topology::key_slot(c.as_bytes())).collect();
        Producer::connect(&self.nodes, &self.node_of, &slots, verb, prefixes).await
    }
}

impl PubSub {
    /// The driver for the run's channels; `sharded` for SPUBLISH and SSUBSCRIBE.
    pub fn new(layout: Layout, sharded: bool) -> Result<PubSub, TargetError> {
        let server = layout.server()?.clone();
        let s = &layout.scenario;
        Ok(PubSub {
            endpoint: server.endpoint,
            nodes: server.nodes.into_iter().map(|(e, _)| e).collect(),
            node_of: layout.node_of,
            channels: layout.names,
            pattern: (s.subscribe == SubscribeMode::Pattern).then(|| format!("{}*", layout.prefix)),
            sharded,
        })
    }
}

impl Driver for PubSub {
    fn kind(&self) -> TransportKind {
        if self.sharded {
            TransportKind::Sharded
        } else {
            TransportKind::Pubsub
        }
    }

    fn node_of(&self) -> &[usize] {
        &self.node_of
    }

    fn producer(self: Arc<Self>, id: u32, ctx: Arc<Ctx>, notes: Notes) -> ProducerTask {
        Box::pin(async move { super::produce::run(id, ctx, notes, PubSub::producer(&self)).await })
    }

    fn consumer(
        self: Arc<Self>,
        id: u32,
        ctx: Arc<Ctx>,
        notes: Notes,
        stats: StatsCell,
    ) -> LocalBoxFuture<'static, Consumed> {
        Box::pin(subscriber::run(self, id, ctx, notes, stats))
    }
}
