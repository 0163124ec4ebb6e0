//! One run's result from several worker processes: what each one's swarm
//! returned ([`SwarmOutput`]), merged exactly. Histograms add, counters sum,
//! consumers and producers keep their global ids, so [`summarize`] sees the
//! merged output as if one process had run the whole swarm.
//!
//! [`summarize`]: crate::results::summarize::summarize

use crate::swarm::SwarmOutput;
use thiserror::Error;

/// Outputs that cannot belong to one run.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MergeError {
    #[error("no worker output to merge")]
    Empty,
    #[error("worker outputs measured different phases ({0:?} and {1:?}): they did not share a start")]
    Window(crate::stats::Window, crate::stats::Window),
    #[error("{0} {1} was run by two workers")]
    Twice(&'static str, u32),
}

/// Merges the outputs of the workers of one run.
pub fn merge(parts: Vec<SwarmOutput>) -> Result<SwarmOutput, MergeError> {
    let mut parts = parts.into_iter();
    let mut all = parts.next().ok_or(MergeError::Empty)?;
    for part in parts {
        if part.window != all.window {
            return Err(MergeError::Window(all.window, part.window));
        }
        all.threads.merge(&part.threads);
        all.side.merge(part.side);
        all.consumers.extend(part.consumers);
        all.producers.extend(part.producers);
        all.outcome = all.outcome.worst(part.outcome);
        all.drain_ns = all.drain_ns.max(part.drain_ns);
        all.recovered_ns = match (all.recovered_ns, part.recovered_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        all.thread_count += part.thread_count;
    }
    all.consumers.sort_by_key(|c| c.stats.id);
    all.producers.sort_by_key(|p| p.id);
    if let Some(w) = all.consumers.windows(2).find(|w| w[0].stats.id == w[1].stats.id) {
        return Err(MergeError::Twice("consumer", w[0].stats.id));
    }
    if let Some(w) = all.producers.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(MergeError::Twice("producer", w[0].id));
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::{EventKind, Outage};
    use crate::drivers::ConsumerOutput;
    use crate::live::{Outcome, Status};
    use crate::results::summarize::{summarize, RunFacts};
    use crate::results::RunReport;
    use crate::stats::{ConsumerStats, ProducerStats, ThreadStats, Window};
    use crate::wire::Header;

    const PRODUCERS: u32 = 2;
    const CHANNELS: u32 = 2;
    const CONSUMERS: u32 = 3;

    fn scenario() -> crate::Scenario {
        crate::Scenario { producers: PRODUCERS, consumers: CONSUMERS, channels: CHANNELS, ..crate::Scenario::default() }
    }

    /// A synthetic run: every producer sends 40 messages per channel over 3 s
    /// (the first ones during warmup); consumer 1 misses a stretch during an
    /// outage, consumer 2 gets one message twice. `keep(producer, consumer)`
    /// selects what goes into this output, on one thread.
    fn output(keep_producer: impl Fn(u32) -> bool, keep_consumer: impl Fn(u32) -> bool) -> SwarmOutput {
        let window = Window { start_ns: 500_000_000, end_ns: 3_000_000_000 };
        let mut threads = ThreadStats::new(&window);
        let mut producers: Vec<ProducerStats> =
            (0..PRODUCERS).map(|p| ProducerStats::new(p, CHANNELS, &window)).collect();
        let mut consumers: Vec<ConsumerOutput> = (0..CONSUMERS)
            .map(|c| ConsumerOutput {
                stats: ConsumerStats::new(c, PRODUCERS, CHANNELS),
                channels: (0..CHANNELS).collect(),
                outages: Vec::new(),
                end: None,
            })
            .collect();
        let mut payload = vec![0u8; 64];
        for seq in 0..40u64 {
            for p in 0..PRODUCERS {
                for ch in 0..CHANNELS {
                    let intended_ns = seq * 75_000_000 + u64::from(p) * 1_000 + u64::from(ch);
                    let h = Header { producer: p, channel: ch, seq, intended_ns, sent_ns: intended_ns + 2_000 };
                    producers[p as usize].record(&h, 64, &window);
                    h.encode(&mut payload);
                    for c in 0..CONSUMERS {
                        if c == 1 && (10..20).contains(&seq) {
                            continue;
                        }
                        let now = intended_ns + 50_000 + seq * 1_000 * u64::from(c + 1);
                        let stats = &mut consumers[c as usize].stats;
                        if keep_consumer(c) {
                            stats.record(&payload, now, &window, &mut threads);
                            if c == 2 && seq == 15 {
                                stats.record(&payload, now + 10, &window, &mut threads);
                            }
                        }
                    }
                }
            }
        }
        let streams = (PRODUCERS * CHANNELS) as usize;
        consumers[1].outages.push(Outage {
            consumer: 1,
            kind: EventKind::Disconnect,
            closed_ns: 10 * 75_000_000,
            resubscribed_ns: Some(20 * 75_000_000),
            received: vec![10; streams],
            closed: vec![12; streams],
            resubscribed: Some(vec![18; streams]),
        });
        consumers.iter_mut().for_each(|c| c.end = Some(c.stats.positions()));
        SwarmOutput {
            window,
            threads,
            side: Default::default(),
            consumers: consumers.into_iter().filter(|c| keep_consumer(c.stats.id)).collect(),
            producers: producers.into_iter().filter(|p| keep_producer(p.id)).collect(),
            outcome: Outcome::ok(),
            thread_count: 1,
            recovered_ns: None,
            drain_ns: 0,
        }
    }

    /// The results of a run in one process with this output.
    fn report(out: SwarmOutput) -> RunReport {
        summarize(RunFacts {
            run_id: "r".into(),
            scenario: scenario(),
            out,
            nodes: 1,
            workers: 1,
            cpu: Default::default(),
            clock_uncertainty_ns: 0,
            node_outage: None,
            epoch: None,
            telemetry: Default::default(),
            cut_ns: None,
            machine: Default::default(),
        })
    }

    /// Through JSON, as a worker's output travels.
    fn via_json(out: SwarmOutput) -> SwarmOutput {
        serde_json::from_str(&serde_json::to_string(&out).unwrap()).unwrap()
    }

    #[test]
    fn merging_the_split_of_a_run_gives_the_whole() {
        let whole = output(|_| true, |_| true);
        // Producers in one worker, consumers split over it and two more.
        let parts = vec![
            via_json(output(|p| p == 0, |c| c == 2)),
            via_json(output(|p| p == 1, |_| false)),
            via_json(output(|_| false, |c| c < 2)),
        ];
        let merged = merge(parts).unwrap();
        assert_eq!(merged.thread_count, 3);
        let (a, b) = (report(merged), report(whole));
        assert_eq!(a.summary.status, Status::Ok, "{}", a.summary.reason);
        assert!(a.summary.lost > 0 && a.summary.duplicates == 4, "the test exercises loss: {:?}", a.summary);
        assert!(a.summary.lost_unsubscribed > 0 && a.summary.lost_in_buffer > 0, "{:?}", a.summary);
        let mut expected_summary = b.summary.clone();
        expected_summary.threads = 3;
        assert_eq!(a.summary, expected_summary);
        assert_eq!(a.consumers, b.consumers);
        assert_eq!(a.timeseries, b.timeseries);
        assert_eq!(a.latency, b.latency);
        assert_eq!(a.events, b.events);
        let counts = |h: &hdrhistogram::Histogram<u64>| {
            h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect::<Vec<_>>()
        };
        assert_eq!(counts(&a.histogram), counts(&b.histogram));
        assert_eq!(counts(&a.raw_histogram), counts(&b.raw_histogram));
        for (x, y) in a.per_second.iter().zip(&b.per_second) {
            assert_eq!(counts(&x.histogram()), counts(&y.histogram()));
        }
    }

    #[test]
    fn outputs_of_different_runs_do_not_merge() {
        assert_eq!(merge(Vec::new()).unwrap_err(), MergeError::Empty);
        let twice = merge(vec![output(|_| true, |c| c == 0), output(|_| false, |c| c == 0)]);
        assert_eq!(twice.unwrap_err(), MergeError::Twice("consumer", 0));
        let mut other = output(|_| false, |c| c == 1);
        other.window.end_ns += 1;
        assert!(matches!(merge(vec![output(|_| true, |c| c == 0), other]), Err(MergeError::Window(..))));
    }

    #[test]
    fn the_merged_status_is_the_worst() {
        let mut parts = vec![output(|_| true, |_| false), output(|_| false, |_| true)];
        parts[1].outcome = Outcome::aborted("redis went away");
        assert_eq!(merge(parts).unwrap().outcome, Outcome::aborted("redis went away"));
    }
}
