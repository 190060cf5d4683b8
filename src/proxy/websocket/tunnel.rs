//! A tunnel's life after the 101: the pump runs until both sides are done, an IO error, the
//! idle timeout, the maximum lifetime, or the drain deadline. In message-policy mode Portico
//! ends it with a Close frame to both sides (1001) and pings a silent client.

use std::future::poll_fn;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{Inspector, GOING_AWAY};
use super::pump::{Half, Pump};
use crate::config::model::{MessagePolicy, WebSocket};
use crate::shutdown::Watcher;
use tokio::sync::watch;

/// How long a close handshake Portico started may take before the sockets are dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished.
    Closed,
    /// A socket failed (reset, broken pipe).
    Error,
    Idle,
    Lifetime,
    Drained,
    /// The message policy was broken and the tunnel closed.
    Violation,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Closed => "closed",
            End::Error => "error",
            End::Idle => "idle_timeout",
            End::Lifetime => "max_lifetime",
            End::Drained => "drained",
            End::Violation => "policy",
        }
    }
}

/// What a finished tunnel reports for its log record.
pub struct Outcome {
    pub end: End,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub messages_up: Option<u64>,
    pub messages_down: Option<u64>,
    pub close_code: Option<u16>,
    pub closed_by: Option<&'static str>,
}

impl Outcome {
    /// A session whose switch to a tunnel never completed (a side went away first).
    pub fn failed() -> Self {
        Self {
            end: End::Error,
            bytes_up: 0,
            bytes_down: 0,
            messages_up: None,
            messages_down: None,
            close_code: None,
            closed_by: None,
        }
    }
}

/// The limits a tunnel runs under.
pub struct Settings<'a> {
    pub websocket: &'a WebSocket,
    /// `websocket.drain_timeout`, never past the process's grace period.
    pub drain_timeout: Duration,
}

/// Runs the tunnel between `client` and `backend` until it ends. It drains (see `Settings`)
/// when `drain` triggers or `retired` turns true (its route was removed by a reload).
pub async fn run<C, B>(
    client: C,
    backend: B,
    settings: Settings<'_>,
    mut drain: Watcher,
    retired: Option<watch::Receiver<bool>>,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let ws = settings.websocket;
    let policy: Option<&MessagePolicy> = ws.policy.as_ref();
    let started = Instant::now();
    let (up, down) = match policy {
        Some(p) => (
            Half::new(Some(Inspector::new(
                true,
                p.max_message_size,
                p.messages_per_second,
                started,
            ))),
            Half::new(Some(Inspector::new(
                false,
                p.max_message_size,
                None,
                started,
            ))),
        ),
        None => (Half::new(None), Half::new(None)),
    };
    let mut pump = Pump::new(client, backend, up, down);
    let mut clock = Clock {
        started,
        idle: ws.idle_timeout,
        lifetime: ws.max_lifetime.map(|l| started + l),
        drain_at: None,
        close_at: None,
        ping: policy.and_then(|p| p.ping_interval),
        next_ping: policy.and_then(|p| p.ping_interval).map(|i| started + i),
        reason: None,
    };
    let timer = tokio::time::sleep_until(clock.next_due(&pump).into());
    tokio::pin!(timer);
    let retirement = async move {
        let gone = match retired {
            Some(mut rx) => rx.wait_for(|gone| *gone).await.is_ok(),
            None => false,
        };
        if !gone {
            // No route watch, or its sender is gone: never retired.
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(retirement);
    let end = loop {
        enum Wake {
            Pump(io::Result<bool>),
            Timer,
            Drain,
        }
        let draining = clock.drain_at.is_some();
        let wake = tokio::select! {
            r = poll_fn(|cx| pump.poll(cx)) => Wake::Pump(r),
            () = &mut timer => Wake::Timer,
            () = drain.triggered(), if !draining => Wake::Drain,
            () = &mut retirement, if !draining => Wake::Drain,
        };
        let now = Instant::now();
        match wake {
            Wake::Pump(Ok(true)) => break clock.reason.unwrap_or(End::Closed),
            Wake::Pump(Ok(false)) => {
                clock.reason.get_or_insert(End::Violation);
                clock.close_at = Some(now + CLOSE_TIMEOUT);
            }
            Wake::Pump(Err(e)) => {
                tracing::debug!(error = %e, "tunnel socket failed");
                break clock.reason.unwrap_or(End::Error);
            }
            Wake::Drain => {
                clock.drain_at = Some(now + settings.drain_timeout);
                if policy.is_some() {
                    clock.close(&mut pump, now, End::Drained, "going away");
                }
            }
            Wake::Timer => {
                if let Some(end) = clock.on_timer(&mut pump, now, policy.is_some()) {
                    break end;
                }
            }
        }
        timer.as_mut().reset(clock.next_due(&pump).into());
    };
    Outcome {
        end,
        bytes_up: pump.up.bytes,
        bytes_down: pump.down.bytes,
        messages_up: pump.up.messages(),
        messages_down: pump.down.messages(),
        close_code: pump.close.code,
        closed_by: pump
            .close
            .by
            .or(match end {
                End::Idle | End::Lifetime | End::Drained => Some(super::pump::Closer::Portico),
                _ => pump.first_end,
            })
            .map(|c| c.as_str()),
    }
}

/// The tunnel's deadlines, all served by one timer.
struct Clock {
    started: Instant,
    idle: Duration,
    lifetime: Option<Instant>,
    drain_at: Option<Instant>,
    close_at: Option<Instant>,
    ping: Option<Duration>,
    next_ping: Option<Instant>,
    /// Why Portico started closing, once it has.
    reason: Option<End>,
}

impl Clock {
    fn idle_at<C, B>(&self, pump: &Pump<C, B>) -> Instant
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        pump.last_activity().unwrap_or(self.started) + self.idle
    }

    fn next_due<C, B>(&self, pump: &Pump<C, B>) -> Instant
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        [
            Some(self.idle_at(pump)),
            self.lifetime,
            self.drain_at,
            self.close_at,
            self.next_ping,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.started + self.idle)
    }

    /// Starts Portico's close handshake (message-policy mode), bounded by `CLOSE_TIMEOUT`.
    fn close<C, B>(&mut self, pump: &mut Pump<C, B>, now: Instant, why: End, reason: &str)
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        if self.reason.is_none() {
            self.reason = Some(why);
        }
        pump.begin_close(GOING_AWAY, reason);
        let limit = now + CLOSE_TIMEOUT;
        self.close_at = Some(self.close_at.map_or(limit, |c| c.min(limit)));
        self.lifetime = None;
        self.next_ping = None;
    }

    /// Handles whatever deadline passed; `Some` ends the tunnel now.
    fn on_timer<C, B>(&mut self, pump: &mut Pump<C, B>, now: Instant, framed: bool) -> Option<End>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        B: AsyncRead + AsyncWrite + Unpin,
    {
        if self.drain_at.is_some_and(|d| d <= now) {
            return Some(End::Drained);
        }
        if self.close_at.is_some_and(|d| d <= now) {
            return Some(self.reason.unwrap_or(End::Violation));
        }
        let expired = if self.lifetime.is_some_and(|l| l <= now) {
            Some((End::Lifetime, "maximum lifetime reached"))
        } else if self.idle_at(pump) <= now && self.close_at.is_none() {
            Some((End::Idle, "idle timeout"))
        } else {
            None
        };
        if let Some((end, reason)) = expired {
            if !framed {
                return Some(end);
            }
            self.close(pump, now, end, reason);
        }
        if let (Some(at), Some(interval)) = (self.next_ping, self.ping) {
            if at <= now {
                let heard = pump.up.last_read.unwrap_or(self.started);
                if now.saturating_duration_since(heard) >= interval {
                    pump.ping_client();
                    self.next_ping = Some(now + interval);
                } else {
                    self.next_ping = Some(heard + interval);
                }
            }
        }
        None
    }
}
