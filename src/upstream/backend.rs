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
    pub health: BackendHealth,
    pub load: Arc<Load>,
}

impl Backend {
    /// Backend `addr` of upstream `upstream`, with its (possibly carried-over) load stats.
    pub fn new(upstream: &str, addr: SocketAddr, weight: u32, stats: Arc<BackendStats>) -> Backend {
        Backend {
            addr,
            weight,
            stats,
            id: backend_id(upstream, &addr),
            idle: Mutex::new(Vec::new()),
            shared_h2: Mutex::new(None),
            health: BackendHealth::default(),
            load: Arc::new(Load::default()),
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
