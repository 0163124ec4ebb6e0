//! Recording: latency histograms, the sequence ledger, per-second series.
//!
//! Recording is split by owner so the hot path takes no lock: a consumer task
//! owns its [`ConsumerStats`] (ledger, counters, a compact histogram for its
//! own p99); the tasks of one worker thread share that thread's
//! [`ThreadStats`] (full-resolution histograms, per-second series) through an
//! `Rc<RefCell<_>>`, never across threads. Everything merges with
//! `Histogram::add` and plain sums at the end, so results from several threads
//! (or, later, several processes) combine exactly.

pub mod ledger;
pub mod serial;
mod spill;

use crate::wire::Header;
use hdrhistogram::Histogram;
use ledger::{Arrival, SeqLedger};
use serde::{Deserialize, Serialize};

/// Microseconds from a nanosecond value, with nanosecond precision kept.
pub fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// The `p`th percentile of `h` in µs (100: the maximum; 0 when empty).
pub fn pct_us<T: hdrhistogram::Counter>(h: &Histogram<T>, p: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else if p >= 100.0 {
        us(h.max())
    } else {
        us(h.value_at_quantile(p / 100.0))
    }
}

/// Latency histograms hold nanoseconds with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

/// Per-consumer histograms only feed a p99 column.
pub type CompactHistogram = Histogram<u32>;

/// A [`CompactHistogram`]: 2 significant digits from 1 µs, 32-bit counts,
/// sized up front for latencies up to 16 ms (4 KB) and grown only by a
/// consumer that sees more: 5,000 consumers take 20 MB.
pub fn compact_histogram() -> CompactHistogram {
    let mut h = Histogram::new_with_bounds(1_000, 10_000_000, 2).expect("valid bounds");
    h.auto(true);
    h
}

/// Records `ns`, growing the histogram as needed (it starts small, so idle
/// consumers cost little memory).
#[inline]
pub fn record<T: hdrhistogram::Counter>(h: &mut Histogram<T>, ns: u64) {
    if h.record(ns).is_err() {
        h.saturating_record(ns);
    }
}

/// The measured phase, by intended send time, in ns since the run epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    /// The measured second (0-based) a message intended at `ns` belongs to, or
    /// `None` for warmup and anything after the measured phase.
    #[inline]
    pub fn second_of(&self, ns: u64) -> Option<usize> {
        (ns >= self.start_ns && ns < self.end_ns).then(|| ((ns - self.start_ns) / 1_000_000_000) as usize)
    }

    /// Number of (possibly partial) seconds in the window.
    pub fn seconds(&self) -> usize {
        (self.end_ns - self.start_ns).div_ceil(1_000_000_000) as usize
    }
}

/// What one second of send time saw, on one thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecondStats {
    pub delivered: u64,
    /// Full resolution (3 digits), because these become `latency.hlog`, whose
    /// intervals add up to the run's histogram exactly. One per thread per
    /// second is cheap; per consumer it would not be.
    #[serde(with = "second_latency")]
    latency: SecondLatency,
}

/// A second's histogram takes about 120 KB at full resolution: kept open, a
/// long run's memory would grow by that every second. Seconds long past are
/// compressed instead, and kept in the process's spill file (see [`spill`]),
/// so that a soak's memory stays flat; a late message opens its second again.
#[derive(Debug, Clone)]
enum SecondLatency {
    Empty,
    /// Boxed: a long run keeps one of these slots per second, most of them sealed.
    Open(Box<Histogram<u64>>),
    /// HdrHistogram V2, deflated (about a KB), in the spill file.
    Spilled(spill::Spilled),
    /// The same bytes in memory, where no spill file could be had. Shared,
    /// so that a checkpoint's copy costs no second copy of them.
    Sealed(std::sync::Arc<[u8]>),
    /// Several threads' (or workers') recordings of the second, merged
    /// without opening them: their sum is the second's histogram.
    Parts(Vec<SecondLatency>),
}

impl SecondLatency {
    fn histogram(&self) -> Histogram<u64> {
        match self {
            SecondLatency::Empty => latency_histogram(),
            SecondLatency::Open(h) => (**h).clone(),
            SecondLatency::Sealed(bytes) => decode_sealed(bytes),
            SecondLatency::Spilled(at) => decode_sealed(&at.read()),
            SecondLatency::Parts(parts) => {
                let mut h = latency_histogram();
                for part in parts {
                    h.add(part.histogram()).expect("auto-resizing histograms accept any value");
                }
                h
            }
        }
    }

    /// What this second's latencies are made of, as a list of parts.
    fn into_parts(self) -> Vec<SecondLatency> {
        match self {
            SecondLatency::Empty => Vec::new(),
            SecondLatency::Parts(parts) => parts,
            one => vec![one],
        }
    }

    fn seal(&mut self) {
        if let SecondLatency::Parts(_) = self {
            *self = SecondLatency::Open(Box::new(self.histogram()));
        }
        if let SecondLatency::Open(h) = self {
            let mut bytes = Vec::new();
            hdrhistogram::serialization::Serializer::serialize(
                &mut hdrhistogram::serialization::V2DeflateSerializer::new(),
                h,
                &mut bytes,
            )
            .expect("encoding into memory");
            *self = match spill::Spilled::write(&bytes) {
                Some(at) => SecondLatency::Spilled(at),
                None => SecondLatency::Sealed(bytes.into()),
            };
        }
    }
}

/// A sealed second's bytes as a histogram again.
fn decode_sealed(bytes: &[u8]) -> Histogram<u64> {
    let mut h: Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut &bytes[..])
        .expect("decoding what this process encoded");
    // Decoded histograms do not grow by themselves; a late message may need it.
    h.auto(true);
    h
}

/// Workers send their seconds as plain histograms (HdrHistogram V2, like the
/// rest of their output); a received one is sealed again at once.
mod second_latency {
    use super::{serial, SecondLatency};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(l: &SecondLatency, s: S) -> Result<S::Ok, S::Error> {
        serial::hist::serialize(&l.histogram(), s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecondLatency, D::Error> {
        let h: hdrhistogram::Histogram<u64> = serial::hist::deserialize(d)?;
        if h.is_empty() {
            return Ok(SecondLatency::Empty);
        }
        let mut latency = SecondLatency::Open(Box::new(h));
        latency.seal();
        Ok(latency)
    }
}

impl SecondStats {
    fn new() -> SecondStats {
        SecondStats { delivered: 0, latency: SecondLatency::Empty }
    }

    /// Records one delivery's latency.
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.delivered += 1;
        if let SecondLatency::Open(h) = &mut self.latency {
            record(h, ns);
            return;
        }
        let mut h = self.histogram();
        record(&mut h, ns);
        self.latency = SecondLatency::Open(Box::new(h));
    }

    /// The second's latencies (a copy, decompressed if need be).
    pub fn histogram(&self) -> Histogram<u64> {
        self.latency.histogram()
    }

    /// Compresses the histogram until the next late message.
    pub fn seal(&mut self) {
        self.latency.seal();
    }

    /// Adds another thread's recordings of the same second; sealed ones are
    /// kept as parts of the sum, so that merging a long run's threads opens
    /// no second (and writes nothing).
    pub fn merge(&mut self, other: &SecondStats) {
        self.delivered += other.delivered;
        let mine = std::mem::replace(&mut self.latency, SecondLatency::Empty);
        self.latency = match (mine, &other.latency) {
            (mine, SecondLatency::Empty) => mine,
            (SecondLatency::Empty, theirs) => theirs.clone(),
            (SecondLatency::Open(mut h), SecondLatency::Open(o)) => {
                h.add(&**o).expect("auto-resizing histograms accept any value");
                SecondLatency::Open(h)
            }
            // Sealed seconds are not opened to be merged: a long run's
            // seconds stay where they are (a checkpoint merges them every minute).
            (mine, theirs) => {
                let mut parts = mine.into_parts();
                parts.extend(theirs.clone().into_parts());
                SecondLatency::Parts(parts)
            }
        };
    }
}

/// Histograms and series shared by the tasks of one worker thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadStats {
    /// Receive time − intended send time.
    #[serde(with = "serial::hist")]
    pub latency: Histogram<u64>,
    /// Receive time − actual send time (what a closed-loop tool would report).
    #[serde(with = "serial::hist")]
    pub raw: Histogram<u64>,
    /// Up to the last second with a delivery (later seconds had none).
    pub seconds: Vec<SecondStats>,
    /// First deliveries of measured messages by the second they arrived in,
    /// counted from the start of the measured phase (the drain's seconds follow).
    #[serde(default)]
    pub arrived: Vec<u64>,
    /// First deliveries of measured messages per channel (`channels.csv`).
    #[serde(default)]
    pub channel_delivered: Vec<u64>,
    /// Latency per channel, for the first [`CHANNEL_HISTOGRAMS`] channels (`channels.csv`'s p99).
    #[serde(default, with = "serial::hists")]
    pub channel_latency: Vec<CompactHistogram>,
}

/// Channels that keep a latency histogram of their own (4 KB or more each, per worker thread).
pub const CHANNEL_HISTOGRAMS: usize = 1024;

impl Default for SecondStats {
    fn default() -> SecondStats {
        SecondStats::new()
    }
}

impl ThreadStats {
    /// Per-second series grow as the seconds pass: memory follows what was
    /// measured, never the duration a scenario declares.
    pub fn new(_window: &Window) -> ThreadStats {
        ThreadStats {
            latency: latency_histogram(),
            raw: latency_histogram(),
            seconds: Vec::new(),
            arrived: Vec::new(),
            channel_delivered: Vec::new(),
            channel_latency: Vec::new(),
        }
    }

    /// Second `s` of the measured phase, opened (with those before it) if need be.
    #[inline]
    pub fn second_mut(&mut self, s: usize) -> &mut SecondStats {
        if s >= self.seconds.len() {
            self.seconds.resize_with(s + 1, SecondStats::new);
        }
        &mut self.seconds[s]
    }

    /// Seals the first `seconds` seconds (see [`SecondStats::seal`]).
    pub fn seal(&mut self, seconds: usize) {
        self.seconds.iter_mut().take(seconds).for_each(SecondStats::seal);
    }

    /// Adds another thread's recordings to these.
    pub fn merge(&mut self, other: &ThreadStats) {
        self.latency.add(&other.latency).expect("auto-resizing histograms accept any value");
        self.raw.add(&other.raw).expect("auto-resizing histograms accept any value");
        if self.seconds.len() < other.seconds.len() {
            self.seconds.resize_with(other.seconds.len(), SecondStats::new);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.merge(theirs);
        }
        if self.arrived.len() < other.arrived.len() {
            self.arrived.resize(other.arrived.len(), 0);
        }
        self.arrived.iter_mut().zip(&other.arrived).for_each(|(a, b)| *a += b);
        if self.channel_delivered.len() < other.channel_delivered.len() {
            self.channel_delivered.resize(other.channel_delivered.len(), 0);
        }
        self.channel_delivered.iter_mut().zip(&other.channel_delivered).for_each(|(a, b)| *a += b);
        if self.channel_latency.len() < other.channel_latency.len() {
            self.channel_latency.resize_with(other.channel_latency.len(), compact_histogram);
        }
        for (mine, theirs) in self.channel_latency.iter_mut().zip(&other.channel_latency) {
            mine.add(theirs).expect("auto-resizing histograms accept any value");
        }
    }

    /// Counts a first delivery of a measured message on `channel`. Grows
    /// once per channel at most: no allocation per message.
    #[inline]
    fn record_channel(&mut self, channel: usize, latency_ns: u64) {
        if channel >= self.channel_delivered.len() {
            self.channel_delivered.resize(channel + 1, 0);
        }
        self.channel_delivered[channel] += 1;
        if channel < CHANNEL_HISTOGRAMS {
            if channel >= self.channel_latency.len() {
                self.channel_latency.resize_with(channel + 1, compact_histogram);
            }
            record(&mut self.channel_latency[channel], latency_ns);
        }
    }
}

/// What one consumer owns: its ledger, counters and a compact histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerStats {
    pub id: u32,
    /// One ledger per (producer, channel): index `producer * channels + channel`.
    pub ledgers: Vec<SeqLedger>,
    channels: u32,
    /// First deliveries of measured messages.
    pub delivered: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Payloads that are not eventbench messages of this run.
    pub foreign: u64,
    pub disconnects: u64,
    /// Messages currently missing (gaps seen minus late fills), for the live view.
    pub missing_now: u64,
    /// Streams: entries delivered again (own pending re-read, or claimed from another member).
    pub redelivered: u64,
    /// Streams: entries acknowledged with XACK.
    pub acked: u64,
    #[serde(with = "serial::hist")]
    pub latency: CompactHistogram,
}

impl ConsumerStats {
    pub fn new(id: u32, producers: u32, channels: u32) -> ConsumerStats {
        ConsumerStats {
            id,
            ledgers: vec![SeqLedger::default(); (producers * channels) as usize],
            channels,
            delivered: 0,
            duplicates: 0,
            out_of_order: 0,
            foreign: 0,
            disconnects: 0,
            missing_now: 0,
            redelivered: 0,
            acked: 0,
            latency: compact_histogram(),
        }
    }

    /// Per ledger: one past the highest sequence received so far.
    pub fn positions(&self) -> Vec<u64> {
        self.ledgers.iter().map(|l| l.next()).collect()
    }

    /// Accounts for one received payload at `now_ns`. Returns whether it was a
    /// first delivery of a measured message.
    #[inline]
    pub fn record(&mut self, payload: &[u8], now_ns: u64, window: &Window, thread: &mut ThreadStats) -> bool {
        self.record_seen_by(payload, now_ns, window, thread, None)
    }

    /// [`ConsumerStats::record`] for stats that several consumers share (a
    /// Streams group): `seen` is the receiving member's own order, one past
    /// the highest sequence it received per ledger. A message counts as out
    /// of order only if this member itself received a later one of its
    /// (producer, channel) before it: members that compete for a group's
    /// messages do not make each other's arrivals out of order.
    #[inline]
    pub fn record_seen_by(
        &mut self,
        payload: &[u8],
        now_ns: u64,
        window: &Window,
        thread: &mut ThreadStats,
        seen: Option<&mut [u64]>,
    ) -> bool {
        let Ok(h) = Header::decode(payload) else {
            self.foreign += 1;
            return false;
        };
        // Foreign bytes can carry any numbers: index in usize (u32 products
        // overflow), and no sequence can be u64::MAX (the ledger adds one to it).
        let Some(ledger) = (h.channel < self.channels && h.seq != u64::MAX)
            .then(|| h.producer as usize * self.channels as usize + h.channel as usize)
            .and_then(|i| self.ledgers.get_mut(i))
        else {
            self.foreign += 1;
            return false;
        };
        let arrival = ledger.record(h.seq);
        let late_here =
            match seen.and_then(|s| s.get_mut(h.producer as usize * self.channels as usize + h.channel as usize)) {
                Some(next) => {
                    let late = h.seq < *next;
                    *next = (*next).max(h.seq + 1);
                    late
                }
                None => true,
            };
        let Some(second) = window.second_of(h.intended_ns) else { return false };
        match arrival {
            Arrival::Duplicate => {
                self.duplicates += 1;
                return false;
            }
            Arrival::Late => {
                self.out_of_order += late_here as u64;
                self.missing_now = self.missing_now.saturating_sub(1);
            }
            Arrival::AfterGap(n) => self.missing_now += n,
            Arrival::InOrder => {}
        }
        self.delivered += 1;
        let latency = now_ns.saturating_sub(h.intended_ns);
        record(&mut self.latency, latency);
        record(&mut thread.latency, latency);
        record(&mut thread.raw, now_ns.saturating_sub(h.sent_ns));
        thread.second_mut(second).record(latency);
        thread.record_channel(h.channel as usize, latency);
        // Grows once a second at most: no allocation per message.
        let arrived = (now_ns.saturating_sub(window.start_ns) / 1_000_000_000) as usize;
        if arrived >= thread.arrived.len() {
            thread.arrived.resize(arrived + 1, 0);
        }
        thread.arrived[arrived] += 1;
        true
    }
}

/// What one producer owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProducerStats {
    pub id: u32,
    /// Per channel: the measured sequence numbers are `[first, first + count)`.
    pub measured_first: Vec<Option<u64>>,
    pub measured_count: Vec<u64>,
    /// Messages written, warmup included.
    pub sent_total: u64,
    /// `[second * channels + channel]`: measured messages by intended second,
    /// up to the last second with one (later seconds had none).
    pub sent_per_second: Vec<u64>,
    /// Actual − intended send time.
    #[serde(with = "serial::hist")]
    pub send_lag: Histogram<u64>,
    /// Sum of PUBLISH replies for measured messages.
    pub reached: u64,
    /// Cluster redirections (MOVED, ASK) in reply to this producer's writes.
    pub redirections: u64,
    /// Other error replies to this producer's writes, on a cluster (elsewhere the first one ends the run).
    pub write_errors: u64,
    /// Per channel: the measured sequences Redis refused, ascending: no consumer can get them.
    #[serde(default)]
    pub refused: Vec<Vec<u64>>,
    /// Per channel: the first sequence Redis never answered for (`u64::MAX`: all answered).
    #[serde(default)]
    pub unanswered_from: Vec<u64>,
    /// Actual send time of the last measured message (0 if none).
    pub last_sent_ns: u64,
    /// The pacing window its messages were released once per, ns (0: each
    /// message on its own deadline; see `scenario::pacing`).
    #[serde(default)]
    pub pacing_window_ns: u64,
    /// Measured messages still due when the producer was cut off, far behind
    /// its schedule at the end of the phase (see `Pacer::cut_off_after`).
    #[serde(default)]
    pub unsent: u64,
    /// Payload bytes (header included) of the measured messages, by intended second.
    #[serde(default)]
    pub bytes_per_second: Vec<u64>,
}

impl ProducerStats {
    pub fn new(id: u32, channels: u32, _window: &Window) -> ProducerStats {
        ProducerStats {
            id,
            measured_first: vec![None; channels as usize],
            measured_count: vec![0; channels as usize],
            sent_total: 0,
            // Grown as the seconds pass (see `record`).
            sent_per_second: Vec::new(),
            send_lag: latency_histogram(),
            reached: 0,
            redirections: 0,
            write_errors: 0,
            refused: vec![Vec::new(); channels as usize],
            unanswered_from: vec![u64::MAX; channels as usize],
            last_sent_ns: 0,
            pacing_window_ns: 0,
            unsent: 0,
            bytes_per_second: Vec::new(),
        }
    }

    /// Accounts for one message written.
    #[inline]
    pub fn record(&mut self, h: &Header, bytes: usize, window: &Window) {
        self.sent_total += 1;
        record(&mut self.send_lag, h.sent_ns.saturating_sub(h.intended_ns));
        if let Some(second) = window.second_of(h.intended_ns) {
            let c = h.channel as usize;
            self.measured_first[c].get_or_insert(h.seq);
            self.measured_count[c] += 1;
            let at = second * self.measured_count.len() + c;
            if at >= self.sent_per_second.len() {
                self.sent_per_second.resize((second + 1) * self.measured_count.len(), 0);
            }
            self.sent_per_second[at] += 1;
            if second >= self.bytes_per_second.len() {
                self.bytes_per_second.resize(second + 1, 0);
            }
            self.bytes_per_second[second] += bytes as u64;
            self.last_sent_ns = self.last_sent_ns.max(h.sent_ns);
        }
    }

    /// The measured sequences Redis refused on `channel`, ascending.
    pub fn refused_seqs(&self, channel: usize) -> &[u64] {
        self.refused.get(channel).map_or(&[], Vec::as_slice)
    }

    /// Measured messages sent, all channels.
    pub fn sent_measured(&self) -> u64 {
        self.measured_count.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_seconds() {
        let w = Window { start_ns: 1_000, end_ns: 1_000 + 2_500_000_000 };
        assert_eq!(w.seconds(), 3);
        assert_eq!(w.second_of(999), None);
        assert_eq!(w.second_of(1_000), Some(0));
        assert_eq!(w.second_of(1_000 + 2_499_999_999), Some(2));
        assert_eq!(w.second_of(1_000 + 2_500_000_000), None);
    }

    #[test]
    fn consumer_counts_first_measured_deliveries_only() {
        let w = Window { start_ns: 100, end_ns: 1_000_000_100 };
        let mut t = ThreadStats::new(&w);
        let mut c = ConsumerStats::new(0, 2, 2);
        let msg = |producer, channel, seq, intended_ns| {
            let mut b = vec![0u8; 64];
            Header { producer, channel, seq, intended_ns, sent_ns: intended_ns + 5 }.encode(&mut b);
            b
        };
        assert!(!c.record(&msg(0, 0, 0, 50), 60, &w, &mut t), "warmup is not counted");
        assert!(c.record(&msg(0, 0, 1, 150), 1150, &w, &mut t));
        assert!(!c.record(&msg(0, 0, 1, 150), 1150, &w, &mut t), "duplicate");
        assert!(c.record(&msg(1, 1, 0, 200), 1200, &w, &mut t));
        assert!(!c.record(&msg(5, 0, 0, 200), 1200, &w, &mut t), "unknown producer is foreign");
        assert!(!c.record(b"hello", 1200, &w, &mut t));
        assert_eq!((c.delivered, c.duplicates, c.foreign), (2, 1, 2));
        assert_eq!(t.latency.len(), 2);
        assert_eq!(t.latency.max(), 1000);
        assert_eq!(t.seconds[0].delivered, 2);
    }

    #[test]
    fn a_sealed_second_keeps_its_latencies_and_takes_late_ones() {
        let mut open = SecondStats::new();
        for ns in [1_000, 250_000, 3_000_000, 90_000_000] {
            open.record(ns);
        }
        let mut sealed = open.clone();
        sealed.seal();
        let kept = match &sealed.latency {
            SecondLatency::Spilled(at) => at.read().len(),
            SecondLatency::Sealed(b) => b.len(),
            other => panic!("not sealed: {other:?}"),
        };
        assert!(kept < 2_000, "compressed: {kept} bytes");
        assert_eq!(sealed.histogram(), open.histogram());
        // A late message, beyond anything the sealed histogram covered.
        sealed.record(40_000_000_000);
        open.record(40_000_000_000);
        assert_eq!(sealed.histogram(), open.histogram());
        assert_eq!(sealed.delivered, 5);
        let mut merged = SecondStats::new();
        merged.merge(&sealed);
        merged.seal();
        merged.merge(&SecondStats::new());
        assert_eq!((merged.delivered, merged.histogram()), (5, open.histogram()));
        // Two threads' sealed seconds merge as parts of a sum: nothing opened, nothing written.
        merged.seal();
        let mut other = SecondStats::new();
        other.record(7_000);
        other.seal();
        merged.merge(&other);
        assert!(matches!(&merged.latency, SecondLatency::Parts(p) if p.len() == 2), "{:?}", merged.latency);
        let mut sum = open.histogram();
        sum.record(7_000).unwrap();
        assert_eq!((merged.delivered, merged.histogram()), (6, sum.clone()));
        merged.seal();
        assert_eq!(merged.histogram(), sum, "parts sealed as one");
    }
}
