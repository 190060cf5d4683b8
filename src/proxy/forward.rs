//! Forwarding one request to a backend of the route's upstream: build the upstream request
//! (origin-form for HTTP/1.1, `:authority` for HTTP/2), send it over the pool, relay the answer.

use std::error::Error as _;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::headers::{add_via, join_cookies, set_forwarding, strip_hop_by_hop, Hop, Via};
use super::log::AccessRecord;
use super::{respond, ConnInfo, Target};
use crate::body::{BodyError, ProxyBody};
use crate::config::model::{HostHeader, Route, UpstreamProtocol};
use crate::state::Snapshot;
use crate::upstream::{Backend, UpstreamError, UpstreamPool};

/// Sends the request to a backend of `snapshot.upstreams[upstream]` and relays its answer.
pub async fn forward(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    route: &Route,
    upstream: usize,
    req: Request<Incoming>,
    target: Target,
    record: &mut AccessRecord,
) -> Response<ProxyBody> {
    let Some(pool) = snapshot.upstreams.get(upstream) else {
        return respond::error(StatusCode::SERVICE_UNAVAILABLE, "upstream missing");
    };
    record.upstream = Some(upstream);
    if let (Some(limit), Some(len)) = (route.max_body_size, declared_length(&req)) {
        if len > limit {
            return respond::error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
    }
    let plan = super::retry::Plan {
        snapshot,
        conn,
        upstream,
        route,
        pool,
        target: &target,
    };
    plan.run(req, record).await
}

fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Where a request is going.
pub(super) struct Dest<'a> {
    pub route: &'a Route,
    pub pool: &'a UpstreamPool,
    pub backend: &'a Backend,
}

/// Rewrites the client's request into the one the backend receives; `h1_only` forces the
/// HTTP/1.1 form whatever the upstream's protocol (upgrades).
pub(super) fn build_request(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    dest: &Dest<'_>,
    req: Request<Incoming>,
    target: &Target,
    counter: Option<Arc<AtomicU64>>,
    h1_only: bool,
) -> Result<Request<ProxyBody>, &'static str> {
    let (mut parts, body) = req.into_parts();
    build_head(snapshot, conn, dest, &mut parts, target, h1_only)?;
    let body = match counter {
        Some(c) => ProxyBody::counted(body, dest.route.max_body_size, c),
        None => ProxyBody::stream(body, dest.route.max_body_size),
    };
    Ok(Request::from_parts(parts, body))
}

/// Rewrites the request head in place for the backend (see `build_request`).
pub(super) fn build_head(
    snapshot: &Snapshot,
    conn: &ConnInfo,
    dest: &Dest<'_>,
    parts: &mut http::request::Parts,
    target: &Target,
    h1_only: bool,
) -> Result<(), &'static str> {
    let Dest {
        route,
        pool,
        backend,
    } = *dest;
    let h2 = !h1_only && pool.protocol() != UpstreamProtocol::Http1;
    strip_hop_by_hop(&mut parts.headers, !h1_only);
    let settings = &snapshot.config.settings;
    // Shared with the request's `Host` field, when that is where it came from.
    let authority = target.authority_value();
    let hop = Hop {
        peer: &conn.client,
        trusted: settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&conn.peer.ip())),
        proto: if conn.tls.is_some() { "https" } else { "http" },
        host: authority.as_ref(),
    };
    set_forwarding(&mut parts.headers, &hop);
    add_via(&mut parts.headers, parts.version, &settings.via);

    let host = match route.host_header {
        HostHeader::Keep => authority,
        HostHeader::Backend => pool
            .config
            .tls
            .as_ref()
            .and_then(|t| t.server_name.as_deref())
            .and_then(|name| HeaderValue::from_str(name).ok()),
    };
    let host = match host {
        Some(h) => h,
        None => HeaderValue::from_str(&backend.addr.to_string()).map_err(|_| "invalid Host")?,
    };
    let path_and_query = target.upstream_target()?;
    if h2 {
        let scheme = if pool.is_tls() { "https" } else { "http" };
        parts.uri = Uri::builder()
            .scheme(scheme)
            .authority(host.as_bytes())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| "cannot build the upstream request target")?;
        parts.headers.remove(header::HOST);
        parts.version = Version::HTTP_2;
    } else {
        parts.uri = Uri::from(path_and_query);
        parts.headers.insert(header::HOST, host);
        join_cookies(&mut parts.headers);
        parts.version = Version::HTTP_11;
    }
    Ok(())
}

/// The backend's response as the client receives it; its body fails if the backend leaves
/// it waiting longer than `read_timeout` for the next frame.
pub(super) fn relay(
    response: Response<Incoming>,
    via: &Via,
    read_timeout: Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    // RFC 9112 §6.3: with Transfer-Encoding present, a received Content-Length is wrong and
    // must not reach the client (it would make a cut-short body look complete).
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    strip_hop_by_hop(&mut parts.headers, false);
    add_via(&mut parts.headers, parts.version, via);
    // The client's connection has its own version; hyper frames the answer for it (an
    // HTTP/1.0 client still gets no chunked encoding).
    parts.version = Version::HTTP_11;
    Response::from_parts(
        parts,
        ProxyBody::stream(body, None).read_timeout(read_timeout),
    )
}

/// Maps a backend failure to the client's answer and one log line naming route and backend.
pub(super) fn failure(
    route: &Route,
    pool: &UpstreamPool,
    backend: &Backend,
    err: UpstreamError,
) -> Response<ProxyBody> {
    match client_body_error(&err) {
        Some(BodyError::TooLarge { .. }) => {
            return respond::error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Some(BodyError::Stream(e)) => {
            // The client's body broke off or was malformed (the framing guard cuts a bad
            // chunk): the backend saw an aborted request, the client gets the blame.
            tracing::info!(route = %route.name, error = %e, "client request body failed");
            return respond::error(
                StatusCode::BAD_REQUEST,
                "malformed or truncated request body",
            );
        }
        Some(BodyError::ReadTimeout(_)) => {
            return respond::error(StatusCode::REQUEST_TIMEOUT, "request body stalled");
        }
        None => {}
    }
    let status = err.status();
    tracing::warn!(
        route = %route.name,
        upstream = %pool.name,
        backend = %backend.addr,
        kind = err.kind(),
        error = %err,
        "backend request failed",
    );
    let reason = match err.kind() {
        "connect" => "backend connection failed",
        "connect_timeout" => "backend connect timed out",
        "tls" => "backend TLS handshake failed",
        "timeout" => "backend response timed out",
        "no_backend" => "no backend available",
        "invalid" => "cannot build the upstream request",
        "overloaded" => match &err {
            UpstreamError::Overloaded(reason) => reason,
            _ => "upstream overloaded",
        },
        _ => "backend sent an invalid response or closed the connection",
    };
    respond::error(status, reason)
}

/// The `kind` label of a failed exchange: `UpstreamError::kind()`, with `reset` split out of
/// `protocol` when the backend closed or reset the connection before a whole response head.
pub(super) fn error_kind(err: &UpstreamError) -> &'static str {
    if let UpstreamError::Request { source, .. } = err {
        if source.is_incomplete_message() || reset_in_chain(source) {
            return "reset";
        }
    }
    err.kind()
}

fn reset_in_chain(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// The request failed because of the client's body (our size limit, or the client's stream
/// failing), not because of the backend.
pub(super) fn client_body_error(err: &UpstreamError) -> Option<&BodyError> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(body) = e.downcast_ref::<BodyError>() {
            return Some(body);
        }
        source = e.source();
    }
    None
}
