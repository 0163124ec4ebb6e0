//! Raw connections for the hot path: TCP with TCP_NODELAY (or TLS over it), authenticated, with
//! a read buffer that grows only while the consumer cannot keep up.

use super::resp::{self, Atom, Frame};
use super::socket::Stream;
use super::tls::{Tls, TlsError, TlsOptions};
use super::ConnError;
use crate::connect::RedisUrl;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// Where and how to open a data connection.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub connect_timeout: Duration,
    /// Set for `rediss://`: every connection is TLS.
    pub tls: Option<Tls>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        write!(f, "Endpoint({}:{}, user={:?}, tls={})", self.host, self.port, self.username, self.tls.is_some())
    }
}

impl Endpoint {
    /// The endpoint of a parsed URL; `rediss://` builds the TLS client once here.
    pub fn new(url: &RedisUrl, tls: &TlsOptions, connect_timeout: Duration) -> Result<Endpoint, TlsError> {
        Ok(Endpoint {
            host: url.host.clone(),
            port: url.port,
            username: url.username.clone(),
            password: url.password.clone(),
            connect_timeout,
            tls: if url.tls { Some(Tls::new(&url.host, tls)?) } else { None },
        })
    }

    /// `host:port`, for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Opens a TCP connection, sets TCP_NODELAY (latency matters more than
    /// packet count here), then TLS if asked and AUTH, all within the connect timeout.
    pub async fn connect(&self) -> Result<Conn, ConnError> {
        self.connect_with(Tuning::default()).await
    }

    /// [`Endpoint::connect`] with socket settings for a particular role.
    pub async fn connect_with(&self, tuning: Tuning) -> Result<Conn, ConnError> {
        let addr = self.addr();
        let secs = self.connect_timeout.as_secs_f64();
        tokio::time::timeout(self.connect_timeout, self.open(tuning))
            .await
            .map_err(|_| ConnError::ConnectTimeout { addr, secs })?
    }

    async fn open(&self, tuning: Tuning) -> Result<Conn, ConnError> {
        let addr = self.addr();
        let connect_error = |source| ConnError::Connect { addr: addr.clone(), source };
        let mut last = None;
        for sock_addr in tokio::net::lookup_host((self.host.as_str(), self.port)).await.map_err(connect_error)? {
            let socket =
                if sock_addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(connect_error)?;
            if let Some(bytes) = tuning.recv_buffer {
                // Set before connecting, so the advertised window stays small too.
                socket.set_recv_buffer_size(bytes).map_err(connect_error)?;
            }
            match socket.connect(sock_addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    let stream = match &self.tls {
                        None => Stream::Tcp(stream),
                        Some(tls) => {
                            let session = tls.connector.connect(tls.server_name.clone(), stream).await;
                            Stream::Tls(Box::new(
                                session.map_err(|source| ConnError::TlsHandshake { addr: addr.clone(), source })?,
                            ))
                        }
                    };
                    let mut conn = Conn::new(stream, tuning);
                    self.authenticate(&mut conn).await?;
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(connect_error(last.unwrap_or_else(|| std::io::Error::other("no address found"))))
    }

    async fn authenticate(&self, conn: &mut Conn) -> Result<(), ConnError> {
        if let Some(password) = &self.password {
            let mut cmd = Vec::new();
            match &self.username {
                Some(user) => resp::encode_command(&mut cmd, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => resp::encode_command(&mut cmd, &[b"AUTH", password.as_bytes()]),
            }
            conn.call(&cmd, "AUTH").await?;
        }
        Ok(())
    }
}

/// Socket settings for one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    /// SO_RCVBUF in bytes; `None` leaves the kernel's autotuning on.
    pub recv_buffer: Option<u32>,
    /// Keep the read buffer at its initial size: a slow consumer must not
    /// hide its backlog in user space, where Redis cannot see it.
    pub fixed_buffer: bool,
}

const MIN_BUF: usize = 4 * 1024;
const MAX_BUF: usize = 256 * 1024;

/// A connection with a reusable read buffer holding `buf[start..end]` unparsed.
pub struct Conn {
    pub stream: Stream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_buf: usize,
}

impl Conn {
    fn new(stream: Stream, tuning: Tuning) -> Conn {
        let max_buf = if tuning.fixed_buffer { MIN_BUF } else { MAX_BUF };
        Conn { stream, buf: vec![0; MIN_BUF], start: 0, end: 0, max_buf }
    }

    /// The unparsed bytes.
    #[inline]
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes of [`Conn::pending`] as parsed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Marks `used` bytes as parsed and returns `range` (relative to the
    /// pending bytes before this call), which stays valid until the next fill.
    #[inline]
    pub fn take(&mut self, used: usize, range: std::ops::Range<usize>) -> &[u8] {
        let base = self.start;
        self.start += used;
        &self.buf[base + range.start..base + range.end]
    }

    /// Reads at least one more byte. Grows the buffer when a read fills it (the
    /// consumer is behind or a frame is large), up to a cap, so idle consumers
    /// stay small and busy ones read in large chunks.
    pub async fn fill(&mut self) -> Result<(), ConnError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = (self.buf.len() * 2).max(MIN_BUF);
            self.buf.resize(grown, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(ConnError::Closed);
        }
        self.end += n;
        if self.end == self.buf.len() && self.buf.len() < self.max_buf && self.start == 0 {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        Ok(())
    }

    /// Writes `bytes` and flushes them (TLS buffers records until flushed).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends one command and returns its reply as text: a string or an
    /// integer as one item, an array (of up to four) as its items. For
    /// control commands only (CONFIG GET/SET), not the hot path.
    pub async fn query(&mut self, args: &[&[u8]], what: &'static str) -> Result<Vec<String>, ConnError> {
        let mut cmd = Vec::new();
        resp::encode_command(&mut cmd, args);
        self.send(&cmd).await?;
        loop {
            let Some((frame, used)) = resp::parse(self.pending())? else {
                self.fill().await?;
                continue;
            };
            let text = |a: &Atom| match a {
                Atom::Simple(b) | Atom::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
                Atom::Int(i) => i.to_string(),
                Atom::Error(_) | Atom::Nil => String::new(),
            };
            let reply = match frame {
                Frame::Atom(Atom::Error(e)) => {
                    Err(ConnError::Refused { what, message: String::from_utf8_lossy(e).into_owned() })
                }
                Frame::Atom(Atom::Nil) => Ok(Vec::new()),
                Frame::Atom(a) => Ok(vec![text(&a)]),
                Frame::Array { .. } => Ok(frame.items().iter().map(text).collect()),
                Frame::Other => Err(resp::RespError("reply too large for a control command").into()),
            };
            self.consume(used);
            return reply;
        }
    }

    /// Sends one command and waits for its reply; an error reply becomes
    /// [`ConnError::Refused`]. For set-up only, not the hot path.
    pub async fn call(&mut self, cmd: &[u8], what: &'static str) -> Result<(), ConnError> {
        self.send(cmd).await?;
        loop {
            let parsed = resp::parse(self.pending())?;
            match parsed {
                Some((frame, used)) => {
                    let refused = match frame {
                        Frame::Atom(Atom::Error(e)) => Some(String::from_utf8_lossy(e).into_owned()),
                        _ => None,
                    };
                    self.consume(used);
                    return match refused {
                        Some(message) => Err(ConnError::Refused { what, message }),
                        None => Ok(()),
                    };
                }
                None => self.fill().await?,
            }
        }
    }
}
