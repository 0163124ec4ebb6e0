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
use crate::rows::{ServerRow, SummaryRow};
use crate::telemetry::Latest;
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
    /// The server's latest sampled second, per node (server telemetry).
    server: Arc<Latest>,
}

/// Loss causes as summary.csv names them (`lost_<cause>`).
pub const CAUSES: [&str; 5] = ["unsubscribed", "in_buffer", "trimmed", "unanswered", "other"];

/// Phases of the `eventbench_phase` state set: the run's three, and `done`
/// once its results are in (the values are then final).
pub const STATES: [&str; 4] = ["warmup", "measure", "drain", "done"];

impl Board {
    /// From now on, export shows this run (`compare` and `capacity` show each run in turn).
    pub fn watch(&self, live: Arc<Live>, transport: String, server: Arc<Latest>) {
        *self.lock() = Some(Watched { live, transport, summary: None, server });
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
        let labels = Labels { run_id, transport: w.transport };
        let mut all = families(&labels, &w.live.snapshot(), state, w.summary.as_ref());
        all.extend(server_families(&labels, &w.server.rows()));
        all
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

/// The server's figures (server telemetry), one series per node, from its
/// latest sampled second. A node not sampled yet, or a figure it did not
/// give (the node was down, telemetry is off, the transport has no streams),
/// reads NaN, so that every series exists from the first scrape.
pub fn server_families(labels: &Labels, rows: &[ServerRow]) -> Vec<Family> {
    let none = [ServerRow::default()];
    let rows = if rows.is_empty() { &none[..] } else { rows };
    type Figure = fn(&ServerRow) -> Option<f64>;
    let figures: [(&'static str, &'static str, Figure); 10] = [
        ("eventbench_server_cpu_ratio", "The server's CPU (user + system) over its last second, of one core", |r| {
            r.server_cpu_pct.map(|p| p / 100.0)
        }),
        (
            "eventbench_server_main_thread_cpu_ratio",
            "The server's main thread's CPU over its last second, of one core",
            |r| r.server_main_thread_cpu_pct.map(|p| p / 100.0),
        ),
        ("eventbench_server_memory_bytes", "The server's used_memory, bytes", |r| {
            r.used_memory_bytes.map(|v| v as f64)
        }),
        ("eventbench_server_connected_clients", "Clients connected to the server", |r| {
            r.connected_clients.map(|v| v as f64)
        }),
        ("eventbench_server_commands_per_second", "Commands the server processed in its last second", |r| {
            r.commands_per_s
        }),
        ("eventbench_server_pubsub_channels", "Pub/Sub channels with subscribers (classic and sharded)", |r| {
            match (r.pubsub_channels, r.pubsub_shard_channels) {
                (None, None) => None,
                (a, b) => Some((a.unwrap_or(0) + b.unwrap_or(0)) as f64),
            }
        }),
        (
            "eventbench_server_subscriber_output_buffer_bytes",
            "Output-buffer memory of the subscribers, summed, bytes",
            |r| r.subscriber_omem_bytes.map(|v| v as f64),
        ),
        ("eventbench_server_stream_length", "Streams: entries in the run's streams on the node", |r| {
            r.stream_length.map(|v| v as f64)
        }),
        ("eventbench_server_group_lag", "Streams: entries the groups have not read yet", |r| {
            r.group_lag.map(|v| v as f64)
        }),
        ("eventbench_server_group_pending", "Streams: entries read but not acknowledged", |r| {
            r.group_pending.map(|v| v as f64)
        }),
    ];
    figures
        .iter()
        .map(|&(name, help, figure)| Family {
            name,
            help,
            kind: Kind::Gauge,
            unit: None,
            samples: rows
                .iter()
                .map(|r| Sample {
                    labels: labels.with(&[("node", &r.node.to_string())]),
                    value: Value::Number(figure(r).unwrap_or(f64::NAN)),
                })
                .collect(),
        })
        .collect()
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

    #[test]
    fn server_series_exist_before_the_first_sample_and_follow_each_node() {
        let labels = Labels { run_id: "r".into(), transport: "streams".into() };
        let before = server_families(&labels, &[]);
        assert!(before.iter().all(|f| f.samples.len() == 1), "node 0, not sampled yet");
        let nan = |f: &Family| matches!(f.samples[0].value, Value::Number(v) if v.is_nan());
        assert!(before.iter().all(nan));
        let rows = [
            ServerRow { node: 0, server_cpu_pct: Some(42.0), group_lag: Some(7), ..ServerRow::default() },
            ServerRow { node: 1, server_cpu_pct: None, ..ServerRow::default() },
        ];
        let after = server_families(&labels, &rows);
        let cpu = after.iter().find(|f| f.name == "eventbench_server_cpu_ratio").unwrap();
        assert_eq!(cpu.samples.len(), 2);
        assert!(matches!(cpu.samples[0].value, Value::Number(v) if v == 0.42));
        assert!(cpu.samples[1].labels.contains(&("node", "1".to_string())));
        assert!(matches!(cpu.samples[1].value, Value::Number(v) if v.is_nan()), "a node that was down");
        let lag = after.iter().find(|f| f.name == "eventbench_server_group_lag").unwrap();
        assert!(matches!(lag.samples[0].value, Value::Number(v) if v == 7.0));
    }
}
