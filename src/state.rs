//! The running configuration as one immutable `Snapshot` behind one `ArcSwap`: router,
//! upstream pools and listener TLS change together, and each request reads exactly one.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::model::{Config, Listener};
use crate::error::Error;
use crate::metrics::{BackendLabels, BackendMetrics, ListenerMetrics, Metrics, RouteMetrics};
use crate::router::Router;
use crate::tls::{self, SniIndex};
use crate::upstream::UpstreamPool;

/// Shared handle to the current snapshot.
pub type SharedState = Arc<ArcSwap<Snapshot>>;

/// TLS material of one listener.
pub struct ListenerTlsState {
    pub acceptor: TlsAcceptor,
    pub sni: SniIndex,
    /// Each certificate file and its notAfter (unix seconds), for the expiry metric.
    pub not_after: Vec<(std::path::PathBuf, i64)>,
}

/// A listener's settings as of this snapshot.
pub struct ListenerState {
    pub config: Listener,
    pub tls: Option<ListenerTlsState>,
    /// WebSocket tunnels open on this listener (limit: `limits.max_tunnels`).
    /// Shared with the same listener (by name) in later snapshots, so a reload does not reset
    /// the count while tunnels opened before it are still open.
    pub tunnels: Arc<AtomicUsize>,
    /// Metric handles: bytes of this listener.
    pub metrics: ListenerMetrics,
    /// Request metrics per route: index 0 for requests no route matched, `i + 1` for
    /// `config.routes[i]`; `None` for routes that do not apply to this listener.
    pub route_metrics: Vec<Option<RouteMetrics>>,
}

impl ListenerState {
    /// The request metrics of route `route` (`None`: no route matched) on this listener.
    pub fn route_metrics(&self, route: Option<usize>) -> Option<&RouteMetrics> {
        let slot = route.map_or(0, |r| r + 1);
        self.route_metrics.get(slot).and_then(Option::as_ref)
    }
}

/// Everything the data plane reads, built once per configuration.
pub struct Snapshot {
    pub generation: u64,
    pub config: Config,
    pub router: Router,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    /// Same order as `config.listeners`.
    pub listeners: Vec<Arc<ListenerState>>,
    /// WebSocket tunnels open per route, same order as `config.routes`.
    /// Carried by route name across snapshots, like `ListenerState::tunnels`.
    pub route_tunnels: Vec<Arc<AtomicUsize>>,
    /// Per route (same order, carried by route name): set to true once a reload removed the
    /// route, so its open tunnels drain.
    pub route_retired: Vec<Arc<watch::Sender<bool>>>,
    /// The process's metrics: owned by `Server` and handed to every snapshot it builds, so
    /// counters survive reloads.
    pub metrics: Arc<Metrics>,
    /// Metric handles per backend, same order as `upstreams` and their `config.servers`.
    pub backend_metrics: Vec<Vec<BackendMetrics>>,
}

impl Snapshot {
    /// Builds every runtime part of `config`; returns warnings (e.g. certificates near expiry).
    pub fn build(
        config: Config,
        generation: u64,
        metrics: &Arc<Metrics>,
    ) -> Result<(Snapshot, Vec<String>), Error> {
        Snapshot::build_after(config, generation, metrics, None)
    }

    /// Like `build`, carrying backends' load state (in-flight counts, latency EWMA) over from
    /// `previous`, the snapshot being replaced, by upstream name and backend address.
    pub fn build_after(
        config: Config,
        generation: u64,
        metrics: &Arc<Metrics>,
        previous: Option<&Snapshot>,
    ) -> Result<(Snapshot, Vec<String>), Error> {
        let mut warnings = Vec::new();
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            let tls = match &l.tls {
                Some(t) => {
                    let built =
                        tls::server_tls_in(t, &l.name, &config.base_dir).map_err(|source| {
                            Error::Tls {
                                listener: l.name.clone(),
                                source,
                            }
                        })?;
                    warnings.extend(built.warnings);
                    Some(ListenerTlsState {
                        acceptor: TlsAcceptor::from(built.config),
                        sni: built.sni,
                        not_after: built.not_after,
                    })
                }
                None => None,
            };
            let mut route_metrics = vec![Some(metrics.route_metrics(&l.name, "-"))];
            route_metrics.extend(config.routes.iter().map(|r| {
                (r.listeners.is_empty() || r.listeners.contains(&l.name))
                    .then(|| metrics.route_metrics(&l.name, &r.name))
            }));
            listeners.push(Arc::new(ListenerState {
                config: l.clone(),
                tls,
                tunnels: previous
                    .and_then(|p| p.listener_named(&l.name))
                    .map_or_else(Arc::default, |old| Arc::clone(&old.tunnels)),
                metrics: metrics.listener_metrics(&l.name),
                route_metrics,
            }));
        }
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
            // Read before the client config is built: a file changing in between then only
            // makes the next reload rebuild once more.
            let tls_files = u
                .tls
                .as_ref()
                .map_or(0, |t| crate::config::fingerprint_files(t.files()));
            let before = previous.and_then(|p| p.upstreams.iter().find(|o| o.name == u.name));
            if let Some(same) = before.filter(|b| reusable_pool(b, u, tls_files)) {
                // Unchanged: the same pool, with its warm connections and background tasks.
                upstreams.push(Arc::clone(same));
                continue;
            }
            let client = match &u.tls {
                Some(t) => {
                    let h2 = u.protocol == crate::config::model::UpstreamProtocol::H2;
                    Some(
                        tls::client_config(t, h2).map_err(|source| Error::UpstreamTls {
                            upstream: u.name.clone(),
                            source,
                        })?,
                    )
                }
                None => None,
            };
            let mut pool = UpstreamPool::with_previous(u.clone(), client, before.map(|b| &**b));
            pool.tls_files = tls_files;
            let pool = Arc::new(pool);
            crate::upstream::health::start_background(&pool, metrics);
            upstreams.push(pool);
        }
        let backend_metrics = config
            .upstreams
            .iter()
            .map(|u| {
                u.servers
                    .iter()
                    .map(|s| metrics.backend_metrics(BackendLabels::new(&u.name, s.address)))
                    .collect()
            })
            .collect();
        let router = Router::new(&config.routes);
        let carried = |name: &str| previous.and_then(|p| p.route_index(name).map(|i| (p, i)));
        let route_tunnels = config
            .routes
            .iter()
            .map(|r| {
                carried(&r.name).map_or_else(Arc::default, |(p, i)| Arc::clone(&p.route_tunnels[i]))
            })
            .collect();
        let route_retired = config
            .routes
            .iter()
            .map(|r| {
                carried(&r.name).map_or_else(
                    || Arc::new(watch::Sender::new(false)),
                    |(p, i)| Arc::clone(&p.route_retired[i]),
                )
            })
            .collect();
        Ok((
            Snapshot {
                generation,
                config,
                router,
                upstreams,
                listeners,
                route_tunnels,
                route_retired,
                metrics: Arc::clone(metrics),
                backend_metrics,
            },
            warnings,
        ))
    }

    /// The metric handles of backend `addr` of upstream `upstream` (made on the spot for a
    /// backend the config does not list).
    pub fn backend_metrics(
        &self,
        upstream: usize,
        addr: std::net::SocketAddr,
    ) -> std::borrow::Cow<'_, BackendMetrics> {
        let servers = self.config.upstreams.get(upstream).map(|u| &u.servers);
        let index = servers.and_then(|s| s.iter().position(|s| s.address == addr));
        match index.and_then(|i| self.backend_metrics.get(upstream)?.get(i)) {
            Some(m) => std::borrow::Cow::Borrowed(m),
            None => {
                let name = self.config.upstreams.get(upstream).map_or("-", |u| &u.name);
                std::borrow::Cow::Owned(
                    self.metrics.backend_metrics(BackendLabels::new(name, addr)),
                )
            }
        }
    }

    /// The listener state by its index in the config.
    pub fn listener(&self, index: usize) -> Option<&Arc<ListenerState>> {
        self.listeners.get(index)
    }

    /// The listener state by name (stable across reloads, unlike the index).
    pub fn listener_named(&self, name: &str) -> Option<&Arc<ListenerState>> {
        self.listeners.iter().find(|l| l.config.name == name)
    }

    /// The index of route `name`.
    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.config.routes.iter().position(|r| r.name == name)
    }

    /// Tells the tunnels of every route of `previous` that this snapshot no longer has to
    /// drain (called once this snapshot is live).
    pub fn retire_removed_routes(&self, previous: &Snapshot) {
        for (route, retired) in previous.config.routes.iter().zip(&previous.route_retired) {
            if self.route_index(&route.name).is_none() {
                retired.send_replace(true);
            }
        }
    }
}

/// Whether a rebuilt upstream may keep the running pool (and its warm connections): its
/// settings are the same (the `Debug` form covers every field, a sticky secret included) and
/// so are the contents of its TLS files, which may have changed on disk under the same names.
fn reusable_pool(old: &UpstreamPool, new: &crate::config::model::Upstream, tls_files: u64) -> bool {
    old.tls_files == tls_files && format!("{:?}", old.config) == format!("{new:?}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::valid;

    fn config(servers: &str) -> Config {
        valid(&format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: {servers}\n")).0
    }

    #[test]
    fn rebuilding_after_a_snapshot_keeps_backend_load_state() {
        let metrics = Arc::new(Metrics::new());
        let (old, _) =
            Snapshot::build(config("[\"127.0.0.1:1\", \"127.0.0.1:2\"]"), 1, &metrics).unwrap();
        let _busy = old.upstreams[0].members().backends[1].stats.start();
        let (new, _) =
            Snapshot::build_after(config("[\"127.0.0.1:2\"]"), 2, &metrics, Some(&old)).unwrap();
        assert_eq!(new.upstreams[0].members().backends[0].stats.inflight(), 1);
        let (fresh, _) = Snapshot::build(config("[\"127.0.0.1:2\"]"), 3, &metrics).unwrap();
        assert_eq!(fresh.upstreams[0].members().backends[0].stats.inflight(), 0);
    }

    fn upstreams(block: &str) -> Config {
        valid(&format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:1\"]\n{block}")).0
    }

    #[test]
    fn a_reload_keeps_tls_and_sticky_pools_until_their_files_or_settings_change() {
        let metrics = Arc::new(Metrics::new());
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::tls::test_support::write_ca(dir.path(), &crate::tls::test_support::ca("a"));
        let tls = format!(
            "    tls: {{ ca: \"{}\", server_name: backend.test }}\n    sticky: {{ cookie: s, secret: 0123456789abcdef }}\n",
            ca.display()
        );
        let (old, _) = Snapshot::build(upstreams(&tls), 1, &metrics).unwrap();
        let (same, _) = Snapshot::build_after(upstreams(&tls), 2, &metrics, Some(&old)).unwrap();
        assert!(
            Arc::ptr_eq(&old.upstreams[0], &same.upstreams[0]),
            "unchanged: kept"
        );

        // The same file name with another CA in it: rebuilt.
        crate::tls::test_support::write_ca(dir.path(), &crate::tls::test_support::ca("b"));
        let (rotated, _) =
            Snapshot::build_after(upstreams(&tls), 3, &metrics, Some(&same)).unwrap();
        assert!(
            !Arc::ptr_eq(&same.upstreams[0], &rotated.upstreams[0]),
            "new CA: rebuilt"
        );

        // Another sticky secret: rebuilt.
        let resealed = tls.replace("0123456789abcdef", "fedcba9876543210");
        let (next, _) =
            Snapshot::build_after(upstreams(&resealed), 4, &metrics, Some(&rotated)).unwrap();
        assert!(
            !Arc::ptr_eq(&rotated.upstreams[0], &next.upstreams[0]),
            "new secret: rebuilt"
        );
        let (again, _) =
            Snapshot::build_after(upstreams(&resealed), 5, &metrics, Some(&next)).unwrap();
        assert!(
            Arc::ptr_eq(&next.upstreams[0], &again.upstreams[0]),
            "unchanged: kept"
        );
    }
}
