//! One run, start to end: set up the target (private servers, settings,
//! cluster discovery, the fault schedule), start the shares (in this process
//! or in worker processes), measure, drain, merge and build the results.

pub mod workers;

use crate::connect::tls::TlsOptions;
use crate::connect::{ConnError, Endpoint, RedisUrl};
use crate::drivers::pubsub::PubSub;
use crate::drivers::streams::Streams;
use crate::results::summarize::HarnessCpu;
use crate::results::RunReport;
use crate::scenario::{self, Scenario, TransportKind};
use crate::swarm::{self, Live, Status, Transport};
use crate::target::{self, Target, TargetError};
use crate::{chaos, sys, topology};
use anyhow::{Context, Result};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Runs a scenario and returns what it measured.
pub async fn run(scenario: Scenario) -> Result<RunReport> {
    run_with(scenario, Arc::new(Live::default())).await
}

/// Runs a scenario; `live` lets a caller watch counters and request a stop.
pub async fn run_with(scenario: Scenario, live: Arc<Live>) -> Result<RunReport> {
    scenario.validate()?;
    let target = target_for(&scenario)?;
    run_on(scenario, live, &target).await
}

/// The scenario's Redis. The open-file limit is raised first, so that a
/// private redis-server inherits it too (thousands of consumers need it on both sides).
pub fn target_for(scenario: &Scenario) -> Result<Target> {
    sys::raise_fd_limit(scenario.producers as u64 * 2 + scenario.consumers as u64 + 64)
        .context("raising the open-file limit")?;
    Ok(Target::for_scenario(scenario)?)
}

/// Runs a scenario against a Redis the caller holds (so that several runs,
/// as in `compare`, share one private server); the scenario's own `url` is
/// not used.
pub async fn run_on(scenario: Scenario, live: Arc<Live>, target: &Target) -> Result<RunReport> {
    scenario.validate()?;
    let run_id = format!("{}-{}", scenario.name, utc_stamp());
    let Setup { transport, nodes, topology } = transport_on(&scenario, target.url(), &run_nonce()).await?;
    let kill = match (&scenario.kill_node, &topology) {
        (Some(k), Some(t)) => {
            let port = t.nodes.get(k.node as usize).map(|n| n.port).filter(|&p| target.has_private_port(p));
            let port = port.ok_or(TargetError::NoSuchNode { node: k.node, nodes: t.nodes.len() })?;
            Some((*k, port))
        }
        (Some(k), None) => return Err(TargetError::NoSuchNode { node: k.node, nodes: 0 }.into()),
        _ => None,
    };
    // Every node of a cluster gets the settings: each serves its own clients.
    let mut configs = Vec::new();
    for e in &nodes {
        configs.push((e, target::apply_config(e, target.url(), &scenario.redis_config).await?));
    }
    let streams = match &transport {
        Transport::Streams(t) => Some(t.clone()),
        Transport::PubSub(_) => None,
    };
    let meter = tokio::spawn(cpu_over_measured_phase(live.clone()));
    let (out, node_outage) = tokio::join!(swarm::run(&scenario, transport, live.clone()), async {
        match kill {
            Some((k, port)) => Some(chaos::kill_node(target, &live, k, port, scenario.drain).await),
            None => None,
        }
    });
    let cpu = meter_reading(meter).await;
    // Both clocks read together: the wall-clock time of the run's epoch, for
    // the HDR log's StartTime and the report's date.
    let epoch = live.now_ns().and_then(|ns| SystemTime::now().checked_sub(Duration::from_nanos(ns)));
    if let Some(t) = &streams {
        delete_streams(t).await;
    }
    if !target.is_private() {
        // A user's Redis gets its settings back; a private one is about to stop anyway.
        let restore = async {
            for (e, config) in configs {
                config.restore(e).await?;
            }
            Ok::<_, ConnError>(())
        };
        if matches!(out.status, Status::Aborted(_)) {
            // Redis is likely gone or stalled: try briefly, and keep the results either way.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), restore).await;
        } else {
            restore.await.context("restoring --redis-config settings")?;
        }
    }
    let mut report = crate::results::summarize::summarize(run_id, &scenario, out);
    report.epoch = epoch;
    report.summary.nodes = nodes.len() as u32;
    match node_outage {
        Some(Ok(outage)) => chaos::report(&mut report, outage),
        // The run's results stand; the run did not do what it was asked to.
        Some(Err(e)) if report.status == Status::Ok => {
            let reason = format!("--kill-node: {e}");
            (report.summary.status, report.summary.reason) = ("aborted".into(), reason.clone());
            report.status = Status::Aborted(reason);
        }
        _ => {}
    }
    crate::results::summarize::judge_harness(&mut report.summary, cpu);
    Ok(report)
}

/// What a run drives, found on the Redis at a URL.
pub struct Setup {
    pub transport: Transport,
    /// The masters (one for a single server), for settings and side connections.
    pub nodes: Vec<Endpoint>,
    /// The cluster's layout, when the target is one.
    pub topology: Option<topology::Topology>,
}

/// The swarm's transport on the Redis at `url` (a user's, or the private
/// server's), its channels or streams named with `nonce` (and spread over a
/// cluster's masters), after checking that Redis answers.
pub(crate) async fn transport_on(scenario: &Scenario, url: &str, nonce: &str) -> Result<Setup> {
    let shown = url;
    let url = effective_url(scenario, shown)?;
    let endpoint = endpoint(&url, scenario, shown)?;
    check_reachable(&endpoint, shown).await?;
    let client = Arc::new(redis_client(&url, scenario, shown)?);
    let unreachable =
        |e: ConnError| TargetError::Unreachable { url: crate::connect::redact_url(shown), message: e.to_string() };
    // An ACL user is given only the commands of its transport: asking such a
    // user's Redis whether it is a cluster would be refused (and logged), so
    // with a user name eventbench asks only when told to (`--cluster`).
    let topology = match scenario.cluster || url.username.is_none() {
        true => topology::Topology::discover(&client, &url.host).await.map_err(unreachable)?,
        false => None,
    };
    if scenario.cluster && topology.is_none() {
        return Err(TargetError::NotCluster { url: crate::connect::redact_url(shown) }.into());
    }
    if scenario.transport == TransportKind::Sharded {
        check_sharded(&client, shown).await?;
    }
    let prefix = format!("eventbench:{nonce}:");
    let (names, node_of, nodes) = match &topology {
        Some(t) => {
            let (names, node_of) = t.spread(&prefix, scenario.channels);
            let mut nodes = Vec::new();
            for n in &t.nodes {
                let at = RedisUrl { host: n.host.clone(), port: n.port, ..url.clone() };
                nodes.push((self::endpoint(&at, scenario, shown)?, Arc::new(redis_client(&at, scenario, shown)?)));
            }
            (names, node_of, nodes)
        }
        None => (
            channel_names(nonce, scenario.channels),
            vec![0; scenario.channels as usize],
            vec![(endpoint.clone(), client.clone())],
        ),
    };
    let node_endpoints: Vec<Endpoint> = nodes.iter().map(|(e, _)| e.clone()).collect();
    let transport = match scenario.transport {
        TransportKind::Pubsub | TransportKind::Sharded => Transport::PubSub(PubSub {
            endpoint,
            nodes: node_endpoints.clone(),
            node_of,
            channels: names,
            pattern: (scenario.subscribe == scenario::SubscribeMode::Pattern).then(|| format!("{prefix}*")),
            payload_len: scenario.payload,
            sharded: scenario.transport == TransportKind::Sharded,
        }),
        TransportKind::Streams => Transport::Streams(Streams {
            endpoint,
            client,
            nodes,
            node_of,
            keys: names,
            payload_len: scenario.payload,
            maxlen: scenario.maxlen,
            batch: 256,
        }),
    };
    Ok(Setup { transport, nodes: node_endpoints, topology })
}

/// eventbench's own CPU use over the measured phase: the process's, as a
/// percentage of the CPUs it may use, and its busiest thread's. Watches the
/// run from the side, like the progress view, and samples getrusage and
/// /proc when the phase starts and when it ends (or is stopped).
pub(crate) async fn cpu_over_measured_phase(live: Arc<Live>) -> HarnessCpu {
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
    let after = sys::CpuSample::now(now());
    HarnessCpu {
        process_pct: before.share_pct(&after, sys::cpus_available()),
        busiest_thread_pct: before.busiest_thread_pct(&after),
    }
}

/// The run's channels (Pub/Sub) or stream keys (Streams).
pub(crate) fn channel_names(nonce: &str, channels: u32) -> Vec<String> {
    (0..channels).map(|c| format!("eventbench:{nonce}:{c}")).collect()
}

/// The run's streams hold every message it sent: delete them (best effort),
/// node by node.
pub(crate) async fn delete_streams(t: &Streams) {
    for (node, (e, _)) in t.nodes.iter().enumerate() {
        if let Ok(mut con) = e.connect().await {
            let mut args: Vec<&[u8]> = vec![b"DEL"];
            args.extend(t.keys.iter().zip(&t.node_of).filter(|(_, &n)| n == node).map(|(k, _)| k.as_bytes()));
            let _ = con.query(&args, "DEL").await;
        }
    }
}

/// What the CPU meter measured, once the swarm has returned. The swarm can
/// return within a millisecond of the phase's end, before the meter's timer
/// fires; a meter still waiting after that never saw the phase end.
pub(crate) async fn meter_reading(mut meter: tokio::task::JoinHandle<HarnessCpu>) -> HarnessCpu {
    match tokio::time::timeout(Duration::from_millis(200), &mut meter).await {
        Ok(cpu) => cpu.unwrap_or_default(),
        Err(_) => {
            meter.abort();
            HarnessCpu::default()
        }
    }
}

/// The URL's address and credentials, with `--user` and `--password` laid over them.
pub(crate) fn effective_url(scenario: &Scenario, url: &str) -> Result<RedisUrl, TargetError> {
    let mut parsed = crate::connect::parse_url(url)
        .map_err(|message| TargetError::Unreachable { url: crate::connect::redact_url(url), message })?;
    if let Some(user) = &scenario.user {
        parsed.username = Some(user.clone());
    }
    if let Some(password) = &scenario.password {
        parsed.password = Some(password.0.clone());
    }
    Ok(parsed)
}

/// Where the data connections go, with TLS for `rediss://`.
pub(crate) fn endpoint(url: &RedisUrl, scenario: &Scenario, shown: &str) -> Result<Endpoint, TargetError> {
    let tls = TlsOptions { ca: scenario.tls_ca.clone(), insecure: scenario.tls_insecure };
    Endpoint::new(url, &tls, scenario.connect_timeout)
        .map_err(|cause| TargetError::Tls { url: crate::connect::redact_url(shown), cause })
}

/// The same address, credentials and TLS settings for the redis crate, which
/// the Streams consumers and coordinator use.
pub(crate) fn redis_client(url: &RedisUrl, scenario: &Scenario, shown: &str) -> Result<redis::Client, TargetError> {
    use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};
    let (host, port) = (url.host.clone(), url.port);
    let addr = match url.tls {
        false => ConnectionAddr::Tcp(host, port),
        true => ConnectionAddr::TcpTls { host, port, insecure: scenario.tls_insecure, tls_params: None },
    };
    let mut settings = RedisConnectionInfo::default();
    if let Some(user) = &url.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &url.password {
        settings = settings.set_password(password);
    }
    let unusable = |message: String| TargetError::Unreachable { url: crate::connect::redact_url(shown), message };
    let info = addr
        .into_connection_info()
        .map_err(|e| unusable(e.to_string()))?
        .set_redis_settings(settings)
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    match (&scenario.tls_ca, url.tls) {
        (Some(ca), true) => {
            let root_cert = std::fs::read(ca).map_err(|e| unusable(format!("cannot read {}: {e}", ca.display())))?;
            let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
            redis::Client::build_with_tls(info, certs).map_err(|e| unusable(e.to_string()))
        }
        _ => redis::Client::open(info).map_err(|e| unusable(e.to_string())),
    }
}

/// `--transport sharded` needs SPUBLISH (Redis 7): says so before the run, not as a failed one.
async fn check_sharded(client: &redis::Client, url: &str) -> Result<(), TargetError> {
    let unreachable = |e: redis::RedisError| TargetError::Unreachable {
        url: crate::connect::redact_url(url),
        message: e.to_string(),
    };
    let mut con = client.get_multiplexed_async_connection().await.map_err(unreachable)?;
    let info: redis::Value =
        redis::cmd("COMMAND").arg("INFO").arg("SPUBLISH").query_async(&mut con).await.map_err(unreachable)?;
    match info {
        redis::Value::Array(v) if v.first().is_some_and(|c| !matches!(c, redis::Value::Nil)) => Ok(()),
        _ => Err(TargetError::NoShardedPubSub { url: crate::connect::redact_url(url) }),
    }
}

/// Opens one data connection (TCP, TLS, AUTH) and sends PING, so that a wrong
/// address or password fails before the swarm starts, with a clear reason.
/// All of it within the connect timeout: a server that accepts the connection
/// but never answers must not hang the run.
pub(crate) async fn check_reachable(endpoint: &Endpoint, url: &str) -> Result<(), TargetError> {
    let url = crate::connect::redact_url(url);
    let ping = async {
        let mut conn = endpoint.connect().await?;
        let mut ping = Vec::new();
        crate::connect::resp::encode_command(&mut ping, &[b"PING"]);
        conn.call(&ping, "PING").await
    };
    let timeout = ConnError::ConnectTimeout { addr: endpoint.addr(), secs: endpoint.connect_timeout.as_secs_f64() };
    let result = tokio::time::timeout(endpoint.connect_timeout, ping).await.unwrap_or(Err(timeout));
    result.map_err(|e| match e {
        ConnError::Refused { what: "AUTH", message } => TargetError::Auth { url: url.clone(), message },
        // A TLS port drops a plaintext client at its first bytes.
        ConnError::Closed | ConnError::Io(_) if endpoint.tls.is_none() => TargetError::Unreachable {
            url: url.clone(),
            message: format!("{e} (if that is a TLS port, use rediss://)"),
        },
        e => TargetError::Unreachable { url, message: e.to_string() },
    })
}

/// `20261126T174000Z`: sortable and safe in a directory name.
pub fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(['-', ':'], "")
}

/// A short token that keeps the channels of concurrent runs apart.
pub(crate) fn run_nonce() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut x = nanos ^ ((std::process::id() as u64) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    format!("{:08x}", x as u32)
}
