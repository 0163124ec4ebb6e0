//! A Streams group member's side of the framework's consumer loop
//! ([`consume::run`]): it reads with XREADGROUP, acknowledges with the next
//! read, comes back for what it left pending, claims what crashed members
//! held, and, when slow, reads no more than it processes, so its backlog
//! grows in the stream where Redis keeps it. Its deliveries go into its
//! group's unit; the loop records its outages.

use super::conn::{Entry, GroupStart, Streams, StreamsConsumer};
use crate::chaos::Outage;
use crate::connect::ConnError;
use crate::drivers::consume::{self, ShardChange};
use crate::drivers::{Consumed, ConsumerConn, ConsumerOutput, Ctx, Delivery, Notes, StatsCell};
use crate::scenario::Scenario;
use crate::stats::ConsumerStats;
use std::sync::Arc;
use std::time::Duration;

/// How long an XREADGROUP waits for new entries before checking the clock again.
const BLOCK: Duration = super::conn::READ_BLOCK;

/// Whether Redis closed the connection (or refuses new ones): the server went
/// away, rather than answering with an error.
fn closed_by_server(e: &ConnError) -> bool {
    match e {
        ConnError::Closed | ConnError::Io(_) | ConnError::Connect { .. } => true,
        ConnError::Redis(r) => !r.is_timeout() && (r.is_connection_dropped() || r.is_connection_refusal()),
        _ => false,
    }
}

/// A reply that did not come within the response timeout: Redis stopped
/// answering (a stopped server or a cut network), said as the producers say
/// it; Redis closing the connection is `Closed`, as the loop knows it.
fn classify(e: ConnError) -> ConnError {
    match e {
        e if closed_by_server(&e) => ConnError::Closed,
        ConnError::Redis(r) if r.is_timeout() => {
            ConnError::Stalled { what: "XREADGROUP", secs: super::conn::RESPONSE_TIMEOUT.as_secs_f64() }
        }
        e => e,
    }
}

/// Accounting units: one per group (`--groups G`), else one per consumer.
pub(super) fn unit_count(s: &Scenario) -> u32 {
    if s.groups > 0 {
        s.groups
    } else {
        s.consumers
    }
}

fn unit_of(s: &Scenario, consumer: u32) -> u32 {
    if s.groups > 0 {
        consumer % s.groups
    } else {
        consumer
    }
}

/// The groups' results, each with the outages of its members.
pub(super) fn unit_outputs(shared: &Ctx, mut outages: Vec<Outage>) -> Vec<ConsumerOutput> {
    let s = &shared.scenario;
    outages.sort_by_key(|o| o.closed_ns);
    let local = shared.local_units.start as usize..shared.local_units.end as usize;
    shared
        .units
        .get(local)
        .unwrap_or_default()
        .iter()
        .map(|u| {
            let stats = u.lock().expect("unit lock").clone();
            let members: Vec<Outage> = outages.iter().filter(|o| unit_of(s, o.consumer) == stats.id).cloned().collect();
            // Whatever the group had not read by the end is still in the stream: accepted, never delivered.
            let end = Some(stats.positions());
            ConsumerOutput { stats, channels: (0..s.channels).collect(), outages: members, end }
        })
        .collect()
}

/// Runs group member `id` until the run finishes. Its deliveries go into its group's unit.
pub(super) async fn run(streams: Arc<Streams>, id: u32, ctx: Arc<Ctx>, notes: Notes, stats: StatsCell) -> Consumed {
    let s = &ctx.scenario;
    let unit = unit_of(s, id);
    // A slow member reads one entry at a time: what it has not processed stays in the stream.
    let streams = match ctx.faults.slow_delay(id) {
        Some(_) => Arc::new(Streams { batch: 1, ..(*streams).clone() }),
        None => streams,
    };
    let side = Side {
        streams,
        unit: unit as usize,
        group: format!("eventbench-g{unit}"),
        name: format!("c{id}"),
        ctx: ctx.clone(),
    };
    consume::run(id, ctx, notes, stats, side).await
}

/// How a member joins its group.
struct Side {
    streams: Arc<Streams>,
    unit: usize,
    group: String,
    name: String,
    ctx: Arc<Ctx>,
}

impl consume::Subscriber for Side {
    type Conn = Member;

    /// Joins the group (creating it on every stream if it does not exist
    /// yet); after an outage, first re-reads what this member left pending.
    async fn connect(&mut self, again: bool) -> Result<Member, ConnError> {
        let conn = self.streams.consumer(&self.group, &self.name, GroupStart::New).await?;
        Ok(Member {
            conn,
            ctx: self.ctx.clone(),
            batch: Vec::new(),
            taken: 0,
            to_ack: Vec::new(),
            pending_first: again,
            next_claim_ns: 0,
            redelivered: 0,
            acked: 0,
        })
    }

    fn unit(&self) -> Option<usize> {
        Some(self.unit)
    }
}

/// A member's connection as the loop reads it: each fill acknowledges what
/// was taken from the last batch while it reads the next.
pub(super) struct Member {
    conn: StreamsConsumer,
    ctx: Arc<Ctx>,
    batch: Vec<Entry>,
    /// Entries of `batch` taken so far.
    taken: usize,
    /// Processed, to be acknowledged with the next read.
    to_ack: Vec<Entry>,
    /// After coming back: first re-read this member's own pending entries (ID 0).
    pending_first: bool,
    next_claim_ns: u64,
    /// Not yet settled: redeliveries read, entries Redis acknowledged.
    redelivered: u64,
    acked: u64,
}

impl ConsumerConn for Member {
    #[inline]
    fn next(&mut self) -> Result<Option<Delivery<'_>>, ConnError> {
        let Some(e) = self.batch.get(self.taken) else { return Ok(None) };
        self.taken += 1;
        Ok(Some(Delivery { payload: &e.payload }))
    }

    async fn fill(&mut self) -> Result<(), ConnError> {
        if self.taken < self.batch.len() {
            return Ok(());
        }
        // What was taken is processed: acknowledged together with the next read, on the same connection.
        self.to_ack.append(&mut self.batch);
        self.taken = 0;
        let (redelivered, acked) = step(
            &self.conn,
            &mut self.batch,
            &mut self.to_ack,
            &mut self.pending_first,
            &mut self.next_claim_ns,
            &self.ctx,
        )
        .await
        .map_err(classify)?;
        self.redelivered += redelivered as u64;
        self.acked += acked;
        Ok(())
    }

    /// A member leaves by closing: the group keeps what it misses, and what
    /// it had not acknowledged waits in its pending list for its return.
    async fn start_leaving(&mut self) -> Result<(), ConnError> {
        Ok(())
    }

    fn has_left(&self) -> bool {
        true
    }

    fn settle(&mut self, stats: &mut ConsumerStats) {
        // The replies to the last acknowledgements come with the next read (at the end: the last one).
        stats.acked += std::mem::take(&mut self.acked) + self.conn.take_acked();
        stats.redelivered += std::mem::take(&mut self.redelivered);
    }

    fn take_change(&mut self) -> Option<ShardChange> {
        self.conn.take_change()
    }

    /// Takes one more batch into this member's pending list and never
    /// processes or acknowledges it: the group's survivors must claim it.
    async fn crash(self) {
        let mut held = Vec::new();
        let _ = self.conn.read(false, Duration::from_millis(1), &mut held).await;
    }
}

/// Acknowledges `to_ack` while reading the next batch into `batch`: idle
/// entries of the group now and then (XAUTOCLAIM), this member's own
/// pending entries first after a comeback, else new ones. Returns how many
/// of the batch are redeliveries, and how many entries Redis acknowledged.
async fn step(
    conn: &StreamsConsumer,
    batch: &mut Vec<Entry>,
    to_ack: &mut Vec<Entry>,
    pending_first: &mut bool,
    next_claim_ns: &mut u64,
    shared: &Ctx,
) -> Result<(usize, u64), ConnError> {
    batch.clear();
    let s = &shared.scenario;
    let now = shared.clock.now_ns();
    let reading = async {
        if *next_claim_ns <= now {
            // Claimed entries join this member's pending list: take them before re-reading it.
            conn.autoclaim(s.claim_idle, batch).await?;
            *next_claim_ns = now + (s.claim_idle.as_nanos() as u64 / 2).max(10_000_000);
            if !batch.is_empty() {
                return Ok(batch.len());
            }
        }
        if *pending_first {
            conn.read(true, BLOCK, batch).await?;
            if !batch.is_empty() {
                return Ok(batch.len());
            }
            *pending_first = false;
        }
        conn.read(false, BLOCK, batch).await?;
        Ok::<_, ConnError>(0)
    };
    let (acked, redelivered) = tokio::join!(conn.ack(to_ack), reading);
    let acked = acked?;
    to_ack.clear();
    Ok((redelivered?, acked))
}
