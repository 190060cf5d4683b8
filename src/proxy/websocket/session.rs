//! Bookkeeping of one WebSocket session: the tunnel permits of its listener and route (so the
//! limits hold while it lives), and the one log record written when it ends.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::tunnel::Outcome;
use crate::metrics::Active;
use crate::state::{ListenerState, Snapshot};

/// Counts a tunnel against its listener's and route's limits while alive.
pub struct Permit {
    snapshot: Arc<Snapshot>,
    listener: Arc<ListenerState>,
    route: usize,
    /// Counts the tunnel in `portico_tunnels_active` while it lives.
    _active: Active,
}

impl Permit {
    /// Takes one tunnel slot on the listener and the route, or says which limit is reached.
    pub fn acquire(
        snapshot: &Arc<Snapshot>,
        listener: &Arc<ListenerState>,
        route: usize,
    ) -> Result<Permit, &'static str> {
        let route_limit = snapshot
            .config
            .routes
            .get(route)
            .and_then(|r| r.websocket.max_tunnels)
            .unwrap_or(usize::MAX);
        let route_count = snapshot.route_tunnels.get(route).ok_or("unknown route")?;
        if !take(&listener.tunnels, listener.config.limits.max_tunnels) {
            return Err("too many WebSocket connections on this listener");
        }
        if !take(route_count, route_limit) {
            listener.tunnels.fetch_sub(1, Ordering::AcqRel);
            return Err("too many WebSocket connections on this route");
        }
        Ok(Permit {
            _active: snapshot.metrics.tunnel(&listener.config.name, "websocket"),
            snapshot: Arc::clone(snapshot),
            listener: Arc::clone(listener),
            route,
        })
    }
}

/// Increments `count` unless that would pass `limit`.
fn take(count: &AtomicUsize, limit: usize) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .is_ok()
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.listener.tunnels.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = self.snapshot.route_tunnels.get(self.route) {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What the session's log record names; owned copies only, so the request that opened the
/// session (and hyper's read buffer its headers point into) can be freed.
pub struct Session {
    pub permit: Permit,
    pub upstream: usize,
    pub backend: SocketAddr,
    pub client: IpAddr,
    pub path: Box<str>,
    /// `http/1.1` (Upgrade) or `h2` (extended CONNECT).
    pub protocol: &'static str,
    pub started: Instant,
}

impl Session {
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.permit.snapshot
    }

    pub fn route(&self) -> usize {
        self.permit.route
    }

    /// Writes the session's one record (target `portico::access`, message `websocket`).
    pub fn log(&self, outcome: &Outcome) {
        let cfg = &self.permit.snapshot.config;
        self.permit
            .listener
            .metrics
            .bytes(outcome.bytes_up, outcome.bytes_down);
        if !cfg.settings.access_log {
            return;
        }
        let route = cfg
            .routes
            .get(self.permit.route)
            .map_or("-", |r| r.name.as_str());
        let upstream = cfg
            .upstreams
            .get(self.upstream)
            .map_or("-", |u| u.name.as_str());
        let framed = outcome.messages_up.is_some();
        tracing::info!(
            target: "portico::access",
            listener = %self.permit.listener.config.name,
            route,
            upstream,
            backend = %self.backend,
            client = %self.client,
            path = &*self.path,
            protocol = self.protocol,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            bytes_in = outcome.bytes_up,
            bytes_out = outcome.bytes_down,
            messages_in = framed.then_some(outcome.messages_up.unwrap_or(0)),
            messages_out = framed.then_some(outcome.messages_down.unwrap_or(0)),
            close_code = outcome.close_code,
            closed_by = outcome.closed_by.unwrap_or("-"),
            end = outcome.end.as_str(),
            "websocket",
        );
    }
}
