//! The `/metrics` endpoint of `--metrics-listen`: a small HTTP/1.1 server on
//! the command's tokio runtime (`httparse` reads the request head), one
//! request per connection. Bound before anything runs, so that an address
//! in use is bad input up front.

use super::Board;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Why the endpoint cannot listen.
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {message}")]
pub struct ListenError {
    addr: String,
    message: String,
}

/// A bound, not yet serving, `/metrics` endpoint.
pub struct Endpoint {
    listener: std::net::TcpListener,
}

/// Longest request head read; a scraper's is a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;
/// A client that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Endpoint {
    /// Binds `addr` (`host:port`; port 0 picks a free one).
    pub fn bind(addr: &str) -> Result<Endpoint, ListenError> {
        let err = |message: String| ListenError { addr: crate::text::shorten(addr), message };
        let parsed: SocketAddr = match addr.parse() {
            Ok(a) => a,
            Err(_) => std::net::ToSocketAddrs::to_socket_addrs(addr)
                .map_err(|e| err(format!("not an address (host:port): {e}")))?
                .next()
                .ok_or_else(|| err("resolves to no address".into()))?,
        };
        let listener = std::net::TcpListener::bind(parsed).map_err(|e| err(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| err(e.to_string()))?;
        Ok(Endpoint { listener })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `board` until the returned handle is aborted (dropped with the command).
    pub fn serve(self, board: Arc<Board>) -> std::io::Result<Serving> {
        let listener = TcpListener::from_std(self.listener)?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Out of file descriptors, say: try again shortly rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let board = board.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT * 2, answer(stream, &board)).await;
                });
            }
        });
        Ok(Serving(task))
    }
}

/// The serving task; stops when dropped.
pub struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, board: &Board) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let (path, accept, head_only) = loop {
        let n = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut chunk)).await??;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                if req.method != Some("GET") && req.method != Some("HEAD") {
                    return respond(&mut stream, "405 Method Not Allowed", "text/plain", "GET /metrics\n", false).await;
                }
                let accept = req
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("accept"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    .collect::<Vec<_>>()
                    .join(",");
                break (req.path.unwrap_or("/").to_string(), accept, req.method == Some("HEAD"));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            _ => return respond(&mut stream, "400 Bad Request", "text/plain", "bad request\n", false).await,
        }
    };
    if path.split('?').next() != Some("/metrics") {
        return respond(&mut stream, "404 Not Found", "text/plain", "eventbench serves /metrics\n", head_only).await;
    }
    let families = board.families();
    let (content_type, body) = if wants_openmetrics(&accept) {
        (super::openmetrics::CONTENT_TYPE, super::openmetrics::encode(families).map_err(std::io::Error::other)?)
    } else {
        (super::text::CONTENT_TYPE, super::text::encode(&families).map_err(std::io::Error::other)?)
    };
    respond(&mut stream, "200 OK", content_type, &body, head_only).await
}

/// Writes the response and closes; `head_only` (a HEAD request) leaves out the body.
async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

/// Whether the scraper prefers OpenMetrics to the text format: the media
/// type it names with the highest `q` (ties: the first named) is OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    let mut best: Option<(f64, bool)> = None;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("").to_ascii_lowercase();
        let q = params.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
        let om = media == "application/openmetrics-text";
        if (om || media == "text/plain") && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, om));
        }
    }
    best.is_some_and(|(_, om)| om)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_the_scraper_prefers_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(!wants_openmetrics("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics(""));
    }

    #[test]
    fn an_address_in_use_is_refused_with_the_address() {
        let first = Endpoint::bind("127.0.0.1:0").unwrap();
        let addr = first.local_addr().unwrap().to_string();
        let e = Endpoint::bind(&addr).err().expect("in use").to_string();
        assert!(e.starts_with(&format!("{addr}: ")), "{e}");
        assert!(Endpoint::bind("nowhere").is_err());
    }
}
