//! Pure backend selection for one upstream (no IO): round robin, smooth weighted round
//! robin, least requests, P2C over peak EWMA, weighted random and consistent hashing. Every
//! policy only picks among backends the caller's `usable` filter (health, ejection) accepts.

mod cycle;
mod hash;
mod load;
mod rng;
pub mod stats;
pub mod sticky;

use std::sync::Arc;
use std::time::Duration;

pub use hash::{cookie, key_hash};
pub use stats::{BackendStats, InflightGuard};

use crate::config::model::{BalancerKind, Balancing};
use cycle::{Cycle, CycleKind};
use hash::Ring;
use load::Candidates;
use rng::Rng;

enum Policy {
    Cycle(Cycle),
    LeastRequests,
    P2cEwma,
    Random,
    Hash(Ring),
}

/// Picks backends by index. `Send + Sync`; share it for the pool's lifetime.
pub struct Balancer {
    policy: Policy,
    /// For `consistent_hash`: the policy used when a request has no key.
    fallback: Option<Policy>,
    weights: Box<[u32]>,
    stats: Box<[Arc<BackendStats>]>,
    decay: Duration,
    rng: Rng,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer")
            .field("backends", &self.weights.len())
            .finish_non_exhaustive()
    }
}

fn policy(kind: BalancerKind, balancing: &Balancing, weights: &[u32], ids: &[String]) -> Policy {
    match kind {
        BalancerKind::RoundRobin => Policy::Cycle(Cycle::new(CycleKind::RoundRobin, weights)),
        BalancerKind::WeightedRoundRobin => {
            Policy::Cycle(Cycle::new(CycleKind::WeightedRoundRobin, weights))
        }
        BalancerKind::LeastRequests => Policy::LeastRequests,
        BalancerKind::P2cEwma => Policy::P2cEwma,
        BalancerKind::Random => Policy::Random,
        BalancerKind::ConsistentHash => {
            Policy::Hash(Ring::new(ids, weights, balancing.virtual_nodes))
        }
    }
}

impl Balancer {
    /// A balancer with default knobs and fresh load state; backends are identified by index.
    pub fn new(kind: BalancerKind, weights: &[u32]) -> Balancer {
        let ids: Vec<String> = (0..weights.len()).map(|i| i.to_string()).collect();
        let stats = weights.iter().map(|_| BackendStats::new()).collect();
        Balancer::build(kind, &Balancing::default(), weights, &ids, stats)
    }

    /// `ids[i]` identifies backend `i` stably (its address: ring positions follow it) and
    /// `stats[i]` is its load state, possibly carried over from an earlier pool.
    pub fn build(
        kind: BalancerKind,
        balancing: &Balancing,
        weights: &[u32],
        ids: &[String],
        stats: Vec<Arc<BackendStats>>,
    ) -> Balancer {
        let fallback = (kind == BalancerKind::ConsistentHash)
            .then(|| policy(balancing.fallback, balancing, weights, ids));
        Balancer {
            policy: policy(kind, balancing, weights, ids),
            fallback,
            weights: weights.into(),
            stats: stats.into_boxed_slice(),
            decay: balancing.decay,
            rng: Rng::new(),
        }
    }

    /// The next backend for which `usable` is true, or `None` when none is. A consistent
    /// hash uses its fallback policy here.
    pub fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_keyed(None, usable)
    }

    /// Like `pick`, with the request's hash key for `consistent_hash` (`None`: the request
    /// has no key, the fallback policy decides).
    pub fn pick_keyed(&self, key: Option<u64>, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let policy = match (&self.policy, key, &self.fallback) {
            (Policy::Hash(_), None, Some(fallback)) => fallback,
            (p, _, _) => p,
        };
        let candidates = Candidates {
            weights: &self.weights,
            usable: &usable,
        };
        match policy {
            Policy::Cycle(c) => c.pick(&usable),
            Policy::LeastRequests => load::least_requests(&self.stats, &candidates, &self.rng),
            Policy::P2cEwma => load::p2c_ewma(
                &self.stats,
                &candidates,
                &self.rng,
                stats::now_nanos(),
                self.decay,
            ),
            Policy::Random => load::random(&candidates, &self.rng),
            Policy::Hash(ring) => ring.pick(key.unwrap_or(0), |i| candidates.allowed(i)),
        }
    }

    /// Load state of backend `i`.
    pub fn stats(&self, i: usize) -> Option<&Arc<BackendStats>> {
        self.stats.get(i)
    }

    /// Time constant of the latency EWMA.
    pub fn decay(&self) -> Duration {
        self.decay
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
