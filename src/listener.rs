//! Binding listening sockets and the accept loop: a connection limit per listener, backoff
//! on accept errors (EMFILE must not spin), one task per connection, handed to HTTP (`conn`)
//! or Layer 4 (`l4`) by the listener's mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tracing::Instrument;

use crate::config::model::Listener;
use crate::error::Error;
use crate::shutdown::Watcher;
use crate::state::SharedState;

/// Connections taken from the backlog once the drain has started.
const BACKLOG_DRAIN: usize = 1024;

/// Binds `listener.bind` with SO_REUSEADDR and a deep backlog.
pub fn bind(listener: &Listener) -> Result<TcpListener, Error> {
    let addr = listener.bind;
    let err = |source| Error::Bind {
        listener: listener.name.clone(),
        addr,
        source,
    };
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))
        .map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}

/// Takes over a listening socket handed over by a previous process (binary upgrade).
pub fn adopt(listener: &Listener, socket: std::net::TcpListener) -> Result<TcpListener, Error> {
    let err = |source| Error::Bind {
        listener: listener.name.clone(),
        addr: listener.bind,
        source,
    };
    socket.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(socket).map_err(err)
}

/// Accepts until the drain starts; each connection runs in its own task holding a permit
/// of the listener's connection limit and a clone of `alive` (dropped when it ends).
///
/// The listener's settings (mode, TLS, limits) are read from the current snapshot, by name,
/// at each accept, so a reload changes them without re-binding (`max_connections` included:
/// the limit is resized, see `Limit`); `shutdown` is this listener's own drain signal (a
/// reload that removes it triggers it).
pub async fn accept_loop(
    tcp: TcpListener,
    name: String,
    max_connections: usize,
    state: SharedState,
    mut shutdown: Watcher,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    let mut limit = Limit::new(max_connections);
    let mut backoff = Duration::from_millis(5);
    // Once the drain starts, the connections the kernel already completed (in the backlog)
    // are still accepted and served, up to this many: their clients may have sent a request
    // already, and closing the listener would reset them.
    let mut backlog_left: Option<usize> = None;
    let current = || {
        state
            .load()
            .listener_named(&name)
            .map(|l| l.config.limits.max_connections)
    };
    loop {
        let permit = match backlog_left {
            Some(_) => match limit.try_acquire(current()) {
                Some(p) => p,
                None => return,
            },
            None => tokio::select! {
                p = limit.acquire(&current) => match p {
                    Some(p) => p,
                    None => return,
                },
                _ = shutdown.triggered() => {
                    backlog_left = Some(BACKLOG_DRAIN);
                    continue;
                }
            },
        };
        let accepted = match &mut backlog_left {
            Some(0) => return,
            Some(left) => {
                *left -= 1;
                match tcp.accept().now_or_never() {
                    Some(a) => a,
                    None => return,
                }
            }
            None => tokio::select! {
                a = tcp.accept() => a,
                _ = shutdown.triggered() => {
                    backlog_left = Some(BACKLOG_DRAIN);
                    continue;
                }
            },
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(_) if backlog_left.is_some() => return,
            Err(e) => {
                // Out of descriptors or a transient error: wait instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // A reload may have lowered the limit while this loop waited for the connection.
        let permit = match limit.recheck(permit, current()) {
            Some(p) => p,
            None => match limit.acquire(&current).await {
                Some(p) => p,
                None => return,
            },
        };
        let Some(listener) = state.load().listener_named(&name).cloned() else {
            // Removed by a reload that has not stopped this loop yet.
            continue;
        };
        let layer4 = listener.config.mode.is_layer4();
        let state = Arc::clone(&state);
        let watcher = shutdown.clone();
        let alive = alive.clone();
        let span = tracing::debug_span!("conn", listener = %name, peer = %peer);
        // Two spawn sites, so that a Layer 4 task is not sized for an HTTP connection's
        // (larger) future: thousands of idle tunnels pay for every byte of it.
        if layer4 {
            tokio::spawn(
                async move {
                    crate::l4::serve(stream, peer, listener, state, watcher).await;
                    drop(permit);
                    drop(alive);
                }
                .instrument(span),
            );
        } else {
            tokio::spawn(
                async move {
                    crate::conn::serve(stream, peer, listener, state, watcher).await;
                    drop(permit);
                    drop(alive);
                }
                .instrument(span),
            );
        }
    }
}

/// How often a listener waiting at its connection limit looks for a raised one.
const LIMIT_RECHECK: Duration = Duration::from_secs(1);

/// A listener's connection limit, resizable while connections hold its permits.
struct Limit {
    permits: Arc<Semaphore>,
    /// The limit the permits stand for.
    size: usize,
    /// Permits still to withdraw after the limit was lowered below what was in use.
    debt: usize,
}

impl Limit {
    fn new(size: usize) -> Limit {
        Limit {
            permits: Arc::new(Semaphore::new(size)),
            size,
            debt: 0,
        }
    }

    /// Follows a changed `max_connections` (`None`: the listener is gone, nothing to do): a
    /// raise adds permits at once, a cut withdraws free permits now and the rest as
    /// connections end.
    fn resize(&mut self, size: Option<usize>) {
        let Some(size) = size else { return };
        if size > self.size {
            let raise = size - self.size;
            let repaid = raise.min(self.debt);
            self.debt -= repaid;
            self.permits.add_permits(raise - repaid);
        } else {
            self.debt += self.size - size;
        }
        self.size = size;
        if self.debt > 0 {
            self.debt -= self.permits.forget_permits(self.debt);
        }
    }

    /// The permit for a new connection, or `None` when it pays off a lowered limit.
    fn admit(&mut self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        if self.debt == 0 {
            return Some(permit);
        }
        permit.forget();
        self.debt -= 1;
        None
    }

    /// A permit if one is free under the limit `size`.
    fn try_acquire(&mut self, size: Option<usize>) -> Option<OwnedSemaphorePermit> {
        self.resize(size);
        loop {
            let permit = Arc::clone(&self.permits).try_acquire_owned().ok()?;
            if let Some(p) = self.admit(permit) {
                return Some(p);
            }
        }
    }

    /// Waits for a permit under the limit `current` gives; at the limit it looks again now
    /// and then, in case a reload raised it. `None` only if the semaphore closed.
    async fn acquire(
        &mut self,
        current: &impl Fn() -> Option<usize>,
    ) -> Option<OwnedSemaphorePermit> {
        loop {
            self.resize(current());
            let permit = match Arc::clone(&self.permits).try_acquire_owned() {
                Ok(p) => p,
                Err(TryAcquireError::Closed) => return None,
                Err(TryAcquireError::NoPermits) => tokio::select! {
                    p = Arc::clone(&self.permits).acquire_owned() => p.ok()?,
                    () = tokio::time::sleep(LIMIT_RECHECK) => continue,
                },
            };
            if let Some(p) = self.admit(permit) {
                return Some(p);
            }
        }
    }

    /// Keeps `permit` if the limit, possibly lowered to `size` meanwhile, still allows it.
    fn recheck(
        &mut self,
        permit: OwnedSemaphorePermit,
        size: Option<usize>,
    ) -> Option<OwnedSemaphorePermit> {
        self.resize(size);
        self.admit(permit)
    }
}

/// The address a bound listener really got (port 0 resolved).
pub fn local_addr(tcp: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    tcp.local_addr().unwrap_or(fallback)
}
