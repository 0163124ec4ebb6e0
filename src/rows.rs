//! One flat struct per CSV file. Field names are the column names; the manual
//! documents each (a test checks that the two agree). Units are in the names:
//! `_us` microseconds, `_s` seconds, `_bytes` bytes, `rate` messages per second.

use crate::chaos::EventKind;
use crate::live::Status;
use serde::{Deserialize, Serialize};

/// `summary.csv`: one row per run. Counts cover the measured phase only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub run_id: String,
    pub status: Status,
    pub reason: String,
    pub transport: String,
    pub url: String,
    /// Absent from run directories written before clusters (a single server then).
    #[serde(default = "one")]
    pub nodes: u32,
    pub producers: u32,
    pub consumers: u32,
    pub channels: u32,
    pub payload_bytes: u64,
    pub target_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    /// Absent from runs written before producers were cut off at the end of the phase.
    #[serde(default)]
    pub unsent: u64,
    pub expected: u64,
    pub reached: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Absent from runs written before it was counted (they called it lost).
    #[serde(default)]
    pub undelivered: u64,
    pub lost_unsubscribed: u64,
    pub lost_in_buffer: u64,
    #[serde(default)]
    pub lost_trimmed: u64,
    #[serde(default)]
    pub lost_unanswered: u64,
    pub lost_other: u64,
    /// Absent from runs written before it was judged.
    #[serde(default)]
    pub sustained: bool,
    #[serde(default)]
    pub in_flight_end: u64,
    #[serde(default)]
    pub drain_s: f64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub foreign: u64,
    pub redelivered: u64,
    pub acked: u64,
    #[serde(default)]
    pub redirections: u64,
    #[serde(default)]
    pub write_errors: u64,
    pub backlog_max: u64,
    pub replay_catchup_s: Option<f64>,
    pub replay_rate: Option<f64>,
    #[serde(default)]
    pub recover_ms: Option<f64>,
    pub send_rate: f64,
    /// Payload bytes (header included) of the measured messages sent; absent from runs before sizes were drawn.
    #[serde(default)]
    pub sent_bytes: u64,
    /// `sent_bytes` over the same span as `send_rate`.
    #[serde(default)]
    pub send_bytes_per_s: f64,
    pub delivery_rate: f64,
    // The latencies: empty when no measured message was delivered (no latency, not 0).
    pub p50_us: Option<f64>,
    pub p90_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub raw_p50_us: Option<f64>,
    pub raw_p99_us: Option<f64>,
    pub raw_max_us: Option<f64>,
    pub send_lag_p99_us: f64,
    /// Absent from runs written before pacing windows were chosen per run (20 µs then).
    #[serde(default)]
    pub pacing_window_us: f64,
    pub harness_cpu_pct: f64,
    /// Absent from runs written before it was measured.
    #[serde(default)]
    pub harness_thread_max_pct: f64,
    pub harness_limited: bool,
    pub threads: u32,
    // Absent from runs written before `--workers` existed.
    #[serde(default)]
    pub workers: u32,
    #[serde(default)]
    pub clock_uncertainty_us: f64,
    #[serde(default)]
    pub latency_below_uncertainty: u64,
    #[serde(default)]
    pub clock_offset_max_us: f64,
    // Absent from runs written before server telemetry (`server.csv`).
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub server_version: String,
    /// Empty when no second was sampled (telemetry off, or refused).
    #[serde(default)]
    pub server_cpu_pct: Option<f64>,
    #[serde(default)]
    pub server_cpu_max_pct: Option<f64>,
    #[serde(default)]
    pub server_memory_peak_bytes: Option<u64>,
    #[serde(default)]
    pub limit: Limit,
    // The machine's own floor (`probe`); empty when not measured (and in runs written before it).
    #[serde(default)]
    pub machine_wakeup_p50_us: Option<f64>,
    #[serde(default)]
    pub machine_wakeup_p99_us: Option<f64>,
    #[serde(default)]
    pub machine_wakeup_p999_us: Option<f64>,
    #[serde(default)]
    pub machine_wakeup_max_us: Option<f64>,
    #[serde(default)]
    pub machine_other_cpu_pct: Option<f64>,
    #[serde(default)]
    pub steal_pct: Option<f64>,
}

/// Which side limited a run (the rule is in the manual, docs/src/columns.md, under `summary.csv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    /// The server's main thread was busy to the limit.
    Server,
    /// eventbench fell behind or had no CPU to spare.
    Harness,
    /// Neither: the run measured what it offered.
    #[default]
    #[serde(rename = "none")]
    Neither,
}

impl Limit {
    /// As written in `summary.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Server => "server",
            Limit::Harness => "harness",
            Limit::Neither => "none",
        }
    }
}

/// `server.csv`: one row per second per node of the target, sampled by
/// eventbench's own connection (`INFO`, `CLIENT LIST TYPE pubsub`, `XLEN`,
/// `XINFO GROUPS`). A cell is empty when its sample is missing (the node was
/// down or did not answer in time, or refused the command).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRow {
    /// The second of the measured phase the sample closes (seconds past the phase: the drain).
    pub second: u32,
    /// Index of the node among the target's masters (0 for a single server).
    pub node: u32,
    pub server_cpu_pct: Option<f64>,
    pub server_main_thread_cpu_pct: Option<f64>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
    pub commands_per_s: Option<f64>,
    pub pubsub_channels: Option<u64>,
    pub pubsub_shard_channels: Option<u64>,
    pub subscriber_omem_bytes: Option<u64>,
    pub subscriber_omem_max_bytes: Option<u64>,
    pub stream_length: Option<u64>,
    pub group_lag: Option<u64>,
    pub group_pending: Option<u64>,
}

fn one() -> u32 {
    1
}

/// `runs.csv` (written by `eventbench report` for several runs): one
/// `summary.csv` row per run, same columns, so runs line up in one sheet.
pub type RunsRow = SummaryRow;

/// `latency.csv`: the percentile spectrum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    pub percentile: f64,
    pub latency_us: f64,
    pub raw_latency_us: f64,
}

/// `timeseries.csv`: one row per second of send time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeseriesRow {
    pub second: u32,
    /// The schedule's rate over this second (0: as fast as possible).
    #[serde(default)]
    pub target_rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    #[serde(default)]
    pub undelivered: u64,
    pub lost_unsubscribed: u64,
    pub lost_in_buffer: u64,
    #[serde(default)]
    pub lost_trimmed: u64,
    #[serde(default)]
    pub in_flight: u64,
    /// Empty for a second without deliveries.
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub max_us: Option<f64>,
    pub connected_consumers: u32,
    pub backlog: u64,
}

/// `consumers.csv`: one row per consumer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRow {
    pub consumer: u32,
    pub channels: u32,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    #[serde(default)]
    pub undelivered: u64,
    pub lost_unsubscribed: u64,
    pub lost_in_buffer: u64,
    #[serde(default)]
    pub lost_trimmed: u64,
    #[serde(default)]
    pub lost_unanswered: u64,
    pub lost_other: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub disconnects: u64,
    pub server_kills: u64,
    /// Empty for a consumer that received nothing (no latency, not 0).
    pub p99_us: Option<f64>,
}

/// `channels.csv`: one row per channel (or stream). Counts cover the
/// measured phase; summed over the channels they are `summary.csv`'s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelRow {
    pub channel: u32,
    /// Share of each producer's messages the channel gets (`--channel-skew`), %.
    pub share_pct: f64,
    /// In a cluster: the channel's hash slot and the node (index of the masters) that owns it; empty otherwise.
    pub slot: Option<u16>,
    pub node: Option<u32>,
    pub subscribers: u64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub undelivered: u64,
    /// Empty when nothing of the channel was delivered, or past the channels that keep a histogram.
    pub p99_us: Option<f64>,
}

/// `events.csv`: one row per change in a consumer's subscription.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRow {
    pub at_s: f64,
    pub consumer: u32,
    pub kind: EventKind,
    pub downtime_ms: Option<f64>,
    pub lost_during: u64,
}

/// `workers.csv` (runs with `--workers`): one row per worker process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: u32,
    pub host: String,
    pub pid: u32,
    pub producer_ids: String,
    pub consumer_ids: String,
    pub clock_offset_us: f64,
    pub clock_uncertainty_us: f64,
    pub threads: u32,
    pub sent: u64,
    pub delivered: u64,
    pub cpu_pct: f64,
    pub status: Status,
}

/// `repeat.csv` (`--repeat N`): one row per headline figure over the N runs or searches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepeatRow {
    /// The summary column (or, for a search, the search's figure), with its transport for several.
    pub figure: String,
    /// Runs or searches that gave a value (a search that was inconclusive gives no maximum).
    pub count: u32,
    /// Each one's value in the order they ran, space-separated (`-` for none).
    pub values: String,
    pub median: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// (max - min) / median, %.
    pub spread_pct: Option<f64>,
    /// The spread is over 25%.
    pub noisy: bool,
}

/// The column names of a row struct, in order, as the CSV header writes them.
pub fn columns<T: Serialize>(sample: &T) -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(sample).expect("row structs serialize");
    let bytes = w.into_inner().expect("in-memory writer");
    let text = String::from_utf8(bytes).expect("csv is utf-8");
    text.lines().next().unwrap_or_default().split(',').map(str::to_owned).collect()
}

/// `--format jsonl`: one object per second while the run goes on (before
/// the summary object). Live counts: the files' exact figures come with
/// the summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveRow {
    pub run_id: String,
    pub transport: String,
    /// warmup, measure or drain.
    pub phase: String,
    /// Seconds since the measured phase started, as timeseries.csv counts
    /// them (negative during the warmup; empty while connecting).
    pub second: Option<i64>,
    pub sent: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub missing: u64,
    pub undelivered: u64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub connected_consumers: u64,
    pub backlog: u64,
    pub harness_cpu_pct: f64,
    pub sent_total: u64,
    pub sent_measured_total: u64,
    pub delivered_total: u64,
    pub expected_total: u64,
    pub duplicates_total: u64,
    pub out_of_order_total: u64,
}

/// `sweep.csv`: one row per point of `eventbench sweep`, in the order they
/// ran; its figures are those of the point's run (with `--capacity`, of the
/// search's best passing step at its maximum), exactly as that run's
/// `summary.csv` has them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub point: u32,
    pub key: String,
    pub value: f64,
    /// Empty with one `--vary`.
    pub key2: String,
    pub value2: Option<f64>,
    pub status: Status,
    /// The run directory the figures come from, relative to the sweep's.
    pub dir: String,
    pub target_rate: f64,
    /// `--capacity`: the highest rate that met the SLO (empty without one, or without `--capacity`).
    pub max_rate: Option<f64>,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub undelivered: u64,
    pub send_rate: f64,
    pub delivery_rate: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    pub server_cpu_pct: Option<f64>,
    pub server_cpu_max_pct: Option<f64>,
    pub harness_cpu_pct: f64,
    pub sustained: bool,
    pub limit: Limit,
}

impl SweepRow {
    /// A point's row from its run's summary; the caller sets the point, keys and `dir`.
    pub fn of(s: &SummaryRow) -> SweepRow {
        SweepRow {
            status: s.status,
            target_rate: s.target_rate,
            sent: s.sent,
            expected: s.expected,
            delivered: s.delivered,
            lost: s.lost,
            undelivered: s.undelivered,
            send_rate: s.send_rate,
            delivery_rate: s.delivery_rate,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
            p999_us: s.p999_us,
            max_us: s.max_us,
            server_cpu_pct: s.server_cpu_pct,
            server_cpu_max_pct: s.server_cpu_max_pct,
            harness_cpu_pct: s.harness_cpu_pct,
            sustained: s.sustained,
            limit: s.limit,
            ..SweepRow::default()
        }
    }
}
