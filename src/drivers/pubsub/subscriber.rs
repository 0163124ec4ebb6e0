//! A Pub/Sub subscriber's side of the framework's consumer loop
//! ([`consume::run`]): how it connects (a slow one with a small receive
//! window, so its backlog piles up in Redis where the limit applies), and a
//! watcher that sees Redis close a slow subscriber long before its reads do.

use super::conn::PubSubConsumer;
use super::PubSub;
use crate::connect::{ConnError, Tuning};
use crate::drivers::consume::{self, Cutoff};
use crate::drivers::{Consumed, Ctx, Notes, StatsCell};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Runs subscriber `id` of the run until it finishes.
pub(super) async fn run(pubsub: Arc<PubSub>, id: u32, ctx: Arc<Ctx>, notes: Notes, stats: StatsCell) -> Consumed {
    let slow = ctx.faults.slow_delay(id).is_some();
    let tuning = match slow {
        // A small receive window and read buffer: the backlog must pile up in Redis, where the limit applies.
        true => Tuning { recv_buffer: Some(16 * 1024), fixed_buffer: true },
        false => Tuning::default(),
    };
    let side = Side { pubsub, id, tuning, slow, ctx: ctx.clone(), kill_seen: Rc::default(), watcher: None };
    consume::run(id, ctx, notes, stats, side).await
}

/// How a subscriber connects, and its watcher.
struct Side {
    pubsub: Arc<PubSub>,
    id: u32,
    tuning: Tuning,
    /// A slow subscriber: its connection is watched from the side.
    slow: bool,
    ctx: Arc<Ctx>,
    /// When Redis closed a slow consumer's connection, and the producers'
    /// positions then, as seen by its watcher.
    kill_seen: Rc<RefCell<Option<Cutoff>>>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl consume::Subscriber for Side {
    type Conn = PubSubConsumer;

    async fn connect(&mut self, _again: bool) -> Result<PubSubConsumer, ConnError> {
        self.pubsub.consumer(self.id, self.tuning, self.slow).await
    }

    /// For a slow consumer: watches from the side for Redis closing `conn`.
    fn watch(&mut self, conn: &PubSubConsumer) {
        let Some(client_id) = conn.client_id else { return };
        let (ctx, seen, pubsub) = (self.ctx.clone(), self.kill_seen.clone(), self.pubsub.clone());
        self.watcher = Some(tokio::task::spawn_local(async move {
            // The kill happened before the poll that found it: take the positions just before that poll.
            let mut before = (0, Vec::new());
            let snapshot = || before = (ctx.clock.now_ns(), ctx.positions());
            if pubsub.wait_closed(client_id, Duration::from_millis(2), snapshot).await.is_ok() {
                *seen.borrow_mut() = Some(before);
            }
        }));
    }

    fn unwatch(&mut self) -> Option<Cutoff> {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
        self.kill_seen.borrow_mut().take()
    }
}
