//! Choosing a usable backend (health, ejection, slow start, per-backend pending limit fed
//! into the balancer's filter), recording outcomes for outlier detection, and replacing
//! the backend set when discovery changes it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::limits::{backend_has_room, over_limit};
use super::outlier::{now_ms, Verdict};
use super::pick::{Picked, RequestInfo};
use super::pool::{Backend, Members, UpstreamPool};
use super::UpstreamError;

impl UpstreamPool {
    /// The current backend set.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Picks the next usable backend by the upstream's balancer (no request: no sticky
    /// cookie, no hash key).
    pub fn pick(&self) -> Result<Arc<Backend>, UpstreamError> {
        self.pick_except(&[])
    }

    /// Like `pick`, skipping the backends at `tried` (addresses of earlier tries).
    pub fn pick_except(&self, tried: &[SocketAddr]) -> Result<Arc<Backend>, UpstreamError> {
        self.pick_for(None, tried).map(|p| p.backend)
    }

    /// The backend for a request (sticky cookie, hash key: `pick`) among the usable ones:
    /// up by the health check, not ejected, not at its pending limit, not in `tried`, and
    /// through the slow-start dice. `Overloaded` names the limit when that is what is left.
    pub fn pick_for(
        &self,
        req: Option<&RequestInfo<'_>>,
        tried: &[SocketAddr],
    ) -> Result<Picked, UpstreamError> {
        let limits = &self.config.resilience.limits;
        if let Some(reason) = over_limit(limits, &self.load) {
            return Err(UpstreamError::Overloaded(reason));
        }
        let members = self.members.load();
        let now = now_ms();
        let slow_start = self
            .config
            .resilience
            .health_check
            .as_ref()
            .map(|h| h.slow_start)
            .unwrap_or_default();
        let healthy = |b: &Backend| !tried.contains(&b.addr) && b.health.is_usable(now);
        let open = |i: usize| {
            members
                .backends
                .get(i)
                .is_some_and(|b| healthy(b) && backend_has_room(limits, &b.load))
        };
        let ramped = |i: usize| {
            open(i)
                && members
                    .backends
                    .get(i)
                    .is_some_and(|b| self.admit(b.health.ramp(now, slow_start)))
        };
        // Slow start only thins traffic out; with nothing else left, a ramping backend
        // still takes the request.
        let picked = self
            .pick_among(&members, req, ramped)
            .or_else(|| self.pick_among(&members, req, open));
        if let Some(picked) = picked {
            return Ok(picked);
        }
        let full = members
            .backends
            .iter()
            .any(|b| healthy(b) && !backend_has_room(limits, &b.load));
        if full {
            Err(UpstreamError::Overloaded("backend max_pending reached"))
        } else {
            Err(UpstreamError::NoBackend)
        }
    }

    /// True with probability `share` (a cheap splitmix64 dice; 1.0 always admits).
    fn admit(&self, share: f64) -> bool {
        if share >= 1.0 {
            return true;
        }
        let mut z = self
            .dice
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < share
    }

    /// Feeds one request's outcome to outlier detection (`ok` = answered, and not with a
    /// 5xx). Logs ejections naming the route (or listener), upstream, backend and reason.
    pub fn report(&self, route: &str, backend: &Backend, ok: bool, reason: &str) {
        let Some(cfg) = &self.config.resilience.outlier else {
            return;
        };
        let now = now_ms();
        let may_eject = || {
            let members = self.members.load();
            let total = members.backends.len();
            let ejected = members
                .backends
                .iter()
                .filter(|b| b.health.is_ejected(now))
                .count();
            (ejected + 1) * 100 <= total * usize::from(cfg.max_ejected_percent)
        };
        match backend.health.record(ok, cfg, now, may_eject) {
            Verdict::Fine => {}
            Verdict::Ejected(length) => tracing::warn!(
                route,
                upstream = %self.name,
                backend = %backend.addr,
                reason,
                ejected_for = ?length,
                "backend ejected after consecutive failures",
            ),
            Verdict::Spared => tracing::warn!(
                route,
                upstream = %self.name,
                backend = %backend.addr,
                reason,
                "backend keeps failing but max_ejected_percent is reached; not ejected",
            ),
        }
    }

    /// Replaces the backend set with `servers` (address, weight); backends whose address
    /// stays keep their state, connections and counters. Returns whether anything changed.
    pub fn set_servers(&self, servers: &[(SocketAddr, u32)]) -> bool {
        let current = self.members.load();
        let same = current.backends.len() == servers.len()
            && current
                .backends
                .iter()
                .zip(servers)
                .all(|(b, &(addr, weight))| b.addr == addr && b.weight == weight);
        if same {
            return false;
        }
        let backends = servers
            .iter()
            .map(|&(addr, weight)| {
                current
                    .backends
                    .iter()
                    .find(|b| b.addr == addr && b.weight == weight)
                    .map_or_else(
                        || Arc::new(Backend::new(&self.name, addr, weight)),
                        Arc::clone,
                    )
            })
            .collect();
        self.members
            .store(Arc::new(Members::new(&self.config, backends)));
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::valid;

    fn pool(servers: &str, previous: Option<&UpstreamPool>) -> UpstreamPool {
        let yaml = format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: {servers}\n");
        let config = valid(&yaml).0.upstreams.remove(0);
        UpstreamPool::with_previous(config, None, previous)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn discovery_changes_keep_backend_state_by_address() {
        let p = pool("[\"127.0.0.1:1\", \"api.test:80\"]", None);
        assert_eq!(p.members().backends.len(), 1, "nothing resolved yet");
        assert!(p.set_servers(&[(addr(1), 1), (addr(2), 1)]));
        assert!(
            !p.set_servers(&[(addr(1), 1), (addr(2), 1)]),
            "same set: no change"
        );
        let second = Arc::clone(&p.members().backends[1]);
        let cfg = p.config.resilience.outlier.clone().unwrap();
        for _ in 0..cfg.consecutive_failures {
            p.report("r", &second, false, "test");
        }
        assert!(second.health.is_ejected(now_ms()));
        assert!(p.set_servers(&[(addr(2), 1), (addr(3), 1)]));
        let members = p.members();
        assert!(Arc::ptr_eq(&members.backends[0], &second), "state kept");
        assert!(p.pick_except(&[]).is_ok_and(|b| b.addr == addr(3)));

        // A rebuilt pool (reload) keeps the resolved addresses until discovery runs again.
        let next = pool("[\"127.0.0.1:1\", \"api.test:80\"]", Some(&p));
        let addrs: Vec<SocketAddr> = next.members().backends.iter().map(|b| b.addr).collect();
        assert_eq!(addrs, [addr(1), addr(2), addr(3)]);
    }

    #[test]
    fn pending_limits_answer_overloaded() {
        let yaml = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:1\"]\n    limits: { max_pending_per_backend: 1 }\n";
        let config = valid(yaml).0.upstreams.remove(0);
        let p = UpstreamPool::new(config, None);
        let b = p.pick().unwrap();
        let held = crate::upstream::limits::Held::pending(Arc::clone(&b.load), None);
        assert!(matches!(p.pick(), Err(UpstreamError::Overloaded(_))));
        drop(held);
        assert!(p.pick().is_ok());
    }
}
