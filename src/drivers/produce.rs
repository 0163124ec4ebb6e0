//! The framework's producer loop, for every transport: paces the
//! producer's messages, queues each on the transport's connection, writes
//! them a batch at a time, and settles what the connection knew at the end.
//! Generic over the connection ([`ProducerConn`]): a driver's `producer`
//! runs it with its own connection type, so the per-message calls are
//! static and the swarm never names a transport's connection.

use super::{Answered, Ctx, Finished, Note, Notes, ProducerConn};
use crate::clock::{self, Timer};
use crate::connect::ConnError;
use crate::drivers::ctx::ThreadBoard;
use crate::live::Live;
use crate::pacer::Pacer;
use crate::scenario::Deck;
use crate::stats::ProducerStats;
use crate::wire::Header;
use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Most messages a producer writes in one pipelined write.
const MAX_BATCH: u64 = 1024;
/// Most bytes of payload a producer writes in one pipelined write: large
/// payloads go fewer at a time (one, at least), so memory stays bounded
/// (1024 payloads of 100 MB would be 100 GB).
const MAX_BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// After a failure, how long a producer waits for replies still due (and
/// consumers may still read what is on their sockets), so that nothing
/// measured before it is dropped.
pub const ABORT_DRAIN: Duration = Duration::from_millis(250);
/// How long after the end of the measured phase a producer still sends what
/// fell due in it: a producer later than that fell behind its schedule (a
/// rate beyond what it can write), and what it had not sent is counted as
/// unsent instead of being sent long after the phase it belongs to.
const OVERRUN: Duration = Duration::from_millis(250);

/// Runs producer `id` over the connection `connect` opens, until it is done.
pub async fn run<C: ProducerConn>(
    id: u32,
    shared: Arc<Ctx>,
    notes: Notes,
    connect: impl Future<Output = Result<C, ConnError>>,
) -> Option<ProducerStats> {
    let who = format!("producer {id}");
    let mut conn = match connect.await {
        Ok(c) => c,
        Err(e) => {
            shared.fail(who, e);
            let _ = notes.send(Note::Failed);
            return None;
        }
    };
    conn.watch_deliveries(shared.live.clone());
    // Resolved before the start: `auto` measures this machine's wake-up cost once.
    let pacing_window = shared.scenario.pacing_window_ns(shared.local_producers.len() as u32);
    let _ = notes.send(Note::Ready);
    let (warmup_start, window) = shared.wait_start().await?;
    let s = &shared.scenario;
    let mut own = ProducerStats::new(id, s.channels, &window);
    let fastest_period_ns = 1e9 * f64::from(s.producers) / s.rate.peak();
    own.pacing_window_ns = crate::scenario::pacing::applied_window_ns(pacing_window, fastest_period_ns);
    // On the thread's board, where a checkpoint copies it between batches.
    let stats = ThreadBoard::producer(own);
    let mut pacer = Pacer::for_producer(&s.rate, s.producers, warmup_start, window.start_ns, window.end_ns)
        .coalescing(pacing_window)
        .cut_off_after(OVERRUN.as_nanos() as u64 + pacing_window);
    // From the total rate: all producers together spin at most a tenth of one CPU.
    let mut timer = Timer::precise(shared.clock).spinning(clock::spin_for_rate(s.rate.peak()));
    let mut next_seq = vec![0u64; s.channels as usize];
    let max_batch = (MAX_BATCH_BYTES / s.payload.max().max(1) as u64).clamp(1, MAX_BATCH);
    let deck = &shared.deck;
    let offset = deck.offset(id, s.producers);
    let mut payloads = crate::scenario::PayloadDraw::new(&s.payload, s.seed, id);
    let mut measured: Option<(u64, u64)> = None;
    // Deliveries each measured message should make, for live export's undelivered count.
    let fanout = shared.driver.fanout(s) as u64;
    let result: Result<(), ConnError> = async {
        // Made once: a new one per batch would lock the stop Notify each time.
        let stopped = shared.live.stopped();
        tokio::pin!(stopped);
        loop {
            let batch = tokio::select! {
                biased;
                _ = &mut stopped => None,
                e = conn.failure() => return Err(e),
                b = pacer.next_batch(&mut timer, max_batch) => b,
            };
            let Some(b) = batch else { break };
            let mut measured_in_batch = 0;
            // One borrow per batch: nothing in the loop awaits, so a checkpoint's copy (taken between polls) never meets it.
            {
                let mut st = stats.borrow_mut();
                for i in b.first..b.first + b.count {
                    let intended_ns = pacer.deadline_ns(i).unwrap_or(b.now_ns);
                    let channel = deck.channel(offset, i);
                    let seq = &mut next_seq[channel as usize];
                    let h = Header { producer: id, channel, seq: *seq, intended_ns, sent_ns: b.now_ns };
                    *seq += 1;
                    let payload = payloads.draw();
                    conn.queue(channel, &h, payload);
                    st.record(&h, payload.len(), &window);
                    if window.second_of(intended_ns).is_some() {
                        measured_in_batch += 1;
                        let (first, _) = measured.get_or_insert((i, i));
                        measured = Some((*first, i + 1));
                    }
                }
            }
            if let Some((first, end)) = measured {
                conn.set_measured(first, end);
            }
            // Before the write: a consumer that reads the progress once subscribed
            // (or cut off) gets a bound of every message Redis may have taken by then.
            let progress = &shared.progress[(id * s.channels) as usize..][..s.channels as usize];
            for (p, &next) in progress.iter().zip(&next_seq) {
                p.store(next, Relaxed);
            }
            conn.flush().await?;
            shared.live.sent.fetch_add(b.count, Relaxed);
            count_sent(&shared.live, b.count, measured_in_batch, fanout);
        }
        Ok(())
    }
    .await;
    // A schedule that ran its course (not a stop or a failure) and still had
    // messages due was cut off: the producer fell behind.
    if result.is_ok() && !shared.live.stop_requested() && shared.aborted().is_none() {
        stats.borrow_mut().unsent = pacer.unsent(window.start_ns);
    }
    // After a failure, Redis is likely gone: do not wait long for its replies.
    let wait = if result.is_err() || shared.aborted().is_some() { ABORT_DRAIN } else { Duration::from_secs(5) };
    // Within the drain (`--drain` after the measured phase): a node that went away holds no run beyond it.
    let drain_end = window.end_ns.saturating_add(s.drain.as_nanos() as u64);
    let wait = wait.min(Duration::from_nanos(drain_end.saturating_sub(shared.clock.now_ns())).max(ABORT_DRAIN));
    // After a stop (Ctrl-C), within what is left of the wind-down.
    let wait = shared.live.time_left(wait);
    let finished = conn.finish(wait).await;
    let mut stats = stats.borrow_mut();
    settle(&mut stats, &finished, (deck, offset), measured.unwrap_or((0, 0)), next_seq.iter().sum());
    if let Some(e) = result.err().or(finished.error) {
        shared.fail(who, e);
    }
    let _ = notes.send(Note::ProducerDone { measured: stats.measured_count.clone() });
    Some(stats.clone())
}

/// Adds a producer's write batch to live export's counters: messages
/// scheduled before the measured phase are the warmup's (a producer sends
/// nothing after it).
fn count_sent(live: &Live, count: u64, measured: u64, fanout: u64) {
    let m = &live.meters;
    if count > measured {
        m.sent[0].fetch_add(count - measured, Relaxed);
    }
    if measured > 0 {
        m.sent[1].fetch_add(measured, Relaxed);
        m.expected.fetch_add(measured * fanout, Relaxed);
    }
}

/// Takes in what the connection knew at the end: the replies that
/// arrived, the writes refused among the measured indices
/// `[measured.0, measured.1)`, and from where on Redis never answered.
/// Message `i` went to the channel and sequence the deck gives it (the
/// producer's `offset` in it).
fn settle(p: &mut ProducerStats, f: &Finished, (deck, offset): (&Deck, u64), measured: (u64, u64), sent: u64) {
    let channels = p.measured_count.len() as u32;
    p.reached = f.acks.reached;
    p.redirections = f.acks.redirections;
    p.write_errors = f.acks.errors - f.acks.redirections;
    p.refused = vec![Vec::new(); channels as usize];
    for &i in f.refused.iter().filter(|&&i| (measured.0..measured.1).contains(&i)) {
        let (c, seq) = deck.message(offset, i);
        p.refused[c as usize].push(seq);
    }
    p.refused.iter_mut().for_each(|r| r.sort_unstable());
    let seq_of = |i: u64| deck.message(offset, i).1;
    p.unanswered_from = (0..channels)
        .map(|c| match &f.answered {
            Answered::Prefix(n) if *n >= sent => u64::MAX,
            // Channel c's next message at or after n: as many of c's as went before n.
            Answered::Prefix(n) => deck.sent_to(offset, *n, c),
            Answered::PerChannel(first) => first.get(c as usize).copied().flatten().map_or(u64::MAX, seq_of),
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Window;

    #[test]
    fn a_producers_refusals_and_unanswered_messages_map_to_their_channel_and_sequence() {
        let window = Window { start_ns: 0, end_ns: 1_000_000_000 };
        let mut p = ProducerStats::new(1, 3, &window);
        let deck = Deck::new(crate::scenario::ChannelSkew::Uniform, 3, 1);
        let deck = (&deck, deck.offset(1, 2));
        // Producer 1 over 3 channels: message i goes to channel (i + 1) % 3 as its message i / 3.
        let f = |answered| Finished {
            acks: crate::drivers::Acks { replies: 5, reached: 4, errors: 2, redirections: 1 },
            refused: vec![0, 4],
            answered,
            error: None,
        };
        settle(&mut p, &f(Answered::Prefix(5)), deck, (1, 9), 9);
        assert_eq!((p.reached, p.redirections, p.write_errors), (4, 1, 1));
        assert_eq!(p.refused, [vec![], vec![], vec![1]], "message 0 was not measured; 4 is channel 2's second");
        assert_eq!(p.unanswered_from, [1, 2, 2], "messages 5, 6, 7 are channels 0, 1, 2's next");
        settle(&mut p, &f(Answered::Prefix(9)), deck, (1, 9), 9);
        assert_eq!(p.unanswered_from, [u64::MAX; 3], "everything was answered");
        settle(&mut p, &f(Answered::PerChannel(vec![None, Some(6), None])), deck, (1, 9), 9);
        assert_eq!(p.unanswered_from, [u64::MAX, 2, u64::MAX]);
    }
}
