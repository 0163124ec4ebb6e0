//! Turns what the swarm measured into the report's rows, and checks that
//! every message is accounted for: delivered + lost == expected, per consumer.

use crate::report::rows::{ConsumerRow, LatencyRow, SummaryRow, TimeseriesRow};
use crate::report::RunReport;
use crate::scenario::Scenario;
use crate::swarm::{EventKind, Status, SwarmOutput};
use hdrhistogram::Histogram;

/// Percentiles of `latency.csv`.
pub const PERCENTILES: &[f64] =
    &[0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0];

/// Microseconds from a nanosecond value, with nanosecond precision kept.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn pct_us(h: &Histogram<u64>, p: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else if p >= 100.0 {
        us(h.max())
    } else {
        us(h.value_at_quantile(p / 100.0))
    }
}

/// Builds the report of a run; an accounting mismatch turns the status into
/// `Aborted`, because a result that does not add up must not pass as one.
pub fn summarize(run_id: String, scenario: &Scenario, out: SwarmOutput) -> RunReport {
    let window = out.window;
    let channels = scenario.channels as usize;
    let seconds = window.seconds();

    // Producers' measured ranges per (producer, channel), and counts per channel.
    let mut sent_per_channel = vec![0u64; channels];
    let mut sent_per_second = vec![vec![0u64; channels]; seconds];
    let mut send_lag = crate::stats::latency_histogram();
    let (mut sent, mut reached) = (0u64, 0u64);
    for p in &out.producers {
        for c in 0..channels {
            sent_per_channel[c] += p.measured_count[c];
            for (s, row) in sent_per_second.iter_mut().enumerate() {
                row[c] += p.sent_per_second[s * channels + c];
            }
        }
        sent += p.sent_measured();
        reached += p.reached;
        send_lag.add(&p.send_lag).expect("auto-resizing histograms accept any value");
    }

    let mut mismatch = None;
    let mut consumer_rows = Vec::new();
    let mut subscribers = vec![0u64; channels];
    let (mut expected, mut delivered, mut lost, mut duplicates, mut out_of_order, mut foreign) = (0, 0, 0, 0, 0, 0);
    for c in &out.consumers {
        let st = &c.stats;
        let mut c_expected = 0;
        let mut c_lost = 0;
        for &ch in &c.channels {
            subscribers[ch as usize] += 1;
            for p in &out.producers {
                let count = p.measured_count[ch as usize];
                c_expected += count;
                if let Some(lo) = p.measured_first[ch as usize] {
                    let ledger = &st.ledgers[(p.id * scenario.channels + ch) as usize];
                    c_lost += ledger.missing_in(lo, lo + count);
                }
            }
        }
        if st.delivered + c_lost != c_expected && mismatch.is_none() {
            mismatch = Some(format!(
                "accounting invariant violated for consumer {}: delivered {} + lost {} != expected {}",
                st.id, st.delivered, c_lost, c_expected
            ));
        }
        expected += c_expected;
        delivered += st.delivered;
        lost += c_lost;
        duplicates += st.duplicates;
        out_of_order += st.out_of_order;
        foreign += st.foreign;
        consumer_rows.push(ConsumerRow {
            consumer: st.id,
            channels: c.channels.len() as u32,
            expected: c_expected,
            delivered: st.delivered,
            lost: c_lost,
            duplicates: st.duplicates,
            out_of_order: st.out_of_order,
            disconnects: st.disconnects,
            p99_us: pct_us(&st.latency, 99.0),
        });
    }

    // Interrupted runs measured less than the scenario asked for.
    // An interrupted run measured only until its last send.
    let full_ns = window.end_ns - window.start_ns;
    let last_sent_ns = out.producers.iter().map(|p| p.last_sent_ns).max().unwrap_or(0);
    let measured_ns = match out.status {
        Status::Ok => full_ns,
        _ => last_sent_ns.saturating_sub(window.start_ns).min(full_ns),
    };
    let duration_s = measured_ns as f64 / 1e9;
    let per_s = |n: u64| if duration_s > 0.0 { n as f64 / duration_s } else { 0.0 };
    // The achieved send rate runs until the last message actually went out, so
    // a harness that falls behind its schedule shows a lower rate.
    let send_span_s = (last_sent_ns.saturating_sub(window.start_ns) as f64 / 1e9).max(duration_s);
    let send_rate = if send_span_s > 0.0 { sent as f64 / send_span_s } else { 0.0 };

    // Per-second rows: loss counts in the second the message was due.
    let outages: Vec<(u64, u64)> = outage_intervals(&out);
    let timeseries = (0..seconds)
        .map(|s| {
            let sec = &out.threads.seconds[s];
            let expected_s: u64 = (0..channels).map(|c| sent_per_second[s][c] * subscribers[c]).sum();
            let (from, to) =
                (window.start_ns + s as u64 * 1_000_000_000, window.start_ns + (s as u64 + 1) * 1_000_000_000);
            let away = outages.iter().filter(|&&(down, up)| down < to && up > from).count() as u64;
            TimeseriesRow {
                second: s as u32,
                sent: sent_per_second[s].iter().sum(),
                delivered: sec.delivered,
                lost: expected_s.saturating_sub(sec.delivered),
                p50_us: pct_us(&sec.latency, 50.0),
                p99_us: pct_us(&sec.latency, 99.0),
                max_us: pct_us(&sec.latency, 100.0),
                connected_consumers: (scenario.consumers as u64).saturating_sub(away) as u32,
            }
        })
        .collect();

    let lat = &out.threads.latency;
    let raw = &out.threads.raw;
    let latency = PERCENTILES
        .iter()
        .map(|&p| LatencyRow { percentile: p, latency_us: pct_us(lat, p), raw_latency_us: pct_us(raw, p) })
        .collect();

    let status = match (mismatch, out.status.clone()) {
        (Some(m), _) => Status::Aborted(m),
        (None, s) => s,
    };
    let (status_str, reason) = match &status {
        Status::Ok => ("ok", String::new()),
        Status::Interrupted => ("interrupted", "interrupted by signal".to_string()),
        Status::Aborted(r) => ("aborted", r.clone()),
    };
    let summary = SummaryRow {
        run_id: run_id.clone(),
        status: status_str.into(),
        reason,
        transport: scenario.transport.to_string(),
        url: scenario.url.as_deref().map_or_else(|| "private".into(), crate::target::redact_url),
        producers: scenario.producers,
        consumers: scenario.consumers,
        channels: scenario.channels,
        payload_bytes: scenario.payload as u64,
        target_rate: scenario.rate,
        duration_s,
        sent,
        expected,
        reached,
        delivered,
        lost,
        duplicates,
        out_of_order,
        foreign,
        send_rate,
        delivery_rate: per_s(delivered),
        p50_us: pct_us(lat, 50.0),
        p90_us: pct_us(lat, 90.0),
        p99_us: pct_us(lat, 99.0),
        p999_us: pct_us(lat, 99.9),
        max_us: pct_us(lat, 100.0),
        raw_p50_us: pct_us(raw, 50.0),
        raw_p99_us: pct_us(raw, 99.0),
        raw_max_us: pct_us(raw, 100.0),
        send_lag_p99_us: pct_us(&send_lag, 99.0),
        threads: out.thread_count as u32,
    };
    let events = out.consumers.iter().flat_map(|c| c.events.iter().cloned()).collect();
    RunReport {
        run_id,
        scenario: scenario.clone(),
        status,
        summary,
        latency,
        timeseries,
        consumers: consumer_rows,
        events,
        window,
        histogram: out.threads.latency,
        raw_histogram: out.threads.raw,
    }
}

/// Intervals during which a consumer was not subscribed.
fn outage_intervals(out: &SwarmOutput) -> Vec<(u64, u64)> {
    let mut intervals = Vec::new();
    for c in &out.consumers {
        let mut down = None;
        for e in &c.events {
            match e.kind {
                EventKind::Disconnect => down = Some(e.at_ns),
                EventKind::Resubscribed => {
                    if let Some(d) = down.take() {
                        intervals.push((d, e.at_ns));
                    }
                }
            }
        }
        if let Some(d) = down {
            intervals.push((d, u64::MAX));
        }
    }
    intervals
}
