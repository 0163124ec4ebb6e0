//! Setting a run up on its target, once, the same for every share: the
//! URL and credentials, a first PING, cluster discovery, the run's channel
//! (or stream) names spread over the masters, and the transport's driver.

use crate::connect::tls::TlsOptions;
use crate::connect::{redact_url, ConnError, Endpoint, RedisUrl};
use crate::drivers::{self, Driver, Layout, ServerLayout};
use crate::scenario::Scenario;
use crate::target::TargetError;
use crate::topology::Topology;
use anyhow::Result;
use std::sync::Arc;

/// What a run drives, found on the Redis at a URL.
pub struct Setup {
    pub driver: Arc<dyn Driver>,
    /// The masters (one for a single server), for settings and side connections.
    pub nodes: Vec<Endpoint>,
    /// The cluster's layout, when the target is one.
    pub topology: Option<Topology>,
    /// A client per master (as `nodes`), for side connections (server telemetry).
    pub clients: Vec<Arc<redis::Client>>,
    /// The run's channel (or stream key) names, and the node that owns each.
    pub names: Vec<String>,
    pub node_of: Vec<usize>,
}

/// The run's driver on the Redis at `url` (a user's, or a private server's),
/// its channels or streams named with `nonce` (and spread over a cluster's
/// masters), after checking that Redis answers.
pub async fn prepare(scenario: &Scenario, url: &str, nonce: &str) -> Result<Setup> {
    let prefix = format!("eventbench:{nonce}:");
    if !drivers::registration(scenario.transport).traits.server {
        return without_server(scenario, prefix).await;
    }
    let shown = url;
    let url = effective_url(scenario, shown)?;
    let endpoint = endpoint(&url, scenario, shown)?;
    check_reachable(&endpoint, shown).await?;
    let client = Arc::new(redis_client(&url, scenario, shown)?);
    let unreachable = |e: ConnError| TargetError::Unreachable { url: redact_url(shown), message: e.to_string() };
    // An ACL user is given only the commands of its transport: asking such a
    // user's Redis whether it is a cluster would be refused (and logged), so
    // with a user name eventbench asks only when told to (`--cluster`).
    let topology = match scenario.cluster || url.username.is_none() {
        true => Topology::discover(&client, &url.host).await.map_err(unreachable)?,
        false => None,
    };
    if scenario.cluster && topology.is_none() {
        return Err(TargetError::NotCluster { url: redact_url(shown) }.into());
    }
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
            (0..scenario.channels).map(|c| format!("{prefix}{c}")).collect(),
            vec![0; scenario.channels as usize],
            vec![(endpoint.clone(), client.clone())],
        ),
    };
    let node_endpoints = nodes.iter().map(|(e, _)| e.clone()).collect();
    let clients = nodes.iter().map(|(_, c)| c.clone()).collect();
    let (kept_names, kept_node_of) = (names.clone(), node_of.clone());
    let server = ServerLayout { url: shown.to_string(), endpoint, client, nodes };
    let layout = Layout { scenario: scenario.clone(), server: Some(server), node_of, names, prefix };
    let driver = (drivers::registration(scenario.transport).build)(layout).await?;
    Ok(Setup { driver, nodes: node_endpoints, topology, clients, names: kept_names, node_of: kept_node_of })
}

/// A transport that runs on no server: its driver, and no node.
async fn without_server(scenario: &Scenario, prefix: String) -> Result<Setup> {
    let names: Vec<String> = (0..scenario.channels).map(|c| format!("{prefix}{c}")).collect();
    let node_of = vec![0; scenario.channels as usize];
    let (kept_names, kept_node_of) = (names.clone(), node_of.clone());
    let layout = Layout { scenario: scenario.clone(), server: None, node_of, names, prefix };
    let driver = (drivers::registration(scenario.transport).build)(layout).await?;
    Ok(Setup {
        driver,
        nodes: Vec::new(),
        topology: None,
        clients: Vec::new(),
        names: kept_names,
        node_of: kept_node_of,
    })
}

/// The URL's address and credentials, with `--user` and `--password` laid over them.
pub fn effective_url(scenario: &Scenario, url: &str) -> Result<RedisUrl, TargetError> {
    let mut parsed =
        crate::connect::parse_url(url).map_err(|message| TargetError::Unreachable { url: redact_url(url), message })?;
    if let Some(user) = &scenario.user {
        parsed.username = Some(user.clone());
    }
    if let Some(password) = &scenario.password {
        parsed.password = Some(password.0.clone());
    }
    Ok(parsed)
}

/// Where the data connections go, with TLS for `rediss://`.
pub fn endpoint(url: &RedisUrl, scenario: &Scenario, shown: &str) -> Result<Endpoint, TargetError> {
    let tls = TlsOptions { ca: scenario.tls_ca.clone(), insecure: scenario.tls_insecure };
    Endpoint::new(url, &tls, scenario.connect_timeout)
        .map_err(|cause| TargetError::Tls { url: redact_url(shown), cause })
}

/// The same address, credentials and TLS settings for the redis crate, which
/// the Streams consumers and the control plane use.
pub fn redis_client(url: &RedisUrl, scenario: &Scenario, shown: &str) -> Result<redis::Client, TargetError> {
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
    let unusable = |message: String| TargetError::Unreachable { url: redact_url(shown), message };
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

/// Opens one data connection (TCP, TLS, AUTH) and sends PING, so that a wrong
/// address or password fails before the swarm starts, with a clear reason.
/// All of it within the connect timeout: a server that accepts the connection
/// but never answers must not hang the run.
pub async fn check_reachable(endpoint: &Endpoint, url: &str) -> Result<(), TargetError> {
    let url = redact_url(url);
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
        // It did reach Redis: what is missing is a password.
        ConnError::Refused { message, .. } if message.starts_with("NOAUTH") => {
            TargetError::NeedsPassword { url: url.clone(), message: message.trim_end_matches('.').to_string() }
        }
        // A TLS port drops a plaintext client at its first bytes.
        ConnError::Closed | ConnError::Io(_) if endpoint.tls.is_none() => TargetError::Unreachable {
            url: url.clone(),
            message: format!("{e} (if that is a TLS port, use rediss://)"),
        },
        e => TargetError::Unreachable { url, message: e.to_string() },
    })
}
