//! A loopback consumer's side of the framework's consumer loop
//! ([`consume::run`]): it subscribes to the bus, and knows exactly where the
//! producers were when it left. The loop gives it the faults as it gives
//! every transport: a disconnect drains what was published before it, then
//! misses what is published while it is away; a crash loses what it had not
//! read; a consumer that falls a whole log behind is cut off (a server kill)
//! and loses what was waiting for it.

use super::bus::Bus;
use super::conn::Reader;
use crate::connect::ConnError;
use crate::drivers::consume;
use crate::drivers::{Consumed, Ctx, Notes, StatsCell};
use std::sync::Arc;

/// Runs consumer `id` until the run finishes.
pub(super) async fn run(bus: Arc<Bus>, id: u32, ctx: Arc<Ctx>, notes: Notes, stats: StatsCell) -> Consumed {
    consume::run(id, ctx, notes, stats, Side { bus, id }).await
}

/// How a loopback consumer subscribes.
struct Side {
    bus: Arc<Bus>,
    id: u32,
}

impl consume::Subscriber for Side {
    type Conn = Reader;

    async fn connect(&mut self, _again: bool) -> Result<Reader, ConnError> {
        Ok(Reader::subscribe(self.bus.clone(), self.id).0)
    }

    /// What the producers have published, exactly: the bus knows it.
    fn positions(&self, _ctx: &Ctx) -> Vec<u64> {
        self.bus.snapshot().1
    }
}
