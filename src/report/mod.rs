//! What a run leaves behind: CSV files, the effective scenario, a terminal
//! table or JSON. Reporters only read a finished [`RunReport`].

pub mod files;
pub mod rows;
pub mod table;

use crate::scenario::Scenario;
use crate::stats::Window;
use crate::swarm::Status;
use hdrhistogram::Histogram;
use rows::{ConsumerRow, EventRow, LatencyRow, SummaryRow, TimeseriesRow};

/// Everything one run measured, ready to be written or inspected.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    /// The effective scenario (file + flags).
    pub scenario: Scenario,
    pub status: Status,
    pub summary: SummaryRow,
    pub latency: Vec<LatencyRow>,
    pub timeseries: Vec<TimeseriesRow>,
    pub consumers: Vec<ConsumerRow>,
    pub events: Vec<EventRow>,
    /// The measured phase, ns since the run epoch.
    pub window: Window,
    /// End-to-end latency from the intended send time, ns.
    pub histogram: Histogram<u64>,
    /// Latency from the actual send time, ns.
    pub raw_histogram: Histogram<u64>,
}
