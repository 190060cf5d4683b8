//! Choosing a backend for one request: the sticky cookie first (when sealed genuinely and
//! its backend is usable), else the balancer keyed by the request; plus carrying load state
//! from an old pool to a new one by backend identity.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue};

use super::balancer::{cookie, key_hash, BackendStats};
use super::pool::{Backend, UpstreamPool};

/// What the balancer may look at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub headers: &'a HeaderMap,
    /// The normalised request path.
    pub path: &'a str,
    pub client: IpAddr,
    /// The client came over TLS (the sticky cookie gets `Secure`).
    pub secure: bool,
}

/// A backend chosen for a request.
pub struct Picked<'p> {
    pub backend: &'p Arc<Backend>,
    /// `Set-Cookie` to add to the response: the request carried no valid sticky cookie for
    /// this backend.
    pub set_cookie: Option<HeaderValue>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl UpstreamPool {
    /// Whether backend `i` may receive traffic. Health checks and outlier ejection narrow
    /// this; every policy and the sticky cookie honour it.
    pub fn usable(&self, i: usize) -> bool {
        i < self.backends.len()
    }

    /// The backend for `req`: its sticky backend when the cookie is genuine, unexpired and
    /// the backend usable; otherwise the balancer's choice (keyed for `consistent_hash`),
    /// with a fresh cookie when the upstream is sticky.
    pub fn pick_for(&self, req: &RequestInfo<'_>) -> Option<Picked<'_>> {
        self.pick_among(req, |i| self.usable(i))
    }

    /// `pick_for` with an explicit filter.
    fn pick_among(
        &self,
        req: &RequestInfo<'_>,
        usable: impl Fn(usize) -> bool,
    ) -> Option<Picked<'_>> {
        let now = self.sealer.as_ref().map(|_| unix_now()).unwrap_or(0);
        if let Some(sealer) = &self.sealer {
            let pinned = cookie(req.headers, sealer.cookie_name())
                .and_then(|value| sealer.open(value, now))
                .and_then(|id| {
                    self.backends
                        .iter()
                        .enumerate()
                        .find(|(i, b)| b.id == id && usable(*i))
                });
            if let Some((_, backend)) = pinned {
                return Some(Picked {
                    backend,
                    set_cookie: None,
                });
            }
        }
        let key = self
            .config
            .balancing
            .hash_key
            .as_ref()
            .and_then(|k| key_hash(k, req.headers, req.path, req.client));
        let backend = self
            .balancer
            .pick_keyed(key, &usable)
            .and_then(|i| self.backends.get(i))?;
        let set_cookie = self.sealer.as_ref().and_then(|sealer| {
            HeaderValue::from_str(&sealer.set_cookie(backend.id, now, req.secure)).ok()
        });
        Some(Picked {
            backend,
            set_cookie,
        })
    }
}

/// The load state for backend `addr` of upstream `name`: the one `previous` kept for the same
/// identity, or a fresh one.
pub fn carry_stats(
    previous: Option<&UpstreamPool>,
    name: &str,
    addr: SocketAddr,
) -> Arc<BackendStats> {
    previous
        .filter(|p| p.name == name)
        .and_then(|p| p.backends.iter().find(|b| b.addr == addr))
        .map_or_else(BackendStats::new, |b| Arc::clone(&b.stats))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::valid;

    fn upstream(name: &str, servers: &str, extra: &str) -> crate::config::model::Upstream {
        let yaml = format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: {name}\nupstreams:\n  {name}:\n    servers: {servers}\n{extra}");
        valid(&yaml).0.upstreams.remove(0)
    }

    fn info(headers: &HeaderMap) -> RequestInfo<'_> {
        RequestInfo {
            headers,
            path: "/",
            client: [127, 0, 0, 1].into(),
            secure: false,
        }
    }

    #[test]
    fn stats_carry_over_by_identity() {
        let old = UpstreamPool::new(
            upstream("api", "[\"127.0.0.1:1\", \"127.0.0.1:2\"]", ""),
            None,
        );
        let guard = old.backends[1].stats.start();
        let new = UpstreamPool::with_previous(
            upstream("api", "[\"127.0.0.1:2\", \"127.0.0.1:3\"]", ""),
            None,
            Some(&old),
        );
        assert!(Arc::ptr_eq(&new.backends[0].stats, &old.backends[1].stats));
        assert_eq!(new.backends[0].stats.inflight(), 1);
        assert_eq!(new.backends[1].stats.inflight(), 0);
        // The balancer reads the same state the backends carry.
        assert!(Arc::ptr_eq(
            new.balancer.stats(0).unwrap(),
            &new.backends[0].stats
        ));
        drop(guard);
        assert_eq!(new.backends[0].stats.inflight(), 0);
        // Another upstream with the same address starts fresh.
        let other =
            UpstreamPool::with_previous(upstream("web", "[\"127.0.0.1:2\"]", ""), None, Some(&old));
        assert!(!Arc::ptr_eq(
            &other.backends[0].stats,
            &old.backends[1].stats
        ));
    }

    #[test]
    fn sticky_cookie_pins_to_a_usable_backend_only() {
        let pool = UpstreamPool::new(
            upstream(
                "api",
                "[\"127.0.0.1:1\", \"127.0.0.1:2\", \"127.0.0.1:3\"]",
                "    balancer: round_robin\n    sticky: { cookie: s, secret: 0123456789abcdef }\n",
            ),
            None,
        );
        let empty = HeaderMap::new();
        let first = pool.pick_for(&info(&empty)).unwrap();
        let line = first.set_cookie.unwrap();
        let pair = line.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        for _ in 0..5 {
            let again = pool.pick_for(&info(&headers)).unwrap();
            assert_eq!(again.backend.addr, first.backend.addr);
            assert!(again.set_cookie.is_none());
        }
        // The pinned backend becomes unusable: another one, and a cookie pinning it.
        let pinned = pool
            .backends
            .iter()
            .position(|b| b.addr == first.backend.addr)
            .unwrap();
        let moved = pool.pick_among(&info(&headers), |i| i != pinned).unwrap();
        assert_ne!(moved.backend.addr, first.backend.addr);
        let line = moved.set_cookie.unwrap();
        let value = line.to_str().unwrap().split(';').next().unwrap();
        let value = value.strip_prefix("s=").unwrap();
        let sealer = pool.sealer.as_ref().unwrap();
        assert_eq!(sealer.open(value, unix_now()), Some(moved.backend.id));
    }
}
