//! Choosing a backend for one request: the sticky cookie first (when sealed genuinely and
//! its backend is usable), else the balancer keyed by the request; plus carrying load state
//! from an old pool to a new one by backend identity.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue};

use super::balancer::{cookie, key_hash};
use super::pool::{Backend, Members, UpstreamPool};

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
pub struct Picked {
    pub backend: Arc<Backend>,
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
    /// The backend for `req` among `members` for which `usable` holds (health, ejection,
    /// limits, earlier tries: see `select`): its sticky backend when the cookie is genuine,
    /// unexpired and the backend usable; otherwise the balancer's choice (keyed for
    /// `consistent_hash`), with a fresh cookie when the upstream is sticky. Without a request
    /// (Layer 4), the balancer's plain choice.
    pub(super) fn pick_among(
        &self,
        members: &Members,
        req: Option<&RequestInfo<'_>>,
        usable: impl Fn(usize) -> bool,
    ) -> Option<Picked> {
        let Some(req) = req else {
            let backend = members
                .balancer
                .pick(&usable)
                .and_then(|i| members.backends.get(i))?;
            return Some(Picked {
                backend: Arc::clone(backend),
                set_cookie: None,
            });
        };
        let now = self.sealer.as_ref().map(|_| unix_now()).unwrap_or(0);
        if let Some(sealer) = &self.sealer {
            let pinned = cookie(req.headers, sealer.cookie_name())
                .and_then(|value| sealer.open(value, now))
                .and_then(|id| {
                    members
                        .backends
                        .iter()
                        .enumerate()
                        .find(|(i, b)| b.id == id && usable(*i))
                });
            if let Some((_, backend)) = pinned {
                return Some(Picked {
                    backend: Arc::clone(backend),
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
        let backend = members
            .balancer
            .pick_keyed(key, &usable)
            .and_then(|i| members.backends.get(i))?;
        let set_cookie = self.sealer.as_ref().and_then(|sealer| {
            HeaderValue::from_str(&sealer.set_cookie(backend.id, now, req.secure)).ok()
        });
        Some(Picked {
            backend: Arc::clone(backend),
            set_cookie,
        })
    }
}

/// Backend `addr` of upstream `name` in `previous` (the pool being replaced), whose load,
/// health and ejection state the new pool carries on.
pub fn carried(
    previous: Option<&UpstreamPool>,
    name: &str,
    addr: SocketAddr,
) -> Option<Arc<Backend>> {
    previous.filter(|p| p.name == name).and_then(|p| {
        p.members()
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .cloned()
    })
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
        let old_members = old.members();
        let guard = old_members.backends[1].stats.start();
        let new = UpstreamPool::with_previous(
            upstream("api", "[\"127.0.0.1:2\", \"127.0.0.1:3\"]", ""),
            None,
            Some(&old),
        );
        let new_members = new.members();
        assert!(Arc::ptr_eq(
            &new_members.backends[0].stats,
            &old_members.backends[1].stats
        ));
        assert!(Arc::ptr_eq(
            &new_members.backends[0].health,
            &old_members.backends[1].health
        ));
        assert!(!Arc::ptr_eq(
            &new_members.backends[1].health,
            &old_members.backends[0].health
        ));
        assert_eq!(new_members.backends[0].stats.inflight(), 1);
        assert_eq!(new_members.backends[1].stats.inflight(), 0);
        // The balancer reads the same state the backends carry.
        assert!(Arc::ptr_eq(
            new_members.balancer.stats(0).unwrap(),
            &new_members.backends[0].stats
        ));
        drop(guard);
        assert_eq!(new_members.backends[0].stats.inflight(), 0);
        // Another upstream with the same address starts fresh.
        let other =
            UpstreamPool::with_previous(upstream("web", "[\"127.0.0.1:2\"]", ""), None, Some(&old));
        assert!(!Arc::ptr_eq(
            &other.members().backends[0].stats,
            &old_members.backends[1].stats
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
        let members = pool.members();
        let all = |_: usize| true;
        let first = pool.pick_among(&members, Some(&info(&empty)), all).unwrap();
        let line = first.set_cookie.unwrap();
        let pair = line.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        for _ in 0..5 {
            let again = pool
                .pick_among(&members, Some(&info(&headers)), all)
                .unwrap();
            assert_eq!(again.backend.addr, first.backend.addr);
            assert!(again.set_cookie.is_none());
        }
        // The pinned backend becomes unusable: another one, and a cookie pinning it.
        let pinned = members
            .backends
            .iter()
            .position(|b| b.addr == first.backend.addr)
            .unwrap();
        let moved = pool
            .pick_among(&members, Some(&info(&headers)), |i| i != pinned)
            .unwrap();
        assert_ne!(moved.backend.addr, first.backend.addr);
        let line = moved.set_cookie.unwrap();
        let value = line.to_str().unwrap().split(';').next().unwrap();
        let value = value.strip_prefix("s=").unwrap();
        let sealer = pool.sealer.as_ref().unwrap();
        assert_eq!(sealer.open(value, unix_now()), Some(moved.backend.id));
    }
}
