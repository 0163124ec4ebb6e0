//! Live export for one command (`run`, `compare`, `capacity`): the
//! `/metrics` endpoint of `--metrics-listen`, and the per-second lines of
//! `--format jsonl`, which this module prints.

use super::say_out;
use crate::assertion::AssertionRow;
use crate::cli::{ExportArgs, Format};
use crate::export::http::{Endpoint, Serving};
use crate::export::{jsonl, Board};
use crate::live::Live;
use crate::rows::SummaryRow;
use crate::scenario::ScenarioError;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;

/// What watches the command's runs from outside.
pub(super) struct Watch {
    board: Arc<Board>,
    serving: Option<Serving>,
    /// The address `/metrics` is served on, as bound (a port 0 made concrete).
    pub(super) listening: Option<std::net::SocketAddr>,
    linger: Duration,
    jsonl: bool,
}

/// The per-second lines of one run; they stop when dropped.
pub(super) struct Lines(Option<tokio::task::JoinHandle<()>>);

impl Drop for Lines {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl Watch {
    /// Binds `--metrics-listen` (an address in use is bad input, before
    /// anything runs) and starts serving; nothing is shown until a run starts.
    pub(super) fn start(args: &ExportArgs, format: Format) -> Result<Watch> {
        let board = Arc::new(Board::default());
        let (serving, listening) = match &args.metrics_listen {
            Some(addr) => {
                let endpoint = Endpoint::bind(addr)
                    .map_err(|e| ScenarioError::Invalid { key: "metrics-listen", message: e.to_string() })?;
                let bound = endpoint.local_addr().context("the address /metrics is served on")?;
                // A free port (`:0`) is only useful once known: said before anything runs.
                if !addr.ends_with(&format!(":{}", bound.port())) {
                    super::say_err(&format!("eventbench: serving metrics on http://{bound}/metrics"));
                }
                (Some(endpoint.serve(board.clone()).context("serving /metrics")?), Some(bound))
            }
            None => (None, None),
        };
        Ok(Watch { board, serving, listening, linger: args.metrics_linger, jsonl: format == Format::Jsonl })
    }

    /// A run starts: export shows it, and with `--format jsonl` a line a second goes to stdout.
    pub(super) fn run(&self, live: &Arc<Live>, transport: &str, server: Arc<crate::telemetry::Latest>) -> Lines {
        self.board.watch(live.clone(), transport.to_string(), server);
        if !self.jsonl && self.serving.is_none() {
            return Lines(None);
        }
        let (live, transport, jsonl) = (live.clone(), transport.to_string(), self.jsonl);
        Lines(Some(tokio::spawn(async move {
            let mut lines = jsonl::Lines::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                // Every second also samples the CPU the endpoint shows.
                let row = lines.next(&live, &transport);
                if let Some(line) = row.filter(|_| jsonl).and_then(|r| serde_json::to_string(&r).ok()) {
                    say_out(&(line + "\n"));
                }
            }
        })))
    }

    /// The run ended: from now on export shows the files' totals; with
    /// `--format jsonl`, the summary object (with each assertion's verdict)
    /// follows the run's lines.
    pub(super) fn finished(&self, summary: &SummaryRow, asserts: &[AssertionRow]) -> Result<()> {
        self.board.finish(summary);
        if self.jsonl {
            say_out(&(super::summary_json(summary, asserts)? + "\n"));
        }
        Ok(())
    }

    /// Keeps serving the final values for `--metrics-linger`, so that a scraper catches them.
    /// A Ctrl-C (a stop requested on `live`, the last run's) ends it early.
    pub(super) async fn linger(self, live: Arc<Live>) {
        if self.serving.is_some() && !self.linger.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.linger) => {}
                _ = live.stopped() => {}
            }
        }
    }
}
