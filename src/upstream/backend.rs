//! One backend of an upstream (address, weight, identity, pooled connections, load stats,
//! health) and the set of them behind the pool's `ArcSwap`, with the balancer over it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::balancer::sticky::backend_id;
use super::balancer::{BackendStats, Balancer};
use super::limits::Load;
use super::outlier::BackendHealth;
use super::pool::{H1Sender, H2Sender};
use crate::config::model::Upstream;

/// One backend server of an upstream: its idle connections, health and load. Kept by
/// address across DNS changes.
pub struct Backend {
    pub addr: SocketAddr,
    pub weight: u32,
    /// In-flight count and latency EWMA, carried across reloads by identity.
    pub stats: Arc<BackendStats>,
    /// The identity the sticky cookie names (upstream name + address).
    pub id: u64,
    pub(super) idle: Mutex<Vec<(H1Sender, Instant)>>,
    pub(super) shared_h2: Mutex<Option<H2Sender>>,
    /// Health and ejection state, carried across reloads by identity like `stats`.
    pub health: Arc<BackendHealth>,
    pub load: Arc<Load>,
}

impl Backend {
    /// Backend `addr` of upstream `upstream`, with fresh state.
    pub fn new(upstream: &str, addr: SocketAddr, weight: u32) -> Backend {
        Backend::carried(upstream, addr, weight, None)
    }

    /// Backend `addr` of upstream `upstream`, sharing the load, health and ejection state of
    /// `previous` (the same identity in the configuration being replaced), if any. Pooled
    /// connections are not carried: the upstream's connection settings may have changed.
    pub fn carried(
        upstream: &str,
        addr: SocketAddr,
        weight: u32,
        previous: Option<&Backend>,
    ) -> Backend {
        Backend {
            addr,
            weight,
            stats: previous.map_or_else(BackendStats::new, |p| Arc::clone(&p.stats)),
            id: backend_id(upstream, &addr),
            idle: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
            health: previous.map_or_else(Arc::default, |p| Arc::clone(&p.health)),
            load: previous.map_or_else(Arc::default, |p| Arc::clone(&p.load)),
        }
    }
}

impl Backend {
    /// Drops pooled connections idle for `limit` or closed by the backend, so an idle pool
    /// does not hold the backend's sockets until the next request happens to check them.
    pub fn drop_expired(&self, limit: std::time::Duration) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|(sender, since)| since.elapsed() < limit && !sender.is_closed());
        }
        if let Ok(mut shared) = self.shared_h2.lock() {
            if shared.as_ref().is_some_and(|s| s.is_closed()) {
                *shared = None;
            }
        }
    }
}

/// The current backend set and the balancer over it (replaced whole by discovery).
pub struct Members {
    pub backends: Vec<Arc<Backend>>,
    pub balancer: Balancer,
}

impl Members {
    /// The balancer of `config` over `backends` (ring positions follow the addresses).
    pub fn new(config: &Upstream, backends: Vec<Arc<Backend>>) -> Members {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        let ids: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
        let stats = backends.iter().map(|b| Arc::clone(&b.stats)).collect();
        Members {
            balancer: Balancer::build(config.balancer, &config.balancing, &weights, &ids, stats),
            backends,
        }
    }
}
