//! Writes a run directory's data: the CSV files, `scenario.toml`,
//! `latency.hlog` (the plots and `report.html` are built from these by
//! [`super::render`]). Every file is written under a temporary name and
//! renamed into place, so a crash never leaves a truncated file behind; a
//! run's checkpoints go one step further and replace the whole directory at
//! once ([`replace_dir`]), so its files always belong to one result.

use super::hlog;
use crate::results::RunReport;
use crate::stats::SecondStats;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes `bytes` to `path` via a temporary file in the same directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes).map_err(Into::into))
}

/// Writes `path` via a temporary file in the same directory, from what
/// `fill` writes into it (buffered): a file as long as a soak's is streamed
/// to disk, never held in memory whole.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".eventbench-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)
            .and_then(|()| w.flush().map_err(Into::into))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Temporary files are private (0600); results are meant to be shared and opened in a browser.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).ok();
    tmp.as_file().sync_all().ok();
    tmp.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Serializes `rows` as CSV (header from the struct's field names) into `path`.
/// A file with no rows still gets its header, so readers see its columns.
/// Every cell goes through [`inert`], here and nowhere else: whatever a
/// row holds (a server's version string, a description, an error message),
/// no file of a run makes a spreadsheet run a formula.
pub fn write_csv<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic_with(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(crate::rows::columns(&T::default()))?;
        // Each row as the csv crate writes it, read back as cells.
        let (mut buf, mut cells) = (Vec::new(), csv::StringRecord::new());
        for row in rows {
            let mut one = csv::WriterBuilder::new().has_headers(false).buffer_capacity(512).from_writer(buf);
            one.serialize(row)?;
            buf = one.into_inner().map_err(|e| e.into_error())?;
            let mut read =
                csv::ReaderBuilder::new().has_headers(false).buffer_capacity(512).from_reader(buf.as_slice());
            read.read_record(&mut cells)?;
            w.write_record(&cells.iter().map(inert).collect::<csv::StringRecord>())?;
            buf.clear();
        }
        w.flush()?;
        Ok(())
    })
}

/// First characters that make a spreadsheet read a cell as a formula
/// (OWASP's list for CSV injection).
pub const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as written: one that a spreadsheet would take for a formula gets a
/// leading `'` (shown as text, run as nothing); a number, negative ones
/// included, stays as it is. A cell that is such a cell behind `'`s gets one
/// more, so [`restored`] gives every cell back exactly.
pub fn inert(cell: &str) -> std::borrow::Cow<'_, str> {
    match formula(cell) || (cell.starts_with('\'') && formula(cell.trim_start_matches('\''))) {
        true => format!("'{cell}").into(),
        false => cell.into(),
    }
}

/// A cell as [`inert`] wrote it, back as the row held it.
pub fn restored(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if formula(rest.trim_start_matches('\'')) => rest,
        _ => cell,
    }
}

/// A CSV record read back from a file of eventbench's, each cell [`restored`].
pub fn restore(record: &csv::StringRecord) -> csv::StringRecord {
    record.iter().map(restored).collect()
}

fn formula(cell: &str) -> bool {
    let number = cell.parse::<f64>().is_ok() && cell.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    cell.starts_with(FORMULA_STARTS) && !number
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
    write_csv(&dir.join("channels.csv"), &report.channels)?;
    write_csv(&dir.join("events.csv"), &report.events)?;
    write_csv(&dir.join("server.csv"), &report.server)?;
    let window = &report.window;
    let measured = Duration::from_nanos(window.end_ns - window.start_ns);
    let start = report.epoch.map(|t| t + Duration::from_nanos(window.start_ns));
    write_atomic_with(&dir.join("latency.hlog"), |w| {
        let seconds = report.per_second.iter().map(SecondStats::histogram);
        hlog::encode(seconds, measured, start, &report.run_id, w).context("encoding latency.hlog")
    })?;
    Ok(())
}

/// Where a new version of the run directory `dir` is written before it takes
/// `dir`'s place ([`replace_dir`]): a hidden sibling, on the same file system.
pub fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    dir.with_file_name(format!(".{name}.eventbench-staging"))
}

/// Puts the directory `staged` in the place of `dir` in one step, and
/// removes what `dir` held. A reader (or a SIGKILL) at any moment finds
/// `dir` holding either the old set of files or the new one, never a mix:
/// per-file renames would let a kill between two of them leave, say, a new
/// `timeseries.csv` beside an old `summary.csv` whose totals differ.
/// On Linux the two directories are exchanged (`renameat2` with
/// `RENAME_EXCHANGE`); a file system without it gets two renames, with a
/// moment in between when `dir` is missing (its old files are then in the
/// hidden `.NAME.eventbench-old` beside it).
pub fn replace_dir(staged: &Path, dir: &Path) -> Result<()> {
    let failed =
        |e: std::io::Error| anyhow::anyhow!("cannot put {} in place of {}: {e}", staged.display(), dir.display());
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    if !dir.exists() || empty {
        // rename(2) replaces an empty directory.
        return std::fs::rename(staged, dir).map_err(failed);
    }
    match exchange(staged, dir) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
            let old = dir.with_file_name(format!(
                ".{}.eventbench-old",
                dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned())
            ));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(dir, &old).map_err(failed)?;
            std::fs::rename(staged, dir).map_err(failed)?;
            let _ = std::fs::remove_dir_all(&old);
            return Ok(());
        }
        Err(e) => return Err(failed(e)),
    }
    // `staged` now holds the old files.
    std::fs::remove_dir_all(staged).with_context(|| format!("cannot remove {}", staged.display()))
}

/// Exchanges two paths atomically (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are NUL-terminated paths that live across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
    struct Row {
        name: String,
        value: f64,
        offset: Option<i64>,
    }

    #[test]
    fn no_cell_is_a_formula_and_every_cell_reads_back() {
        let names = [
            "=cmd|' -C calc'!A0",
            "+1+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=quoted",
            "''@twice",
            "'plain'",
            "-5",
            "plain",
            "",
        ];
        let rows: Vec<Row> = names
            .iter()
            .enumerate()
            .map(|(i, n)| Row { name: n.to_string(), value: -1.5, offset: Some(-(i as i64)) })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        write_csv(&path, &rows).unwrap();
        let mut r = csv::Reader::from_path(&path).unwrap();
        let records: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        for rec in &records {
            let name = &rec[0];
            assert!(!name.starts_with(FORMULA_STARTS) || name == "-5", "{name:?} would run");
            assert_eq!((&rec[1], rec[2].starts_with('-') || &rec[2] == "0"), ("-1.5", true), "numbers stay numbers");
        }
        assert_eq!(&records[0][0], "'=cmd|' -C calc'!A0");
        assert_eq!(&records[6][0], "''=quoted");
        assert_eq!(&records[8][0], "'plain'");
        let headers = r.headers().unwrap().clone();
        let back: Vec<Row> = records.iter().map(|rec| restore(rec).deserialize(Some(&headers)).unwrap()).collect();
        assert_eq!(back, rows);
    }

    #[test]
    fn a_staged_directory_replaces_a_full_one_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        let staged = staging_dir(&dir);
        std::fs::create_dir(&staged).unwrap();
        write_atomic(&staged.join("summary.csv"), b"first").unwrap();
        replace_dir(&staged, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("summary.csv")).unwrap(), b"first");
        std::fs::create_dir(&staged).unwrap();
        write_atomic(&staged.join("summary.csv"), b"second").unwrap();
        write_atomic(&staged.join("timeseries.csv"), b"new").unwrap();
        replace_dir(&staged, &dir).unwrap();
        assert_eq!(std::fs::read(dir.join("summary.csv")).unwrap(), b"second");
        assert_eq!(std::fs::read(dir.join("timeseries.csv")).unwrap(), b"new");
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["run"], "neither the staged nor the old directory is left");
    }
}
