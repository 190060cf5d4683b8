//! Moving bytes both ways between client and backend. Nothing is allocated per tunnel while it
//! is idle: reads go into one scratch buffer per worker thread and are written straight on;
//! only bytes the other side cannot take yet are copied into a buffer of their own, which is
//! freed once written. In message-policy mode each direction runs through a frame `Inspector`.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{close_frame, keepalive_ping, Event, Inspector};

const SCRATCH: usize = 16 * 1024;
/// Reads per direction in one poll before yielding, so one busy tunnel cannot hog a worker.
const READS_PER_POLL: usize = 32;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH].into_boxed_slice());
}

/// Runs `f` with this thread's scratch buffer (a fresh one in the unexpected case that it is
/// already in use further up the stack).
fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    SCRATCH_BUF.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(&mut buf),
        Err(_) => f(&mut vec![0; SCRATCH]),
    })
}

/// One direction: reads one side, writes the other.
#[derive(Default)]
pub struct Half {
    /// Bytes read but not yet written on; empty (unallocated) in the steady state.
    out: Vec<u8>,
    written: usize,
    /// A frame Portico wants to send, waiting for the stream to reach a frame boundary.
    inject: Option<Vec<u8>>,
    inspector: Option<Inspector>,
    /// Events from the inspector, handled by the tunnel after each poll.
    pub events: Vec<Event>,
    /// The reading side ended (EOF), or Portico stopped reading it.
    eof: bool,
    /// The writing side has been shut down.
    shut: bool,
    dirty: bool,
    /// The reading side sent its Close while Portico was closing.
    pub close_seen: bool,
    /// A Close from the reading side went through to the other side.
    close_passed: bool,
    pub bytes: u64,
    pub last_read: Option<Instant>,
}

impl Half {
    pub fn new(inspector: Option<Inspector>) -> Self {
        Self {
            inspector,
            ..Self::default()
        }
    }

    pub fn ended(&self) -> bool {
        self.eof
    }

    pub fn messages(&self) -> Option<u64> {
        self.inspector.as_ref().map(|i| i.messages)
    }

    /// Queues a frame for the side this half writes to, replacing a pending ping.
    pub fn inject(&mut self, frame: Vec<u8>) {
        self.inject = Some(frame);
    }

    pub fn has_injection(&self) -> bool {
        self.inject.is_some()
    }

    /// From now on data is dropped and the peer's Close is absorbed.
    pub fn start_closing(&mut self) {
        if let Some(i) = &mut self.inspector {
            i.closing = true;
        }
    }

    /// Stops reading and shuts the writing side down once everything queued is out.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Makes progress; `Ready(Ok)` once the direction is finished, `Pending` otherwise.
    pub fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        for _ in 0..READS_PER_POLL {
            ready!(self.poll_out(cx, dst))?;
            if self.eof {
                if !self.shut {
                    ready!(Pin::new(&mut *dst).poll_shutdown(cx))?;
                    self.shut = true;
                }
                return Poll::Ready(Ok(()));
            }
            match self.read(cx, src, dst) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    if self.dirty {
                        ready!(Pin::new(&mut *dst).poll_flush(cx))?;
                        self.dirty = false;
                    }
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Writes what is queued (and a waiting frame, at a boundary); frees the buffer when done.
    fn poll_out<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut W,
    ) -> Poll<io::Result<()>> {
        loop {
            while self.written < self.out.len() {
                let n = ready!(Pin::new(&mut *dst).poll_write(cx, &self.out[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.dirty = true;
            }
            self.out = Vec::new();
            self.written = 0;
            let at_boundary = self.inspector.as_ref().is_none_or(Inspector::at_boundary);
            match self.inject.take() {
                Some(frame) if at_boundary => self.out = frame,
                other => {
                    self.inject = other;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }

    /// One read from `src`, passed on to `dst` (directly when it takes everything).
    fn read<R, W>(&mut self, cx: &mut Context<'_>, src: &mut R, dst: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        with_scratch(|buf| {
            let mut rb = ReadBuf::new(buf);
            ready!(Pin::new(&mut *src).poll_read(cx, &mut rb))?;
            let data = rb.filled();
            if data.is_empty() {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            let now = Instant::now();
            self.bytes += data.len() as u64;
            self.last_read = Some(now);
            match &mut self.inspector {
                Some(inspector) => {
                    let mut used = 0;
                    while used < data.len() {
                        let (n, event) = inspector.feed(&data[used..], &mut self.out, now);
                        used += n;
                        self.events.extend(event);
                    }
                }
                None => {
                    let taken = match Pin::new(&mut *dst).poll_write(cx, data) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => {
                            self.dirty = true;
                            n
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => 0,
                    };
                    if taken < data.len() {
                        self.out = data[taken..].to_vec();
                    }
                }
            }
            Poll::Ready(Ok(()))
        })
    }
}

/// What the frames said about how the session ended (message-policy mode).
#[derive(Debug, Default, Clone, Copy)]
pub struct CloseInfo {
    /// The first Close frame's code and who sent it (Portico when it closed on its own).
    pub code: Option<u16>,
    pub by: Option<Closer>,
}

/// Who ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    Client,
    Backend,
    Portico,
}

impl Closer {
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Client => "client",
            Closer::Backend => "backend",
            Closer::Portico => "portico",
        }
    }
}

/// Both directions of one tunnel.
pub struct Pump<C, B> {
    pub client: C,
    pub backend: B,
    /// Client to backend.
    pub up: Half,
    /// Backend to client.
    pub down: Half,
    /// Which side's byte stream ended first.
    pub first_end: Option<Closer>,
    pub close: CloseInfo,
    /// Portico started a close handshake with both sides.
    pub closing: bool,
    /// A policy violation started the close and `poll` has not reported it yet.
    violation_unreported: bool,
}

impl<C, B> Pump<C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    pub fn new(client: C, backend: B, up: Half, down: Half) -> Self {
        Self {
            client,
            backend,
            up,
            down,
            first_end: None,
            close: CloseInfo::default(),
            closing: false,
            violation_unreported: false,
        }
    }

    /// Last time either side sent something.
    pub fn last_activity(&self) -> Option<Instant> {
        self.up.last_read.max(self.down.last_read)
    }

    /// `Ready(Ok(true))` when both directions are done, `Ready(Ok(false))` once when a policy
    /// violation has started the close (poll again to finish it), `Ready(Err)` on the first
    /// IO error.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let up = self.up.poll(cx, &mut self.client, &mut self.backend)?;
        let down = self.down.poll(cx, &mut self.backend, &mut self.client)?;
        if self.first_end.is_none() {
            if self.up.ended() {
                self.first_end = Some(Closer::Client);
            } else if self.down.ended() {
                self.first_end = Some(Closer::Backend);
            }
        }
        let mut changed = self.handle_events(Closer::Client) | self.handle_events(Closer::Backend);
        if up.is_ready() && down.is_ready() {
            return Poll::Ready(Ok(true));
        }
        if std::mem::take(&mut self.violation_unreported) {
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(false));
        }
        if self.closing && !(self.up.ended() && self.down.ended()) {
            // While closing, a side that has answered with its Close (or hung up) is done; once
            // both are and our own Close frames are out, both write sides are shut down.
            let up_over = self.up.close_seen || self.up.ended();
            let down_over = self.down.close_seen || self.down.ended();
            if up_over && down_over && !self.up.has_injection() && !self.down.has_injection() {
                self.up.finish();
                self.down.finish();
                changed = true;
            }
        }
        if changed {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Acts on what the inspector of the half reading from `from` reported.
    fn handle_events(&mut self, from: Closer) -> bool {
        let half = if from == Closer::Client {
            &mut self.up
        } else {
            &mut self.down
        };
        if half.events.is_empty() {
            return false;
        }
        let events = std::mem::take(&mut half.events);
        for event in events {
            match event {
                Event::Close(code) => {
                    if self.close.by.is_none() {
                        self.close = CloseInfo {
                            code,
                            by: Some(from),
                        };
                    }
                    let closing = self.closing;
                    let half = self.half_mut(from);
                    if closing {
                        half.close_seen = true;
                    } else {
                        half.close_passed = true;
                    }
                }
                Event::Violation(code, reason) => {
                    tracing::info!(
                        side = from.as_str(),
                        code,
                        reason,
                        "WebSocket policy violation"
                    );
                    if !self.closing {
                        self.violation_unreported = true;
                    }
                    self.begin_close(code, reason);
                    // Its stream is no longer read as frames, so no Close will be seen from it.
                    self.half_mut(from).close_seen = true;
                }
            }
        }
        true
    }

    fn half_mut(&mut self, from: Closer) -> &mut Half {
        if from == Closer::Client {
            &mut self.up
        } else {
            &mut self.down
        }
    }

    /// Sends Close `code` to both sides (each at its next frame boundary) and stops passing data.
    pub fn begin_close(&mut self, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        if self.close.by.is_none() {
            self.close = CloseInfo {
                code: Some(code),
                by: Some(Closer::Portico),
            };
        }
        for (half, to_backend) in [(&mut self.up, true), (&mut self.down, false)] {
            half.start_closing();
            if half.close_passed {
                // That side already closed and its Close went on: a second one must not follow.
                half.close_seen = true;
            } else {
                half.inject(close_frame(code, reason, to_backend));
            }
        }
    }

    /// Pings the client unless a frame is already waiting for it.
    pub fn ping_client(&mut self) {
        if !self.closing && !self.down.has_injection() {
            self.down.inject(keepalive_ping());
        }
    }
}
