//! `latency.hlog`: the end-to-end latency of every second of the measured
//! phase in HdrHistogram's interval-log format (V2, deflate-compressed), so
//! HdrHistogram's own tools (Java `HistogramLogProcessor`, the `hdrhistogram`
//! Python package, ...) read our results without eventbench.
//!
//! Values are nanoseconds; `Interval_Max` is in milliseconds, as the Java
//! tools expect. Interval `s` holds the messages *due to be sent* in second `s`
//! (the rows of `timeseries.csv`), not those received in it, so losses and
//! latency line up with the outage that caused them.

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Why a log could not be written or read.
#[derive(Debug, Error)]
pub enum HlogError {
    #[error("cannot encode interval {index}: {message}")]
    Encode { index: usize, message: String },
    #[error("not an HdrHistogram interval log (unreadable line at byte {offset})")]
    Parse { offset: usize },
    #[error("interval {index}: {message}")]
    Histogram { index: usize, message: String },
}

/// One interval of the log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Seconds since the start of the measured phase.
    pub start_s: f64,
    pub length_s: f64,
    /// Latencies in the interval.
    pub count: u64,
}

/// A decoded interval log. The intervals' histograms are added up as they
/// are read, not kept: an hour-long run's would take hundreds of MB.
#[derive(Debug, Clone)]
pub struct HdrLog {
    /// Wall-clock start of the measured phase, when the log records it.
    pub start: Option<SystemTime>,
    pub intervals: Vec<Interval>,
    merged: Histogram<u64>,
}

impl HdrLog {
    /// All intervals added together: the run's latency histogram.
    pub fn merged(&self) -> &Histogram<u64> {
        &self.merged
    }

    /// A log of nothing.
    #[cfg(test)]
    pub fn empty() -> HdrLog {
        HdrLog { start: None, intervals: Vec::new(), merged: crate::stats::latency_histogram() }
    }

    /// Number of latencies in the log.
    pub fn count(&self) -> u64 {
        self.merged.len()
    }
}

/// Encodes one histogram per second into `out`; the last interval is cut
/// at `measured`. `start` is the wall-clock start of the measured phase.
/// Each second is written as it comes: a soak's log (about 2.5 KB a second
/// at 20,000 msg/s, 4.5 MB for 30 minutes) never sits in memory whole.
pub fn encode(
    per_second: impl IntoIterator<Item = Histogram<u64>>,
    measured: Duration,
    start: Option<SystemTime>,
    run_id: &str,
    mut out: impl std::io::Write,
) -> Result<(), HlogError> {
    let mut header = IntervalLogWriterBuilder::new();
    header
        .add_comment(&format!("eventbench {} run {run_id}", env!("CARGO_PKG_VERSION")))
        .add_comment("end-to-end latency in ns from the intended send time; one interval per second of send time")
        .add_comment("[Histogram log format version 1.3]")
        // Java's tools print Interval_Max in ms for ns histograms; do the same.
        .with_max_value_divisor(1e6);
    if let Some(t) = start {
        // Interval timestamps count from the measured phase's start.
        header.with_start_time(t).with_base_time(t);
    }
    let mut serializer = V2DeflateSerializer::new();
    let mut log = header.begin_log_with(&mut out, &mut serializer).map_err(|e| encode_error(0, e))?;
    for (s, h) in per_second.into_iter().enumerate() {
        let from = Duration::from_secs(s as u64);
        let length = measured.saturating_sub(from).min(Duration::from_secs(1));
        log.write_histogram(&h, from, length, None).map_err(|e| encode_error(s, e))?;
    }
    drop(log);
    out.flush().map_err(|e| encode_error(0, e))
}

fn encode_error(index: usize, e: impl std::fmt::Display) -> HlogError {
    HlogError::Encode { index, message: e.to_string() }
}

/// Decodes an interval log (any V2 log, compressed or not; tags are ignored).
pub fn decode(bytes: &[u8]) -> Result<HdrLog, HlogError> {
    decode_from(bytes)
}

/// Decodes an interval log read line by line from `input`: one line in
/// memory at a time, however long the run (see [`encode`]).
pub fn decode_from(mut input: impl std::io::BufRead) -> Result<HdrLog, HlogError> {
    let mut log = Decoding {
        start: None,
        base: None,
        intervals: Vec::new(),
        merged: crate::stats::latency_histogram(),
        deserializer: Deserializer::new(),
    };
    let mut line = Vec::new();
    let mut at = 0;
    loop {
        line.clear();
        let read = input.read_until(b'\n', &mut line).map_err(|_| HlogError::Parse { offset: at })?;
        if read == 0 {
            break;
        }
        // Each line of the format stands alone: a comment, a header or an interval.
        for entry in IntervalLogIterator::new(&line) {
            log.entry(entry.map_err(|e| match e {
                hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                    HlogError::Parse { offset: at + offset }
                }
            })?)?;
        }
        at += read;
    }
    let start = log.start.or(log.base).map(|t| SystemTime::UNIX_EPOCH + t);
    Ok(HdrLog { start, intervals: log.intervals, merged: log.merged })
}

/// What [`decode_from`] has read so far.
struct Decoding {
    start: Option<Duration>,
    base: Option<Duration>,
    intervals: Vec<Interval>,
    merged: Histogram<u64>,
    deserializer: Deserializer,
}

impl Decoding {
    fn entry(&mut self, entry: LogEntry) -> Result<(), HlogError> {
        use base64::Engine;
        match entry {
            LogEntry::StartTime(t) => self.start = Some(t),
            LogEntry::BaseTime(t) => self.base = Some(t),
            LogEntry::Interval(i) => {
                let index = self.intervals.len();
                let bad = |message: String| HlogError::Histogram { index, message };
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(i.encoded_histogram())
                    .map_err(|e| bad(format!("bad base64: {e}")))?;
                let histogram: Histogram<u64> =
                    self.deserializer.deserialize(&mut raw.as_slice()).map_err(|e| bad(format!("{e:?}")))?;
                // Without BaseTime, timestamps are absolute: count from StartTime.
                let offset = match (self.base, self.start) {
                    (Some(_), _) | (None, None) => Duration::ZERO,
                    (None, Some(s)) => s,
                };
                self.intervals.push(Interval {
                    start_s: i.start_timestamp().saturating_sub(offset).as_secs_f64(),
                    length_s: i.duration().as_secs_f64(),
                    count: histogram.len(),
                });
                self.merged.add(&histogram).map_err(|e| bad(format!("{e:?}")))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(values: &[u64]) -> Histogram<u64> {
        let mut h = crate::stats::latency_histogram();
        for &v in values {
            crate::stats::record(&mut h, v);
        }
        h
    }

    #[test]
    fn round_trips_counts_timestamps_and_start() {
        let seconds = vec![second(&[100_000, 250_000]), second(&[]), second(&[5_000_000_000])];
        let start = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_178_695_250);
        let mut bytes = Vec::new();
        encode(seconds.clone(), Duration::from_millis(2500), Some(start), "t-1", &mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("#[StartTime: 1764178695.250"), "{text}");
        assert!(text.contains("\n2.000,0.500,5003."), "last interval is cut, max in ms: {text}");
        let log = decode(&bytes).unwrap();
        assert_eq!(log.start, Some(start));
        assert_eq!(log.intervals.len(), 3);
        assert_eq!(log.count(), 3);
        assert_eq!((log.intervals[2].start_s, log.intervals[2].length_s), (2.0, 0.5));
        assert_eq!(log.merged().max(), seconds[2].max());
        assert_eq!(log.intervals.iter().map(|i| i.count).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(log.merged().value_at_quantile(0.5), seconds[0].value_at_quantile(1.0));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(decode(b"hello, world\n"), Err(HlogError::Parse { .. })));
        assert!(matches!(decode(b"0.000,1.000,1.0,HISTFAAAAnotbase64!\n"), Err(HlogError::Histogram { .. })));
        assert!(decode(b"").unwrap().intervals.is_empty());
    }
}
