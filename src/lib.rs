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
use scenario::TransportKind;
use std::sync::Arc;
use swarm::Transport;
use target::{Target, TargetError};
use transport::conn::Endpoint;
use transport::pubsub::PubSub;
use transport::streams::Streams;
use transport::TransportError;

/// Runs a scenario and returns what it measured.
pub async fn run(scenario: Scenario) -> Result<RunReport> {
    run_with(scenario, Arc::new(Live::default())).await
}

/// Runs a scenario; `live` lets a caller watch counters and request a stop.
pub async fn run_with(scenario: Scenario, live: Arc<Live>) -> Result<RunReport> {
    scenario.validate()?;
    let target = Target::for_scenario(&scenario)?;
    run_on(scenario, live, &target).await
}

/// Runs a scenario against a Redis the caller holds (so that several runs,
/// as in `compare`, share one private server); the scenario's own `url` is
/// not used.
pub async fn run_on(scenario: Scenario, live: Arc<Live>, target: &Target) -> Result<RunReport> {
    scenario.validate()?;
    let endpoint = Endpoint::from_url(target.url(), scenario.connect_timeout)
        .map_err(|message| TargetError::Unreachable { url: target::redact_url(target.url()), message })?;
    check_reachable(&endpoint, target.url()).await?;
    sys::raise_fd_limit(scenario.producers as u64 * 2 + scenario.consumers as u64 + 64)
        .context("raising the open-file limit")?;

    let run_id = format!("{}-{}", scenario.name, utc_stamp());
    let nonce = run_nonce();
    let names: Vec<String> = (0..scenario.channels).map(|c| format!("eventbench:{nonce}:{c}")).collect();
    let transport = match scenario.transport {
        TransportKind::Pubsub => Transport::PubSub(PubSub {
            endpoint,
            channels: names,
            pattern: (scenario.subscribe == scenario::SubscribeMode::Pattern).then(|| format!("eventbench:{nonce}:*")),
            payload_len: scenario.payload,
        }),
        TransportKind::Streams => Transport::Streams(Streams {
            endpoint,
            url: target.url().to_string(),
            keys: names,
            payload_len: scenario.payload,
            maxlen: scenario.maxlen,
            batch: 256,
        }),
    };
    let config = target::apply_config(target.url(), &scenario.redis_config).await?;
    let keys = match &transport {
        Transport::Streams(t) => t.keys.clone(),
        Transport::PubSub(_) => Vec::new(),
    };
    let out = swarm::run(&scenario, transport, live).await;
    if !keys.is_empty() {
        // The run's streams hold every message it sent: delete them (best effort).
        if let Ok(client) = redis::Client::open(target.url()) {
            if let Ok(mut con) = client.get_multiplexed_async_connection().await {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query_async(&mut con).await;
            }
        }
    }
    if !target.is_private() {
        // A user's Redis gets its settings back; a private one is about to stop anyway.
        config.restore(target.url()).await.context("restoring --redis-config settings")?;
    }
    Ok(stats::summary::summarize(run_id, &scenario, out))
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
pub fn utc_stamp() -> String {
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
