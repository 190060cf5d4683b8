//! The byte tunnel between a client socket and a backend socket: both directions at once,
//! read buffers that exist only while data flows (an idle tunnel holds none), half-close
//! passed on, an idle timeout, and the drain deadline.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::shutdown::Watcher;

/// Read size while a direction is busy; the buffer is freed as soon as the socket has nothing
/// more to read, so 10,000 idle tunnels cost no buffers at all.
const CHUNK: usize = 16 * 1024;

/// Bytes moved so far, readable while the tunnel runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub client_to_backend: AtomicU64,
    pub backend_to_client: AtomicU64,
}

/// Which socket failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
}

impl Side {
    /// How a tunnel that failed on this side is logged.
    pub fn error_kind(self) -> &'static str {
        match self {
            Side::Client => "client_error",
            Side::Backend => "backend_error",
        }
    }
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum End {
    /// Both sides finished sending (each half-close was passed on).
    Closed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The drain started and its grace period ran out.
    Drained,
    /// Reading from or writing to one socket failed (reset, broken pipe).
    Failed { side: Side, error: io::Error },
}

/// Runs the tunnel until both directions are done, one fails, it idles out or the drain's
/// grace period ends. The caller drops (closes) both sockets afterwards.
///
/// Written against the sockets' readiness (`poll_read_ready` / `try_read`) rather than with
/// one future per pending read: an idle tunnel then holds no buffer and only a few hundred
/// bytes of state, however many thousands of them are open.
pub async fn run(
    client: &TcpStream,
    backend: &TcpStream,
    idle_timeout: Duration,
    grace: Duration,
    mut shutdown: Watcher,
    counters: &Counters,
) -> End {
    let activity = Activity::new();
    let mut up = Direction::new(client, backend, Side::Client, &counters.client_to_backend);
    let mut down = Direction::new(backend, client, Side::Backend, &counters.backend_to_client);
    let pumps = std::future::poll_fn(|cx| {
        let up_done = up.poll(cx, &activity)?;
        let down_done = down.poll(cx, &activity)?;
        if up_done.is_ready() && down_done.is_ready() {
            Poll::Ready(Ok::<(), (Side, io::Error)>(()))
        } else {
            Poll::Pending
        }
    });
    let drained = async {
        shutdown.triggered().await;
        // Boxed: the timer exists only once the drain has started.
        Box::pin(tokio::time::sleep(grace)).await;
    };
    tokio::select! {
        done = pumps => match done {
            Ok(()) => End::Closed,
            Err((side, error)) => End::Failed { side, error },
        },
        _ = activity.idle_for(idle_timeout) => End::IdleTimeout,
        _ = drained => End::Drained,
    }
}

/// One direction of the tunnel: what was read from `src` and not yet written to `dst`.
struct Direction<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    src_side: Side,
    counter: &'a AtomicU64,
    /// Bytes read and not yet fully written (only while `dst` is slower than `src`).
    unsent: Option<(Vec<u8>, usize)>,
    /// `src` has finished sending and the end was passed on.
    finished: bool,
}

impl<'a> Direction<'a> {
    fn new(src: &'a TcpStream, dst: &'a TcpStream, src_side: Side, counter: &'a AtomicU64) -> Self {
        Direction {
            src,
            dst,
            src_side,
            counter,
            unsent: None,
            finished: false,
        }
    }

    fn dst_side(&self) -> Side {
        match self.src_side {
            Side::Client => Side::Backend,
            Side::Backend => Side::Client,
        }
    }

    /// Moves bytes until `src` has nothing more for now (`Pending`, with wakers registered on
    /// the sockets) or has finished (`Ready`).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        activity: &Activity,
    ) -> Result<Poll<()>, (Side, io::Error)> {
        let (src, dst, src_side, dst_side) = (self.src, self.dst, self.src_side, self.dst_side());
        loop {
            if let Some((buf, sent)) = &mut self.unsent {
                while *sent < buf.len() {
                    match dst.poll_write_ready(cx) {
                        Poll::Pending => return Ok(Poll::Pending),
                        Poll::Ready(r) => r.map_err(|e| (dst_side, e))?,
                    }
                    match dst.try_write(&buf[*sent..]) {
                        Ok(0) => return Err((dst_side, io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            *sent += n;
                            self.counter.fetch_add(n as u64, Ordering::Relaxed);
                            activity.touch();
                        }
                        // Readiness was stale; the next poll registers the waker.
                        Err(e) if is_retry(&e) => {}
                        Err(e) => return Err((dst_side, e)),
                    }
                }
                // Written: free the buffer now rather than hold it while the tunnel idles.
                self.unsent = None;
            }
            if self.finished {
                return Ok(Poll::Ready(()));
            }
            match src.poll_read_ready(cx) {
                Poll::Pending => return Ok(Poll::Pending),
                Poll::Ready(r) => r.map_err(|e| (src_side, e))?,
            }
            let mut buf = Vec::with_capacity(CHUNK);
            match src.try_read_buf(&mut buf) {
                Ok(0) => {
                    // The peer finished sending: pass the FIN on, keep the other direction.
                    // A peer already gone makes this fail; the other direction reports that.
                    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
                    self.finished = true;
                }
                Ok(_) => {
                    activity.touch();
                    self.unsent = Some((buf, 0));
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => return Err((src_side, e)),
            }
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Writes all of `data`, waiting for the socket to accept more as needed.
pub async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if is_retry(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// When a byte last moved in either direction, in milliseconds since the tunnel started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `limit`; wakes at most once per `limit` while busy.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + limit;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due.into()).await;
        }
    }
}
