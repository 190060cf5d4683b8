//! Idle tracking for client connections. HTTP/1: the stream records when bytes last moved.
//! HTTP/2: requests mark the connection busy from their start until their response body
//! ends, so keep-alive PINGs do not count. The connection's watchdog starts a graceful close
//! once the connection has been idle for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared "last activity" clock of one connection, in milliseconds since it started, and
/// the number of requests that hold it busy.
#[derive(Clone)]
pub struct Activity {
    start: Instant,
    /// One allocation per connection for the three counters.
    shared: Arc<Shared>,
}

struct Shared {
    last_ms: AtomicU64,
    busy: AtomicUsize,
    /// Whether anything was written back yet (an answer has started).
    wrote: AtomicBool,
}

impl Activity {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            shared: Arc::new(Shared {
                last_ms: AtomicU64::new(0),
                busy: AtomicUsize::new(0),
                wrote: AtomicBool::new(false),
            }),
        }
    }

    /// Whether the connection has written anything back yet.
    pub fn has_written(&self) -> bool {
        self.shared.wrote.load(Ordering::Relaxed)
    }

    /// Resolves once something was written back, or after `limit`. Polls: it only runs on
    /// the drain path, for connections that had not answered anything when it began.
    pub async fn first_write(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.has_written() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn wrote(&self) {
        self.touch();
        if !self.shared.wrote.load(Ordering::Relaxed) {
            self.shared.wrote.store(true, Ordering::Relaxed);
        }
    }

    /// Marks activity now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.shared.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Keeps the connection from going idle until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.shared.busy.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// Resolves once nothing held the connection busy and no byte moved for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        loop {
            if self.shared.busy.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(limit).await;
                continue;
            }
            let last =
                self.start + Duration::from_millis(self.shared.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// A request in progress on a connection; see `Activity::busy`.
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.shared.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its connection busy until it ends or is dropped.
    pub struct BusyBody<B> {
        #[pin]
        inner: B,
        busy: Option<Busy>,
    }
}

impl<B> BusyBody<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Self {
            inner,
            busy: Some(busy),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for BusyBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.busy.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

pin_project_lite::pin_project! {
    /// A stream that reports its reads and writes to an `Activity`.
    pub struct Tracked<IO> {
        #[pin]
        inner: IO,
        activity: Activity,
    }
}

impl<IO> Tracked<IO> {
    pub fn new(inner: IO, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<IO: AsyncRead> AsyncRead for Tracked<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<IO: AsyncWrite> AsyncWrite for Tracked<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
