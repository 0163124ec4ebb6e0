//! Reads a run directory back: the CSV files, `latency.hlog` and
//! `scenario.toml` are all the plots and pages need, so `eventbench report`
//! can rebuild them long after the run, and a run's own report is built the
//! same way.

use super::files::restore;
use super::hlog::{self, HdrLog};
use crate::rows::{ConsumerRow, LatencyRow, ServerRow, SummaryRow, TimeseriesRow};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A run directory that cannot be reported on; names the file at fault.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{dir} is not a run directory (no such directory)")]
    NotADirectory { dir: PathBuf },
    #[error("{dir} holds no results: the run was stopped before it wrote any (killed, or its host lost; --checkpoint writes results while a run goes on)")]
    Empty { dir: PathBuf },
    #[error("cannot read {file}: {message}")]
    Missing { file: PathBuf, message: String },
    #[error("{file} is malformed: {message}")]
    Malformed { file: PathBuf, message: String },
}

/// A CSV file read without knowing its columns (e.g. `events.csv`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything one run directory holds.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub summary: SummaryRow,
    pub latency: Vec<LatencyRow>,
    pub timeseries: Vec<TimeseriesRow>,
    pub consumers: Vec<ConsumerRow>,
    /// `events.csv`, when the run wrote one.
    pub events: Option<Table>,
    /// `workers.csv`, when the run had worker processes.
    pub workers: Option<Table>,
    /// `server.csv`; empty for a run written before server telemetry, or with it off.
    pub server: Vec<ServerRow>,
    /// `scenario.toml` as written.
    pub scenario_toml: String,
    /// Its `description`, if any.
    pub description: Option<String>,
    pub hlog: HdrLog,
}

impl RunData {
    /// Reads every file of the run in `dir`; the first problem is returned.
    pub fn load(dir: &Path) -> Result<RunData, LoadError> {
        if !dir.is_dir() {
            return Err(LoadError::NotADirectory { dir: dir.into() });
        }
        // What a run killed before its first result (SIGKILL without --checkpoint) leaves.
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()) {
            return Err(LoadError::Empty { dir: dir.into() });
        }
        let mut summary: Vec<SummaryRow> = read_csv(&dir.join("summary.csv"))?;
        if summary.len() != 1 {
            return Err(malformed(&dir.join("summary.csv"), format!("expected one row, found {}", summary.len())));
        }
        let summary = summary.remove(0);
        let latency = read_csv(&dir.join("latency.csv"))?;
        let timeseries = read_csv(&dir.join("timeseries.csv"))?;
        let consumers = read_csv(&dir.join("consumers.csv"))?;
        let optional = |name: &str| {
            let path = dir.join(name);
            path.exists().then(|| read_table(&path)).transpose()
        };
        let (events, workers) = (optional("events.csv")?, optional("workers.csv")?);
        let server_path = dir.join("server.csv");
        let server = if server_path.exists() { read_csv(&server_path)? } else { Vec::new() };

        let scenario_path = dir.join("scenario.toml");
        let scenario_toml = read_text(&scenario_path)?;
        let table: toml::Table = toml::from_str(&scenario_toml)
            .map_err(|e| malformed(&scenario_path, e.message().trim().replace('\n', " ")))?;
        let description = table.get("description").and_then(|d| d.as_str()).map(str::to_owned);

        let hlog_path = dir.join("latency.hlog");
        // Read line by line: a soak's log is megabytes.
        let file = crate::sys::open_regular(&hlog_path, MAX_FILE_BYTES).map_err(|e| missing(&hlog_path, e))?;
        let hlog = hlog::decode_from(std::io::BufReader::new(file)).map_err(|e| malformed(&hlog_path, e))?;
        // The log and the summary must describe the same run.
        if hlog.count() != summary.delivered {
            return Err(malformed(
                &hlog_path,
                format!("holds {} latencies but summary.csv says delivered = {}", hlog.count(), summary.delivered),
            ));
        }
        Ok(RunData {
            dir: dir.into(),
            summary,
            latency,
            timeseries,
            consumers,
            events,
            workers,
            server,
            scenario_toml,
            description,
            hlog,
        })
    }

    /// The run's target rate as its `scenario.toml` gives it: one rate, or a
    /// profile (`None` for a file that does not say).
    pub fn rate(&self) -> Option<crate::scenario::Rate> {
        let table: toml::Table = toml::from_str(&self.scenario_toml).ok()?;
        table.get("rate")?.clone().try_into().ok()
    }

    /// A run of these seconds and nothing else, for the readers' unit tests.
    #[cfg(test)]
    pub fn for_tests(timeseries: Vec<TimeseriesRow>) -> RunData {
        RunData {
            dir: PathBuf::new(),
            summary: SummaryRow::default(),
            latency: Vec::new(),
            timeseries,
            consumers: Vec::new(),
            events: None,
            workers: None,
            scenario_toml: String::new(),
            description: None,
            hlog: HdrLog::empty(),
            server: Vec::new(),
        }
    }

    /// Whether the transport keeps a backlog worth plotting (Streams).
    pub fn keeps_backlog(&self) -> bool {
        self.summary.transport == "streams" || self.timeseries.iter().any(|t| t.backlog > 0)
    }

    /// The run's name: its id without the timestamp (and random suffix) `eventbench run` appends.
    pub fn name(&self) -> &str {
        let id = &self.summary.run_id;
        let suffixed = id.rsplit_once('-').filter(|(_, s)| s.len() == 6 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let id = suffixed.map_or(id.as_str(), |(before, _)| before);
        match id.rsplit_once('-') {
            Some((name, stamp)) if stamp.len() == 16 && stamp.ends_with('Z') && stamp.contains('T') => name,
            _ => &self.summary.run_id,
        }
    }
}

fn missing(file: &Path, e: std::io::Error) -> LoadError {
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => e.to_string(),
    };
    LoadError::Missing { file: file.into(), message }
}

fn malformed(file: &Path, message: impl ToString) -> LoadError {
    LoadError::Malformed { file: file.into(), message: message.to_string().replace('\n', " ") }
}

/// The most a run's file may hold: far more than a 30-day run writes, far
/// less than a device or a FIFO passed off as one would feed.
pub const MAX_FILE_BYTES: u64 = 16 << 30;
/// The most `scenario.toml` may hold.
const MAX_TOML_BYTES: u64 = 1 << 20;

fn read_text(path: &Path) -> Result<String, LoadError> {
    crate::sys::read_regular(path, MAX_TOML_BYTES).map_err(|e| missing(path, e))
}

fn reader(path: &Path) -> Result<csv::Reader<std::io::Take<std::fs::File>>, LoadError> {
    let file = crate::sys::open_regular(path, MAX_FILE_BYTES).map_err(|e| missing(path, e))?;
    Ok(csv::Reader::from_reader(file))
}

/// Rows of a CSV file; columns the row type does not know are ignored, so
/// files from newer versions still load.
fn read_csv<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, LoadError> {
    let mut r = reader(path)?;
    let headers = r.headers().map_err(|e| malformed(path, e))?.clone();
    if headers.is_empty() {
        return Err(malformed(path, "empty file, no header"));
    }
    let row = |rec: Result<csv::StringRecord, csv::Error>| restore(&rec?).deserialize(Some(&headers));
    r.records().map(row).collect::<Result<Vec<T>, _>>().map_err(|e| malformed(path, e))
}

fn read_table(path: &Path) -> Result<Table, LoadError> {
    let mut r = reader(path)?;
    let header = r.headers().map_err(|e| malformed(path, e))?.iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.map(|rec| restore(&rec).iter().map(str::to_owned).collect()))
        .collect::<Result<_, _>>()
        .map_err(|e| malformed(path, e))?;
    Ok(Table { header, rows })
}
