//! Strict HTTP/1 request-framing guard wrapped around the client byte stream, in front of
//! hyper's lenient parser: ambiguous framing (bare LF, CL+TE, bad lengths or chunks) is
//! turned into a request hyper answers 400 and closes, so it never reaches a backend.

use std::task::Waker;

use tokio::io::ReadBuf;

use super::chunked::{Chunked, Step};
use head::{framing, scan_head, HeadScan, Scan};

/// The HTTP/2 prior-knowledge preface: such a connection is not ours to check.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An invalid method token: hyper answers it `400 Bad Request` and closes the connection.
const POISON: &[u8] = b"\x01 / HTTP/1.1\r\n\r\n";
const INITIAL_BUF: usize = 4 * 1024;
/// A buffer grown past this by one large head is dropped once empty.
const KEEP_BUF: usize = 64 * 1024;
/// hyper's smallest `max_buf_size`: a lower head limit here would let heads through unchecked.
const MIN_HEAD_LIMIT: usize = 8 * 1024;

/// Why the guard refused a request (for logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("bare LF used as line terminator")]
    BareLf,
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    #[error("empty, non-numeric or conflicting Content-Length")]
    BadContentLength,
    #[error("Transfer-Encoding other than a single chunked, or on HTTP/1.0")]
    BadTransferEncoding,
    #[error("malformed chunked framing")]
    BadChunk,
    #[error("NUL byte or bare CR")]
    NulOrCr,
    #[error("malformed request head")]
    Malformed,
}

pin_project_lite::pin_project! {
    /// Wraps the client side of an HTTP/1 connection; see the module docs.
    ///
    /// `max_header_bytes` must be at least hyper's `max_buf_size` (default 400 KiB; values
    /// below 8 KiB are raised to 8 KiB like hyper's): a head that outgrows it is passed on
    /// unchecked so hyper's own limit answers 431.
    pub struct H1Guard<IO> {
        #[pin]
        inner: IO,
        core: Core,
    }
}

/// Where the guard stands in the request stream.
#[derive(Debug)]
enum State {
    /// Buffering a request head.
    Head,
    /// Passing this many body bytes.
    Fixed(u64),
    /// Passing a chunked body.
    Chunked(Chunked),
    /// No more checks: HTTP/2, a tunnel, or a head over the limit.
    Passthrough,
    /// An Upgrade or CONNECT request is complete: reads wait for the response, and only a
    /// 101 (or a 2xx to CONNECT) turns the stream into a tunnel (RFC 9110 7.8). Anything
    /// else and the following bytes are checked as the next request, so a refused upgrade
    /// cannot smuggle requests past the guard.
    Held(Tunnel),
    /// Handing the reader the poison request, from this offset.
    Poison(usize),
    /// End of stream for the reader.
    Closed,
}

/// What kind of tunnel a request asked for, and so which answer opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tunnel {
    Upgrade,
    Connect,
}

/// The start of the response to a held request: "HTTP/1.1 101".
const STATUS_LINE_PREFIX: usize = 12;

/// The guard's state apart from the wrapped IO.
///
/// `buf[..end]` holds bytes read from the client: `buf[..rd]` were handed to the reader,
/// `buf[rd..ok]` are checked and waiting for it, `buf[ok..end]` are not checked yet.
#[derive(Debug)]
struct Core {
    buf: Vec<u8>,
    rd: usize,
    ok: usize,
    end: usize,
    state: State,
    scan: HeadScan,
    /// Still at the very start of the connection, where the HTTP/2 preface may appear.
    first: bool,
    max_header_bytes: usize,
    rejected: Option<Rejection>,
    /// The request being framed asked for a tunnel: hold reads once its body is through.
    pending: Option<Tunnel>,
    /// The first bytes of the response to a held request, and how many are in.
    status: [u8; STATUS_LINE_PREFIX],
    status_len: usize,
    /// The reader parked while held.
    reader: Option<Waker>,
}

impl<IO> H1Guard<IO> {
    pub fn new(inner: IO, max_header_bytes: usize) -> Self {
        Self {
            inner,
            core: Core {
                buf: Vec::new(),
                rd: 0,
                ok: 0,
                end: 0,
                state: State::Head,
                scan: HeadScan::default(),
                first: true,
                max_header_bytes: max_header_bytes.max(MIN_HEAD_LIMIT),
                rejected: None,
                pending: None,
                status: [0; STATUS_LINE_PREFIX],
                status_len: 0,
                reader: None,
            },
        }
    }

    /// Why the guard refused a request, if it did.
    pub fn rejected(&self) -> Option<Rejection> {
        self.core.rejected
    }

    pub fn get_ref(&self) -> &IO {
        &self.inner
    }
}

impl Core {
    /// Copies checked bytes to `dst`; false when there were none.
    fn release(&mut self, dst: &mut ReadBuf<'_>) -> bool {
        if self.rd == self.ok {
            return false;
        }
        let n = (self.ok - self.rd).min(dst.remaining());
        dst.put_slice(&self.buf[self.rd..self.rd + n]);
        self.rd += n;
        true
    }

    /// Checks buffered bytes; false when nothing could be done without more input.
    fn process(&mut self) -> bool {
        match &mut self.state {
            State::Head => self.process_head(),
            State::Fixed(n) => {
                let take = (*n).min((self.end - self.ok) as u64);
                *n -= take;
                self.ok += take as usize;
                if *n == 0 {
                    self.body_done();
                }
                true
            }
            State::Chunked(chunked) => {
                match chunked.feed(&self.buf[self.ok..self.end]) {
                    Step::More => self.ok = self.end,
                    Step::Done(len) => {
                        self.ok += len;
                        self.body_done();
                    }
                    // The head already went out, so hyper must see the body end early.
                    Step::Bad(_, why) => self.reject(why, State::Closed),
                }
                true
            }
            State::Passthrough => {
                self.ok = self.end;
                true
            }
            State::Held(_) | State::Poison(_) | State::Closed => false,
        }
    }

    /// The request's body is through: the next request, or a hold if it asked for a tunnel.
    fn body_done(&mut self) {
        self.state = match self.pending.take() {
            Some(tunnel) => {
                self.status_len = 0;
                State::Held(tunnel)
            }
            None => State::Head,
        };
    }

    /// Watches what is written while held for the response's status line.
    fn observe_write(&mut self, written: &[u8]) {
        let State::Held(tunnel) = self.state else {
            return;
        };
        let take = written.len().min(STATUS_LINE_PREFIX - self.status_len);
        self.status[self.status_len..self.status_len + take].copy_from_slice(&written[..take]);
        self.status_len += take;
        if self.status_len < STATUS_LINE_PREFIX {
            return;
        }
        // "HTTP/1.1 101": the version is 9 bytes, then the three status digits.
        let code = &self.status[9..12];
        let opens = match tunnel {
            Tunnel::Upgrade => code == b"101",
            Tunnel::Connect => code[0] == b'2',
        };
        self.state = if opens {
            State::Passthrough
        } else {
            State::Head
        };
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
    }

    fn process_head(&mut self) -> bool {
        loop {
            let head = &self.buf[self.ok..self.end];
            if self.first {
                let n = head.len().min(H2_PREFACE.len());
                if head[..n] != H2_PREFACE[..n] {
                    self.first = false;
                } else if n < H2_PREFACE.len() {
                    return false;
                } else {
                    self.state = State::Passthrough;
                    self.ok = self.end;
                    return true;
                }
            }
            match scan_head(head, &mut self.scan) {
                Scan::More if head.len() > self.max_header_bytes => {
                    self.state = State::Passthrough;
                    self.ok = self.end;
                    return true;
                }
                Scan::More => return false,
                Scan::LeadingEmptyLine => {
                    // RFC 9112 2.2: ignored; dropped so it cannot fill the head buffer.
                    self.ok += 2;
                    self.rd = self.ok;
                    self.scan = HeadScan::default();
                }
                Scan::Complete(len) => {
                    let head = &self.buf[self.ok..self.ok + len];
                    match framing(head, self.scan.lines) {
                        Ok((next, tunnel)) => {
                            self.ok += len;
                            self.scan = HeadScan::default();
                            self.pending = tunnel;
                            match next {
                                State::Head => self.body_done(),
                                body => self.state = body,
                            }
                        }
                        Err(why) => self.reject(why, State::Poison(0)),
                    }
                    return true;
                }
                Scan::Bad(why) => {
                    self.reject(why, State::Poison(0));
                    return true;
                }
            }
        }
    }

    /// The client closed: drop whatever unchecked bytes remain and end the reader's stream.
    fn close(&mut self) {
        self.end = self.ok;
        self.state = State::Closed;
    }

    fn reject(&mut self, why: Rejection, next: State) {
        self.rejected = Some(why);
        self.end = self.ok;
        self.state = next;
    }

    /// How many bytes may be read from the client straight into the reader's buffer.
    fn direct_limit(&self) -> Option<u64> {
        if self.ok != self.end {
            return None;
        }
        match &self.state {
            State::Passthrough => Some(u64::MAX),
            State::Fixed(n) => Some(*n),
            State::Chunked(chunked) => chunked.data_remaining(),
            _ => None,
        }
    }

    /// A tunnel (or h2) never buffers here again: an idle WebSocket must not keep the head
    /// buffer alive for its whole life.
    fn drop_buffer_in_tunnel(&mut self) {
        if matches!(self.state, State::Passthrough)
            && self.rd == self.end
            && self.buf.capacity() > 0
        {
            self.buf = Vec::new();
            self.rd = 0;
            self.ok = 0;
            self.end = 0;
        }
    }

    fn after_direct(&mut self, n: usize) {
        match &mut self.state {
            _ if n == 0 => self.state = State::Closed,
            State::Fixed(left) => {
                *left -= n as u64;
                if *left == 0 {
                    self.state = State::Head;
                }
            }
            State::Chunked(chunked) => chunked.consume_data(n as u64),
            _ => {}
        }
    }

    /// Free space at the end of the buffer, after moving unread bytes to its front.
    fn spare(&mut self) -> &mut [u8] {
        if self.rd > 0 {
            self.buf.copy_within(self.rd..self.end, 0);
            self.ok -= self.rd;
            self.end -= self.rd;
            self.rd = 0;
        }
        if self.end == 0 && self.buf.len() > KEEP_BUF {
            self.buf = Vec::new();
        }
        if self.end == self.buf.len() {
            let len = (self.buf.len() * 2).max(INITIAL_BUF);
            self.buf.resize(len, 0);
        }
        &mut self.buf[self.end..]
    }
}

mod head;
mod stream;
#[cfg(test)]
mod tests;
