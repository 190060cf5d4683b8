//! The validated, immutable configuration: what the rest of Portico reads.
//! Built only by `config::validate`; every default is already applied, every reference resolved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use ipnet::IpNet;
use regex::Regex;

pub use super::balancing::{BalancerKind, Balancing, HashKey, Sticky};
pub use super::resilience::*;
pub use super::via::Via;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages and relative paths).
    pub source: PathBuf,
    /// The directory relative paths were resolved against; generated development
    /// certificates go under `certs/` in it.
    pub base_dir: PathBuf,
    pub listeners: Vec<Listener>,
    /// Routes in config order; the first route that matches wins.
    pub routes: Vec<Route>,
    /// Upstreams; `Action::Proxy::upstream` indexes into this list.
    pub upstreams: Vec<Upstream>,
    pub settings: Settings,
    /// The admin listener (`admin:`); `None` when the key is absent.
    pub admin: Option<Admin>,
}

/// The admin listener: health, metrics, status, reload and the dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Default 127.0.0.1:9901. A non-loopback address requires a token.
    pub bind: SocketAddr,
    /// Bearer token required on every endpoint but /livez, /readyz and the dashboard page.
    pub token: Option<Secret>,
}

/// A secret string that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Process-wide settings (`settings:` in YAML).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Peers whose X-Forwarded-* / Forwarded headers are trusted and extended (default: none).
    pub trusted_proxies: Vec<IpNet>,
    /// One log line per request (default: true).
    pub access_log: bool,
    /// How long in-flight requests may run after SIGTERM (default: 30s).
    pub grace_period: Duration,
    /// The pseudonym put in `Via` (default: "portico").
    pub via: Via,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    /// HTTP (the default) or one of the Layer 4 modes.
    pub mode: ListenerMode,
    /// `None`: plain HTTP (HTTP/1.1 and prior-knowledge h2c). Always `None` for Layer 4.
    pub tls: Option<ListenerTls>,
    pub limits: ListenerLimits,
    pub http2: Http2Limits,
    /// PROXY protocol towards backends and from trusted peers (Layer 4 only; off by default).
    pub proxy_protocol: ProxyProtocol,
}

/// What a listener does with the connections it accepts (`mode:` in YAML).
#[derive(Debug, Clone, Default)]
pub enum ListenerMode {
    /// Terminate HTTP (and TLS when configured) and route each request (the default).
    #[default]
    Http,
    /// Tunnel every connection's bytes to one upstream without looking at them.
    Tcp { upstream: usize },
    /// Read the TLS ClientHello's SNI without decrypting and tunnel to the upstream it selects.
    TlsPassthrough(SniRoutes),
}

impl ListenerMode {
    /// The YAML spelling, for logs and messages.
    pub fn name(&self) -> &'static str {
        match self {
            ListenerMode::Http => "http",
            ListenerMode::Tcp { .. } => "tcp",
            ListenerMode::TlsPassthrough(_) => "tls_passthrough",
        }
    }

    pub fn is_layer4(&self) -> bool {
        !matches!(self, ListenerMode::Http)
    }
}

/// SNI -> upstream index for a `tls_passthrough` listener.
#[derive(Debug, Clone, Default)]
pub struct SniRoutes {
    /// Lower-case names without a trailing dot.
    pub exact: HashMap<String, usize>,
    /// `*.example.com` stored as `.example.com`, longest first so the most specific wins.
    pub suffixes: Vec<(String, usize)>,
    /// For a ClientHello without SNI or with one no entry matches; `None`: close it.
    pub default: Option<usize>,
}

/// PROXY protocol settings of a Layer 4 listener (`proxy_protocol:` in YAML).
#[derive(Debug, Clone, Default)]
pub struct ProxyProtocol {
    /// Start every backend connection with a PROXY v2 header (default: false).
    pub send_v2: bool,
    /// Peers that must start with a PROXY v1 or v2 header, whose source address is then taken
    /// as the client's (default: none). Other peers' bytes are never parsed as a header.
    pub accept_from: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// Certificate/key pairs; SNI picks among them by their SANs, the first is the default.
    pub certificates: Vec<CertPair>,
    /// Hostnames for a locally generated development certificate, used when
    /// `certificates` is empty or its files are absent (default: empty = never generate).
    pub self_signed: Vec<String>,
    /// Answer 421 when the Host belongs to a different certificate than SNI chose (default: true).
    pub strict_sni_host: bool,
    /// Limit on the TLS handshake (default: 10s).
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// Resolved against the config file's directory.
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Concurrent connections accepted (default: 10000).
    pub max_connections: usize,
    /// Time allowed to receive a request's header section (default: 10s). Layer 4: time
    /// allowed for the PROXY header and the ClientHello.
    pub header_read_timeout: Duration,
    /// Keep-alive idle time between requests (default: 60s). Layer 4: a tunnel in which no
    /// byte moved either way for this long is closed (default: 10m).
    pub idle_timeout: Duration,
    /// Bytes of request line + headers (default: 64KiB) -> 431.
    pub max_header_bytes: usize,
    /// Number of request header fields (default: 100) -> 431.
    pub max_headers: usize,
    /// Bytes of the request target (default: 8KiB) -> 414.
    pub max_uri_length: usize,
    /// Concurrent WebSocket tunnels on this listener (default: 10000) -> 503 before the
    /// upgrade. Tunnels do not count against `max_connections` once upgraded.
    pub max_tunnels: usize,
}

#[derive(Debug, Clone)]
pub struct Http2Limits {
    /// Default: 256.
    pub max_concurrent_streams: u32,
    /// Default: 20.
    pub max_pending_accept_reset_streams: usize,
    /// Default: 1024.
    pub max_local_error_reset_streams: usize,
    /// Default: 64KiB.
    pub max_header_list_size: u32,
    /// Advertise SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441) so clients may open WebSockets
    /// over HTTP/2 with an extended CONNECT (default: true).
    pub enable_connect_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    /// Listener names this route applies to; empty = all listeners.
    pub listeners: Vec<String>,
    pub matcher: RouteMatch,
    pub action: Action,
    /// Largest request body accepted (default: 10MiB) -> 413. `None` = unlimited.
    pub max_body_size: Option<u64>,
    /// Which Host the backend sees (default: keep the client's).
    pub host_header: HostHeader,
    /// WebSocket upgrades on this route.
    pub websocket: WebSocket,
}

/// WebSocket handling of one route (`websocket:` in YAML).
#[derive(Debug, Clone)]
pub struct WebSocket {
    /// Upgrades are tunnelled (default: true). Off: an HTTP/1.1 upgrade request is forwarded as
    /// a plain request without its Upgrade header, an extended CONNECT is refused with 405.
    pub enabled: bool,
    /// A tunnel with no byte moving either way for this long is closed (default: 300s).
    pub idle_timeout: Duration,
    /// A tunnel is closed after this long whatever its traffic (default: none).
    pub max_lifetime: Option<Duration>,
    /// Concurrent tunnels on this route (default: none, only the listener's limit) -> 503.
    pub max_tunnels: Option<usize>,
    /// How long tunnels may go on once the drain starts (default: 10s), never past
    /// `settings.grace_period`.
    pub drain_timeout: Duration,
    /// `Some`: Portico reads the frames and enforces the policy (default: none, a byte copy).
    pub policy: Option<MessagePolicy>,
}

impl Default for WebSocket {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout: Duration::from_secs(300),
            max_lifetime: None,
            max_tunnels: None,
            drain_timeout: Duration::from_secs(10),
            policy: None,
        }
    }
}

/// Frame-level rules for a WebSocket route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePolicy {
    /// Largest message in either direction, all fragments together (default: 1MiB) -> close 1009.
    pub max_message_size: u64,
    /// Messages a client may send per second (default: none) -> close 1008.
    pub messages_per_second: Option<u32>,
    /// Origins allowed at the handshake, lower-cased, without trailing slash (default: any) -> 403.
    pub allowed_origins: Vec<String>,
    /// Subprotocols a client may ask for (default: any) -> 403 when none of its offers is allowed.
    pub allowed_subprotocols: Vec<String>,
    /// Ping a client that has sent nothing for this long (default: none).
    pub ping_interval: Option<Duration>,
}

impl MessagePolicy {
    /// Whether a handshake carrying `origin` (the header's text, if any) may proceed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        origin
            .and_then(normalize_origin)
            .is_some_and(|o| self.allowed_origins.contains(&o))
    }
}

/// `https://Chat.Example.com/` -> `https://chat.example.com`; `None` when it is not an origin.
/// The same function normalises the client's `Origin` header before comparing.
pub fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim();
    let uri: http::Uri = text.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?;
    let bare = uri.path_and_query().is_none_or(|pq| pq.as_str() == "/");
    (bare && !authority.as_str().contains('@'))
        .then(|| format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// All conditions must hold; an empty list or `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub hosts: Vec<HostMatch>,
    pub path: Option<PathMatch>,
    pub methods: Vec<Method>,
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case host without port.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches `a.example.com`, `a.b.example.com`,
    /// never `example.com` itself.
    Suffix(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
    /// Anchored by the user if they wish; matched against the normalised path.
    Regex(Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatch {
    pub name: HeaderName,
    pub value: ValueMatch,
}

#[derive(Debug, Clone)]
pub struct QueryMatch {
    /// Parameter name after percent-decoding.
    pub name: String,
    pub value: ValueMatch,
}

#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
    Present,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Forward to `Config::upstreams[upstream]`.
    Proxy { upstream: usize },
    /// Answer directly.
    Respond {
        status: StatusCode,
        body: Bytes,
        headers: Vec<(HeaderName, HeaderValue)>,
    },
    /// Answer with a redirect to `location`; when `keep_path`, the request's path and query are
    /// appended to it.
    Redirect {
        location: String,
        status: StatusCode,
        keep_path: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostHeader {
    #[default]
    Keep,
    /// The backend's address (or the upstream TLS server name when set).
    Backend,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<ServerAddr>,
    pub balancer: BalancerKind,
    /// Hash key, fallback, EWMA decay, sticky cookie.
    pub balancing: Balancing,
    pub protocol: UpstreamProtocol,
    /// `Some`: re-encrypt to the backends.
    pub tls: Option<UpstreamTls>,
    pub timeouts: UpstreamTimeouts,
    /// Idle keep-alive connections kept per backend (default: 32).
    pub max_idle_per_backend: usize,
    /// Health checks, outlier detection, retries, limits, DNS servers.
    pub resilience: Resilience,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub address: SocketAddr,
    /// Default: 1.
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS (ALPN h2); requires `tls`.
    H2,
    /// HTTP/2 with prior knowledge over plain TCP.
    H2c,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA bundle to verify backends with; `None` = the system roots.
    pub ca: Option<PathBuf>,
    /// Name to verify and send as SNI; `None` = the server's IP address.
    pub server_name: Option<String>,
    /// Client certificate for mutual TLS.
    pub client_cert: Option<CertPair>,
}

#[derive(Debug, Clone)]
pub struct UpstreamTimeouts {
    /// Default: 5s.
    pub connect: Duration,
    /// Time until the response head arrives (default: 60s).
    pub response: Duration,
    /// Pooled idle connection lifetime (default: 90s).
    pub idle: Duration,
}
