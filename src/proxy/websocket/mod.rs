//! WebSocket upgrades: HTTP/1.1 `Upgrade: websocket` and RFC 8441 extended CONNECT over
//! HTTP/2. Checks the handshake against the route's policy and tunnel limits, forwards it to a
//! backend as an HTTP/1.1 Upgrade on a dedicated connection, and switches to a tunnel only once
//! the backend has answered 101; any other answer is relayed as an ordinary response.

mod frame;
mod handshake;
mod pump;
mod session;
mod tunnel;

use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::forward::{self, Dest};
use super::log::AccessRecord;
use super::{respond, ConnInfo, Target};
use crate::body::ProxyBody;
use crate::state::Snapshot;
use crate::upstream::{Picked, RequestInfo};
use handshake::{CONNECTION_UPGRADE, WEBSOCKET};
use session::{Permit, Session};

/// How the client asked for a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket`.
    Upgrade,
    /// HTTP/2 CONNECT with a `:protocol` (RFC 8441); the protocol is checked later.
    ExtendedConnect,
}

/// Whether `req` asks for a WebSocket (or, over h2, for any extended CONNECT).
pub fn requested<B>(req: &Request<B>) -> Option<Kind> {
    if req.method() == Method::CONNECT {
        return req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .map(|_| Kind::ExtendedConnect);
    }
    let upgrade = req.version() == Version::HTTP_11
        && handshake::has_token(req.headers(), &header::CONNECTION, "upgrade")
        && handshake::has_token(req.headers(), &header::UPGRADE, "websocket");
    upgrade.then_some(Kind::Upgrade)
}

/// Sets up a WebSocket session on the route at `route_index` towards `upstream`.
#[allow(clippy::too_many_arguments)]
pub async fn upgrade(
    snapshot: &Arc<Snapshot>,
    conn: &ConnInfo,
    route_index: usize,
    upstream: usize,
    mut req: Request<Incoming>,
    target: Target,
    kind: Kind,
    record: &mut AccessRecord,
) -> Response<ProxyBody> {
    let Some(route) = snapshot.config.routes.get(route_index) else {
        return respond::error(StatusCode::INTERNAL_SERVER_ERROR, "route missing");
    };
    let ws = &route.websocket;
    if kind == Kind::ExtendedConnect {
        if let Err((status, reason)) = handshake::check_extended_connect(&req) {
            return respond::error(status, reason);
        }
    }
    let offer = match handshake::check_policy(req.headers(), ws.policy.as_ref()) {
        Ok(offer) => offer,
        Err(reason) => return respond::error(StatusCode::FORBIDDEN, reason),
    };
    if conn.shutdown.is_triggered() {
        return respond::error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    }
    let permit = match Permit::acquire(snapshot, &conn.listener, route_index) {
        Ok(p) => p,
        Err(reason) => return respond::error(StatusCode::SERVICE_UNAVAILABLE, reason),
    };
    let Some(pool) = snapshot.upstreams.get(upstream) else {
        return respond::error(StatusCode::SERVICE_UNAVAILABLE, "upstream missing");
    };
    record.upstream = Some(upstream);
    let info = RequestInfo {
        headers: req.headers(),
        path: target.path(),
        client: conn.peer.ip(),
        secure: conn.tls.is_some(),
    };
    let (backend, set_cookie) = match pool.pick_for(Some(&info), &[]) {
        Ok(Picked {
            backend,
            set_cookie,
        }) => (backend, set_cookie),
        Err(err) => {
            tracing::warn!(route = %route.name, upstream = %pool.name, error = %err, "no usable backend");
            return respond::error(err.status(), "no backend available");
        }
    };
    record.set_backend(upstream, backend.addr);
    // Counted until the tunnel ends (moved into its task below).
    let inflight = backend.stats.start();

    // Taken before the request is rewritten: it resolves once hyper has sent our 101 (or 200
    // on h2) and the client's stream is free, with any bytes the client sent early.
    let client_upgrade = hyper::upgrade::on(&mut req);
    let dest = Dest {
        route,
        pool,
        backend: &backend,
    };
    let key = (kind == Kind::ExtendedConnect).then(handshake::generate_key);
    let upstream_req = match forward::build_request(snapshot, conn, &dest, req, &target, None, true)
    {
        Ok(r) => handshake::to_backend(r, kind, key.as_deref(), &offer),
        Err(reason) => return respond::error(StatusCode::BAD_REQUEST, reason),
    };
    let metrics = snapshot.backend_metrics(upstream, backend.addr);
    let sent_at = std::time::Instant::now();
    let mut response = match pool.upgrade(&backend, upstream_req).await {
        Ok(r) => {
            metrics.response(sent_at.elapsed());
            r
        }
        Err(err) => {
            metrics.error(&snapshot.metrics, forward::error_kind(&err));
            return forward::failure(route, pool, &backend, err);
        }
    };
    let via = &snapshot.config.settings.via;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Refused: the client's connection stays in HTTP framing (dropping `client_upgrade`
        // tells hyper no upgrade is coming).
        return forward::relay(response, via, pool.config.timeouts.response);
    }
    if let Err(reason) = handshake::check_switch(response.headers(), key.as_deref(), &offer) {
        tracing::warn!(route = %route.name, backend = %backend.addr, reason, "backend's 101 refused");
        return respond::error(StatusCode::BAD_GATEWAY, reason);
    }
    let backend_upgrade = hyper::upgrade::on(&mut response);
    let mut reply = client_reply(response, kind, via);
    if let Some(cookie) = set_cookie {
        reply.headers_mut().append(header::SET_COOKIE, cookie);
    }

    // The session's own record replaces the request's access record.
    record.suppress();
    let session = Session {
        permit,
        upstream,
        backend: backend.addr,
        client: conn.peer.ip(),
        path: target.path().into(),
        protocol: if kind == Kind::Upgrade {
            "http/1.1"
        } else {
            "h2"
        },
        started: Instant::now(),
    };
    let hold = conn.shutdown.hold();
    let drain = conn.shutdown.clone();
    // A reload that removes this route drains the tunnel like a shutdown does.
    let retired = snapshot
        .route_retired
        .get(route_index)
        .map(|r| r.subscribe());
    tokio::spawn(async move {
        let _hold = hold;
        let _inflight = inflight;
        let snapshot = Arc::clone(session.snapshot());
        let Some(ws) = snapshot
            .config
            .routes
            .get(session.route())
            .map(|r| &r.websocket)
        else {
            return;
        };
        let both = async { tokio::join!(client_upgrade, backend_upgrade) };
        let (client_io, backend_io) = match tokio::time::timeout(ws.idle_timeout, both).await {
            Ok((Ok(c), Ok(b))) => (TokioIo::new(c), TokioIo::new(b)),
            Ok((c, b)) => {
                tracing::debug!(
                    client_ok = c.is_ok(),
                    backend_ok = b.is_ok(),
                    "WebSocket switch failed"
                );
                session.log(&tunnel::Outcome::failed());
                return;
            }
            Err(_) => {
                tracing::debug!("WebSocket switch timed out");
                session.log(&tunnel::Outcome::failed());
                return;
            }
        };
        let settings = tunnel::Settings {
            websocket: ws,
            drain_timeout: ws.drain_timeout.min(snapshot.config.settings.grace_period),
        };
        let outcome = tunnel::run(client_io, backend_io, settings, drain, retired).await;
        session.log(&outcome);
    });
    reply
}

/// The answer the client gets for the backend's 101: a 101 of its own over HTTP/1.1, a 200
/// on the extended CONNECT's stream over HTTP/2.
fn client_reply(
    backend: Response<Incoming>,
    kind: Kind,
    via: &super::headers::Via,
) -> Response<ProxyBody> {
    let (mut parts, _body) = backend.into_parts();
    super::headers::strip_hop_by_hop(&mut parts.headers, false);
    super::headers::add_via(&mut parts.headers, Version::HTTP_11, via);
    parts.headers.remove(header::CONTENT_LENGTH);
    match kind {
        Kind::Upgrade => {
            parts.status = StatusCode::SWITCHING_PROTOCOLS;
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
            parts.headers.insert(
                header::CONNECTION,
                HeaderValue::from_static(CONNECTION_UPGRADE),
            );
        }
        Kind::ExtendedConnect => {
            parts.status = StatusCode::OK;
            parts.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        }
    }
    parts.version = Version::HTTP_11;
    Response::from_parts(parts, ProxyBody::empty())
}
