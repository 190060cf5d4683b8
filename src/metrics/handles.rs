//! Metric handles resolved once per snapshot (per listener, route and backend), so the request
//! path increments atomics instead of looking series up by freshly allocated labels. Each
//! series is created on first use, so nothing is exported for what never happened.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::labels::{BackendLabels, BytesLabels, ListenerLabels, RequestLabels, RouteLabels};
use super::{status_class, Active, InFlight, Metrics, CLASSES};

/// One series of a family, looked up on first use and then held.
struct Lazy<L, M, C = fn() -> M> {
    family: Family<L, M, C>,
    labels: L,
    metric: OnceLock<M>,
}

impl<L, M, C> Lazy<L, M, C>
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: MetricConstructor<M>,
{
    fn new(family: &Family<L, M, C>, labels: L) -> Self
    where
        C: Clone,
    {
        Self {
            family: family.clone(),
            labels,
            metric: OnceLock::new(),
        }
    }

    fn get(&self) -> &M {
        self.metric
            .get_or_init(|| self.family.get_or_create_owned(&self.labels))
    }
}

impl<L: Clone, M: Clone, C: Clone> Clone for Lazy<L, M, C> {
    fn clone(&self) -> Self {
        Self {
            family: self.family.clone(),
            labels: self.labels.clone(),
            metric: self.metric.clone(),
        }
    }
}

impl<L, M, C> std::fmt::Debug for Lazy<L, M, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lazy")
    }
}

/// Requests of one route (or of no route) on one listener.
#[derive(Debug)]
pub struct RouteMetrics {
    classes: [Lazy<RequestLabels, Counter>; 5],
    duration: Lazy<RouteLabels, Histogram>,
}

impl RouteMetrics {
    /// One answered request.
    pub fn record(&self, status: u16, duration: Duration) {
        let class = status_class(status);
        if let Some(i) = CLASSES.iter().position(|c| *c == class) {
            if let Some(c) = self.classes.get(i) {
                c.get().inc();
            }
        }
        self.duration.get().observe(duration.as_secs_f64());
    }
}

/// Connections, TLS handshakes and payload bytes of one listener.
#[derive(Debug)]
pub struct ListenerMetrics {
    bytes_in: Lazy<BytesLabels, Counter>,
    bytes_out: Lazy<BytesLabels, Counter>,
    connections: Lazy<ListenerLabels, Counter>,
    connections_active: Lazy<ListenerLabels, Gauge>,
    tls_handshakes: Lazy<ListenerLabels, Counter>,
}

impl ListenerMetrics {
    /// A client connection accepted; the guard keeps it counted as active.
    pub fn connection(&self) -> Active {
        self.connections.get().inc();
        Active::from_gauge(self.connections_active.get().clone())
    }

    /// A completed TLS handshake (failures are counted by reason: `Metrics::tls_handshake_failed`).
    pub fn tls_handshake(&self) {
        self.tls_handshakes.get().inc();
    }

    pub fn bytes(&self, bytes_in: u64, bytes_out: u64) {
        if bytes_in > 0 {
            self.bytes_in.get().inc_by(bytes_in);
        }
        if bytes_out > 0 {
            self.bytes_out.get().inc_by(bytes_out);
        }
    }
}

/// One backend of one upstream.
#[derive(Debug, Clone)]
pub struct BackendMetrics {
    labels: BackendLabels,
    duration: Lazy<BackendLabels, Histogram>,
    responses: Lazy<BackendLabels, Counter>,
    in_flight: Lazy<BackendLabels, Gauge>,
    health: Lazy<BackendLabels, Gauge>,
}

impl BackendMetrics {
    pub fn labels(&self) -> &BackendLabels {
        &self.labels
    }

    /// A response head after `duration`; passive health: up.
    pub fn response(&self, duration: Duration) {
        self.duration.get().observe(duration.as_secs_f64());
        self.responses.get().inc();
        self.health.get().set(1);
    }

    /// A failed exchange (`UpstreamError::kind()`); rare, so looked up by label.
    pub fn error(&self, metrics: &Metrics, kind: &'static str) {
        metrics.upstream_error(&self.labels, kind);
    }

    /// Counts a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        let gauge = self.in_flight.get().clone();
        InFlight::from_gauge(gauge)
    }
}

impl Metrics {
    /// Handles for `route` ("-" for requests no route matched) on `listener`.
    pub fn route_metrics(&self, listener: &str, route: &str) -> RouteMetrics {
        let labels = RouteLabels::new(listener, route);
        let class = |c: &'static str| Lazy::new(&self.requests, RequestLabels::new(&labels, c));
        RouteMetrics {
            classes: CLASSES.map(class),
            duration: Lazy::new(&self.request_duration, labels.clone()),
        }
    }

    /// Handles for `listener`.
    pub fn listener_metrics(&self, listener: &str) -> ListenerMetrics {
        let bytes = |direction| BytesLabels {
            listener: listener.to_owned(),
            direction,
        };
        let labels = ListenerLabels::new(listener);
        ListenerMetrics {
            bytes_in: Lazy::new(&self.bytes, bytes("in")),
            bytes_out: Lazy::new(&self.bytes, bytes("out")),
            connections: Lazy::new(&self.connections, labels.clone()),
            connections_active: Lazy::new(&self.connections_active, labels.clone()),
            tls_handshakes: Lazy::new(&self.tls_handshakes, labels),
        }
    }

    /// Handles for one backend.
    pub fn backend_metrics(&self, labels: BackendLabels) -> BackendMetrics {
        BackendMetrics {
            duration: Lazy::new(&self.backend_duration, labels.clone()),
            responses: Lazy::new(&self.backend_responses, labels.clone()),
            in_flight: Lazy::new(&self.in_flight, labels.clone()),
            health: Lazy::new(&self.backend_health, labels.clone()),
            labels,
        }
    }
}
