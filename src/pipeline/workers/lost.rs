//! The share of a worker that failed mid-run (killed, its host cut off for
//! good): its results died with it, so the coordinator stands in for them
//! from what it knows, and the run's files stay whole.
//!
//! - Its **producers** are rebuilt from their schedule (the pacer is a pure
//!   function of the scenario and the window) and from what the other
//!   workers' consumers received of them: a message of a (producer, channel)
//!   below the highest sequence anyone received was sent (Pub/Sub and
//!   Streams keep one connection's order); the measured messages after it
//!   were not seen sent (the worker could not send them, or sent them
//!   unseen): not counted as sent, and counted in the run's reason (not as
//!   `unsent`, which says the harness fell behind). Their send lag is
//!   unknown and left out.
//! - Its **consumers** received nothing anyone can count: every message they
//!   expected is `undelivered`.
//!
//! Nothing is counted twice: the rebuilt producers only say what others
//! received; the rebuilt consumers hold no deliveries.

use crate::drivers::ConsumerOutput;
use crate::live::Outcome;
use crate::pacer::Pacer;
use crate::scenario::Scenario;
use crate::stats::{ConsumerStats, ProducerStats, ThreadStats, Window};
use crate::swarm::SwarmOutput;
use std::ops::Range;

/// The stand-in for a lost worker's share, beside the survivors' `outputs`
/// (at least one), and the measured messages of its producers not seen sent.
pub fn stand_in(
    scenario: &Scenario,
    (producers, consumers): (Range<u32>, Range<u32>),
    outputs: &[SwarmOutput],
    outcome: Outcome,
) -> Option<(SwarmOutput, u64)> {
    let window = outputs.first()?.window;
    let seen = highest_seen(scenario, outputs);
    let streams = (scenario.producers * scenario.channels) as usize;
    let rebuilt: Vec<(ProducerStats, u64)> =
        producers.map(|id| rebuilt_producer(scenario, id, &window, &seen)).collect();
    let unseen = rebuilt.iter().map(|(_, u)| u).sum();
    let out = SwarmOutput {
        window,
        threads: ThreadStats::new(&window),
        side: Default::default(),
        consumers: consumers
            .map(|id| ConsumerOutput {
                stats: ConsumerStats::new(id, scenario.producers, scenario.channels),
                channels: (0..scenario.channels).collect(),
                outages: Vec::new(),
                // Whatever it had not received "from sequence 0 on" is undelivered: all of it.
                end: Some(vec![0; streams]),
            })
            .collect(),
        producers: rebuilt.into_iter().map(|(p, _)| p).collect(),
        outcome,
        thread_count: 0,
        recovered_ns: None,
        drain_ns: 0,
    };
    Some((out, unseen))
}

/// Per (producer, channel) stream: one past the highest sequence any consumer of `outputs` received.
fn highest_seen(scenario: &Scenario, outputs: &[SwarmOutput]) -> Vec<u64> {
    let mut seen = vec![0u64; (scenario.producers * scenario.channels) as usize];
    for c in outputs.iter().flat_map(|o| &o.consumers) {
        for (s, next) in seen.iter_mut().zip(c.stats.positions()) {
            *s = (*s).max(next);
        }
    }
    seen
}

/// Producer `id`'s schedule, its messages below `seen` counted as sent; and
/// its measured ones from there on, not seen sent. With `--rate 0` there is
/// no schedule to rebuild: nothing is counted as sent.
fn rebuilt_producer(scenario: &Scenario, id: u32, window: &Window, seen: &[u64]) -> (ProducerStats, u64) {
    let channels = scenario.channels as u64;
    let mut p = ProducerStats::new(id, scenario.channels, window);
    let warmup_start = window.start_ns.saturating_sub(scenario.warmup.as_nanos() as u64);
    let pacer = Pacer::for_producer(&scenario.rate, scenario.producers, warmup_start, window.start_ns, window.end_ns);
    let mut next_seq = vec![0u64; channels as usize];
    let mut unseen = 0;
    for i in 0.. {
        let Some(intended) = pacer.deadline_ns(i) else { break };
        if intended >= window.end_ns {
            break;
        }
        let channel = ((i + id as u64) % channels) as usize;
        let seq = next_seq[channel];
        next_seq[channel] += 1;
        let sent = seq < seen[(id as u64 * channels) as usize + channel];
        p.sent_total += sent as u64;
        let Some(second) = window.second_of(intended) else { continue };
        p.measured_first[channel].get_or_insert(seq);
        if !sent {
            unseen += 1;
            continue;
        }
        p.measured_count[channel] += 1;
        let at = second * channels as usize + channel;
        if at >= p.sent_per_second.len() {
            p.sent_per_second.resize((second + 1) * channels as usize, 0);
        }
        p.sent_per_second[at] += 1;
        p.last_sent_ns = p.last_sent_ns.max(intended);
    }
    (p, unseen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Rate;
    use std::time::Duration;

    #[test]
    fn a_lost_producer_is_sent_up_to_what_others_received_and_unsent_after() {
        let scenario = Scenario {
            producers: 2,
            channels: 2,
            rate: Rate::Constant(200.0),
            warmup: Duration::from_secs(1),
            ..Scenario::default()
        };
        // 100/s per producer, 50/s per channel: 1 s of warmup (50 per channel), 2 s measured (100 per channel).
        let window = Window { start_ns: 1_000_000_000, end_ns: 3_000_000_000 };
        // Producer 1's channel 0 was received up to sequence 79, channel 1 up to 149 (all).
        let seen = [0, 0, 80, 150];
        let (p, unseen) = rebuilt_producer(&scenario, 1, &window, &seen);
        assert_eq!(p.measured_first, [Some(50), Some(50)]);
        assert_eq!(p.measured_count, [30, 100], "channel 0: 50..80 measured and sent");
        assert_eq!((unseen, p.unsent), (70, 0), "channel 0: 80..150 measured, never seen");
        assert_eq!(p.sent_total, 80 + 150);
        assert_eq!(p.sent_per_second.iter().sum::<u64>(), p.sent_measured());
        let (nothing, unseen) = rebuilt_producer(&scenario, 0, &window, &seen);
        assert_eq!((nothing.sent_measured(), unseen), (0, 200), "nobody received producer 0");
    }
}
