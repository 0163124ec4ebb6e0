//! Redis URLs: `redis://[user:password@]host[:port]` and `rediss://` for TLS,
//! parsed once at the edge, and shown anywhere only with the password masked.

/// The accepted form of `--url`, for messages.
pub const URL_FORM: &str = "expected redis://[user:password@]host[:port], or rediss://... for TLS";

/// A parsed `redis://` or `rediss://` URL. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `rediss://`: the connection is TLS.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self.password.as_ref().map(|_| "***");
        write!(
            f,
            "RedisUrl(tls={}, {}:{}, user={:?}, password={password:?})",
            self.tls, self.host, self.port, self.username
        )
    }
}

/// Parses a Redis URL; the message says what is wrong and what is accepted,
/// and never contains the password.
pub fn parse_url(url: &str) -> Result<RedisUrl, String> {
    let shown = redact_url(url);
    let bad = |why: &str| format!("{} is not a valid Redis URL ({why}); {URL_FORM}", crate::text::quote(&shown));
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let tls = match scheme.as_deref() {
        Some("redis") => false,
        Some("rediss") => true,
        Some("unix" | "redis+unix") => return Err(bad("Unix sockets are not supported")),
        _ => return Err(format!("{} is not a Redis URL; {URL_FORM}", crate::text::quote(&shown))),
    };
    // url's messages name the part that is wrong, never the text around it.
    let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    let host = match u.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(bad("no host")),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    // DNS names are at most 253 characters; anything longer is no host at all.
    if host.len() > 253 {
        return Err(bad("the host name is longer than 253 characters"));
    }
    let port = u.port().unwrap_or(6379);
    if port == 0 {
        return Err(bad("port 0"));
    }
    let db = u.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(bad("the path must be empty or a database number"));
    }
    let decode = |s: &str| -> Result<Option<String>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        let text =
            percent_encoding::percent_decode_str(s).decode_utf8().map_err(|_| bad("credentials are not UTF-8"))?;
        Ok(Some(text.into_owned()))
    };
    Ok(RedisUrl { tls, host, port, username: decode(u.username())?, password: decode(u.password().unwrap_or(""))? })
}

/// What a password is replaced by wherever a URL is shown.
pub const MASK: &str = "***";

/// The URL with any password replaced by `***`. Also safe on text that is not
/// a URL at all (a scheme-less `user:secret@host`), since it goes into messages.
pub fn redact_url(url: &str) -> String {
    // Only a real scheme counts: in `u:secret@://` the "://" comes after the password.
    let is_scheme = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (format!("{scheme}://"), rest),
        _ => (String::new(), url),
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}{user}:***@{host}"),
        None => format!("{scheme}***@{host}"),
    }
}

/// The same URL (scheme, credentials) at another address: a cluster node's.
pub fn with_address(url: &str, host: &str, port: u16) -> Result<String, String> {
    let mut u = url::Url::parse(url).map_err(|e| format!("'{}': {e}", redact_url(url)))?;
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    u.set_host(Some(&host)).map_err(|e| format!("'{host}': {e}"))?;
    u.set_port(Some(port)).map_err(|()| format!("cannot set port {port} on '{}'", redact_url(url)))?;
    Ok(u.to_string())
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
    fn redaction_covers_text_that_is_not_a_url() {
        assert_eq!(redact_url("u:secret@h:1"), "u:***@h:1");
        assert_eq!(redact_url("rediss://u:p@ss@h:1"), "rediss://u:***@h:1");
        assert_eq!(redact_url("u:secret@://"), "u:***@://");
    }

    #[test]
    fn url_forms() {
        let u = parse_url("redis://127.0.0.1:6379").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.username, u.password), (false, "127.0.0.1", 6379, None, None));
        let u = parse_url("rediss://bench:p%40ss@localhost/0").unwrap();
        assert_eq!(
            (u.tls, u.port, u.username.as_deref(), u.password.as_deref()),
            (true, 6379, Some("bench"), Some("p@ss"))
        );
        assert!(!format!("{u:?}").contains("p@ss"));
        assert_eq!(parse_url("redis://[::1]:7000").unwrap().host, "::1");
        assert_eq!(parse_url("redis://:pw@h").unwrap().password.as_deref(), Some("pw"));
        for bad in [
            "http://127.0.0.1",
            "127.0.0.1:6379",
            "redis//127.0.0.1",
            "redis://",
            "redis://:6379",
            "redis://h:99999",
            "redis://h:0",
            "redis://h:port",
            "redis://h:1/x",
            "unix:///tmp/redis.sock",
            "redis://u:secret@[bad",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains("redis://") && !e.contains("secret"), "{bad}: {e}");
        }
    }
}
