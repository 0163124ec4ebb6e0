//! The connection layer under the drivers and the target: Redis URLs,
//! TCP and TLS byte streams, AUTH, timeouts, and the RESP wire format.
//! Nothing here knows what a run, a transport or a scenario is.

pub mod conn;
pub mod resp;
pub mod socket;
pub mod tls;
pub mod url;

pub use conn::{Conn, Endpoint, Tuning};
pub use url::{parse_url, redact_url, RedisUrl, MASK, URL_FORM};

use thiserror::Error;

/// Errors on a data connection.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("connection closed by the server")]
    Closed,
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("timed out after {secs:.1}s connecting to {addr} (see --connect-timeout)")]
    ConnectTimeout { addr: String, secs: f64 },
    #[error("TLS handshake with {addr} failed: {source}")]
    TlsHandshake { addr: String, source: std::io::Error },
    #[error("Redis stopped answering: no reply to {what} for {secs:.1}s (server stopped, or the network cut)")]
    Stalled { what: &'static str, secs: f64 },
    #[error("Redis refused {what}: {message}")]
    Refused { what: &'static str, message: String },
    #[error("node not serving yet: {message}")]
    Unavailable { message: String },
    #[error("I/O error: {0}")]
    Io(std::io::Error),
    #[error(transparent)]
    Protocol(#[from] resp::RespError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<std::io::Error> for ConnError {
    /// A reset or broken connection is the server closing it, however the
    /// kernel happened to report it: one cause, one message.
    fn from(e: std::io::Error) -> ConnError {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => ConnError::Closed,
            _ => ConnError::Io(e),
        }
    }
}

/// An error reply: a node that is still loading or rejoining its cluster is
/// worth trying again, anything else is a refusal.
pub fn refusal(what: &'static str, message: String) -> ConnError {
    let transient = ["CLUSTERDOWN", "LOADING", "TRYAGAIN", "MASTERDOWN"];
    if transient.iter().any(|t| message.starts_with(t)) {
        ConnError::Unavailable { message }
    } else {
        ConnError::Refused { what, message }
    }
}
