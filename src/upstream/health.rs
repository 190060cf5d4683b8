//! Active health checks: a task per upstream probes every backend on an interval (an HTTP
//! request expecting given statuses, or a plain TCP connect) and flips its state after the
//! healthy/unhealthy thresholds. Another closes pooled connections past the idle timeout.
//! The tasks hold only a `Weak` to the pool, so they end when the pool's snapshot is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::join_all;
use http::{header, Request, Uri};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::outlier::now_ms;
use super::pool::{Backend, UpstreamPool};
use crate::body::ProxyBody;
use crate::config::model::{HealthCheck, HealthCheckKind, UpstreamProtocol};
use crate::metrics::{BackendLabels, Metrics};

/// Starts the upstream's health checker (its verdicts also go to the `backend_up` metric)
/// and DNS discovery, when configured and a runtime is there to run them.
pub fn start_background(pool: &Arc<UpstreamPool>, metrics: &Arc<Metrics>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if let Some(check) = pool.config.resilience.health_check.clone() {
        runtime.spawn(run(Arc::downgrade(pool), check, Arc::clone(metrics)));
    }
    if !pool.config.resilience.dns_servers.is_empty() {
        runtime.spawn(super::dns::run(Arc::downgrade(pool)));
    }
    runtime.spawn(reap_idle(Arc::downgrade(pool)));
}

/// Closes pooled connections past the upstream's idle timeout, a few times per timeout,
/// until the pool is dropped.
async fn reap_idle(pool: Weak<UpstreamPool>) {
    loop {
        let Some(limit) = pool.upgrade().map(|p| p.config.timeouts.idle) else {
            return;
        };
        let every = (limit / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        tokio::time::sleep(every).await;
        let Some(strong) = pool.upgrade() else {
            return;
        };
        for backend in &strong.members().backends {
            backend.drop_expired(limit);
        }
    }
}

async fn run(pool: Weak<UpstreamPool>, check: HealthCheck, metrics: Arc<Metrics>) {
    loop {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        let members = strong.members();
        let probes = members.backends.iter().map(|b| probe(&strong, b, &check));
        let results = join_all(probes).await;
        let now = now_ms();
        for (backend, result) in members.backends.iter().zip(results) {
            let ok = result.is_ok();
            tracing::trace!(upstream = %strong.name, backend = %backend.addr, ?result, up = backend.health.is_up(), "probe");
            let flipped =
                backend
                    .health
                    .check(ok, check.healthy_threshold, check.unhealthy_threshold, now);
            let labels = BackendLabels::new(&strong.name, backend.addr);
            metrics.set_backend_health(&labels, backend.health.is_up());
            match (flipped, result) {
                (Some(false), Err(reason)) => tracing::warn!(
                    upstream = %strong.name,
                    backend = %backend.addr,
                    reason = %reason,
                    "backend marked unhealthy by its health check",
                ),
                (Some(true), _) => tracing::info!(
                    upstream = %strong.name,
                    backend = %backend.addr,
                    "backend healthy again",
                ),
                (None, Err(reason)) => tracing::debug!(
                    upstream = %strong.name,
                    backend = %backend.addr,
                    reason = %reason,
                    "health check failed",
                ),
                _ => {}
            }
        }
        drop((members, strong));
        tokio::time::sleep(check.interval).await;
    }
}

/// One probe under the check's timeout; `Err` says why it failed.
async fn probe(pool: &UpstreamPool, backend: &Backend, check: &HealthCheck) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, probe_inner(pool, backend, check)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

async fn probe_inner(
    pool: &UpstreamPool,
    backend: &Backend,
    check: &HealthCheck,
) -> Result<(), String> {
    if check.kind == HealthCheckKind::Tcp {
        return pool
            .connect_tcp(backend.addr)
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let io = pool
        .connect_io(backend.addr, pool.connector())
        .await
        .map_err(|e| e.to_string())?;
    let host = check
        .host
        .clone()
        .unwrap_or_else(|| backend.addr.to_string());
    let h1 = pool.protocol() == UpstreamProtocol::Http1;
    let req = probe_request(pool, check, &host, h1).map_err(|e| e.to_string())?;
    let sent = if h1 {
        let (mut sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await
    } else {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder.timer(TokioTimer::new());
        let (mut sender, conn) = builder.handshake(io).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        sender.send_request(req).await
    };
    let status = sent.map_err(|e| e.to_string())?.status();
    let code = status.as_u16();
    let expected = if check.statuses.is_empty() {
        (200..400).contains(&code)
    } else {
        check.statuses.contains(&code)
    };
    if expected {
        Ok(())
    } else {
        Err(format!("status {code}"))
    }
}

/// The probe's GET: origin-form with `Host` for HTTP/1.1 (closing the connection after),
/// absolute with `:authority` for HTTP/2.
fn probe_request(
    pool: &UpstreamPool,
    check: &HealthCheck,
    host: &str,
    h1: bool,
) -> Result<Request<ProxyBody>, http::Error> {
    let builder =
        Request::get(check.path.as_str()).header(header::USER_AGENT, "portico-health-check");
    let builder = if h1 {
        builder
            .header(header::HOST, host)
            .header(header::CONNECTION, "close")
    } else {
        let scheme = if pool.is_tls() { "https" } else { "http" };
        builder.uri(
            Uri::builder()
                .scheme(scheme)
                .authority(host)
                .path_and_query(check.path.as_str())
                .build()?,
        )
    };
    builder.body(ProxyBody::empty())
}
