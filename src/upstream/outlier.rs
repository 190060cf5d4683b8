//! Per-backend passive health: consecutive failures (connect errors, 5xx) eject a backend
//! for a back-off that grows with each ejection; active health-check state and the slow
//! start after recovery live here too, so the balancer's filter reads one struct.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::config::model::OutlierDetection;

/// Milliseconds since the first call in this process (a monotonic clock for atomics).
pub fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Health of one backend, shared by the data path, the checker and the outlier detector.
#[derive(Debug)]
pub struct BackendHealth {
    /// Passive: failures in a row.
    consecutive: AtomicU32,
    /// Passive: how many times it was ejected (grows the back-off; reset by a success
    /// after the ejection ended).
    ejections: AtomicU32,
    /// Passive: ejected until this `now_ms`; 0 = not ejected.
    ejected_until: AtomicU64,
    /// Active: the health check's verdict (backends start healthy).
    up: AtomicBool,
    /// Active: successes (when down) or failures (when up) in a row.
    streak: AtomicU32,
    /// Active: successful checks in a row while passively ejected.
    uneject_streak: AtomicU32,
    /// When the backend last became usable again (for slow start); 0 = never recovered.
    recovered_at: AtomicU64,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            consecutive: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            up: AtomicBool::new(true),
            streak: AtomicU32::new(0),
            uneject_streak: AtomicU32::new(0),
            recovered_at: AtomicU64::new(0),
        }
    }
}

/// What one request's outcome did to the backend.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Just ejected for this long.
    Ejected(Duration),
    /// Should be ejected but the pool's ejection share is used up.
    Spared,
}

impl BackendHealth {
    pub fn is_ejected(&self, now: u64) -> bool {
        now < self.ejected_until.load(Ordering::Relaxed)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Usable by the balancer: up by the health check and not ejected.
    pub fn is_usable(&self, now: u64) -> bool {
        self.is_up() && !self.is_ejected(now)
    }

    /// The share of traffic (0.1..=1.0) during the slow start after a recovery.
    pub fn ramp(&self, now: u64, slow_start: Duration) -> f64 {
        let since = self.recovered_at.load(Ordering::Relaxed);
        let window = millis(slow_start);
        if since == 0 || window == 0 || now < since || now >= since.saturating_add(window) {
            return 1.0;
        }
        ((now - since) as f64 / window as f64).clamp(0.1, 1.0)
    }

    /// Records a request's outcome. `may_eject` says whether the pool can take one more
    /// ejected backend (the `max_ejected_percent` share).
    pub fn record(
        &self,
        ok: bool,
        cfg: &OutlierDetection,
        now: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> Verdict {
        if ok {
            self.consecutive.store(0, Ordering::Relaxed);
            let until = self.ejected_until.load(Ordering::Relaxed);
            if until != 0 && now >= until {
                // Served fine after its ejection ended: forget the back-off history.
                self.ejected_until.store(0, Ordering::Relaxed);
                self.ejections.store(0, Ordering::Relaxed);
            }
            return Verdict::Fine;
        }
        let failures = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < cfg.consecutive_failures || self.is_ejected(now) {
            return Verdict::Fine;
        }
        if !may_eject() {
            return Verdict::Spared;
        }
        let n = self.ejections.fetch_add(1, Ordering::Relaxed) + 1;
        let length = cfg.base_ejection.saturating_mul(n).min(cfg.max_ejection);
        self.consecutive.store(0, Ordering::Relaxed);
        self.ejected_until
            .store(now.saturating_add(millis(length)).max(1), Ordering::Relaxed);
        self.recovered_at
            .store(now.saturating_add(millis(length)).max(1), Ordering::Relaxed);
        Verdict::Ejected(length)
    }

    /// Records a health check's result; returns `Some(new_state)` when the verdict flipped
    /// (`Some(true)` also when passing checks end a passive ejection early).
    pub fn check(&self, ok: bool, healthy: u32, unhealthy: u32, now: u64) -> Option<bool> {
        let up = self.is_up();
        if !ok {
            self.uneject_streak.store(0, Ordering::Relaxed);
        } else if up && self.is_ejected(now) {
            // The checker vouches for an ejected backend: after the healthy threshold it
            // comes back (with slow start) instead of waiting out the back-off.
            let streak = self.uneject_streak.fetch_add(1, Ordering::Relaxed) + 1;
            if streak >= healthy {
                self.uneject_streak.store(0, Ordering::Relaxed);
                self.consecutive.store(0, Ordering::Relaxed);
                self.ejected_until.store(0, Ordering::Relaxed);
                self.recovered_at.store(now.max(1), Ordering::Relaxed);
                return Some(true);
            }
            return None;
        }
        if ok == up {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if up { unhealthy } else { healthy };
        if streak < needed {
            return None;
        }
        self.streak.store(0, Ordering::Relaxed);
        self.up.store(ok, Ordering::Relaxed);
        if ok {
            self.recovered_at.store(now.max(1), Ordering::Relaxed);
            // A backend the checker vouches for again gets a clean passive record too.
            self.consecutive.store(0, Ordering::Relaxed);
            self.ejected_until.store(0, Ordering::Relaxed);
        }
        Some(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> OutlierDetection {
        OutlierDetection {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_with_growing_backoff() {
        let h = BackendHealth::default();
        let c = cfg();
        assert_eq!(h.record(false, &c, 100, || true), Verdict::Fine);
        assert_eq!(h.record(false, &c, 100, || true), Verdict::Fine);
        assert_eq!(
            h.record(false, &c, 100, || true),
            Verdict::Ejected(Duration::from_secs(10))
        );
        assert!(h.is_ejected(5_000) && !h.is_usable(5_000));
        assert!(!h.is_ejected(10_100));
        for _ in 0..2 {
            h.record(false, &c, 10_200, || true);
        }
        assert_eq!(
            h.record(false, &c, 10_200, || true),
            Verdict::Ejected(Duration::from_secs(20))
        );
        for _ in 0..2 {
            h.record(false, &c, 40_000, || true);
        }
        // Third ejection: 30s capped at 25s.
        assert_eq!(
            h.record(false, &c, 40_000, || true),
            Verdict::Ejected(Duration::from_secs(25))
        );
    }

    #[test]
    fn a_success_resets_the_count_and_the_share_can_spare() {
        let h = BackendHealth::default();
        let c = cfg();
        h.record(false, &c, 1, || true);
        h.record(false, &c, 1, || true);
        h.record(true, &c, 1, || true);
        h.record(false, &c, 1, || true);
        assert_eq!(h.record(false, &c, 1, || true), Verdict::Fine);
        assert_eq!(h.record(false, &c, 1, || false), Verdict::Spared);
        assert!(h.is_usable(2));
    }

    #[test]
    fn passing_checks_end_an_ejection_after_the_healthy_threshold() {
        let h = BackendHealth::default();
        let c = cfg();
        for _ in 0..3 {
            h.record(false, &c, 100, || true);
        }
        assert!(h.is_ejected(200));
        assert_eq!(h.check(true, 2, 2, 200), None);
        assert_eq!(
            h.check(false, 2, 2, 250),
            None,
            "a failure restarts the count"
        );
        assert_eq!(h.check(true, 2, 2, 300), None);
        assert!(h.is_ejected(300));
        assert_eq!(h.check(true, 2, 2, 350), Some(true));
        assert!(h.is_usable(350));
    }

    #[test]
    fn health_check_thresholds_and_slow_start() {
        let h = BackendHealth::default();
        assert_eq!(h.check(false, 2, 2, 10), None);
        assert_eq!(h.check(true, 2, 2, 10), None, "a success breaks the streak");
        assert_eq!(h.check(false, 2, 2, 10), None);
        assert_eq!(h.check(false, 2, 2, 10), Some(false));
        assert!(!h.is_usable(10));
        assert_eq!(h.check(true, 2, 2, 1_000), None);
        assert_eq!(h.check(true, 2, 2, 1_000), Some(true));
        assert!(h.is_usable(1_000));
        let slow = Duration::from_secs(10);
        assert!((h.ramp(1_000, slow) - 0.1).abs() < 1e-9);
        assert!((h.ramp(6_000, slow) - 0.5).abs() < 1e-9);
        assert!((h.ramp(11_000, slow) - 1.0).abs() < 1e-9);
    }
}
