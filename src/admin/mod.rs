//! The admin listener: its own socket (loopback by default), HTTP/1.1 only, answering
//! `/livez`, `/readyz`, `/metrics` (Prometheus text), `/status` (JSON), `POST /reload` and the
//! live dashboard at `/`. Every endpoint but the probes and the dashboard page needs the bearer
//! token when one is configured (read from the running snapshot, so a reload can rotate it).

pub mod auth;
pub mod client;
pub mod control;
pub mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use control::{Control, NoReload};

use crate::shutdown::Watcher;
use crate::state::SharedState;

/// The dashboard page: one file, no external assets.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Concurrent admin connections; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

/// What the admin endpoints read.
pub struct AdminContext {
    pub state: SharedState,
    pub control: Arc<dyn Control>,
    /// Set once every listener is bound and its accept loop runs.
    pub ready: Arc<AtomicBool>,
    pub shutdown: Watcher,
    /// Listener name -> bound address.
    pub bound: Vec<(String, SocketAddr)>,
}

type AdminResponse = Response<Full<Bytes>>;

/// Accepts admin connections until the task is dropped (it keeps answering during a drain,
/// so `/readyz` can say so).
pub async fn serve(tcp: TcpListener, ctx: Arc<AdminContext>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = Arc::clone(&ctx);
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            let result = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Routes one admin request.
pub async fn handle<B>(ctx: &AdminContext, req: Request<B>) -> AdminResponse {
    let path = req.uri().path();
    let method = req.method();
    let open = matches!(path, "/livez" | "/readyz" | "/" | "/dashboard");
    let known = open || matches!(path, "/metrics" | "/status" | "/reload");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let wanted = if path == "/reload" {
        Method::POST
    } else {
        Method::GET
    };
    if method != wanted && !(wanted == Method::GET && method == Method::HEAD) {
        let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        if let Ok(allow) = HeaderValue::from_str(wanted.as_str()) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        return resp;
    }
    if !open {
        let snapshot = ctx.state.load();
        let token = snapshot
            .config
            .admin
            .as_ref()
            .and_then(|a| a.token.as_ref());
        if !auth::authorized(token, req.headers()) {
            let mut resp = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portico-admin\""),
            );
            return resp;
        }
    }
    match path {
        "/livez" => text(StatusCode::OK, "ok"),
        "/readyz" => {
            if ctx.shutdown.is_triggered() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else if ctx.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting")
            }
        }
        "/metrics" => metrics(ctx),
        "/status" => {
            let snapshot = ctx.state.load_full();
            let facts = status::Facts {
                ready: ctx.ready.load(Ordering::Acquire) && !ctx.shutdown.is_triggered(),
                draining: ctx.shutdown.is_triggered(),
                bound: &ctx.bound,
                last_reload: ctx.control.last_reload(),
            };
            json(StatusCode::OK, &status::status(&snapshot, &facts))
        }
        "/reload" => {
            let dry_run = req.uri().query().is_some_and(|q| {
                q.split('&')
                    .any(|p| p == "dry_run" || p == "dry_run=true" || p == "dry_run=1")
            });
            reload(ctx, dry_run).await
        }
        _ => dashboard(),
    }
}

fn metrics(ctx: &AdminContext) -> AdminResponse {
    let snapshot = ctx.state.load_full();
    let m = &snapshot.metrics;
    m.set_generation(snapshot.generation);
    m.set_certificates(snapshot.listeners.iter().flat_map(|l| {
        let name = l.config.name.as_str();
        l.tls
            .iter()
            .flat_map(|t| t.not_after.iter())
            .map(move |(file, at)| (name, file.display().to_string(), *at))
    }));
    let mut resp = Response::new(Full::new(Bytes::from(m.encode())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

async fn reload(ctx: &AdminContext, dry_run: bool) -> AdminResponse {
    let Some(pending) = ctx.control.reload(dry_run) else {
        return text(
            StatusCode::NOT_IMPLEMENTED,
            "reload not available in this build",
        );
    };
    let outcome = pending.await;
    let ok = outcome.get("ok").and_then(serde_json::Value::as_bool) == Some(true);
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    json(status, &outcome)
}

fn dashboard() -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(DASHBOARD.as_bytes())));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Everything is inline; nothing may be loaded from elsewhere.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json(status: StatusCode, value: &serde_json::Value) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests;
