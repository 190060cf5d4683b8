//! The request path: one snapshot per request, validate, normalise, route, then answer
//! directly or forward to a backend, and log one access record.

pub mod forward;
pub mod headers;
pub mod log;
pub mod respond;
mod retry;
pub mod websocket;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::config::model::Action;
use crate::normalize::normalize_path;
use crate::router::RequestFacts;
use crate::state::{ListenerState, SharedState};
use crate::tls::SniIndex;
use log::AccessRecord;
pub use log::LoggedBody;

/// What a request's handler knows about the client connection it arrived on.
pub struct ConnInfo {
    pub listener: Arc<ListenerState>,
    pub peer: SocketAddr,
    /// The peer's address as the forwarding headers carry it.
    pub client: headers::Peer,
    /// Set on TLS connections.
    pub tls: Option<TlsInfo>,
    /// The drain signal, for work that outlives the request (WebSocket tunnels).
    pub shutdown: crate::shutdown::Watcher,
}

/// The TLS facts that matter per request.
pub struct TlsInfo {
    pub sni: SniIndex,
    /// The certificate chosen for the SNI name the client sent; `None` without SNI.
    pub sni_cert: Option<Option<usize>>,
}

/// The response type every request gets.
pub type ProxyResponse = Response<LoggedBody>;

/// Handles one request from `conn`.
pub async fn handle(state: &SharedState, conn: &ConnInfo, req: Request<Incoming>) -> ProxyResponse {
    let started = Instant::now();
    let snapshot = state.load_full();
    let mut record = AccessRecord::new(&snapshot, &conn.listener, conn.peer, &req, started);
    let websocket = websocket::requested(&req);
    // After a request that may open a tunnel (Upgrade, CONNECT) the strict HTTP/1 framing
    // guard holds reads until the answer, and only a 101 (2xx to CONNECT) makes it stand
    // aside. Portico tunnels only WebSockets, so any other such request also closes the
    // connection after its answer (defence in depth). A WebSocket upgrade the backend
    // refuses keeps the connection in HTTP, fully checked (issue 3 requires it).
    let unguarded = websocket.is_none()
        && req.version() < Version::HTTP_2
        && (req.method() == Method::CONNECT || req.headers().contains_key(header::UPGRADE));
    let mut response = match prepare(conn, &req, websocket) {
        Err((status, reason)) => respond::error(status, reason),
        Ok(target) => {
            // An RFC 8441 WebSocket is routed like the HTTP/1.1 GET it stands for.
            let method = match websocket {
                Some(websocket::Kind::ExtendedConnect) => &Method::GET,
                _ => req.method(),
            };
            let facts = RequestFacts {
                listener: &conn.listener.config.name,
                host: target.host(),
                path: target.path(),
                query: req.uri().query(),
                method,
                headers: req.headers(),
            };
            match snapshot.router.route(&facts) {
                None => respond::error(StatusCode::NOT_FOUND, "no route matches this request"),
                Some(index) => {
                    let route = &snapshot.config.routes[index];
                    record.route = Some(index);
                    if let Some(reason) = misdirected(conn, target.host()) {
                        respond::error(StatusCode::MISDIRECTED_REQUEST, reason)
                    } else {
                        let tunnel = websocket.filter(|_| route.websocket.enabled);
                        match &route.action {
                            // Boxed: a tunnel's setup future is large and rare; inline it
                            // would enlarge every request's future.
                            Action::Proxy { upstream } if tunnel.is_some() => {
                                Box::pin(websocket::upgrade(
                                    &snapshot,
                                    conn,
                                    index,
                                    *upstream,
                                    req,
                                    target,
                                    tunnel.unwrap_or(websocket::Kind::Upgrade),
                                    &mut record,
                                ))
                                .await
                            }
                            // Only a proxied route can carry a tunnel; answering a CONNECT
                            // stream with a body would be a protocol error.
                            _ if websocket == Some(websocket::Kind::ExtendedConnect) => {
                                respond::error(
                                    StatusCode::METHOD_NOT_ALLOWED,
                                    "WebSocket is not enabled on this route",
                                )
                            }
                            Action::Respond {
                                status,
                                body,
                                headers,
                            } => respond::direct(*status, body, headers),
                            Action::Redirect {
                                location,
                                status,
                                keep_path,
                            } => {
                                let suffix =
                                    keep_path.then(|| target.origin_form(req.uri().query()));
                                respond::redirect(*status, location, suffix.as_deref())
                            }
                            // Boxed: hyper moves the request future around (into the
                            // connection's slot, an HTTP/2 stream's task, its finished
                            // stage); a pointer here keeps that future ~1 KiB instead of
                            // ~5 KiB, for one allocation (docs/performance.md).
                            Action::Proxy { upstream } => {
                                Box::pin(forward::forward(
                                    &snapshot,
                                    conn,
                                    route,
                                    *upstream,
                                    req,
                                    target,
                                    &mut record,
                                ))
                                .await
                            }
                        }
                    }
                }
            }
        }
    };
    if unguarded && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response.headers_mut().insert(
            header::CONNECTION,
            http::header::HeaderValue::from_static("close"),
        );
    }
    record.finish(response)
}

/// The request target after validation: normalised path and the host it names. It shares
/// the request's bytes (the target and the Host value) instead of copying them; only a path
/// that normalising changed, or a host that needed lower-casing, is held apart.
pub struct Target {
    /// The path and query as received.
    received: Option<PathAndQuery>,
    /// The normalised path, when it differs from the received one.
    normalized: Option<String>,
    /// The authority as the client sent it (may carry a port).
    authority: Option<Authority>,
    /// The routing host: a prefix of the authority, or a rewritten copy.
    host: HostKey,
}

/// The authority a request names, where it came from.
enum Authority {
    /// The `Host` field.
    Field(HeaderValue),
    /// The absolute-form target or HTTP/2's `:authority`.
    Target(http::uri::Authority),
}

/// The lower-cased host without port.
enum HostKey {
    None,
    /// The first `n` bytes of the authority are the host as is.
    Prefix(usize),
    /// Lower-cased or a canonical IPv6 literal.
    Owned(Box<str>),
}

impl Target {
    /// The normalised path.
    pub fn path(&self) -> &str {
        match (&self.normalized, &self.received) {
            (Some(p), _) => p,
            (None, Some(pq)) => pq.path(),
            (None, None) => "/",
        }
    }

    /// The authority as the client sent it.
    pub fn authority(&self) -> Option<&str> {
        match self.authority.as_ref()? {
            // Checked as visible ASCII in `prepare`.
            Authority::Field(v) => v.to_str().ok(),
            Authority::Target(a) => Some(a.as_str()),
        }
    }

    /// The authority as a header value: shared with the request when it came as `Host`.
    pub fn authority_value(&self) -> Option<HeaderValue> {
        match self.authority.as_ref()? {
            Authority::Field(v) => Some(v.clone()),
            Authority::Target(a) => HeaderValue::from_str(a.as_str()).ok(),
        }
    }

    /// Lower-cased host without port, for routing.
    pub fn host(&self) -> Option<&str> {
        match &self.host {
            HostKey::None => None,
            HostKey::Prefix(n) => self.authority().and_then(|a| a.get(..*n)),
            HostKey::Owned(h) => Some(h),
        }
    }

    /// Normalised path plus the original query bytes.
    pub fn origin_form(&self, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("{}?{}", self.path(), q),
            None => self.path().to_owned(),
        }
    }

    /// The origin-form target for the backend: the received one, shared, when normalising
    /// left it as it was.
    pub fn upstream_target(&self) -> Result<PathAndQuery, &'static str> {
        match (&self.normalized, &self.received) {
            (None, Some(pq)) => Ok(pq.clone()),
            _ => {
                let query = self.received.as_ref().and_then(PathAndQuery::query);
                PathAndQuery::from_maybe_shared(bytes::Bytes::from(self.origin_form(query)))
                    .map_err(|_| "cannot build the upstream request target")
            }
        }
    }
}

type Reject = (StatusCode, &'static str);

/// Validates what hyper parsed and derives the routing target.
fn prepare(
    conn: &ConnInfo,
    req: &Request<Incoming>,
    websocket: Option<websocket::Kind>,
) -> Result<Target, Reject> {
    let limits = &conn.listener.config.limits;
    let uri = req.uri();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > limits.max_uri_length {
        return Err((StatusCode::URI_TOO_LONG, "request target too long"));
    }
    // hyper enforces the field count on HTTP/1 only; HTTP/2 bounds the bytes of the header
    // list (`max_header_list_size`), so the count is checked here for both.
    if req.headers().len() > limits.max_headers {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        ));
    }
    if req.method() == Method::CONNECT && websocket.is_none() {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"));
    }
    let authority = request_authority(req)?;
    let host = match &authority {
        None => HostKey::None,
        Some(a) => {
            let raw = match a {
                Authority::Field(v) => v
                    .to_str()
                    .map_err(|_| (StatusCode::BAD_REQUEST, "invalid Host"))?,
                Authority::Target(a) => a.as_str(),
            };
            match crate::router::host_key(raw).ok_or((StatusCode::BAD_REQUEST, "invalid Host"))? {
                Cow::Borrowed(h) => HostKey::Prefix(h.len()),
                Cow::Owned(h) => HostKey::Owned(h.into_boxed_str()),
            }
        }
    };
    let normalized = match normalize_path(uri.path()) {
        Ok(Cow::Borrowed(_)) => None,
        Ok(Cow::Owned(p)) => Some(p),
        Err(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "ambiguous or malformed request path",
            ))
        }
    };
    Ok(Target {
        received: uri.path_and_query().cloned(),
        normalized,
        authority,
        host,
    })
}

/// The authority the request names: the absolute-form or `:authority` wins over `Host`
/// (RFC 9112 §3.2.2); HTTP/1.1 requires exactly one Host.
fn request_authority(req: &Request<Incoming>) -> Result<Option<Authority>, Reject> {
    // The Host rules of RFC 9112 §3.2 hold for absolute-form requests too.
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err((StatusCode::BAD_REQUEST, "several Host headers"));
    }
    if first.is_none() && req.version() == Version::HTTP_11 {
        return Err((StatusCode::BAD_REQUEST, "HTTP/1.1 request without Host"));
    }
    if let Some(a) = req.uri().authority() {
        return Ok(Some(Authority::Target(a.clone())));
    }
    // `host_key` then checks the value is a host with an optional port, which is stricter
    // than the URI authority grammar (no user info, no percent-escapes).
    Ok(first.map(|v| Authority::Field(v.clone())))
}

/// RFC 9110 §15.5.20: a request for a host served by another certificate than the one the
/// TLS handshake chose is answered 421, so the client opens a new connection.
fn misdirected(conn: &ConnInfo, host: Option<&str>) -> Option<&'static str> {
    let tls = conn.tls.as_ref()?;
    let strict = conn.listener.config.tls.as_ref()?.strict_sni_host;
    let chosen = tls.sni_cert?;
    let host = host?;
    // A Host no certificate covers is not "another certificate's" host: leave it to routing.
    (strict && tls.sni.cert_for(host).is_some_and(|i| Some(i) != chosen))
        .then_some("this host is not served on this TLS connection")
}
