//! The running configuration as one immutable `Snapshot` behind one `ArcSwap`: router,
//! upstream pools and listener TLS change together, and each request reads exactly one.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use crate::config::model::{Config, Listener};
use crate::error::Error;
use crate::metrics::Metrics;
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
    pub tunnels: AtomicUsize,
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
    pub route_tunnels: Vec<AtomicUsize>,
    /// The process's metrics: owned by `Server` and handed to every snapshot it builds, so
    /// counters survive reloads.
    pub metrics: Arc<Metrics>,
}

impl Snapshot {
    /// Builds every runtime part of `config`; returns warnings (e.g. certificates near expiry).
    pub fn build(
        config: Config,
        generation: u64,
        metrics: &Arc<Metrics>,
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
            listeners.push(Arc::new(ListenerState {
                config: l.clone(),
                tls,
                tunnels: AtomicUsize::new(0),
            }));
        }
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for u in &config.upstreams {
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
            upstreams.push(Arc::new(UpstreamPool::new(u.clone(), client)));
        }
        let router = Router::new(&config.routes);
        let route_tunnels = config.routes.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok((
            Snapshot {
                generation,
                config,
                router,
                upstreams,
                listeners,
                route_tunnels,
                metrics: Arc::clone(metrics),
            },
            warnings,
        ))
    }

    /// The listener state by its index in the config.
    pub fn listener(&self, index: usize) -> Option<&Arc<ListenerState>> {
        self.listeners.get(index)
    }
}
