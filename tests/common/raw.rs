//! Raw TCP for the cases a well-behaved client library cannot express: malformed framing,
//! slow senders, HTTP/1.0, Expect: 100-continue. Every read has a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A parsed HTTP/1.x response as it came off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True when the body was framed by chunked transfer coding.
    pub chunked: bool,
}

impl RawResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Debug)]
pub enum RawError {
    /// The peer closed before a complete response; carries what had arrived.
    Closed(Vec<u8>),
    Timeout(Vec<u8>),
    Io(std::io::Error),
    Malformed(String),
}

pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("raw connect");
        RawConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn fill(&mut self, deadline: Instant) -> Result<(), RawError> {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => Err(RawError::Timeout(self.buf.clone())),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                Err(RawError::Closed(self.buf.clone()))
            }
            Ok(Err(e)) => Err(RawError::Io(e)),
            Ok(Ok(0)) => Err(RawError::Closed(self.buf.clone())),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Reads one response (a 1xx counts as one). `head_only`: the request was HEAD.
    pub async fn read_response(
        &mut self,
        timeout: Duration,
        head_only: bool,
    ) -> Result<RawResponse, RawError> {
        let deadline = Instant::now() + timeout;
        let head_end = loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill(deadline).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end - 4]).into_owned();
        self.buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RawError::Malformed(format!("status line {status_line:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut resp = RawResponse {
            version,
            status,
            headers,
            body: Vec::new(),
            chunked: false,
        };
        if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let te = resp
            .header("transfer-encoding")
            .map(str::to_ascii_lowercase);
        if te.as_deref().is_some_and(|t| t.contains("chunked")) {
            resp.chunked = true;
            resp.body = self.read_chunked(deadline).await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| RawError::Malformed(format!("content-length {len:?}")))?;
            while self.buf.len() < len {
                self.fill(deadline).await?;
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            loop {
                match self.fill(deadline).await {
                    Ok(()) => {}
                    Err(RawError::Closed(_)) => break,
                    Err(e) => return Err(e),
                }
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    async fn read_chunked(&mut self, deadline: Instant) -> Result<Vec<u8>, RawError> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = find(&self.buf, b"\r\n") {
                    break pos;
                }
                self.fill(deadline).await?;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| RawError::Malformed(format!("chunk size {line:?}")))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailer section: lines until an empty one.
                loop {
                    let end = loop {
                        if let Some(pos) = find(&self.buf, b"\r\n") {
                            break pos;
                        }
                        self.fill(deadline).await?;
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.fill(deadline).await?;
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Waits until the peer closes the connection; `Ok` with anything it sent meanwhile,
    /// `Err(Timeout)` if it is still open at the deadline.
    pub async fn wait_closed(&mut self, timeout: Duration) -> Result<Vec<u8>, RawError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Ok(()) => {}
                Err(RawError::Closed(data)) => return Ok(data),
                Err(RawError::Io(_)) => return Ok(self.buf.clone()),
                Err(e) => return Err(e),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Connects, sends `bytes`, reads one response.
pub async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Result<RawResponse, RawError> {
    let mut conn = RawConn::connect(addr).await;
    conn.send(bytes).await.map_err(RawError::Io)?;
    conn.read_response(Duration::from_secs(10), false).await
}
