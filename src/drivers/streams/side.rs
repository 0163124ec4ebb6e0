//! What the Streams driver runs beside the consumers, in one share of a run:
//! the backlog sampler (entries not yet acknowledged, per measured second)
//! and, with `--replay-at`, a group that reads the streams from the beginning.

use super::conn::{self, GroupStart, Streams};
use crate::drivers::{Ctx, Replay, SideResults, SideTasks};
use crate::stats::Window;
use std::time::Duration;

/// How long an XREADGROUP waits for new entries before checking the clock again.
const BLOCK: Duration = super::conn::READ_BLOCK;

/// Starts the backlog sampler and, with `--replay-at`, the replay group.
pub(super) fn start(t: &Streams, shared: &Ctx, window: Window) -> SideTasks {
    if !shared.side_tasks {
        return SideTasks::default();
    }
    let so_far = shared.side_so_far.clone();
    let live = shared.live.clone();
    let backlog = tokio::spawn(sample_backlog(t.clone(), shared.clock, shared.finish.clone(), window, so_far, live));
    let replay = shared.scenario.replay_at.map(|at| {
        let start = window.start_ns + at.as_nanos() as u64;
        tokio::spawn(replay(t.clone(), shared.clock, shared.finish.clone(), start))
    });
    let retained = tokio::spawn(first_retained(t.clone(), shared.scenario.producers, shared.finish.clone()));
    SideTasks { backlog: Some(backlog), replay, retained: Some(retained) }
}

/// Most entries read from the front of one stream to find each producer's oldest.
const RETAINED_SCAN: usize = 100_000;

/// Once the run finishes: per (producer, channel), the first sequence still
/// in the stream (`u64::MAX` when none of that producer's entries is left).
/// Streams are trimmed from the front, so an entry older than that left the
/// stream; one at or after it is still there, read or not.
async fn first_retained(
    t: Streams,
    producers: u32,
    mut finish: tokio::sync::watch::Receiver<bool>,
) -> Option<Vec<u64>> {
    let _ = finish.wait_for(|f| *f).await;
    let mut cons = t.connections().await.ok()?;
    let channels = t.keys.len();
    let mut first = vec![u64::MAX; producers as usize * channels];
    let mut entries = Vec::new();
    for (c, (key, &node)) in t.keys.iter().zip(&t.node_of).enumerate() {
        let (mut from, mut seen, mut scanned) = ("-".to_string(), 0, 0);
        while seen < producers && scanned < RETAINED_SCAN {
            let reply: redis::Value = redis::cmd("XRANGE")
                .arg(key)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut cons[node])
                .await
                .ok()?;
            let redis::Value::Array(items) = reply else { break };
            if items.is_empty() {
                break;
            }
            entries.clear();
            conn::entries_into(c, items, &mut entries);
            for e in &entries {
                let Ok(h) = crate::wire::Header::decode(&e.payload) else { continue };
                let Some(slot) = (h.producer < producers).then(|| h.producer as usize * channels + c) else { continue };
                if first[slot] == u64::MAX {
                    first[slot] = h.seq;
                    seen += 1;
                }
            }
            scanned += entries.len();
            let Some(last) = entries.last() else { break };
            from = format!("({}", String::from_utf8_lossy(&last.id));
        }
    }
    Some(first)
}

/// XINFO GROUPS at the end of every measured second (and through the drain, for the maximum).
async fn sample_backlog(
    t: Streams,
    clock: crate::clock::Clock,
    mut finish: tokio::sync::watch::Receiver<bool>,
    window: Window,
    so_far: std::sync::Arc<std::sync::Mutex<SideResults>>,
    live: std::sync::Arc<crate::live::Live>,
) -> Vec<u64> {
    // One sample per measured second, as the seconds pass.
    let mut samples = Vec::new();
    let cons = tokio::select! {
        _ = finish.wait_for(|f| *f) => return samples,
        c = t.connections() => c,
    };
    let Ok(cons) = cons else { return samples };
    let mut cons: Vec<_> = cons.into_iter().map(Some).collect();
    let mut second = 0usize;
    loop {
        let at = window.start_ns + (second as u64 + 1) * 1_000_000_000;
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return samples,
            _ = clock.sleep_until_ns(at) => {}
        }
        // A node that went away is asked again once it answers (its streams come back with it).
        // A Redis that stopped answering must not hold the end of the run: the finish ends the wait.
        let sampled = async {
            t.reconnect_missing(&mut cons).await;
            conn::backlog(&mut cons, &t).await
        };
        let sampled = tokio::select! {
            _ = finish.wait_for(|f| *f) => return samples,
            n = sampled => n,
        };
        let Some(n) = sampled else {
            second += 1;
            continue;
        };
        // Seconds whose sample failed stay 0; during the drain, samples go on past the window (for the maximum).
        if samples.len() < second {
            samples.resize(second, 0);
        }
        samples.push(n);
        // Live export shows the latest sample.
        live.meters.backlog.store(n, std::sync::atomic::Ordering::Relaxed);
        second += 1;
        // Once a second, for checkpoints.
        if let Ok(mut so_far) = so_far.lock() {
            so_far.backlog.clone_from(&samples);
        }
    }
}

/// Creates a group at the beginning of every stream at `start_ns` and reads
/// until it has caught up with what existed then.
async fn replay(
    t: Streams,
    clock: crate::clock::Clock,
    mut finish: tokio::sync::watch::Receiver<bool>,
    start_ns: u64,
) -> Option<Replay> {
    tokio::select! {
        _ = finish.wait_for(|f| *f) => return None,
        _ = clock.sleep_until_ns(start_ns) => {}
    }
    let mut cons = t.connections().await.ok()?;
    let mut backlog = 0u64;
    for (key, &node) in t.keys.iter().zip(&t.node_of) {
        backlog += redis::cmd("XLEN").arg(key).query_async::<u64>(&mut cons[node]).await.ok()?;
    }
    let replay_settings = Streams { batch: 1000, ..t.clone() };
    let reader = replay_settings.consumer("eventbench-replay", "replayer", GroupStart::Beginning).await.ok()?;
    let started_ns = clock.now_ns();
    let mut progress = Replay { started_ns, backlog, read: 0, catchup_ns: None, caught_up_read: 0 };
    let mut batch = Vec::new();
    loop {
        batch.clear();
        tokio::select! {
            _ = finish.wait_for(|f| *f) => return Some(progress),
            r = reader.read(false, BLOCK, &mut batch) => r.ok()?,
        }
        progress.read += batch.len() as u64;
        // Caught up with the live stream: a read that no longer fills a batch,
        // after the entries that existed at creation.
        if progress.catchup_ns.is_none() && progress.read >= backlog && batch.len() < replay_settings.batch {
            progress.catchup_ns = Some(clock.now_ns() - started_ns);
            progress.caught_up_read = progress.read;
        }
        reader.ack(&batch).await.ok()?;
    }
}
