//! The byte tunnel between a client socket and a backend socket: both directions at once,
//! read buffers that exist only while data flows (an idle tunnel holds none), half-close
//! passed on, an idle timeout, and the drain deadline.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
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
pub async fn run(
    client: &TcpStream,
    backend: &TcpStream,
    idle_timeout: Duration,
    grace: Duration,
    mut shutdown: Watcher,
    counters: &Counters,
) -> End {
    let activity = Activity::new();
    let up = pump(
        client,
        backend,
        Side::Client,
        &counters.client_to_backend,
        &activity,
    );
    let down = pump(
        backend,
        client,
        Side::Backend,
        &counters.backend_to_client,
        &activity,
    );
    let drained = async {
        shutdown.triggered().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        done = async { tokio::try_join!(up, down) } => match done {
            Ok(_) => End::Closed,
            Err((side, error)) => End::Failed { side, error },
        },
        _ = activity.idle_for(idle_timeout) => End::IdleTimeout,
        _ = drained => End::Drained,
    }
}

/// Copies `src` to `dst` until `src` finishes sending, then half-closes `dst`.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    src_side: Side,
    counter: &AtomicU64,
    activity: &Activity,
) -> Result<(), (Side, io::Error)> {
    let dst_side = match src_side {
        Side::Client => Side::Backend,
        Side::Backend => Side::Client,
    };
    loop {
        src.readable().await.map_err(|e| (src_side, e))?;
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            buf.clear();
            match src.try_read_buf(&mut buf) {
                Ok(0) => {
                    // The peer finished sending: pass the FIN on and keep the other direction.
                    // A peer already gone makes this fail, which the other direction reports.
                    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
                    return Ok(());
                }
                Ok(n) => {
                    activity.touch();
                    write_all(dst, &buf[..n]).await.map_err(|e| (dst_side, e))?;
                    activity.touch();
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
                // Nothing more for now: drop the buffer before waiting again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((src_side, e)),
            }
        }
    }
}

/// Writes all of `data`, waiting for the socket to accept more as needed.
pub async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
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
