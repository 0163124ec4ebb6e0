//! eventbench's own CPU use over the measured phase, measured in every
//! share: the process's, as a percentage of the CPUs it may use, and its
//! busiest thread's.

use crate::live::Live;
use crate::results::summarize::HarnessCpu;
use std::sync::Arc;
use std::time::Duration;

/// Watches the run from the side, like the progress view, and samples
/// getrusage and /proc when the measured phase starts and when it ends (or is stopped).
/// Nothing on virtual time (a paused runtime, `clock`): CPU time over a
/// virtual phase is no share of anything.
pub async fn cpu_over_measured_phase(live: Arc<Live>) -> HarnessCpu {
    if crate::clock::runtime_paused() {
        return HarnessCpu::default();
    }
    let (start_ns, end_ns) = loop {
        match live.measured_phase() {
            None => tokio::time::sleep(Duration::from_millis(5)).await,
            Some(known) => break known,
        }
    };
    let now = || live.now_ns().unwrap_or(0);
    // A run stopped (or aborted) before its measured phase began measured no CPU over it.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_nanos(start_ns.saturating_sub(now()))) => {}
        _ = live.stopped() => return HarnessCpu::default(),
    }
    let before = crate::sys::CpuSample::now(now());
    while now() < end_ns && !live.stop_requested() {
        let left = Duration::from_nanos(end_ns.saturating_sub(now()));
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    let after = crate::sys::CpuSample::now(now());
    HarnessCpu {
        process_pct: before.share_pct(&after, crate::sys::cpus_available()),
        busiest_thread_pct: before.busiest_thread_pct(&after),
    }
}

/// What the meter measured, once the swarm has returned. The swarm can
/// return within a millisecond of the phase's end, before the meter's timer
/// fires; a meter still waiting after that never saw the phase end.
pub async fn reading(mut meter: tokio::task::JoinHandle<HarnessCpu>) -> HarnessCpu {
    match tokio::time::timeout(Duration::from_millis(200), &mut meter).await {
        Ok(cpu) => cpu.unwrap_or_default(),
        Err(_) => {
            meter.abort();
            HarnessCpu::default()
        }
    }
}
