//! Builds the plots and pages of a run, or a comparison of runs, from run
//! directories alone. `eventbench run` calls [`run_report`] right after
//! writing the data files, so a fresh report and a rebuilt one are the same.

use super::files::{write_atomic, write_csv};
use super::rundir::RunData;
use super::{html, plots};
use anyhow::{Context, Result};
use std::path::{Component, Path, PathBuf};

/// Writes `timeline.svg`, `latency.svg`, `report.html` and, for a run with
/// assertions, `assertions.csv` into the run directory `dir` from its files;
/// returns what it read.
pub fn run_report(dir: &Path) -> Result<RunData> {
    let run = RunData::load(dir)?;
    let timeline = plots::timeline(&run).with_context(|| format!("plotting {}", dir.join("timeline.svg").display()))?;
    let latency = plots::latency(&run).with_context(|| format!("plotting {}", dir.join("latency.svg").display()))?;
    write_atomic(&dir.join("timeline.svg"), timeline.as_bytes())?;
    write_atomic(&dir.join("latency.svg"), latency.as_bytes())?;
    write_atomic(&dir.join("report.html"), html::run_page(&run, &timeline, &latency).as_bytes())?;
    // Each assertion's verdict, from scenario.toml and summary.csv like the page's.
    let verdicts = html::verdicts(&run);
    if !verdicts.is_empty() {
        write_csv(&dir.join("assertions.csv"), &verdicts)?;
    }
    Ok(run)
}

/// Writes `runs.csv` (one summary row per run) and the comparison page with
/// its plots ([`comparison_page`]) into `out`, created if needed.
pub fn comparison(runs: &[RunData], out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create output directory {}", out.display()))?;
    let summaries: Vec<crate::rows::RunsRow> = runs.iter().map(|r| r.summary.clone()).collect();
    write_csv(&out.join("runs.csv"), &summaries)?;
    comparison_page(runs, out, "runs.csv")
}

/// Writes `compare.html`, `compare-latency.svg` and `compare-timeline.svg`
/// into the existing directory `out`; the page links `table`, the CSV of the
/// runs' summaries beside it (`runs.csv`, or `compare.csv` for `eventbench compare`).
pub fn comparison_page(runs: &[RunData], out: &Path, table: &str) -> Result<()> {
    let labels = labels(runs);
    let timeline = plots::compare_timeline(runs, &labels).context("plotting compare-timeline.svg")?;
    let latency = plots::compare_latency(runs, &labels).context("plotting compare-latency.svg")?;
    let links: Vec<String> =
        runs.iter().map(|r| relative(out, &r.dir.join("report.html")).display().to_string()).collect();
    write_atomic(&out.join("compare-timeline.svg"), timeline.as_bytes())?;
    write_atomic(&out.join("compare-latency.svg"), latency.as_bytes())?;
    let page = html::compare_page(runs, &labels, &links, table, (&timeline, &latency));
    write_atomic(&out.join("compare.html"), page.as_bytes())?;
    Ok(())
}

/// Short names that tell the runs apart: the transport when only that
/// differs, the server and its version when those do (`compare --servers`),
/// the run name when names differ, else the full run id.
pub fn labels(runs: &[RunData]) -> Vec<String> {
    let distinct = |f: &dyn Fn(&RunData) -> String| {
        let mut v: Vec<String> = runs.iter().map(f).collect();
        v.sort();
        v.dedup();
        v.len() == runs.len()
    };
    let transport = |r: &RunData| r.summary.transport.clone();
    let name = |r: &RunData| r.name().to_string();
    let both = |r: &RunData| format!("{} · {}", r.summary.transport, r.name());
    let server = |r: &RunData| format!("{} {}", r.summary.server, r.summary.server_version).trim().to_string();
    if distinct(&transport) {
        runs.iter().map(transport).collect()
    } else if distinct(&server) && runs.iter().all(|r| !r.summary.server.is_empty()) {
        runs.iter().map(server).collect()
    } else if distinct(&name) {
        runs.iter().map(name).collect()
    } else if distinct(&both) {
        runs.iter().map(both).collect()
    } else {
        runs.iter().map(|r| r.summary.run_id.clone()).collect()
    }
}

/// `to` as seen from the directory `from` (both made absolute first), so the
/// comparison page's links survive moving the whole tree.
pub fn relative(from: &Path, to: &Path) -> PathBuf {
    let absolute = |p: &Path| {
        let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        // Resolve `..` and `.` lexically; the paths may not exist yet.
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                c => out.push(c),
            }
        }
        out
    };
    let (from, to) = (absolute(from), absolute(to));
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in from.components().skip(common) {
        rel.push("..");
    }
    for c in to.components().skip(common) {
        rel.push(c);
    }
    rel
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(relative(Path::new("/r/cmp"), Path::new("/r/a/report.html")), Path::new("../a/report.html"));
        assert_eq!(relative(Path::new("/r"), Path::new("/r/a/report.html")), Path::new("a/report.html"));
        assert_eq!(relative(Path::new("/r/x/../cmp"), Path::new("/r/a/./b")), Path::new("../a/b"));
    }
}
