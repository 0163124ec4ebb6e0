//! Live export: what a run looks like while it goes on, for those who watch
//! it from outside. [`Board`] holds the run being watched; [`families`]
//! declares every metric once, from one reading of the live counters (and,
//! once the run has ended, from its summary); `text` and `openmetrics` write
//! that list in the two exposition formats, `http` serves them on
//! `--metrics-listen`, and `jsonl` makes the per-second lines of `--format jsonl`.
//!
//! Nothing here is on the hot path: a scrape takes one reading of the
//! counters the engine updates per batch, and of every thread's latency buckets.

pub mod http;
pub mod jsonl;
pub mod openmetrics;
pub mod text;

use crate::live::Live;
use crate::meters::{Snapshot, BUCKETS, BUCKET_BOUNDS_NS, PHASES};
use crate::rows::SummaryRow;
use std::sync::{Arc, Mutex};

/// What a metric is, as both formats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its name without the `_total` a counter's samples carry.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// `seconds` for the latency histogram (its name ends with it already).
    pub unit: Option<&'static str>,
    pub samples: Vec<Sample>,
}

/// One series of a metric: its labels (run_id and transport first) and value.
#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Number(f64),
    /// Per bucket (not cumulative) with its upper bound in seconds, the overflow (`+Inf`) last.
    Histogram {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
}

/// The run export shows, if any: its live counters, labels, and once it
/// has ended, its summary (whose totals then replace the live ones).
#[derive(Default)]
pub struct Board {
    current: Mutex<Option<Watched>>,
}

#[derive(Clone)]
struct Watched {
    live: Arc<Live>,
    transport: String,
    summary: Option<SummaryRow>,
}

/// Loss causes as summary.csv names them (`lost_<cause>`).
pub const CAUSES: [&str; 5] = ["unsubscribed", "in_buffer", "trimmed", "unanswered", "other"];

/// Phases of the `eventbench_phase` state set: the run's three, and `done`
/// once its results are in (the values are then final).
pub const STATES: [&str; 4] = ["warmup", "measure", "drain", "done"];

impl Board {
    /// From now on, export shows this run (`compare` and `capacity` show each run in turn).
    pub fn watch(&self, live: Arc<Live>, transport: String) {
        *self.lock() = Some(Watched { live, transport, summary: None });
    }

    /// The run ended: its totals are summary.csv's from now on.
    pub fn finish(&self, summary: &SummaryRow) {
        if let Some(w) = self.lock().as_mut() {
            w.summary = Some(summary.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Watched>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every metric of the run being watched; none before a run has an id.
    pub fn families(&self) -> Vec<Family> {
        let Some(w) = self.lock().clone() else { return Vec::new() };
        let Some(run_id) = w.live.meters.run_id() else { return Vec::new() };
        let state = match &w.summary {
            Some(_) => 3,
            None => phase_of(&w.live),
        };
        families(&Labels { run_id, transport: w.transport }, &w.live.snapshot(), state, w.summary.as_ref())
    }
}

/// The run's phase now (an index into [`STATES`], not `done`).
pub fn phase_of(live: &Live) -> usize {
    match (live.now_ns(), live.measured_phase()) {
        (Some(now), Some((start, end))) => crate::meters::phase_at(now, start, end),
        _ => 0,
    }
}

/// The labels every series carries. Never a URL or a password: the run's
/// id is its name and a time stamp.
pub struct Labels {
    pub run_id: String,
    pub transport: String,
}

impl Labels {
    fn with(&self, more: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        let mut l = vec![("run_id", self.run_id.clone()), ("transport", self.transport.clone())];
        l.extend(more.iter().map(|&(k, v)| (k, v.to_string())));
        l
    }
}

/// The metric list, declared once for both formats. Live values come from
/// `s`; with `summary` (the run has ended) the totals are summary.csv's, so
/// the last scrape and the files agree.
pub fn families(labels: &Labels, s: &Snapshot, state: usize, summary: Option<&SummaryRow>) -> Vec<Family> {
    let one = |name, help, kind, v: f64| Family {
        name,
        help,
        kind,
        unit: None,
        samples: vec![Sample { labels: labels.with(&[]), value: Value::Number(v) }],
    };
    let by_phase = |name, help, v: [u64; 3]| Family {
        name,
        help,
        kind: Kind::Counter,
        unit: None,
        samples: PHASES
            .iter()
            .zip(v)
            .map(|(p, v)| Sample { labels: labels.with(&[("phase", p)]), value: Value::Number(v as f64) })
            .collect(),
    };
    // At the end, the measured phase's counts become the files' (the drain's stay as counted).
    let settle =
        |live: [u64; 3], total: u64| -> [u64; 3] { [live[0], total.saturating_sub(live[0] + live[2]), live[2]] };
    let (mut sent, mut delivered, mut duplicates, mut out_of_order) =
        (s.sent, s.delivered, s.duplicates, s.out_of_order);
    let (mut expected, mut missing, mut undelivered) = (s.expected, s.missing, s.undelivered());
    let mut lost = [0u64; 5];
    if let Some(r) = summary {
        sent = [s.sent[0], r.sent, 0];
        delivered = settle(s.delivered, r.delivered);
        duplicates = settle(s.duplicates, r.duplicates);
        out_of_order = settle(s.out_of_order, r.out_of_order);
        (expected, missing, undelivered) = (r.expected, r.lost, r.undelivered);
        lost = [r.lost_unsubscribed, r.lost_in_buffer, r.lost_trimmed, r.lost_unanswered, r.lost_other];
    }
    let latency = {
        let l = &s.latency;
        let mut buckets: Vec<(f64, u64)> =
            BUCKET_BOUNDS_NS.iter().zip(&l.counts).map(|(&b, &c)| (b as f64 / 1e9, c)).collect();
        buckets.push((f64::INFINITY, l.counts[BUCKETS - 1]));
        Value::Histogram { buckets, sum: l.sum_ns as f64 / 1e9, count: l.count() }
    };
    vec![
        Family {
            name: "eventbench_phase",
            help: "1 for the phase the run is in (done: it ended and the values are final), 0 for the others",
            kind: Kind::Gauge,
            unit: None,
            samples: STATES
                .iter()
                .enumerate()
                .map(|(i, p)| Sample {
                    labels: labels.with(&[("phase", p)]),
                    value: Value::Number(f64::from(u8::from(i == state))),
                })
                .collect(),
        },
        by_phase(
            "eventbench_messages_sent",
            "Messages written, by the phase they were scheduled in (measure: summary.csv's sent)",
            sent,
        ),
        by_phase(
            "eventbench_messages_delivered",
            "First deliveries of measured messages, by the phase they arrived in",
            delivered,
        ),
        one(
            "eventbench_deliveries_expected",
            "Deliveries the measured messages sent so far should make (each message times its consumers or groups)",
            Kind::Counter,
            expected as f64,
        ),
        Family {
            name: "eventbench_lost",
            help:
                "Measured messages lost, by cause; attributed when the run ends (0 until then: see eventbench_missing)",
            kind: Kind::Counter,
            unit: None,
            samples: CAUSES
                .iter()
                .zip(lost)
                .map(|(c, v)| Sample { labels: labels.with(&[("cause", c)]), value: Value::Number(v as f64) })
                .collect(),
        },
        one(
            "eventbench_missing",
            "Measured messages missing so far: gaps consumers saw, less those filled late (at the end: lost)",
            Kind::Gauge,
            missing as f64,
        ),
        one(
            "eventbench_undelivered",
            "Expected deliveries neither delivered nor missing yet: in flight (at the end: summary.csv's undelivered)",
            Kind::Gauge,
            undelivered as f64,
        ),
        by_phase("eventbench_duplicates", "Measured messages delivered again to the same consumer", duplicates),
        by_phase("eventbench_out_of_order", "Measured messages that arrived after a later one", out_of_order),
        Family {
            name: "eventbench_latency_seconds",
            help: "End-to-end latency of first deliveries of measured messages (receive time minus intended send time)",
            kind: Kind::Histogram,
            unit: Some("seconds"),
            samples: vec![Sample { labels: labels.with(&[]), value: latency }],
        },
        one(
            "eventbench_backlog",
            "Streams: entries not yet acknowledged, summed over groups, at the last sample (Pub/Sub: 0)",
            Kind::Gauge,
            s.backlog as f64,
        ),
        one("eventbench_consumers_connected", "Consumers currently subscribed", Kind::Gauge, s.connected as f64),
        one(
            "eventbench_harness_cpu_ratio",
            "eventbench's CPU use over the last second, as a share of the CPUs it may use (busiest worker process)",
            Kind::Gauge,
            s.cpu_ratio,
        ),
        // Server telemetry (issue #17) joins this list here, as families of its own.
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(families: &[Family], name: &str, label: Option<(&str, &str)>) -> f64 {
        let f = families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("{name}"));
        let s = f
            .samples
            .iter()
            .find(|s| label.is_none_or(|(k, v)| s.labels.iter().any(|(lk, lv)| *lk == k && lv == v)))
            .unwrap_or_else(|| panic!("{name} {label:?}"));
        match s.value {
            Value::Number(v) => v,
            Value::Histogram { count, .. } => count as f64,
        }
    }

    fn live() -> Snapshot {
        let mut s = Snapshot {
            sent: [100, 900, 0],
            delivered: [0, 850, 20],
            expected: 900,
            missing: 10,
            connected: 1,
            ..Snapshot::default()
        };
        s.latency.counts[3] = 870;
        s
    }

    #[test]
    fn every_series_exists_from_the_first_reading_and_live_values_show() {
        let labels = Labels { run_id: "r".into(), transport: "pubsub".into() };
        let f = families(&labels, &Snapshot::default(), 0, None);
        assert!(f.iter().all(|f| !f.samples.is_empty()));
        assert_eq!(value(&f, "eventbench_lost", Some(("cause", "trimmed"))), 0.0);
        assert_eq!(value(&f, "eventbench_phase", Some(("phase", "warmup"))), 1.0);
        assert!(f
            .iter()
            .flat_map(|f| &f.samples)
            .all(|s| s.labels[..2] == [("run_id", "r".into()), ("transport", "pubsub".into())]));
        let f = families(&labels, &live(), 1, None);
        assert_eq!(value(&f, "eventbench_messages_sent", Some(("phase", "measure"))), 900.0);
        assert_eq!(value(&f, "eventbench_undelivered", None), 900.0 - 870.0 - 10.0);
        assert_eq!(value(&f, "eventbench_latency_seconds", None), 870.0);
        assert_eq!(value(&f, "eventbench_phase", Some(("phase", "measure"))), 1.0);
    }

    #[test]
    fn once_the_run_ended_the_totals_are_the_summarys() {
        let labels = Labels { run_id: "r".into(), transport: "pubsub".into() };
        let summary = SummaryRow {
            sent: 900,
            expected: 900,
            delivered: 880,
            lost: 12,
            lost_in_buffer: 2,
            lost_unsubscribed: 10,
            undelivered: 8,
            ..SummaryRow::default()
        };
        let f = families(&labels, &live(), 3, Some(&summary));
        assert_eq!(value(&f, "eventbench_phase", Some(("phase", "done"))), 1.0);
        let delivered: f64 =
            PHASES.iter().map(|p| value(&f, "eventbench_messages_delivered", Some(("phase", p)))).sum();
        assert_eq!(delivered, 880.0);
        assert_eq!(value(&f, "eventbench_messages_delivered", Some(("phase", "drain"))), 20.0, "as counted");
        assert_eq!(value(&f, "eventbench_lost", Some(("cause", "unsubscribed"))), 10.0);
        assert_eq!(value(&f, "eventbench_lost", Some(("cause", "in_buffer"))), 2.0);
        assert_eq!((value(&f, "eventbench_missing", None), value(&f, "eventbench_undelivered", None)), (12.0, 8.0));
    }

    #[test]
    fn both_formats_name_counters_as_their_specs_do() {
        let labels = Labels { run_id: "r".into(), transport: "streams".into() };
        let f = families(&labels, &live(), 1, None);
        let text = text::encode(&f).unwrap();
        assert!(text.contains("# TYPE eventbench_messages_sent_total counter\n"), "{text}");
        assert!(
            text.contains("eventbench_latency_seconds_bucket{run_id=\"r\",transport=\"streams\",le=\"+Inf\"} 870\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"));
        let om = openmetrics::encode(f).unwrap();
        assert!(om.contains("# TYPE eventbench_messages_sent counter\n"), "{om}");
        assert!(
            om.contains("eventbench_messages_sent_total{run_id=\"r\",transport=\"streams\",phase=\"measure\"} 900\n"),
            "{om}"
        );
        assert!(om.contains("# UNIT eventbench_latency_seconds seconds\n") && om.ends_with("# EOF\n"), "{om}");
    }
}
