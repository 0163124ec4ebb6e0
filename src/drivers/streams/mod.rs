//! Redis Streams: producers XADD through the same pipelined writer as
//! PUBLISH; consumers are group members ([`member`]) that read with
//! XREADGROUP, acknowledge with XACK and claim with XAUTOCLAIM; the backlog
//! sampler and the replay group run beside them ([`side`]). A message Redis
//! keeps in a stream is never lost for being unread.

pub mod conn;
mod member;
pub mod reply;
pub mod side;

pub use conn::Streams;

use super::{
    Capabilities, Consumed, ConsumerOutput, Ctx, Driver, LocalBoxFuture, Notes, ProducerTask, Registration, SideTasks,
    StatsCell, Traits,
};
use crate::chaos::Outage;
use crate::scenario::{Scenario, TransportKind};
use crate::stats::Window;
use std::sync::Arc;

/// Entries per XREADGROUP and XAUTOCLAIM unless `--read-count` says otherwise.
pub const BATCH: usize = 256;

/// Streams as the registry knows it.
pub const REGISTRATION: Registration = Registration {
    kind: TransportKind::Streams,
    describe: "Streams (XADD, XREADGROUP)",
    capabilities: Capabilities {
        pattern: false,
        groups: true,
        maxlen: true,
        replay: true,
        claim: true,
        workers: true,
        backlog: true,
    },
    // Its consumers read on a connection of their own beside the redis crate's.
    traits: Traits {
        retains: true,
        files_per_producer: 2,
        files_per_consumer: 2,
        server: true,
        probe_keys: true,
        probe_pubsub: false,
        compared_by_default: true,
    },
    build: |layout| {
        Box::pin(async move {
            let server = layout.server()?.clone();
            let s = &layout.scenario;
            Ok(Arc::new(Streams {
                endpoint: server.endpoint,
                client: server.client,
                nodes: server.nodes,
                node_of: layout.node_of,
                keys: layout.names,
                maxlen: s.maxlen,
                batch: s.read_count.map_or(BATCH, |n| n as usize),
            }) as Arc<dyn Driver>)
        })
    },
};

impl Driver for Streams {
    fn kind(&self) -> TransportKind {
        TransportKind::Streams
    }

    fn node_of(&self) -> &[usize] {
        &self.node_of
    }

    fn producer(self: Arc<Self>, id: u32, ctx: Arc<Ctx>, notes: Notes) -> ProducerTask {
        Box::pin(async move { super::produce::run(id, ctx, notes, Streams::producer(&self)).await })
    }

    fn consumer(
        self: Arc<Self>,
        id: u32,
        ctx: Arc<Ctx>,
        notes: Notes,
        stats: StatsCell,
    ) -> LocalBoxFuture<'static, Consumed> {
        Box::pin(member::run(self, id, ctx, notes, stats))
    }

    fn shared_units(&self, s: &Scenario) -> u32 {
        member::unit_count(s)
    }

    fn unit_outputs(&self, ctx: &Ctx, outages: Vec<Outage>) -> Vec<ConsumerOutput> {
        member::unit_outputs(ctx, outages)
    }

    fn side_tasks(&self, ctx: &Arc<Ctx>, window: Window) -> SideTasks {
        side::start(self, ctx, window)
    }

    /// The run's streams hold every message it sent: delete them, every node
    /// at once, so that a node that stopped answering (SIGSTOP, a cut
    /// network) holds only itself up, never the others' cleanup. DEL, not
    /// UNLINK: DEL is among the commands an ACL user for Streams is told to
    /// grant (docs), and a refused UNLINK stays in the server's ACL LOG.
    fn cleanup(&self) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let mut nodes = tokio::task::JoinSet::new();
            for (node, (e, _)) in self.nodes.iter().enumerate() {
                let keys: Vec<String> =
                    self.keys.iter().zip(&self.node_of).filter(|(_, &n)| n == node).map(|(k, _)| k.clone()).collect();
                let endpoint = e.clone();
                nodes.spawn(async move {
                    let Ok(mut con) = endpoint.connect().await else { return };
                    let mut args: Vec<&[u8]> = vec![b"DEL"];
                    args.extend(keys.iter().map(|k| k.as_bytes()));
                    let _ = con.query(&args, "DEL").await;
                });
            }
            while nodes.join_next().await.is_some() {}
        })
    }
}
