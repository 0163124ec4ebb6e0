//! eventbench: a load-testing and benchmarking harness for event-driven
//! pipelines on Redis.
//!
//! [`run`] takes a validated [`Scenario`], finds or starts Redis, drives the
//! swarm and returns a [`RunReport`]; it never prints. The binary and the
//! integration tests both go through it.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod pacer;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod swarm;
pub mod sys;
pub mod target;
pub mod transport;
pub mod wire;

pub use report::RunReport;
pub use scenario::Scenario;
pub use swarm::{Live, Status};

use anyhow::{Context, Result};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use target::{Target, TargetError};
use transport::conn::Endpoint;
use transport::pubsub::PubSub;
use transport::TransportError;

/// Runs a scenario and returns what it measured.
pub async fn run(scenario: Scenario) -> Result<RunReport> {
    run_with(scenario, Arc::new(Live::default())).await
}

/// Runs a scenario; `live` lets a caller watch counters and request a stop.
pub async fn run_with(scenario: Scenario, live: Arc<Live>) -> Result<RunReport> {
    scenario.validate()?;
    // Before a private redis-server starts, so that it inherits the raised limit too.
    sys::raise_fd_limit(scenario.producers as u64 * 2 + scenario.consumers as u64 + 64)
        .context("raising the open-file limit")?;
    let target = match &scenario.url {
        Some(url) => Target::external(url),
        None => Target::private(scenario.redis_server.as_deref())?,
    };
    let endpoint = Endpoint::from_url(target.url(), scenario.connect_timeout)
        .map_err(|message| TargetError::Unreachable { url: target::redact_url(target.url()), message })?;
    check_reachable(&endpoint, target.url()).await?;

    let run_id = format!("{}-{}", scenario.name, utc_stamp());
    let nonce = run_nonce();
    let transport = PubSub {
        endpoint,
        channels: (0..scenario.channels).map(|c| format!("eventbench:{nonce}:{c}")).collect(),
        pattern: (scenario.subscribe == scenario::SubscribeMode::Pattern).then(|| format!("eventbench:{nonce}:*")),
        payload_len: scenario.payload,
    };
    let config = target::apply_config(target.url(), &scenario.redis_config).await?;
    let mut meter = tokio::spawn(cpu_over_measured_phase(live.clone()));
    let out = swarm::run(&scenario, transport, live).await;
    // The swarm can return within a millisecond of the phase's end, before the
    // meter's timer fires; a meter still waiting after that never saw the phase end.
    let cpu_pct = match tokio::time::timeout(Duration::from_millis(200), &mut meter).await {
        Ok(pct) => pct.unwrap_or(0.0),
        Err(_) => {
            meter.abort();
            0.0
        }
    };
    if !target.is_private() {
        // A user's Redis gets its settings back; a private one is about to stop anyway.
        config.restore(target.url()).await.context("restoring --redis-config settings")?;
    }
    drop(target);
    let mut report = stats::summary::summarize(run_id, &scenario, out);
    stats::summary::judge_harness(&mut report.summary, cpu_pct);
    Ok(report)
}

/// eventbench's own CPU use over the measured phase, as a percentage of the
/// CPUs it may use. Watches the run from the side, like the progress view,
/// and samples getrusage when the phase starts and when it ends (or is stopped).
async fn cpu_over_measured_phase(live: Arc<Live>) -> f64 {
    let (start_ns, end_ns) = loop {
        match (live.measure_start_ns.load(Relaxed), live.measure_end_ns.load(Relaxed)) {
            (0, _) | (_, 0) => tokio::time::sleep(Duration::from_millis(5)).await,
            known => break known,
        }
    };
    let now = || live.now_ns().unwrap_or(0);
    tokio::time::sleep(Duration::from_nanos(start_ns.saturating_sub(now()))).await;
    let before = sys::CpuSample::now(now());
    while now() < end_ns && !live.stop_requested() {
        let left = Duration::from_nanos(end_ns.saturating_sub(now()));
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    before.share_pct(&sys::CpuSample::now(now()), sys::cpus_available())
}

/// Opens one data connection (TCP, AUTH) and sends PING, so that a wrong
/// address or password fails before the swarm starts, with a clear reason.
async fn check_reachable(endpoint: &Endpoint, url: &str) -> Result<(), TargetError> {
    let url = target::redact_url(url);
    let mut conn = endpoint.connect().await.map_err(|e| match e {
        TransportError::Refused { message, .. } => TargetError::Auth { url: url.clone(), message },
        e => TargetError::Unreachable { url: url.clone(), message: e.to_string() },
    })?;
    let mut ping = Vec::new();
    transport::resp::encode_command(&mut ping, &[b"PING"]);
    conn.call(&ping, "PING").await.map_err(|e| match e {
        TransportError::Refused { message, .. } => TargetError::Auth { url: url.clone(), message },
        e => TargetError::Unreachable { url, message: e.to_string() },
    })
}

/// `20261126T174000Z`: sortable and safe in a directory name.
fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "")
}

/// A short token that keeps the channels of concurrent runs apart.
fn run_nonce() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{:08x}", x as u32)
}
