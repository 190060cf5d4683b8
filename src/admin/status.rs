//! `/status`: the running snapshot as JSON (listeners, routes, upstreams and their backends
//! with health and load), with the counters the dashboard turns into rates.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

use crate::config::model::Action;
use crate::metrics::{BackendLabels, Metrics};
use crate::state::Snapshot;
use crate::upstream::UpstreamPool;

/// Status classes, in the order the JSON lists them.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// `UpstreamError::kind()` values (and `reset`), in the order the JSON lists them.
const ERROR_KINDS: [&str; 9] = [
    "connect",
    "connect_timeout",
    "tls",
    "handshake",
    "timeout",
    "reset",
    "protocol",
    "no_backend",
    "overloaded",
];

/// What the status page says beyond the snapshot.
pub struct Facts<'a> {
    pub ready: bool,
    pub draining: bool,
    /// Listener name -> the address it is bound to (port 0 resolved).
    pub bound: &'a [(String, SocketAddr)],
    pub last_reload: Option<Value>,
}

/// The whole `/status` document.
pub fn status(snapshot: &Snapshot, facts: &Facts<'_>) -> Value {
    let metrics = &snapshot.metrics;
    json!({
        "generation": snapshot.generation,
        "ready": facts.ready,
        "draining": facts.draining,
        "last_reload": facts.last_reload,
        "listeners": listeners(snapshot, facts),
        "routes": routes(snapshot),
        "upstreams": snapshot
            .upstreams
            .iter()
            .map(|pool| upstream(pool, metrics))
            .collect::<Vec<_>>(),
    })
}

fn listeners(snapshot: &Snapshot, facts: &Facts<'_>) -> Vec<Value> {
    let metrics = &snapshot.metrics;
    snapshot
        .listeners
        .iter()
        .map(|l| {
            let c = &l.config;
            let bound = facts
                .bound
                .iter()
                .find(|(n, _)| *n == c.name)
                .map(|(_, a)| a.to_string());
            let certificates: Vec<Value> = l
                .tls
                .iter()
                .flat_map(|t| t.not_after.iter())
                .map(|(file, not_after)| json!({ "file": file.display().to_string(), "not_after": not_after }))
                .collect();
            let tunnels: i64 = ["websocket", "tcp", "tls_passthrough"]
                .iter()
                .map(|k| metrics.active_tunnels(&c.name, k))
                .sum();
            json!({
                "name": c.name,
                "bind": c.bind.to_string(),
                "address": bound,
                "mode": c.mode.name(),
                "tls": c.tls.is_some(),
                "connections_active": metrics.active_connections(&c.name),
                "tunnels_active": tunnels,
                "certificates": certificates,
            })
        })
        .collect()
}

fn routes(snapshot: &Snapshot) -> Vec<Value> {
    let cfg = &snapshot.config;
    let metrics = &snapshot.metrics;
    cfg.routes
        .iter()
        .map(|r| {
            let (action, upstream) = match &r.action {
                Action::Proxy { upstream } => (
                    "proxy",
                    cfg.upstreams.get(*upstream).map(|u| u.name.clone()),
                ),
                Action::Respond { .. } => ("respond", None),
                Action::Redirect { .. } => ("redirect", None),
            };
            let mut requests = Map::new();
            for class in CLASSES {
                let n: u64 = cfg
                    .listeners
                    .iter()
                    .map(|l| metrics.request_count(&l.name, &r.name, class))
                    .sum();
                requests.insert(class.to_owned(), n.into());
            }
            json!({
                "name": r.name,
                "listeners": r.listeners,
                "action": action,
                "upstream": upstream,
                "websocket": r.websocket.enabled,
                "requests": requests,
            })
        })
        .collect()
}

fn upstream(pool: &UpstreamPool, metrics: &Metrics) -> Value {
    let members = pool.members();
    let now = crate::upstream::outlier::now_ms();
    let active = pool.config.resilience.health_check.is_some();
    let backends: Vec<Value> = members
        .backends
        .iter()
        .map(|b| {
            let labels = BackendLabels::new(&pool.name, b.addr);
            let health = match metrics.backend_health(&labels) {
                _ if active => {
                    if b.health.is_up() {
                        "up"
                    } else {
                        "down"
                    }
                }
                Some(true) => "up",
                Some(false) => "down",
                None => "unknown",
            };
            let mut errors = Map::new();
            for kind in ERROR_KINDS {
                errors.insert(
                    kind.to_owned(),
                    metrics.upstream_error_count(&labels, kind).into(),
                );
            }
            json!({
                "address": b.addr.to_string(),
                "weight": b.weight,
                "health": health,
                // With `health_check`: the checker's verdict; otherwise the last exchange's
                // outcome (a response: up; a connect, TLS or handshake failure: down).
                "health_source": if active { "active" } else { "passive" },
                "in_flight": metrics.in_flight_count(&labels),
                "responses": metrics.backend_response_count(&labels),
                "errors": errors,
                // The balancers' peak-EWMA latency (null before the first response).
                "ewma_ms": (b.stats.observed() > 0).then(|| {
                    let decay = pool.config.balancing.decay;
                    b.stats.cost_at(crate::upstream::balancer::stats::now_nanos(), decay) / 1e6
                }),
                "balancer_in_flight": b.stats.inflight(),
                "ejected": b.health.is_ejected(now),
            })
        })
        .collect();
    json!({
        "name": pool.name,
        "protocol": format!("{:?}", pool.config.protocol).to_lowercase(),
        "balancer": format!("{:?}", pool.config.balancer),
        "tls": pool.is_tls(),
        "backends": backends,
    })
}
