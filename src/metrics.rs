//! Prometheus metrics: one registry per process (owned by `Server`, handed to every snapshot,
//! so counters survive reloads), families named `portico_*`, no global recorder. Data-plane
//! modules call the small recording methods here; the admin listener encodes the registry.

mod handles;
mod labels;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use handles::{BackendMetrics, ListenerMetrics, RouteMetrics};
pub use labels::*;

/// Status classes in label order.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to about 33 s (doubling).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(latency_histogram)
}

/// Every metric Portico exports, registered once.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<RouteLabels>,
    backend_duration: Histograms<BackendLabels>,
    backend_responses: Family<BackendLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    retries: Family<UpstreamLabels, Counter>,
    in_flight: Family<BackendLabels, Gauge>,
    connections: Family<ListenerLabels, Counter>,
    connections_active: Family<ListenerLabels, Gauge>,
    tunnels: Family<TunnelLabels, Counter>,
    tunnels_active: Family<TunnelLabels, Gauge>,
    bytes: Family<BytesLabels, Counter>,
    tls_handshakes: Family<ListenerLabels, Counter>,
    tls_failures: Family<TlsFailureLabels, Counter>,
    backend_health: Family<BackendLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
    generation: Gauge,
    cert_expiry: Family<CertLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

macro_rules! register {
    ($registry:ident, $name:literal, $help:literal, $metric:expr) => {{
        let metric = $metric;
        $registry.register($name, $help, metric.clone());
        metric
    }};
}

impl Metrics {
    /// A fresh registry with every family registered under the `portico_` prefix.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("portico");
        Self {
            requests: register!(r, "requests", "HTTP requests answered, by listener, route and status class", Family::default()),
            request_duration: register!(r, "request_duration_seconds", "Time from request head to the end of the response body, per route", histograms()),
            backend_duration: register!(r, "backend_response_duration_seconds", "Time from sending to a backend until its response head, per backend", histograms()),
            backend_responses: register!(r, "backend_responses", "Response heads received from a backend", Family::default()),
            upstream_errors: register!(r, "upstream_errors", "Failed backend exchanges by kind (connect, connect_timeout, tls, handshake, timeout, reset, protocol, no_backend)", Family::default()),
            retries: register!(r, "upstream_retries", "Requests retried on another attempt, per upstream", Family::default()),
            in_flight: register!(r, "backend_requests_in_flight", "Requests sent to a backend whose response has not ended", Family::default()),
            connections: register!(r, "connections", "Client connections accepted, per listener", Family::default()),
            connections_active: register!(r, "connections_active", "Client connections open now, per listener", Family::default()),
            tunnels: register!(r, "tunnels", "Tunnels opened (WebSocket or Layer 4), per listener and kind", Family::default()),
            tunnels_active: register!(r, "tunnels_active", "Tunnels open now (WebSocket or Layer 4), per listener and kind", Family::default()),
            bytes: register!(r, "bytes", "Payload bytes per listener: in = from clients, out = to clients", Family::default()),
            tls_handshakes: register!(r, "tls_handshakes", "Completed TLS handshakes, per listener", Family::default()),
            tls_failures: register!(r, "tls_handshake_failures", "Failed TLS handshakes, per listener and reason", Family::default()),
            backend_health: register!(r, "backend_up", "1 when the backend is considered healthy, 0 when down", Family::default()),
            reloads: register!(r, "reloads", "Configuration reloads by outcome (ok, error)", Family::default()),
            generation: register!(r, "config_generation", "Generation of the running configuration (1 at start, +1 per applied reload)", Gauge::default()),
            cert_expiry: register!(r, "certificate_expiry_timestamp_seconds", "notAfter of each loaded listener certificate (unix seconds)", Family::default()),
            registry: r,
        }
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// One answered request (written where the access record is).
    pub fn request(&self, labels: &RouteLabels, status: u16, duration: Duration) {
        let class = status_class(status);
        self.requests
            .get_or_create(&RequestLabels::new(labels, class))
            .inc();
        self.request_duration
            .get_or_create(labels)
            .observe(duration.as_secs_f64());
    }

    /// Requests answered for `route` on `listener` with status `class` (e.g. "5xx").
    pub fn request_count(&self, listener: &str, route: &str, class: &'static str) -> u64 {
        let labels = RouteLabels::new(listener, route);
        self.requests
            .get(&RequestLabels::new(&labels, class))
            .map_or(0, |c| c.get())
    }

    /// A backend answered with a response head after `duration`; it counts as up.
    pub fn backend_response(&self, labels: &BackendLabels, duration: Duration) {
        self.backend_duration
            .get_or_create(labels)
            .observe(duration.as_secs_f64());
        self.backend_responses.get_or_create(labels).inc();
        self.observe_backend_outcome(labels, true);
    }

    /// A plain TCP connection to the backend succeeded (Layer 4); it counts as up.
    pub fn backend_connected(&self, labels: &BackendLabels) {
        self.observe_backend_outcome(labels, true);
    }

    /// Responses received from a backend so far.
    pub fn backend_response_count(&self, labels: &BackendLabels) -> u64 {
        self.backend_responses.get(labels).map_or(0, |c| c.get())
    }

    /// A failed exchange with a backend, `kind` from `UpstreamError::kind()`.
    pub fn upstream_error(&self, labels: &BackendLabels, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels::new(labels, kind))
            .inc();
        if is_reachability_failure(kind) {
            self.observe_backend_outcome(labels, false);
        }
    }

    /// Failures of `kind` with this backend so far.
    pub fn upstream_error_count(&self, labels: &BackendLabels, kind: &'static str) -> u64 {
        self.upstream_errors
            .get(&UpstreamErrorLabels::new(labels, kind))
            .map_or(0, |c| c.get())
    }

    /// A request retried on `upstream` (called by the retry policy).
    pub fn retry(&self, upstream: &str) {
        self.retries
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    /// Counts a request in flight to a backend until the guard drops.
    pub fn backend_in_flight(&self, labels: BackendLabels) -> InFlight {
        let gauge = self.in_flight.get_or_create_owned(&labels);
        Active::from_gauge(gauge)
    }

    /// Requests in flight to this backend now.
    pub fn in_flight_count(&self, labels: &BackendLabels) -> i64 {
        self.in_flight.get(labels).map_or(0, |g| g.get())
    }

    /// Client connections open now on `listener`.
    pub fn active_connections(&self, listener: &str) -> i64 {
        self.connections_active
            .get(&ListenerLabels::new(listener))
            .map_or(0, |g| g.get())
    }

    /// A tunnel opened (`kind`: websocket, tcp, tls_passthrough); counted active until dropped.
    pub fn tunnel(&self, listener: &str, kind: &'static str) -> Active {
        let labels = TunnelLabels {
            listener: listener.to_owned(),
            kind,
        };
        self.tunnels.get_or_create(&labels).inc();
        let gauge = self.tunnels_active.get_or_create_owned(&labels);
        Active::from_gauge(gauge)
    }

    /// Tunnels of `kind` open now on `listener`.
    pub fn active_tunnels(&self, listener: &str, kind: &'static str) -> i64 {
        let labels = TunnelLabels {
            listener: listener.to_owned(),
            kind,
        };
        self.tunnels_active.get(&labels).map_or(0, |g| g.get())
    }

    /// Payload bytes moved for clients of `listener`.
    pub fn bytes(&self, listener: &str, bytes_in: u64, bytes_out: u64) {
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            if n > 0 {
                let labels = BytesLabels {
                    listener: listener.to_owned(),
                    direction,
                };
                self.bytes.get_or_create(&labels).inc_by(n);
            }
        }
    }

    /// A failed TLS handshake on `listener`, by reason (completed ones are counted on the
    /// listener's handles, `ListenerMetrics::tls_handshake`).
    pub fn tls_handshake_failed(&self, listener: &str, reason: &'static str) {
        let labels = TlsFailureLabels {
            listener: listener.to_owned(),
            reason,
        };
        self.tls_failures.get_or_create(&labels).inc();
    }

    /// Sets a backend's health (1 up, 0 down). Active health checks call this.
    pub fn set_backend_health(&self, labels: &BackendLabels, up: bool) {
        self.backend_health.get_or_create(labels).set(i64::from(up));
    }

    /// The backend's health as last recorded; `None` before anything was observed.
    pub fn backend_health(&self, labels: &BackendLabels) -> Option<bool> {
        self.backend_health.get(labels).map(|g| g.get() > 0)
    }

    /// Passive health until active checks exist: a response marks the backend up, a failure
    /// to reach it (connect, connect timeout, TLS, HTTP handshake) marks it down.
    fn observe_backend_outcome(&self, labels: &BackendLabels, up: bool) {
        self.set_backend_health(labels, up);
    }

    /// One reload attempt (`ok`: applied or a clean dry run) and the generation now running.
    pub fn reload(&self, ok: bool, generation: u64) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&ReloadLabels { outcome }).inc();
        self.set_generation(generation);
    }

    /// Reload attempts with `outcome` ("ok" or "error").
    pub fn reload_count(&self, outcome: &'static str) -> u64 {
        self.reloads
            .get(&ReloadLabels { outcome })
            .map_or(0, |c| c.get())
    }

    /// The generation of the running configuration.
    pub fn set_generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Replaces the certificate expiry gauges with `certs` (listener, file, notAfter).
    pub fn set_certificates<'a>(&self, certs: impl IntoIterator<Item = (&'a str, String, i64)>) {
        self.cert_expiry.clear();
        for (listener, file, not_after) in certs {
            let labels = CertLabels {
                listener: listener.to_owned(),
                file,
            };
            self.cert_expiry.get_or_create(&labels).set(not_after);
        }
    }
}

/// Failure kinds that say the backend cannot be reached (as opposed to a slow or broken answer).
fn is_reachability_failure(kind: &str) -> bool {
    matches!(kind, "connect" | "connect_timeout" | "tls" | "handshake")
}

/// "1xx" ... "5xx" (anything else counts as "5xx").
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Keeps a gauge incremented while alive (active connections, tunnels, requests in flight).
#[derive(Debug)]
pub struct Active {
    gauge: Gauge,
}

impl Active {
    /// Counts one more on `gauge` until the guard drops.
    pub(crate) fn from_gauge(gauge: Gauge) -> Active {
        gauge.inc();
        Active { gauge }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Keeps a backend's in-flight gauge incremented while alive.
pub type InFlight = Active;

#[cfg(test)]
mod tests;
