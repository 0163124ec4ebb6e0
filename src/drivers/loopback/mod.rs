//! The loopback transport: producers hand messages to consumers through
//! memory, in this process, with no Redis. Fire-and-forget like Pub/Sub
//! (a consumer that is away misses what is published meanwhile) and with
//! its faults (disconnect, crash, slow), so a run over it measures the
//! harness itself: its ceiling (`--rate 0`) and its latency floor on this
//! machine, the part of a Redis run's figures that is not Redis's.
//!
//! Written against the driver API alone: [`bus`] (the logs),
//! [`conn`] (a `ProducerConn` and a `ConsumerConn` over them) and
//! [`consumer`] (the consumer task).

pub mod bus;
pub mod conn;
mod consumer;

use super::{
    Capabilities, Consumed, Ctx, Driver, Layout, LocalBoxFuture, Notes, ProducerTask, Registration, StatsCell, Traits,
};
use crate::scenario::TransportKind;
use bus::Bus;
use std::sync::Arc;

/// Loopback as the registry knows it.
pub const REGISTRATION: Registration = Registration {
    kind: TransportKind::Loopback,
    describe: "loopback (in memory, no Redis)",
    // In memory: one process, so no --workers.
    capabilities: Capabilities::NONE,
    traits: Traits {
        retains: false,
        files_per_producer: 0,
        files_per_consumer: 0,
        server: false,
        probe_keys: false,
        probe_pubsub: false,
        compared_by_default: false,
    },
    build: |layout| Box::pin(async move { Ok(Arc::new(Loopback::new(&layout)) as Arc<dyn Driver>) }),
};

/// The run's bus, shared by every producer and consumer.
#[derive(Debug)]
pub struct Loopback {
    bus: Arc<Bus>,
    node_of: Vec<usize>,
    channels: u32,
}

impl Loopback {
    pub fn new(layout: &Layout) -> Loopback {
        let s = &layout.scenario;
        Loopback {
            bus: Arc::new(Bus::new(s.producers, s.channels, s.consumers)),
            node_of: layout.node_of.clone(),
            channels: s.channels,
        }
    }
}

impl Driver for Loopback {
    fn kind(&self) -> TransportKind {
        TransportKind::Loopback
    }

    fn node_of(&self) -> &[usize] {
        &self.node_of
    }

    fn producer(self: Arc<Self>, id: u32, ctx: Arc<Ctx>, notes: Notes) -> ProducerTask {
        let writer = conn::Writer::new(self.bus.clone(), id, self.channels);
        Box::pin(super::produce::run(id, ctx, notes, async move { Ok(writer) }))
    }

    fn consumer(
        self: Arc<Self>,
        id: u32,
        ctx: Arc<Ctx>,
        notes: Notes,
        stats: StatsCell,
    ) -> LocalBoxFuture<'static, Consumed> {
        Box::pin(consumer::run(self.bus.clone(), id, ctx, notes, stats))
    }
}
