//! Validated settings for keeping an upstream healthy: active health checks, outlier
//! detection, retries, connection/pending limits and DNS discovery. Re-exported by `model`.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

/// A server given as `host:port`: resolved by DNS and re-resolved on an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServer {
    pub host: String,
    pub port: u16,
    /// Default: 1 (every resolved address gets it).
    pub weight: u32,
}

/// How host-name servers are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// A DNS server queried directly over UDP (A records); `None` = the system resolver.
    pub resolver: Option<SocketAddr>,
    /// Default: 30s.
    pub interval: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            resolver: None,
            interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    Http,
    Tcp,
}

/// Active health checking of every backend of an upstream.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    /// Default: `/`.
    pub path: String,
    /// Host header; `None` = the backend's address.
    pub host: Option<String>,
    /// Expected statuses; empty = any 2xx or 3xx.
    pub statuses: Vec<u16>,
    /// Default: 5s.
    pub interval: Duration,
    /// Default: 2s.
    pub timeout: Duration,
    /// Successes in a row that make an unhealthy backend healthy (default: 2).
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy backend unhealthy (default: 3).
    pub unhealthy_threshold: u32,
    /// Traffic ramp after recovery; zero = none (default: 5s).
    pub slow_start: Duration,
}

/// Passive health: ejection after consecutive failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Connect failures or 5xx answers in a row that eject a backend (default: 5).
    pub consecutive_failures: u32,
    /// First ejection's length; the n-th lasts n times as long (default: 10s).
    pub base_ejection: Duration,
    /// Cap on one ejection (default: 300s).
    pub max_ejection: Duration,
    /// Never more than this share of the backends ejected at once (default: 50).
    pub max_ejected_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// When and how often a failed request is tried again on another backend.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Extra tries after the first (default: 2; 0 disables retries).
    pub attempts: u32,
    /// Backend answers that are retried (default: 502, 503).
    pub statuses: Vec<u16>,
    /// Methods that may be retried after they were sent (default: the idempotent ones).
    pub methods: Vec<Method>,
    /// Bound on each try until the response head; `None` = `timeouts.response`.
    pub per_try_timeout: Option<Duration>,
    /// Bound on all tries together; `None` = no bound beyond the tries'.
    pub timeout: Option<Duration>,
    /// Retries allowed as a percentage of recent requests (default: 20).
    pub budget_percent: u32,
    /// Retries always allowed per second, whatever the traffic (default: 3).
    pub budget_min_per_second: u32,
    /// Largest request body kept for a replay (default: 64 KiB); bigger or unsized bodies
    /// are streamed and only retried when they were never sent.
    pub replay_buffer: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            statuses: vec![502, 503],
            methods: vec![
                Method::GET,
                Method::HEAD,
                Method::OPTIONS,
                Method::TRACE,
                Method::PUT,
                Method::DELETE,
            ],
            per_try_timeout: None,
            timeout: None,
            budget_percent: 20,
            budget_min_per_second: 3,
            replay_buffer: 64 * 1024,
        }
    }
}

/// Circuit breaking: past these, requests get a fast 503 instead of queueing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Open connections to the whole upstream; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// Requests waiting for a response head from the whole upstream.
    pub max_pending: Option<usize>,
    pub max_connections_per_backend: Option<usize>,
    pub max_pending_per_backend: Option<usize>,
}

/// Everything resilience-related of one upstream.
#[derive(Debug, Clone, Default)]
pub struct Resilience {
    pub dns_servers: Vec<DnsServer>,
    pub discovery: Discovery,
    pub health_check: Option<HealthCheck>,
    /// `None` = disabled.
    pub outlier: Option<OutlierDetection>,
    pub retries: RetryPolicy,
    pub limits: UpstreamLimits,
}
