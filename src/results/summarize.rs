//! Turns what the swarm measured into the report's rows, and checks that
//! every message is accounted for: delivered + lost == expected, per consumer
//! and per second.
//!
//! Each lost message is attributed to one cause from where its sequence number
//! falls relative to the consumer's outages (see [`crate::chaos::Outage`]):
//! between what the consumer had received and where the producers were when
//! the connection ended, Redis had accepted it for the consumer (`in_buffer`);
//! from there until the consumer was subscribed again, nobody was there
//! (`unsubscribed`); anything else is `other`.

use crate::chaos::EventKind;
use crate::chaos::NodeOutage;
use crate::drivers::ConsumerOutput;
use crate::live::{Outcome, Status};
use crate::results::RunReport;
use crate::rows::{ChannelRow, ConsumerRow, EventRow, LatencyRow, Limit, ServerRow, SummaryRow, TimeseriesRow};
use crate::scenario::Scenario;
use crate::stats::ledger::SeqLedger;
use crate::stats::ProducerStats;
use crate::swarm::SwarmOutput;
use crate::telemetry::Telemetry;
use std::time::SystemTime;

/// Percentiles of `latency.csv`.
pub const PERCENTILES: &[f64] =
    &[0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0];

use crate::stats::pct_us;

/// Send lag p99 above this (µs): the harness did not keep its own schedule.
pub const HARNESS_LAG_LIMIT_US: f64 = 1000.0;
/// CPU use above this share of what the harness may use (%): it was busy to the limit.
pub const HARNESS_CPU_LIMIT_PCT: f64 = 90.0;

/// The harness's own CPU use over the measured phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HarnessCpu {
    /// The whole process, % of the CPUs it may use.
    pub process_pct: f64,
    /// Its busiest thread, % of one CPU.
    pub busiest_thread_pct: f64,
}

impl HarnessCpu {
    /// The larger of each (the busiest of several processes).
    pub fn max(self, other: HarnessCpu) -> HarnessCpu {
        HarnessCpu {
            process_pct: self.process_pct.max(other.process_pct),
            busiest_thread_pct: self.busiest_thread_pct.max(other.busiest_thread_pct),
        }
    }
}

/// The server's main thread above this share of one core (%), on average
/// over the measured phase on its busiest node: the server was the limit.
pub const SERVER_CPU_LIMIT_PCT: f64 = 90.0;

/// What the server telemetry says of the measured phase (its first `seconds` seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerLoad {
    /// Mean CPU of the busiest node, % of one core.
    pub cpu_pct: Option<f64>,
    /// The busiest second of any node.
    pub cpu_max_pct: Option<f64>,
    /// Mean CPU of the busiest node's main thread (where the server reports it, else its process).
    pub main_thread_pct: Option<f64>,
    /// The most memory any node used in any sample.
    pub memory_peak_bytes: Option<u64>,
}

impl ServerLoad {
    /// From `server.csv` rows; means over the measured phase's seconds, per node.
    pub fn of(rows: &[ServerRow], seconds: usize) -> ServerLoad {
        let measured = || rows.iter().filter(|r| (r.second as usize) < seconds);
        let busiest_mean = |f: fn(&ServerRow) -> Option<f64>| {
            let mut per_node: std::collections::BTreeMap<u32, (f64, u32)> = Default::default();
            for r in measured() {
                if let Some(v) = f(r) {
                    let e = per_node.entry(r.node).or_default();
                    *e = (e.0 + v, e.1 + 1);
                }
            }
            per_node.values().map(|&(sum, n)| sum / n as f64).reduce(f64::max)
        };
        ServerLoad {
            cpu_pct: busiest_mean(|r| r.server_cpu_pct),
            cpu_max_pct: measured().filter_map(|r| r.server_cpu_pct).reduce(f64::max),
            main_thread_pct: busiest_mean(|r| r.server_main_thread_cpu_pct.or(r.server_cpu_pct)),
            memory_peak_bytes: rows.iter().filter_map(|r| r.used_memory_bytes).max(),
        }
    }
}

/// Which side limited a run: the server when its main thread was busy
/// above [`SERVER_CPU_LIMIT_PCT`] of a core (a server saturated holds the
/// harness back too, so it comes first), else the harness when it was
/// [`harness_limited`], else neither.
pub fn limit(server: ServerLoad, harness_limited: bool) -> Limit {
    match server.main_thread_pct {
        Some(pct) if pct > SERVER_CPU_LIMIT_PCT => Limit::Server,
        _ if harness_limited => Limit::Harness,
        _ => Limit::Neither,
    }
}

/// Whether the harness itself was the limit of the run: it fell behind its
/// schedule, or it had no CPU to spare, as a whole or in one thread (a
/// thread's tasks cannot move to another). Then the figures describe
/// eventbench (or the machine it shares) as much as Redis.
///
/// A pacing window holds messages back by design (at most a window each):
/// only the lag beyond it is the harness falling behind.
pub fn harness_limited(send_lag_p99_us: f64, pacing_window_us: f64, cpu: HarnessCpu) -> bool {
    send_lag_p99_us > HARNESS_LAG_LIMIT_US + pacing_window_us
        || cpu.process_pct > HARNESS_CPU_LIMIT_PCT
        || cpu.busiest_thread_pct > HARNESS_CPU_LIMIT_PCT
}

/// Everything known about a finished run: what its shares measured (merged)
/// and what the pipeline saw around them. The results are built from these
/// once; nothing is patched in afterwards.
pub struct RunFacts {
    pub run_id: String,
    /// The effective scenario.
    pub scenario: Scenario,
    /// The shares' outputs, merged.
    pub out: SwarmOutput,
    /// Masters of the target (1 for a single server).
    pub nodes: u32,
    /// Worker processes (1 for a run in one process).
    pub workers: u32,
    /// The busiest share's CPU use over the measured phase.
    pub cpu: HarnessCpu,
    /// The largest uncertainty of a latency measured across two processes' clocks, ns (0 in one process).
    pub clock_uncertainty_ns: u64,
    /// With `--kill-node`: what happened to the node.
    pub node_outage: Option<NodeOutage>,
    /// Wall-clock time of the run's epoch, when known.
    pub epoch: Option<SystemTime>,
    /// What the server said about itself while the run went on.
    pub telemetry: Telemetry,
    /// A checkpoint of a run still going on (`--checkpoint`): only the
    /// measured seconds that ended by this instant (ns since the epoch) are
    /// reported; see [`Cut`].
    pub cut_ns: Option<u64>,
    /// What the machine did over the measured phase (`probe`): its wake-up floor, other processes, steal.
    pub machine: crate::probe::Machine,
}

/// The schedule's mean rate over measured second `s` (the last one may be partial).
fn target_rate_in(rate: &crate::scenario::Rate, s: usize, duration_s: f64) -> f64 {
    let (from, to) = (s as f64, (s as f64 + 1.0).min(duration_s));
    if to <= from {
        return 0.0;
    }
    rate.messages_between(from, to) / (to - from)
}

/// How a checkpoint reads what the run measured so far: the seconds before
/// the cut, all of whose messages had been written, and what the consumers'
/// ledgers held when they were copied. Whatever had not arrived is
/// `undelivered` (it may still come), unless a cause of loss is known (an
/// outage, a trim, a refusal); a gap with no known cause, which a late
/// arrival may still fill, is `undelivered` too. Counts of deliveries come
/// from the ledgers (the histograms of the threads were copied at other
/// instants), so every second and every consumer adds up exactly.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Measured seconds reported.
    seconds: usize,
}

/// Messages that did not arrive, by cause; `undelivered` ones are not lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// Pub/Sub: published while the consumer was not subscribed.
    pub unsubscribed: u64,
    /// Pub/Sub: accepted by Redis for the consumer, then dropped with its connection.
    pub in_buffer: u64,
    /// Streams: trimmed by MAXLEN before the group read it.
    pub trimmed: u64,
    /// Written, but Redis never answered for it (it went away or stalled), and no consumer got it.
    pub unanswered: u64,
    /// Any other gap (Streams: left the stream without MAXLEN, e.g. deleted).
    pub other: u64,
    /// Still on its way when the drain ended: in the stream or a pending list,
    /// in Redis's output buffer, in flight. Not lost.
    pub undelivered: u64,
}

impl Loss {
    /// Lost, all causes (undelivered messages are not lost).
    pub fn total(&self) -> u64 {
        self.unsubscribed + self.in_buffer + self.trimmed + self.unanswered + self.other
    }

    fn add(&mut self, o: Loss) {
        self.unsubscribed += o.unsubscribed;
        self.in_buffer += o.in_buffer;
        self.trimmed += o.trimmed;
        self.unanswered += o.unanswered;
        self.other += o.other;
        self.undelivered += o.undelivered;
    }
}

/// Where one (producer, channel) stream's missing messages went, for one
/// consumer (or Streams group): the sequence ranges that give a cause.
struct CauseRanges<'a> {
    /// Pub/Sub: (start, end, is_buffer, outage index); disjoint and ascending.
    ranges: Vec<(u64, u64, bool, usize)>,
    /// Pub/Sub: still subscribed at the end: what it had not received from here on is undelivered.
    end: Option<u64>,
    /// Streams: the first sequence still in the stream; older ones left it.
    retained: Option<u64>,
    /// Streams: whether trimming (MAXLEN) is what makes entries leave the stream.
    trims: bool,
    /// Streams: each outage's span of sequences (producers' positions when it left and came back).
    spans: Vec<(u64, u64, usize)>,
    /// The first sequence Redis never answered for.
    unanswered_from: u64,
    /// Sorted sequences Redis refused: never expected, never missing.
    refused: &'a [u64],
}

impl<'a> CauseRanges<'a> {
    fn new(c: &ConsumerOutput, stream: usize, producer: &'a ProducerStats, channel: usize, mode: Mode<'_>) -> Self {
        let mut ranges = Vec::new();
        let mut spans = Vec::new();
        let mut floor = 0;
        for (i, o) in c.outages.iter().enumerate() {
            if o.closed.is_empty() {
                continue;
            }
            let resubscribed = o.resubscribed.as_ref().map_or(u64::MAX, |r| r[stream]);
            if o.received.is_empty() {
                // Streams: a group keeps what an absent member misses.
                spans.push((o.closed[stream], resubscribed.max(o.closed[stream]), i));
                continue;
            }
            let received = o.received[stream].max(floor);
            let closed = o.closed[stream].max(received);
            let back = resubscribed.max(closed);
            ranges.push((received, closed, true, i));
            ranges.push((closed, back, false, i));
            floor = back;
        }
        let (retained, trims) = match mode {
            Mode::PubSub => (None, false),
            // Without the stream's state (Redis gone), nothing is known to have left it.
            Mode::Retained { retained, trims } => (Some(retained.map_or(0, |r| r[stream])), trims),
        };
        let end = c.end.as_ref().map(|e| e[stream].max(floor));
        let unanswered_from = producer.unanswered_from.get(channel).copied().unwrap_or(u64::MAX);
        CauseRanges { ranges, end, retained, trims, spans, unanswered_from, refused: producer.refused_seqs(channel) }
    }

    /// Missing sequences in `[lo, hi)`, refused ones left out.
    fn missing(&self, ledger: &SeqLedger, lo: u64, hi: u64) -> u64 {
        if lo >= hi {
            return 0;
        }
        let refused = self.refused.partition_point(|&x| x < hi) - self.refused.partition_point(|&x| x < lo);
        ledger.missing_in(lo, hi) - refused as u64
    }

    /// Refused sequences in `[lo, hi)`.
    fn refused_in(&self, lo: u64, hi: u64) -> u64 {
        (self.refused.partition_point(|&x| x < hi) - self.refused.partition_point(|&x| x < lo)) as u64
    }

    /// Attributes what is missing in `[lo, hi)`; also adds each outage's lost share to `per_outage`.
    fn attribute(&self, ledger: &SeqLedger, lo: u64, hi: u64, per_outage: &mut [u64]) -> Loss {
        let mut loss = Loss::default();
        if self.missing(ledger, lo, hi) == 0 {
            return loss;
        }
        // Never answered: Redis may not have taken it at all.
        let answered_to = hi.min(self.unanswered_from.max(lo));
        loss.unanswered = self.missing(ledger, answered_to, hi);
        let hi = answered_to;
        if let Some(retained) = self.retained {
            let left_to = hi.min(retained.max(lo));
            let left = self.missing(ledger, lo, left_to);
            if self.trims {
                loss.trimmed = left;
            } else {
                loss.other = left;
            }
            for &(closed, back, i) in &self.spans {
                per_outage[i] += self.missing(ledger, closed.max(lo), back.min(left_to));
            }
            loss.undelivered = self.missing(ledger, left_to, hi);
            return loss;
        }
        let total = self.missing(ledger, lo, hi);
        for &(start, end, buffer, i) in &self.ranges {
            let n = self.missing(ledger, start.max(lo), end.min(hi));
            per_outage[i] += n;
            if buffer {
                loss.in_buffer += n;
            } else {
                loss.unsubscribed += n;
            }
        }
        if let Some(end) = self.end {
            // Still queued for a consumer that is still subscribed: on its way, not lost.
            loss.undelivered = self.missing(ledger, end.max(lo), hi);
        }
        loss.other = total - loss.in_buffer - loss.unsubscribed - loss.undelivered;
        loss
    }
}

/// One channel's accounting, summed over its consumers and producers.
#[derive(Debug, Clone, Copy, Default)]
struct ChannelTally {
    expected: u64,
    loss: Loss,
    /// At a checkpoint only: from the ledgers, as a consumer's (see [`Cut`]).
    delivered: u64,
}

/// `channels.csv`: each channel's tally beside what was sent to it and its
/// subscribers; deliveries and latency from the threads' per-channel
/// counts (the ledgers' at a checkpoint). Cluster slots and nodes are added
/// by the pipeline, which knows the names ([`with_cluster_layout`]).
fn channel_rows(
    scenario: &Scenario,
    threads: &crate::stats::ThreadStats,
    tallies: &[ChannelTally],
    (sent, subscribers): (&[u64], &[u64]),
    cut: bool,
) -> Vec<ChannelRow> {
    let deck = crate::scenario::Deck::new(scenario.channel_skew, scenario.channels, scenario.seed);
    tallies
        .iter()
        .enumerate()
        .map(|(c, t)| {
            let latency = threads.channel_latency.get(c).filter(|h| !h.is_empty());
            ChannelRow {
                channel: c as u32,
                share_pct: deck.share(c as u32) * 100.0,
                slot: None,
                node: None,
                subscribers: subscribers[c],
                sent: sent[c],
                expected: t.expected,
                delivered: if cut { t.delivered } else { threads.channel_delivered.get(c).copied().unwrap_or(0) },
                lost: t.loss.total(),
                undelivered: t.loss.undelivered,
                p99_us: latency.map(|h| pct_us(h, 99.0)),
            }
        })
        .collect()
}

/// Fills `channels.csv`'s slot and node columns of a run on a cluster:
/// `names` are the channels' names, `node_of` the master that owns each.
pub fn with_cluster_layout(rows: &mut [ChannelRow], names: &[String], node_of: &[usize]) {
    for (row, (name, &node)) in rows.iter_mut().zip(names.iter().zip(node_of)) {
        row.slot = Some(crate::topology::key_slot(name.as_bytes()));
        row.node = Some(node as u32);
    }
}

/// How a transport keeps what a consumer has not read (its driver declares
/// it: `drivers::Traits::retains`).
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// Only the consumer's connection holds it (fire-and-forget, as Pub/Sub).
    PubSub,
    /// The transport holds it until it is trimmed or deleted (as a stream).
    Retained { retained: Option<&'a [u64]>, trims: bool },
}

/// The sustained rule: at the end of the measured phase, less than one
/// second's worth of expected deliveries is still on its way, that amount
/// did not grow over the last third of the phase (by more than a tenth of a
/// second's worth), and nothing is undelivered once the drain is over.
/// A one-second run has no last third to compare: it is held against the
/// start of the phase, when nothing measured was in flight.
pub fn sustained(in_flight: &[u64], per_second: f64, undelivered: u64) -> bool {
    let Some(&end) = in_flight.last() else { return undelivered == 0 };
    let reference = match in_flight.len() {
        1 => 0,
        n => in_flight[(n * 2 / 3).saturating_sub(1)],
    };
    let growing = end as f64 > reference as f64 + 0.1 * per_second;
    undelivered == 0 && (end as f64) <= per_second && !growing
}

/// Builds the report of a run; an accounting mismatch turns the status into
/// `Aborted`, because a result that does not add up must not pass as one.
pub fn summarize(facts: RunFacts) -> RunReport {
    let RunFacts {
        run_id,
        scenario,
        out,
        nodes,
        workers,
        cpu,
        clock_uncertainty_ns,
        node_outage,
        epoch,
        telemetry,
        cut_ns,
        machine,
    } = facts;
    let scenario = &scenario;
    let window = out.window;
    let cut = cut_ns.map(|ns| Cut {
        seconds: ((ns.saturating_sub(window.start_ns) / 1_000_000_000) as usize).min(window.seconds()),
    });
    let channels = scenario.channels as usize;
    let mode = match crate::drivers::registration(scenario.transport).traits.retains {
        true => Mode::Retained { retained: out.side.retained.as_deref(), trims: scenario.maxlen.is_some() },
        false => Mode::PubSub,
    };
    // Per-second series hold the seconds that had a send or a delivery: a
    // completed run reports every second of its window, a stopped one those it reached.
    let reached = out.producers.iter().map(|p| p.sent_per_second.len() / channels.max(1));
    let reached = reached.chain([out.threads.seconds.len()]).max().unwrap_or(0);
    let seconds = match (cut, out.outcome.status) {
        (Some(cut), _) => cut.seconds,
        (None, Status::Ok) => window.seconds(),
        (None, _) => window.seconds().min(reached),
    };
    let sent_in = |p: &crate::stats::ProducerStats, s: usize, c: usize| {
        p.sent_per_second.get(s * channels + c).copied().unwrap_or(0)
    };

    // Per second and channel: measured messages sent, and those Redis refused (never expected).
    let mut sent_per_second = vec![vec![0u64; channels]; seconds];
    let mut refused_per_second = vec![vec![0u64; channels]; seconds];
    let mut send_lag = crate::stats::latency_histogram();
    let (mut sent, mut reached, mut sent_bytes) = (0u64, 0u64, 0u64);
    for p in &out.producers {
        let bytes = match cut {
            Some(_) => &p.bytes_per_second[..seconds.min(p.bytes_per_second.len())],
            None => &p.bytes_per_second[..],
        };
        sent_bytes += bytes.iter().sum::<u64>();
        for c in 0..channels {
            let refused = p.refused_seqs(c);
            let mut from = p.measured_first[c].unwrap_or(0);
            for s in 0..seconds {
                let n = sent_in(p, s, c);
                sent_per_second[s][c] += n;
                let to = from + n;
                refused_per_second[s][c] +=
                    (refused.partition_point(|&x| x < to) - refused.partition_point(|&x| x < from)) as u64;
                from = to;
            }
        }
        sent += match cut {
            Some(_) => {
                (0..seconds).flat_map(|s| (0..channels).map(move |c| (s, c))).map(|(s, c)| sent_in(p, s, c)).sum()
            }
            None => p.sent_measured(),
        };
        reached += p.reached;
        send_lag.add(&p.send_lag).expect("auto-resizing histograms accept any value");
    }

    let mut mismatch = None;
    let mut consumer_rows = Vec::new();
    let mut events = Vec::new();
    let mut subscribers = vec![0u64; channels];
    let mut loss_per_second = vec![Loss::default(); seconds];
    // At a checkpoint, deliveries per second as the ledgers count them (see [`Cut`]).
    let mut delivered_per_second = vec![0u64; seconds];
    let mut totals = Loss::default();
    // Per channel: expected, lost and undelivered, and at a checkpoint delivered (see [`Cut`]).
    let mut per_channel = vec![ChannelTally::default(); channels];
    let (mut expected, mut delivered, mut duplicates, mut out_of_order, mut foreign) = (0, 0, 0, 0, 0);
    let (mut redelivered, mut acked) = (0, 0);
    for c in &out.consumers {
        let st = &c.stats;
        let mut c_expected = 0;
        let (mut cut_expected, mut cut_delivered) = (0, 0);
        let mut c_loss = Loss::default();
        let mut per_outage = vec![0u64; c.outages.len() + 1];
        for &ch in &c.channels {
            subscribers[ch as usize] += 1;
            let tally = &mut per_channel[ch as usize];
            for p in &out.producers {
                let Some(lo) = p.measured_first[ch as usize] else { continue };
                let stream = (p.id * scenario.channels + ch) as usize;
                let ledger = &st.ledgers[stream];
                let causes = CauseRanges::new(c, stream, p, ch as usize, mode);
                let stream_expected =
                    p.measured_count[ch as usize] - causes.refused_in(lo, lo + p.measured_count[ch as usize]);
                c_expected += stream_expected;
                if cut.is_none() {
                    tally.expected += stream_expected;
                }
                // The measured sequences of this stream, second by second.
                let mut from = lo;
                for (s, second_loss) in loss_per_second.iter_mut().enumerate() {
                    let to = from + sent_in(p, s, ch as usize);
                    let mut loss = causes.attribute(ledger, from, to, &mut per_outage);
                    if cut.is_some() {
                        // No cause known yet: it may still arrive.
                        loss.undelivered += std::mem::take(&mut loss.other);
                        let expected = (to - from) - causes.refused_in(from, to);
                        let delivered = expected - loss.total() - loss.undelivered;
                        cut_expected += expected;
                        cut_delivered += delivered;
                        delivered_per_second[s] += delivered;
                        tally.expected += expected;
                        tally.delivered += delivered;
                    }
                    second_loss.add(loss);
                    c_loss.add(loss);
                    tally.loss.add(loss);
                    from = to;
                }
            }
        }
        let c_delivered = match cut {
            Some(_) => {
                c_expected = cut_expected;
                cut_delivered
            }
            None => st.delivered,
        };
        if c_delivered + c_loss.total() + c_loss.undelivered != c_expected && mismatch.is_none() {
            mismatch = Some(format!(
                "accounting invariant violated for consumer {}: delivered {} + lost {} + undelivered {} != expected {}",
                st.id,
                c_delivered,
                c_loss.total(),
                c_loss.undelivered,
                c_expected
            ));
        }
        for (o, lost_during) in c.outages.iter().zip(per_outage) {
            let at_s = |ns: u64| (ns as f64 - window.start_ns as f64) / 1e9;
            let downtime_ms = o.resubscribed_ns.map(|r| (r - o.closed_ns) as f64 / 1e6);
            events.push(EventRow { at_s: at_s(o.closed_ns), consumer: st.id, kind: o.kind, downtime_ms, lost_during });
            if let Some(r) = o.resubscribed_ns {
                let kind = EventKind::Resubscribed;
                events.push(EventRow { at_s: at_s(r), consumer: st.id, kind, downtime_ms, lost_during: 0 });
            }
        }
        expected += c_expected;
        delivered += c_delivered;
        totals.add(c_loss);
        duplicates += st.duplicates;
        out_of_order += st.out_of_order;
        foreign += st.foreign;
        redelivered += st.redelivered;
        acked += st.acked;
        consumer_rows.push(ConsumerRow {
            consumer: st.id,
            channels: c.channels.len() as u32,
            expected: c_expected,
            delivered: c_delivered,
            lost: c_loss.total(),
            undelivered: c_loss.undelivered,
            lost_unsubscribed: c_loss.unsubscribed,
            lost_in_buffer: c_loss.in_buffer,
            lost_trimmed: c_loss.trimmed,
            lost_unanswered: c_loss.unanswered,
            lost_other: c_loss.other,
            duplicates: st.duplicates,
            out_of_order: st.out_of_order,
            disconnects: st.disconnects,
            server_kills: c.outages.iter().filter(|o| o.kind == EventKind::ServerKill).count() as u64,
            p99_us: (!st.latency.is_empty()).then(|| pct_us(&st.latency, 99.0)),
        });
    }
    // A killed node's events (`consumer` holds the node's index); the loss is the consumers'.
    if let Some(o) = node_outage {
        let at_s = |ns: u64| (ns as f64 - window.start_ns as f64) / 1e9;
        let node_event = |at: u64, kind, downtime_ms| EventRow {
            at_s: at_s(at),
            consumer: o.node,
            kind,
            downtime_ms,
            lost_during: 0,
        };
        events.push(node_event(o.down_ns, EventKind::NodeDown, None));
        if let Some(up) = o.up_ns {
            events.push(node_event(up, EventKind::NodeUp, Some((up - o.down_ns) as f64 / 1e6)));
        }
    }
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s).then(a.consumer.cmp(&b.consumer)));
    let sent_per_channel: Vec<u64> = (0..channels)
        .map(|c| match cut {
            Some(_) => sent_per_second.iter().map(|s| s[c]).sum(),
            None => out.producers.iter().map(|p| p.measured_count[c]).sum(),
        })
        .collect();
    let channel_rows =
        channel_rows(scenario, &out.threads, &per_channel, (&sent_per_channel, &subscribers), cut.is_some());
    if mismatch.is_none() {
        mismatch = channel_rows.iter().find(|r| r.delivered + r.lost + r.undelivered != r.expected).map(|r| {
            format!(
                "accounting invariant violated for channel {}: delivered {} + lost {} + undelivered {} != expected {}",
                r.channel, r.delivered, r.lost, r.undelivered, r.expected
            )
        });
    }

    // An interrupted run measured only until its last send.
    let full_ns = window.end_ns - window.start_ns;
    let last_sent_ns = out.producers.iter().map(|p| p.last_sent_ns).max().unwrap_or(0);
    let measured_ns = match (cut, out.outcome.status) {
        (Some(cut), _) => (cut.seconds as u64 * 1_000_000_000).min(full_ns),
        (None, Status::Ok) => full_ns,
        (None, _) => last_sent_ns.saturating_sub(window.start_ns).min(full_ns),
    };
    let duration_s = measured_ns as f64 / 1e9;
    // The seconds the run reached: an interrupted run's series ends where it stopped.
    let ran = seconds;
    // Deliveries received during the measured phase, per second of it: the
    // drain's catching up is not counted, so a run that fell behind shows it.
    let arrived = |s: usize| out.threads.arrived.get(s).copied().unwrap_or(0);
    let delivered_in_phase: u64 = (0..ran).map(arrived).sum();
    let delivery_rate = if duration_s > 0.0 { delivered_in_phase as f64 / duration_s } else { 0.0 };
    // The achieved send rate runs until the last message actually went out, so
    // a harness that falls behind its schedule shows a lower rate.
    let send_span_s = match cut {
        // What was sent after the cut is not counted.
        Some(_) => duration_s,
        None => (last_sent_ns.saturating_sub(window.start_ns) as f64 / 1e9).max(duration_s),
    };
    let send_rate = if send_span_s > 0.0 { sent as f64 / send_span_s } else { 0.0 };
    let send_bytes_per_s = if send_span_s > 0.0 { sent_bytes as f64 / send_span_s } else { 0.0 };

    // Per-second rows: sent, delivered and lost count in the second the
    // message was due; in flight is what was due by the end of the second and
    // had neither arrived nor been lost by then.
    let outages: Vec<(u64, u64)> = out
        .consumers
        .iter()
        .flat_map(|c| c.outages.iter().map(|o| (o.closed_ns, o.resubscribed_ns.unwrap_or(u64::MAX))))
        .collect();
    let (mut due, mut arrived_by) = (0u64, 0u64);
    let mut in_flight = Vec::with_capacity(ran);
    let no_delivery = crate::stats::SecondStats::default();
    let timeseries = (0..ran)
        .map(|s| {
            let sec = out.threads.seconds.get(s).unwrap_or(&no_delivery);
            let sec_latency = sec.histogram();
            let expected_s: u64 =
                (0..channels).map(|c| (sent_per_second[s][c] - refused_per_second[s][c]) * subscribers[c]).sum();
            let loss = loss_per_second[s];
            let sec_delivered = if cut.is_some() { delivered_per_second[s] } else { sec.delivered };
            if sec_delivered + loss.total() + loss.undelivered != expected_s && mismatch.is_none() {
                mismatch = Some(format!(
                    "accounting invariant violated in second {s}: delivered {} + lost {} + undelivered {} != expected {expected_s}",
                    sec_delivered,
                    loss.total(),
                    loss.undelivered
                ));
            }
            due += expected_s - loss.total();
            arrived_by += arrived(s);
            in_flight.push(due.saturating_sub(arrived_by));
            let from = window.start_ns + s as u64 * 1_000_000_000;
            let to = from + 1_000_000_000;
            let away = outages.iter().filter(|&&(down, up)| down < to && up > from).count() as u64;
            // A second without deliveries has no latency (an empty cell, not 0).
            let pct = |p: f64| (!sec_latency.is_empty()).then(|| pct_us(&sec_latency, p));
            TimeseriesRow {
                second: s as u32,
                target_rate: target_rate_in(&scenario.rate, s, duration_s),
                sent: sent_per_second[s].iter().sum(),
                delivered: sec_delivered,
                lost: loss.total(),
                undelivered: loss.undelivered,
                lost_unsubscribed: loss.unsubscribed,
                lost_in_buffer: loss.in_buffer,
                lost_trimmed: loss.trimmed,
                in_flight: in_flight[s],
                p50_us: pct(50.0),
                p99_us: pct(99.0),
                max_us: pct(100.0),
                connected_consumers: (scenario.consumers as u64).saturating_sub(away) as u32,
                backlog: out.side.backlog.get(s).copied().unwrap_or(0),
            }
        })
        .collect();
    let lat = &out.threads.latency;
    let raw = &out.threads.raw;
    let latency = PERCENTILES
        .iter()
        .map(|&p| LatencyRow { percentile: p, latency_us: pct_us(lat, p), raw_latency_us: pct_us(raw, p) })
        .collect();

    let outcome = match (mismatch, cut) {
        (Some(m), _) => Outcome::aborted(m),
        (None, Some(cut)) => Outcome {
            status: Status::Incomplete,
            reason: format!(
                "checkpoint at {} of {}",
                crate::scenario::fmt_duration(&std::time::Duration::from_secs(cut.seconds as u64)),
                crate::scenario::fmt_duration(&scenario.duration)
            ),
        },
        (None, None) => out.outcome.clone(),
    };
    let per_second_expected = if duration_s > 0.0 { expected as f64 / duration_s } else { 0.0 };
    let sustained = outcome.status != Status::Aborted && sustained(&in_flight, per_second_expected, totals.undelivered);
    let send_lag_p99_us = pct_us(&send_lag, 99.0);
    let server = ServerLoad::of(&telemetry.rows, window.seconds());
    let pacing_window_us = out.producers.iter().map(|p| p.pacing_window_ns).max().unwrap_or(0) as f64 / 1e3;
    let unsent: u64 = out.producers.iter().map(|p| p.unsent).sum();
    let harness_limited = harness_limited(send_lag_p99_us, pacing_window_us, cpu) || unsent > 0;
    let recover_ms =
        node_outage.and_then(|o| o.up_ns).zip(out.recovered_ns).map(|(up, seen)| seen.saturating_sub(up) as f64 / 1e6);
    let summary = SummaryRow {
        run_id: run_id.clone(),
        status: outcome.status,
        reason: outcome.reason,
        transport: scenario.transport.to_string(),
        url: scenario.url.as_deref().map_or_else(|| "private".into(), crate::connect::redact_url),
        nodes,
        producers: scenario.producers,
        consumers: scenario.consumers,
        channels: scenario.channels,
        // A distribution's mean over what was sent (the one size of a fixed payload).
        payload_bytes: match (&scenario.payload, sent) {
            (crate::scenario::Payload::Fixed(n), _) => *n as u64,
            (p, 0) => p.mean().round() as u64,
            (_, sent) => (sent_bytes as f64 / sent as f64).round() as u64,
        },
        target_rate: scenario.rate.mean(scenario.duration),
        duration_s,
        sent,
        unsent,
        expected,
        reached,
        delivered,
        lost: totals.total(),
        undelivered: totals.undelivered,
        lost_unsubscribed: totals.unsubscribed,
        lost_in_buffer: totals.in_buffer,
        lost_trimmed: totals.trimmed,
        lost_unanswered: totals.unanswered,
        lost_other: totals.other,
        sustained,
        in_flight_end: in_flight.last().copied().unwrap_or(0),
        drain_s: out.drain_ns as f64 / 1e9,
        duplicates,
        out_of_order,
        foreign,
        redelivered,
        acked,
        redirections: out.producers.iter().map(|p| p.redirections).sum(),
        write_errors: out.producers.iter().map(|p| p.write_errors).sum(),
        backlog_max: out.side.backlog.iter().copied().max().unwrap_or(0),
        replay_catchup_s: out.side.replay.and_then(|r| r.catchup_ns).map(|ns| ns as f64 / 1e9),
        replay_rate: out
            .side
            .replay
            .and_then(|r| r.catchup_ns.map(|ns| r.caught_up_read as f64 / (ns as f64 / 1e9).max(1e-9))),
        recover_ms,
        send_rate,
        sent_bytes,
        send_bytes_per_s,
        delivery_rate,
        // No delivery, no latency: empty, not 0.
        p50_us: (!lat.is_empty()).then(|| pct_us(lat, 50.0)),
        p90_us: (!lat.is_empty()).then(|| pct_us(lat, 90.0)),
        p99_us: (!lat.is_empty()).then(|| pct_us(lat, 99.0)),
        p999_us: (!lat.is_empty()).then(|| pct_us(lat, 99.9)),
        max_us: (!lat.is_empty()).then(|| pct_us(lat, 100.0)),
        raw_p50_us: (!raw.is_empty()).then(|| pct_us(raw, 50.0)),
        raw_p99_us: (!raw.is_empty()).then(|| pct_us(raw, 99.0)),
        raw_max_us: (!raw.is_empty()).then(|| pct_us(raw, 100.0)),
        send_lag_p99_us,
        pacing_window_us,
        harness_cpu_pct: cpu.process_pct,
        harness_thread_max_pct: cpu.busiest_thread_pct,
        harness_limited,
        threads: out.thread_count as u32,
        workers,
        clock_uncertainty_us: clock_uncertainty_ns as f64 / 1e3,
        latency_below_uncertainty: match clock_uncertainty_ns {
            0 => 0,
            ns => out.threads.latency.count_between(0, ns),
        },
        // Known from the workers' registrations: `pipeline` sets it.
        clock_offset_max_us: 0.0,
        server: telemetry.identity.server,
        server_version: telemetry.identity.version,
        server_cpu_pct: server.cpu_pct,
        server_cpu_max_pct: server.cpu_max_pct,
        server_memory_peak_bytes: server.memory_peak_bytes,
        limit: limit(server, harness_limited),
        machine_wakeup_p50_us: machine.wakeup_p50_us,
        machine_wakeup_p99_us: machine.wakeup_p99_us,
        machine_wakeup_p999_us: machine.wakeup_p999_us,
        machine_wakeup_max_us: machine.wakeup_max_us,
        machine_other_cpu_pct: machine.other_cpu_pct,
        steal_pct: machine.steal_pct,
    };
    let mut per_second = out.threads.seconds;
    if per_second.len() < seconds {
        per_second.resize_with(seconds, Default::default);
    }
    if cut.is_some() {
        per_second.truncate(seconds);
    }
    RunReport {
        run_id,
        scenario: scenario.clone(),
        summary,
        latency,
        timeseries,
        consumers: consumer_rows,
        channels: channel_rows,
        events,
        window,
        histogram: out.threads.latency,
        raw_histogram: out.threads.raw,
        per_second,
        epoch,
        server: telemetry.rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One producer sending 10 messages a second on one channel for 3 s, one
    /// consumer that received `received` (sequences) and had `outages`.
    fn one_stream(
        received: &[u64],
        outages: Vec<crate::chaos::Outage>,
        status: Status,
        cut_ns: Option<u64>,
    ) -> RunReport {
        use crate::stats::{ConsumerStats, ThreadStats, Window};
        let window = Window { start_ns: 1_000_000_000, end_ns: 4_000_000_000 };
        let mut producer = ProducerStats::new(0, 1, &window);
        producer.measured_first = vec![Some(0)];
        producer.measured_count = vec![30];
        producer.sent_per_second = vec![10, 10, 10];
        producer.sent_total = 30;
        producer.last_sent_ns = 3_900_000_000;
        let mut threads = ThreadStats::new(&window);
        let mut stats = ConsumerStats::new(0, 1, 1);
        for &seq in received {
            let mut payload = [0u8; 64];
            let intended_ns = window.start_ns + seq * 100_000_000;
            let h = crate::wire::Header { producer: 0, channel: 0, seq, intended_ns, sent_ns: intended_ns };
            h.encode(&mut payload);
            assert!(stats.record(&payload, intended_ns + 1_000, &window, &mut threads));
        }
        let consumer = ConsumerOutput { stats, channels: vec![0], outages, end: None };
        let out = SwarmOutput {
            window,
            threads,
            side: Default::default(),
            consumers: vec![consumer],
            producers: vec![producer],
            outcome: Outcome { status, reason: String::new() },
            thread_count: 1,
            recovered_ns: None,
            drain_ns: 0,
        };
        let scenario = Scenario { duration: std::time::Duration::from_secs(3), ..Scenario::default() };
        summarize(RunFacts {
            run_id: "r".into(),
            scenario,
            out,
            nodes: 1,
            workers: 1,
            cpu: HarnessCpu::default(),
            clock_uncertainty_ns: 0,
            node_outage: None,
            epoch: None,
            telemetry: Default::default(),
            cut_ns,
            machine: Default::default(),
        })
    }

    fn per_second(r: &RunReport) -> Vec<(u64, u64, u64, u64)> {
        r.timeseries.iter().map(|t| (t.sent, t.delivered, t.lost, t.undelivered)).collect()
    }

    #[test]
    fn a_checkpoint_reports_the_seconds_before_its_cut_and_counts_what_may_still_come_undelivered() {
        // Sequences 0..15 but 3: a gap in second 0, and second 1 half received.
        let received: Vec<u64> = (0..15).filter(|&s| s != 3).collect();
        let cut = one_stream(&received, Vec::new(), Status::Ok, Some(3_500_000_000));
        let s = &cut.summary;
        assert_eq!((s.status, s.reason.as_str()), (Status::Incomplete, "checkpoint at 2s of 3s"));
        assert_eq!((s.sent, s.expected, s.delivered, s.lost, s.undelivered), (20, 20, 14, 0, 6));
        assert_eq!(s.duration_s, 2.0);
        assert_eq!(per_second(&cut), [(10, 9, 0, 1), (10, 5, 0, 5)], "the gap may still be filled: not lost yet");
        assert_eq!(cut.consumers[0].delivered + cut.consumers[0].undelivered, cut.consumers[0].expected);
        assert_eq!(cut.per_second.len(), 2, "latency.hlog covers the reported seconds");
        // The same measurements as a finished run: the gap and the tail are lost.
        let done = one_stream(&received, Vec::new(), Status::Ok, None);
        assert_eq!((done.summary.expected, done.summary.delivered, done.summary.lost), (30, 14, 16));
        // A cut before the first second ends reports nothing, consistently.
        let early = one_stream(&received, Vec::new(), Status::Ok, Some(1_500_000_000));
        assert_eq!((early.summary.expected, early.summary.sent, early.timeseries.len()), (0, 0, 0));
        assert_eq!(early.summary.status, Status::Incomplete);
    }

    #[test]
    fn a_checkpoint_counts_a_loss_whose_cause_is_known() {
        // Redis closed the consumer after sequence 12 while producers were at 14; not back yet.
        let outage = crate::chaos::Outage {
            consumer: 0,
            kind: EventKind::ServerKill,
            closed_ns: 2_400_000_000,
            resubscribed_ns: None,
            received: vec![12],
            closed: vec![14],
            resubscribed: None,
        };
        let received: Vec<u64> = (0..12).collect();
        let cut = one_stream(&received, vec![outage], Status::Ok, Some(3_000_000_000));
        let s = &cut.summary;
        assert_eq!((s.expected, s.delivered, s.lost_in_buffer, s.lost_unsubscribed, s.undelivered), (20, 12, 2, 6, 0));
        assert_eq!(per_second(&cut), [(10, 10, 0, 0), (10, 2, 8, 0)]);
        assert_eq!(cut.events.iter().map(|e| e.lost_during).sum::<u64>(), 8);
    }

    #[test]
    fn a_run_keeps_up_while_what_is_in_flight_stays_small_and_flat() {
        // 1,000 deliveries expected a second.
        assert!(sustained(&[20, 25, 22, 21, 24, 23], 1000.0, 0), "a steady trickle in flight");
        assert!(sustained(&[300, 310, 305], 1000.0, 0), "steady, if slow: 0.3 s of latency");
        assert!(!sustained(&[200, 400, 600, 800, 1000, 1200], 1000.0, 0), "growing, over a second's worth");
        assert!(!sustained(&[100, 300, 500], 1000.0, 0), "growing by more than a tenth of a second's worth");
        assert!(!sustained(&[20, 25, 22], 1000.0, 1), "something never arrived");
        assert!(!sustained(&[672], 1000.0, 0), "one second, two-thirds of it still on its way");
        assert!(sustained(&[40], 1000.0, 0), "one second, a trickle");
        assert!(sustained(&[], 0.0, 0), "nothing expected");
    }

    #[test]
    fn the_server_is_the_limit_when_its_main_thread_is_busy_on_average() {
        let row = |second, node, cpu: f64, main: Option<f64>| ServerRow {
            second,
            node,
            server_cpu_pct: Some(cpu),
            server_main_thread_cpu_pct: main,
            used_memory_bytes: Some(1000 + second as u64),
            ..ServerRow::default()
        };
        // Node 1 is the busy one; second 2 is the drain, outside the measured phase.
        let rows = [
            row(0, 0, 20.0, Some(15.0)),
            row(0, 1, 96.0, Some(94.0)),
            row(1, 0, 30.0, Some(25.0)),
            row(1, 1, 98.0, Some(92.0)),
            row(2, 1, 5.0, Some(5.0)),
        ];
        let load = ServerLoad::of(&rows, 2);
        assert_eq!(load.cpu_pct, Some(97.0), "the busiest node's mean");
        assert_eq!(load.cpu_max_pct, Some(98.0));
        assert_eq!(load.main_thread_pct, Some(93.0));
        assert_eq!(load.memory_peak_bytes, Some(1002), "the drain's samples count for the peak");
        assert_eq!(limit(load, false), Limit::Server);
        assert_eq!(limit(load, true), Limit::Server, "a saturated server holds the harness back too");
        let calm = ServerLoad::of(&rows[..1], 2);
        assert_eq!((limit(calm, true), limit(calm, false)), (Limit::Harness, Limit::Neither));
        // Without main-thread figures (an older server), the process's stand in for them.
        let old = ServerLoad::of(&[row(0, 0, 95.0, None)], 1);
        assert_eq!(limit(old, false), Limit::Server);
        // One busy second is not a busy run.
        let burst = ServerLoad::of(&[row(0, 0, 99.0, Some(99.0)), row(1, 0, 10.0, Some(10.0))], 2);
        assert_eq!(limit(burst, false), Limit::Neither);
        assert_eq!(ServerLoad::of(&[], 5), ServerLoad::default(), "no samples: empty cells, no verdict");
    }

    #[test]
    fn the_harness_is_the_limit_when_it_lags_or_has_no_cpu_left() {
        let judged = |send_lag_p99_us, process_pct| {
            harness_limited(send_lag_p99_us, 0.0, HarnessCpu { process_pct, busiest_thread_pct: process_pct })
        };
        assert!(!judged(0.0, 0.0));
        assert!(!judged(1000.0, 90.0), "the limits themselves are still fine");
        assert!(judged(1000.1, 10.0), "behind its own schedule");
        assert!(judged(50.0, 90.5), "no CPU to spare");
        assert!(judged(5000.0, 99.0));
        let one_thread_busy = HarnessCpu { process_pct: 48.0, busiest_thread_pct: 97.0 };
        assert!(
            harness_limited(0.0, 0.0, one_thread_busy),
            "one thread of two at its limit: its tasks wait though a CPU is free"
        );
    }
}
