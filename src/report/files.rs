//! Writes a run directory's data: the CSV files, `scenario.toml`,
//! `latency.hlog` (the plots and `report.html` are built from these by
//! [`super::render`]). Every file is written under a temporary name and
//! renamed into place, so a crash never leaves a truncated file behind.

use super::hlog;
use crate::results::RunReport;
use crate::stats::SecondStats;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `bytes` to `path` via a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".eventbench-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    // Temporary files are private (0600); results are meant to be shared and opened in a browser.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).ok();
    tmp.as_file().sync_all().ok();
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Serializes `rows` as CSV (header from the struct's field names) into `path`.
/// A file with no rows still gets its header, so readers see its columns.
pub fn write_csv<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row)?;
    }
    let mut bytes = w.into_inner().context("csv buffer")?;
    if rows.is_empty() {
        bytes = format!("{}\n", crate::rows::columns(&T::default()).join(",")).into_bytes();
    }
    write_atomic(path, &bytes)
}

/// The default run directory: `results/<name>-<UTC timestamp>`, with a
/// suffix if that exists already.
pub fn default_dir(root: &Path, run_id: &str) -> PathBuf {
    let mut dir = root.join(run_id);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{run_id}-{n}"));
        n += 1;
    }
    dir
}

/// Writes every file of a run into `dir`, which must not exist yet (or be empty).
pub fn write_run(report: &RunReport, dir: &Path) -> Result<()> {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    if dir.exists() && !empty {
        bail!(
            "output directory {} already exists; results are never overwritten (choose another --out)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create output directory {}", dir.display()))?;
    write_atomic(&dir.join("scenario.toml"), report.scenario.to_toml().as_bytes())?;
    write_csv(&dir.join("summary.csv"), std::slice::from_ref(&report.summary))?;
    write_csv(&dir.join("latency.csv"), &report.latency)?;
    write_csv(&dir.join("timeseries.csv"), &report.timeseries)?;
    write_csv(&dir.join("consumers.csv"), &report.consumers)?;
    write_csv(&dir.join("events.csv"), &report.events)?;
    write_csv(&dir.join("server.csv"), &report.server)?;
    let window = &report.window;
    let measured = Duration::from_nanos(window.end_ns - window.start_ns);
    let start = report.epoch.map(|t| t + Duration::from_nanos(window.start_ns));
    let log = hlog::encode(report.per_second.iter().map(SecondStats::histogram), measured, start, &report.run_id)
        .context("encoding latency.hlog")?;
    write_atomic(&dir.join("latency.hlog"), &log)?;
    Ok(())
}
