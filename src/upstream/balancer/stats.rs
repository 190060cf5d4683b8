//! Per-backend load state shared by the balancer and the request path: requests in flight
//! (an RAII guard) and a peak-EWMA of response latency. Lock-free atomics only.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Load state of one backend, keyed by its identity (upstream name and address) so that a
/// reload or a discovery change can carry it over to the new pool.
#[derive(Debug, Default)]
pub struct BackendStats {
    inflight: AtomicUsize,
    /// Peak-EWMA latency in nanoseconds, as `f64` bits; 0 until the first observation.
    cost: AtomicU64,
    /// When `cost` was last updated, in nanoseconds since the process's stats epoch.
    stamp: AtomicU64,
    /// Responses observed (for tests and status pages).
    observed: AtomicU64,
}

/// Nanoseconds since a process-wide origin: the clock every `BackendStats` shares.
pub fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl BackendStats {
    pub fn new() -> Arc<BackendStats> {
        Arc::new(BackendStats::default())
    }

    /// Requests sent to this backend whose response (or tunnel) has not ended yet.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// How many latencies have been observed.
    pub fn observed(&self) -> u64 {
        self.observed.load(Ordering::Relaxed)
    }

    /// Counts one request in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard {
            stats: Arc::clone(self),
            started: now_nanos(),
        }
    }

    /// Folds one latency sample in at time `now` (peak EWMA, as in Finagle and linkerd): a
    /// sample above the current cost replaces it at once; a lower one pulls it down with a
    /// weight that grows with the time since the last update.
    pub fn observe_at(&self, rtt: Duration, now: u64, decay: Duration) {
        let rtt = rtt.as_nanos() as f64;
        let cost = f64::from_bits(self.cost.load(Ordering::Relaxed));
        let last = self.stamp.swap(now, Ordering::Relaxed);
        let next = if rtt >= cost || self.observed() == 0 {
            rtt
        } else {
            let w = weight(now.saturating_sub(last), decay);
            cost * w + rtt * (1.0 - w)
        };
        self.cost.store(next.to_bits(), Ordering::Relaxed);
        self.observed.fetch_add(1, Ordering::Relaxed);
    }

    /// The latency estimate at `now` in nanoseconds, decayed toward zero since the last
    /// sample so that a backend once slow is tried again eventually.
    pub fn cost_at(&self, now: u64, decay: Duration) -> f64 {
        let cost = f64::from_bits(self.cost.load(Ordering::Relaxed));
        let last = self.stamp.load(Ordering::Relaxed);
        cost * weight(now.saturating_sub(last), decay)
    }
}

/// `exp(-elapsed / decay)`: the share of the old value that survives `elapsed`.
fn weight(elapsed_nanos: u64, decay: Duration) -> f64 {
    let tau = decay.as_nanos().max(1) as f64;
    (-(elapsed_nanos as f64) / tau).exp()
}

/// One request in flight on a backend; dropping it ends the count. Hold it until the
/// response body has ended or the tunnel has closed.
#[derive(Debug)]
pub struct InflightGuard {
    stats: Arc<BackendStats>,
    started: u64,
}

impl InflightGuard {
    /// Records the latency from `start` until now (call once the response head arrived).
    pub fn observe(&self, decay: Duration) {
        let now = now_nanos();
        let rtt = Duration::from_nanos(now.saturating_sub(self.started));
        self.stats.observe_at(rtt, now, decay);
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.stats.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);
    const MS: u64 = 1_000_000;

    #[test]
    fn guard_counts_in_flight_until_dropped() {
        let stats = BackendStats::new();
        let a = stats.start();
        let b = stats.start();
        assert_eq!(stats.inflight(), 2);
        drop(a);
        assert_eq!(stats.inflight(), 1);
        drop(b);
        assert_eq!(stats.inflight(), 0);
    }

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let s = BackendStats::default();
        s.observe_at(Duration::from_millis(10), 0, DECAY);
        assert_eq!(s.cost_at(0, DECAY) as u64, 10 * MS);
        // A peak replaces the estimate at once.
        s.observe_at(Duration::from_millis(100), 1000 * MS, DECAY);
        assert_eq!(s.cost_at(1000 * MS, DECAY) as u64, 100 * MS);
        // A fast sample right after barely moves it; one much later nearly replaces it.
        s.observe_at(Duration::from_millis(1), 1001 * MS, DECAY);
        assert!(s.cost_at(1001 * MS, DECAY) > 99.0 * MS as f64);
        s.observe_at(Duration::from_millis(1), 61_001 * MS, DECAY);
        assert!(s.cost_at(61_001 * MS, DECAY) < 2.0 * MS as f64);
        assert_eq!(s.observed(), 4);
    }

    #[test]
    fn cost_decays_while_idle() {
        let s = BackendStats::default();
        s.observe_at(Duration::from_millis(100), 0, DECAY);
        let later = s.cost_at(10_000 * MS, DECAY);
        assert!((later / (100.0 * MS as f64) - (-1f64).exp()).abs() < 1e-9);
    }
}
