//! Where Redis is: a user's URL, or a private `redis-server` that eventbench
//! starts on a free loopback port and stops when the run ends (on Drop, so
//! also on error and on interrupt; the child also dies with its parent).

use redis::IntoConnectionInfo;
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
    #[error("Redis at {url} refused the credentials: {message}")]
    Auth { url: String, message: String },
    #[error("Redis refused --redis-config \"{key} {value}\": {message}")]
    Config { key: String, value: String, message: String },
}

/// Settings changed for a run, with what they were before.
#[derive(Debug, Default)]
pub struct ConfigChange {
    previous: Vec<(String, String)>,
}

async fn control(url: &str) -> Result<redis::aio::MultiplexedConnection, redis::RedisError> {
    redis::Client::open(url)?.get_multiplexed_async_connection().await
}

/// Applies `settings` with CONFIG SET, remembering the old values.
pub async fn apply_config(url: &str, settings: &BTreeMap<String, String>) -> Result<ConfigChange, TargetError> {
    let mut change = ConfigChange::default();
    if settings.is_empty() {
        return Ok(change);
    }
    let unreachable = |e: redis::RedisError| TargetError::Unreachable { url: redact_url(url), message: e.to_string() };
    let mut con = control(url).await.map_err(unreachable)?;
    for (key, value) in settings {
        let refused = |e: redis::RedisError| TargetError::Config {
            key: key.clone(),
            value: value.clone(),
            message: e.to_string(),
        };
        let old: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(key).query_async(&mut con).await.map_err(refused)?;
        let Some(old) = old.get(1) else {
            return Err(TargetError::Config {
                key: key.clone(),
                value: value.clone(),
                message: "unknown setting".into(),
            });
        };
        redis::cmd("CONFIG").arg("SET").arg(key).arg(value).query_async::<()>(&mut con).await.map_err(refused)?;
        change.previous.push((key.clone(), old.clone()));
    }
    Ok(change)
}

impl ConfigChange {
    /// Puts the old values back (best effort: the run's results matter more).
    pub async fn restore(self, url: &str) -> Result<(), redis::RedisError> {
        if self.previous.is_empty() {
            return Ok(());
        }
        let mut con = control(url).await?;
        for (key, old) in self.previous {
            redis::cmd("CONFIG").arg("SET").arg(&key).arg(&old).query_async::<()>(&mut con).await?;
        }
        Ok(())
    }
}

/// Checks a URL's form; the message says what is accepted.
pub fn check_url(url: &str) -> Result<(), String> {
    if !url.starts_with("redis://") {
        return Err(format!("'{}' is not a Redis URL; expected redis://[user:password@]host:port", redact_url(url)));
    }
    url.into_connection_info().map(|_| ()).map_err(|e| {
        format!("'{}' is not a valid Redis URL ({e}); expected redis://[user:password@]host:port", redact_url(url))
    })
}

/// The URL with any password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => format!("{scheme}://***@{host}"),
    }
}

/// The Redis a run talks to.
#[derive(Debug)]
pub struct Target {
    url: String,
    server: Option<PrivateServer>,
}

impl Target {
    /// The scenario's `url`, or a private server when it has none.
    pub fn for_scenario(s: &crate::Scenario) -> Result<Target, TargetError> {
        match &s.url {
            Some(url) => Ok(Target::external(url)),
            None => Target::private(s.redis_server.as_deref()),
        }
    }

    /// A Redis the user runs.
    pub fn external(url: &str) -> Target {
        Target { url: url.to_string(), server: None }
    }

    /// Starts a private `redis-server` (from PATH unless `binary` is given).
    pub fn private(binary: Option<&Path>) -> Result<Target, TargetError> {
        let server = PrivateServer::start(binary)?;
        Ok(Target { url: format!("redis://127.0.0.1:{}/", server.port), server: Some(server) })
    }

    /// The URL to connect to (may hold credentials: never print it unredacted).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether eventbench started this Redis itself.
    pub fn is_private(&self) -> bool {
        self.server.is_some()
    }

    /// The private server, for tests that need to stop or restart it.
    pub fn server_pid(&self) -> Option<u32> {
        self.server.as_ref().map(|s| s.child.id())
    }
}

/// A `redis-server` child process with persistence off.
#[derive(Debug)]
struct PrivateServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivateServer {
    fn start(binary: Option<&Path>) -> Result<PrivateServer, TargetError> {
        let binary: PathBuf = binary.map(Path::to_path_buf).unwrap_or_else(|| "redis-server".into());
        let mut last_error = String::new();
        // A free port can be taken between probing and binding: try a few.
        for _ in 0..5 {
            let port = free_port().map_err(|e| TargetError::ServerStart(format!("no free port: {e}")))?;
            let dir = tempfile::Builder::new()
                .prefix("eventbench-redis-")
                .tempdir()
                .map_err(|e| TargetError::ServerStart(e.to_string()))?;
            let mut cmd = Command::new(&binary);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"])
                .arg("--dir")
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            die_with_parent(&mut cmd);
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(TargetError::MissingServer { binary: binary.display().to_string() })
                }
                Err(e) => return Err(TargetError::ServerStart(format!("{}: {e}", binary.display()))),
            };
            let mut server = PrivateServer { child, port, _dir: dir };
            match server.wait_ready(Duration::from_secs(5)) {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(TargetError::ServerStart(last_error))
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
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Makes the child receive SIGTERM if eventbench dies without running Drop
/// (SIGKILL, a second Ctrl-C), so no private server is ever left behind.
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and only affects the child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(redact_url("redis://u:secret@h:1/"), "redis://u:***@h:1/");
        assert_eq!(redact_url("redis://:secret@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn url_forms() {
        assert!(check_url("redis://127.0.0.1:6379").is_ok());
        assert!(check_url("http://127.0.0.1").is_err());
        let e = check_url("redis://u:secret@[bad").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
