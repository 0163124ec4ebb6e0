//! eventbench: a load-testing and benchmarking harness for event-driven
//! pipelines on Redis.
//!
//! [`run`] takes a validated [`Scenario`], finds or starts Redis, drives the
//! swarm and returns a [`RunReport`]; it never prints. The binary and the
//! integration tests both go through it.

pub mod assertion;
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
use std::sync::Arc;
use target::{Target, TargetError};
use transport::conn::Endpoint;
use transport::pubsub::PubSub;
use transport::tls::TlsOptions;
use transport::TransportError;

/// Runs a scenario and returns what it measured.
pub async fn run(scenario: Scenario) -> Result<RunReport> {
    run_with(scenario, Arc::new(Live::default())).await
}

/// Runs a scenario; `live` lets a caller watch counters and request a stop.
pub async fn run_with(scenario: Scenario, live: Arc<Live>) -> Result<RunReport> {
    scenario.validate()?;
    let target = match &scenario.url {
        Some(url) => Target::external(url),
        None => Target::private(scenario.redis_server.as_deref())?,
    };
    let endpoint = endpoint(&scenario, target.url())?;
    check_reachable(&endpoint, target.url()).await?;
    sys::raise_fd_limit(scenario.producers as u64 * 2 + scenario.consumers as u64 + 64)
        .context("raising the open-file limit")?;

    let run_id = format!("{}-{}", scenario.name, utc_stamp());
    let nonce = run_nonce();
    let transport = PubSub {
        endpoint,
        channels: (0..scenario.channels).map(|c| format!("eventbench:{nonce}:{c}")).collect(),
        pattern: (scenario.subscribe == scenario::SubscribeMode::Pattern).then(|| format!("eventbench:{nonce}:*")),
        payload_len: scenario.payload,
    };
    let config = target::apply_config(&transport.endpoint, target.url(), &scenario.redis_config).await?;
    let control = transport.endpoint.clone();
    let out = swarm::run(&scenario, transport, live).await;
    if !target.is_private() {
        // A user's Redis gets its settings back; a private one is about to stop anyway.
        let restore = config.restore(&control);
        if matches!(out.status, Status::Aborted(_)) {
            // Redis is likely gone or stalled: try briefly, and keep the results either way.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), restore).await;
        } else {
            restore.await.context("restoring --redis-config settings")?;
        }
    }
    drop(target);
    Ok(stats::summary::summarize(run_id, &scenario, out))
}

/// Where the data connections go: the URL's address, with `--user` and
/// `--password` laid over its credentials, and TLS for `rediss://`.
fn endpoint(scenario: &Scenario, url: &str) -> Result<Endpoint, TargetError> {
    let shown = target::redact_url(url);
    let mut parsed =
        target::parse_url(url).map_err(|message| TargetError::Unreachable { url: shown.clone(), message })?;
    if let Some(user) = &scenario.user {
        parsed.username = Some(user.clone());
    }
    if let Some(password) = &scenario.password {
        parsed.password = Some(password.0.clone());
    }
    let tls = TlsOptions { ca: scenario.tls_ca.clone(), insecure: scenario.tls_insecure };
    Endpoint::new(&parsed, &tls, scenario.connect_timeout).map_err(|cause| TargetError::Tls { url: shown, cause })
}

/// Opens one data connection (TCP, TLS, AUTH) and sends PING, so that a wrong
/// address or password fails before the swarm starts, with a clear reason.
/// All of it within the connect timeout: a server that accepts the connection
/// but never answers must not hang the run.
async fn check_reachable(endpoint: &Endpoint, url: &str) -> Result<(), TargetError> {
    let url = target::redact_url(url);
    let ping = async {
        let mut conn = endpoint.connect().await?;
        let mut ping = Vec::new();
        transport::resp::encode_command(&mut ping, &[b"PING"]);
        conn.call(&ping, "PING").await
    };
    let timeout =
        TransportError::ConnectTimeout { addr: endpoint.addr(), secs: endpoint.connect_timeout.as_secs_f64() };
    let result = tokio::time::timeout(endpoint.connect_timeout, ping).await.unwrap_or(Err(timeout));
    result.map_err(|e| match e {
        TransportError::Refused { what: "AUTH", message } => TargetError::Auth { url: url.clone(), message },
        // A TLS port drops a plaintext client at its first bytes.
        TransportError::Closed | TransportError::Io(_) if endpoint.tls.is_none() => TargetError::Unreachable {
            url: url.clone(),
            message: format!("{e} (if that is a TLS port, use rediss://)"),
        },
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
