//! What a run measured, as typed rows built once: [`summarize`] turns the
//! merged measurements into a [`RunReport`] of [`crate::rows`]. Reporters
//! ([`crate::report`]) only read these.

pub mod summarize;

use crate::rows::{ChannelRow, ConsumerRow, EventRow, LatencyRow, ServerRow, SummaryRow, TimeseriesRow};
use crate::scenario::Scenario;
use crate::stats::{SecondStats, Window};
use hdrhistogram::Histogram;
use std::time::SystemTime;

/// Everything one run measured, ready to be written or inspected.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    /// The effective scenario (file + flags).
    pub scenario: Scenario,
    pub summary: SummaryRow,
    pub latency: Vec<LatencyRow>,
    pub timeseries: Vec<TimeseriesRow>,
    pub consumers: Vec<ConsumerRow>,
    /// `channels.csv`: each channel's fate.
    pub channels: Vec<ChannelRow>,
    pub events: Vec<EventRow>,
    /// The measured phase, ns since the run epoch.
    pub window: Window,
    /// End-to-end latency from the intended send time, ns.
    pub histogram: Histogram<u64>,
    /// Latency from the actual send time, ns.
    pub raw_histogram: Histogram<u64>,
    /// End-to-end latency per second of the measured phase, by intended send
    /// time (the rows of `timeseries.csv`); they add up to `histogram`. Most
    /// are kept compressed: [`SecondStats::histogram`] decodes one.
    pub per_second: Vec<SecondStats>,
    /// Wall-clock time of the run's epoch (timestamps are ns since then), when known.
    pub epoch: Option<SystemTime>,
    /// `server.csv`: the server's state, second by second and node by node.
    pub server: Vec<ServerRow>,
}
