//! Secured Redis: TLS (`rediss://`, `--tls-ca`, `--tls-insecure`) against a
//! redis-server with a certificate the test makes, and an ACL user that may
//! only use what the Pub/Sub transport needs. Credentials never show anywhere.

use crate::common::{assert_whole_run_dir, bin, stderr, stdout, RedisServer};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A CA and a server certificate for localhost / 127.0.0.1, as PEM files in `dir`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_certs(dir: &Path) -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "eventbench test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let certs = Certs { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
    std::fs::write(&certs.cert, cert.pem()).unwrap();
    std::fs::write(&certs.key, key.serialize_pem()).unwrap();
    certs
}

fn tls_server(certs: &Certs) -> RedisServer {
    RedisServer::start_with(|port| {
        let path = |p: &Path| p.to_str().unwrap().to_string();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&certs.cert),
            "--tls-key-file".into(),
            path(&certs.key),
            "--tls-ca-cert-file".into(),
            path(&certs.ca),
            "--tls-auth-clients".into(),
            "no".into(),
        ]
    })
}

/// 1 s at 2000/s, 2 producers, 2 consumers: 2000 sent, 4000 expected.
const SHORT: &[&str] =
    &["--rate", "2000", "--producers", "2", "--consumers", "2", "--duration", "1s", "--warmup", "200ms", "--quiet"];

fn short_run(url: &str, out: &Path, extra: &[&str]) -> Output {
    bin().args(["run", "--url", url, "--out"]).arg(out).args(SHORT).args(extra).output().unwrap()
}

/// A complete run: exit 0, every message delivered.
fn assert_clean(out: &Output, dir: &Path) -> eventbench::rows::SummaryRow {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let s = assert_whole_run_dir(dir);
    assert_eq!((s.status.as_str(), s.sent, s.lost, s.delivered), ("ok", 2000, 0, 4000), "{s:?}");
    s
}

#[test]
fn rediss_with_the_servers_ca_or_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = make_certs(tmp.path());
    let server = tls_server(&certs);
    let ca = certs.ca.to_str().unwrap();

    // Verified against the CA, by IP address and by name.
    for (i, host) in ["127.0.0.1", "localhost"].iter().enumerate() {
        let url = format!("rediss://{host}:{}", server.port);
        let dir = tmp.path().join(format!("ca-{i}"));
        let s = assert_clean(&short_run(&url, &dir, &["--tls-ca", ca]), &dir);
        assert_eq!(s.url, url);
    }
    // Streams' consumers and coordinator (the redis crate) use the same TLS settings.
    let url = format!("rediss://localhost:{}", server.port);
    for (name, tls) in [("streams-ca", vec!["--tls-ca", ca]), ("streams-insecure", vec!["--tls-insecure"])] {
        let dir = tmp.path().join(name);
        let out = short_run(&url, &dir, &[&["--transport", "streams"][..], &tls[..]].concat());
        let s = assert_clean(&out, &dir);
        assert_eq!(s.server, "redis", "the telemetry is within the user's rights: {s:?}");
        assert_eq!(s.transport, "streams");
    }

    // Not verified at all; consumers also reconnect over TLS after an outage.
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let dir = tmp.path().join("insecure");
    let out = short_run(&url, &dir, &["--tls-insecure", "--disconnect", "50%@300ms+200ms"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let s = assert_whole_run_dir(&dir);
    assert!(s.lost > 0 && s.delivered + s.lost == 4000, "{s:?}");

    // Without the CA, the self-signed chain is refused: bad input, one line.
    let out = short_run(&url, &tmp.path().join("untrusted"), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("TLS handshake") && err.contains("certificate"), "{err}");

    // A certificate for another name is refused too.
    let other = make_certs(&tmp.path().join("other").tap_mkdir());
    let out = short_run(&url, &tmp.path().join("wrong-ca"), &["--tls-ca", other.ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // Plain redis:// against the TLS port says what to do.
    let out = short_run(&format!("redis://127.0.0.1:{}", server.port), &tmp.path().join("plain"), &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("rediss://"), "{err}");

    // A CA file that is not PEM.
    let out = short_run(&url, &tmp.path().join("bad-ca"), &["--tls-ca", certs.key.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-ca"), "{err}");
}

trait MkDir {
    fn tap_mkdir(self) -> Self;
}

impl MkDir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

const PASSWORD: &str = "Zq7-s3cr3t-pw";

/// A server with an ACL user `bench` limited to what the Pub/Sub transport
/// needs, and `bench-streams` to what Streams needs, as the README lists them
/// (the server telemetry's `INFO` and `CLIENT LIST` included).
fn acl_server() -> RedisServer {
    let password = format!(">{PASSWORD}");
    RedisServer::start(&[
        "--user",
        "bench",
        "on",
        &password,
        "resetchannels",
        "&eventbench:*",
        "-@all",
        "+ping",
        "+publish",
        "+subscribe",
        "+psubscribe",
        "+unsubscribe",
        "+punsubscribe",
        "+info",
        "+client|list",
        "--user",
        "bench-quiet",
        "on",
        &password,
        "resetchannels",
        "&eventbench:*",
        "-@all",
        "+ping",
        "+publish",
        "+subscribe",
        "+unsubscribe",
        "--user",
        "bench-streams",
        "on",
        &password,
        "~eventbench:*",
        "-@all",
        "+ping",
        "+xadd",
        "+xreadgroup",
        "+xack",
        "+xautoclaim",
        "+xgroup|create",
        "+xinfo|groups",
        "+xlen",
        "+xrange",
        "+del",
        "+info",
    ])
}

/// Runs eventbench with `args` and the password in REDIS_PASSWORD.
fn with_password_env(args: &[&str]) -> Output {
    bin().args(args).env("REDIS_PASSWORD", PASSWORD).output().unwrap()
}

/// Every byte eventbench printed or wrote is free of the password.
fn assert_no_password(out: &Output, dir: &Path) {
    assert!(!stdout(out).contains(PASSWORD), "stdout shows the password");
    assert!(!stderr(out).contains(PASSWORD), "stderr shows the password");
    if dir.exists() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(PASSWORD), "{} shows the password", path.display());
        }
    }
}

#[test]
fn an_acl_user_with_only_the_pubsub_commands_can_run_and_its_password_never_shows() {
    let server = acl_server();
    let tmp = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", server.port);

    // Credentials in the URL.
    let dir = tmp.path().join("url");
    let out = short_run(&format!("redis://bench:{PASSWORD}@{host}"), &dir, &["--format", "json"]);
    assert_no_password(&out, &dir);
    let s = assert_clean(&out, &dir);
    // Outages (UNSUBSCRIBE, then a new connection) stay within the user's rights.
    let more = tmp.path().join("outage");
    let out = short_run(&format!("redis://bench:{PASSWORD}@{host}"), &more, &["--disconnect", "50%@300ms+200ms"]);
    assert_no_password(&out, &more);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(s.url, format!("redis://bench:***@{host}"));
    let scenario = std::fs::read_to_string(dir.join("scenario.toml")).unwrap();
    assert!(scenario.contains(&format!("url = \"redis://bench:***@{host}\"")), "{scenario}");

    // --user and REDIS_PASSWORD; and the effective scenario repeats the run with the password from the environment.
    let dir2 = tmp.path().join("flags");
    let url = format!("redis://{host}");
    let mut args = vec!["run", "--url", &url, "--user", "bench", "--out", dir2.to_str().unwrap()];
    args.extend(SHORT);
    let out = with_password_env(&args);
    assert_no_password(&out, &dir2);
    assert_clean(&out, &dir2);
    let dir3 = tmp.path().join("again");
    let scenario = dir.join("scenario.toml");
    let out = with_password_env(&["run", scenario.to_str().unwrap(), "--quiet", "--out", dir3.to_str().unwrap()]);
    assert_no_password(&out, &dir3);
    assert_clean(&out, &dir3);
    // Without a password, the masked URL is bad input, not a failed AUTH with "***".
    let out = bin().arg("run").arg(dir.join("scenario.toml")).env_remove("REDIS_PASSWORD").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("REDIS_PASSWORD"), "{}", stderr(&out));

    // A Streams user with only the Streams commands, on the run's keys.
    let streams = tmp.path().join("streams");
    let url = format!("redis://bench-streams:{PASSWORD}@{host}");
    let out = short_run(&url, &streams, &["--transport", "streams", "--groups", "1"]);
    assert_no_password(&out, &streams);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Without the telemetry's commands, --server-telemetry off asks for none of them.
    let quiet = tmp.path().join("quiet");
    let url = format!("redis://bench-quiet:{PASSWORD}@{host}");
    let out = short_run(&url, &quiet, &["--server-telemetry", "off"]);
    assert_eq!(assert_clean(&out, &quiet).server, "", "not asked");

    // The users were never refused anything: the transports need no other command, channel or key.
    let log: Vec<redis::Value> = redis::cmd("ACL").arg("LOG").query(&mut server.client()).unwrap();
    assert!(log.is_empty(), "ACL denials: {log:?}");

    // --help never shows the environment's secrets.
    let out = bin()
        .args(["run", "--help"])
        .env("REDIS_PASSWORD", PASSWORD)
        .env("REDIS_URL", format!("redis://bench:{PASSWORD}@{host}"))
        .output()
        .unwrap();
    assert!(stdout(&out).contains("REDIS_PASSWORD"));
    assert_no_password(&out, &tmp.path().join("none"));
}

#[test]
fn a_wrong_password_or_user_is_refused_with_exit_code_2() {
    let server = acl_server();
    let tmp = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", server.port);
    for url in [
        format!("redis://bench:not-{PASSWORD}@{host}"),
        format!("redis://nobody:{PASSWORD}@{host}"),
        format!("redis://:{PASSWORD}@{host}"),
    ] {
        let dir = tmp.path().join("refused");
        let out = short_run(&url, &dir, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("refused the credentials") && err.contains("***"), "{err}");
        assert!(!dir.exists(), "no results for a run that never started");
        assert_no_password(&out, &dir);
    }
}
