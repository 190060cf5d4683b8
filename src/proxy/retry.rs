//! Trying a request on one backend after another: only when it is safe (nothing was sent,
//! a reused keep-alive connection failed before any response byte, or the backend answered
//! a retryable status for a retryable method), on a different backend, within per-try and
//! overall deadlines, and only while the upstream's retry budget lasts.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::forward::{build_head, client_body_error, error_kind, failure, relay, Dest};
use super::log::AccessRecord;
use super::{respond, ConnInfo, Target};
use crate::body::ProxyBody;
use crate::config::model::Route;
use crate::state::Snapshot;
use crate::upstream::balancer::InflightGuard;
use crate::upstream::limits::Held;
use crate::upstream::pool::Returning;
use crate::upstream::{Backend, Picked, RequestInfo, UpstreamError, UpstreamPool};

/// One request's way to the upstream.
pub(super) struct Plan<'a> {
    pub snapshot: &'a Snapshot,
    pub conn: &'a ConnInfo,
    /// Index of `pool` in the snapshot (metrics, access record).
    pub upstream: usize,
    pub route: &'a Route,
    pub pool: &'a UpstreamPool,
    pub target: &'a Target,
}

/// The request head as the client sent it, rebuilt for every try.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// The request body across tries.
enum Payload {
    /// Small or empty: kept in memory, replayable.
    Replay(Bytes),
    /// Streamed: usable once; `None` after it went out.
    Stream(Option<Incoming>),
}

/// How one try ended.
enum Outcome {
    /// The response head, and what is held until its body ends: the in-flight count and
    /// the connection's way back to the pool.
    Answer(Response<Incoming>, InflightGuard, Option<Returning>),
    /// Failed; `retry` says whether another backend may get the request.
    Failed { err: UpstreamError, retry: bool },
}

impl Plan<'_> {
    pub(super) async fn run(
        &self,
        req: Request<Incoming>,
        record: &mut AccessRecord,
    ) -> Response<ProxyBody> {
        let policy = &self.pool.config.resilience.retries;
        let via = &self.snapshot.config.settings.via;
        let retryable_method = policy.methods.contains(req.method());
        let (parts, body) = req.into_parts();
        let head = Head {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
        };
        let small = declared(&head.headers).is_some_and(|n| n <= policy.replay_buffer);
        let mut payload = if http_body::Body::is_end_stream(&body) {
            Payload::Replay(Bytes::new())
        } else if policy.attempts > 0 && retryable_method && small {
            let limit = usize::try_from(policy.replay_buffer).unwrap_or(usize::MAX);
            match Limited::new(body, limit).collect().await {
                Ok(collected) => {
                    let data = collected.to_bytes();
                    if let Some(counter) = record.body_counter() {
                        counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    Payload::Replay(data)
                }
                Err(e) => {
                    tracing::info!(route = %self.route.name, error = %e, "client request body failed");
                    return respond::error(
                        StatusCode::BAD_REQUEST,
                        "malformed or truncated request body",
                    );
                }
            }
        } else {
            Payload::Stream(Some(body))
        };
        self.pool.budget.request();
        let deadline = policy.timeout.map(|t| Instant::now() + t);
        let per_try = policy
            .per_try_timeout
            .unwrap_or(self.pool.config.timeouts.response);
        let info = RequestInfo {
            headers: &head.headers,
            path: self.target.path(),
            client: self.conn.peer.ip(),
            secure: self.conn.tls.is_some(),
        };
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut tries = 0u32;
        loop {
            let (backend, set_cookie) = match self.pool.pick_for(Some(&info), &tried) {
                Ok(Picked {
                    backend,
                    set_cookie,
                }) => (backend, set_cookie),
                Err(err) => {
                    tracing::warn!(route = %self.route.name, upstream = %self.pool.name, reason = %err, "no usable backend");
                    return respond::error(err.status(), no_backend_reason(&err));
                }
            };
            record.set_backend(self.upstream, backend.addr);
            if tries > 0 {
                self.snapshot.metrics.retry(&self.pool.name);
            }
            tries += 1;
            let limit = match deadline {
                Some(d) => per_try.min(d.saturating_duration_since(Instant::now())),
                None => per_try,
            };
            let outcome = self
                .try_once(
                    &backend,
                    &head,
                    &mut payload,
                    record,
                    limit,
                    retryable_method,
                )
                .await;
            let more = tries <= policy.attempts && deadline.is_none_or(|d| Instant::now() < d);
            match outcome {
                Outcome::Answer(response, inflight, returning) => {
                    let status = response.status().as_u16();
                    let again = more
                        && retryable_method
                        && matches!(payload, Payload::Replay(_))
                        && policy.statuses.contains(&status);
                    if again {
                        tried.push(backend.addr);
                    }
                    if !(again && self.another(&tried) && self.pool.budget.try_retry()) {
                        inflight.observe(self.pool.config.balancing.decay);
                        let read_timeout = self.pool.config.timeouts.response;
                        let mut response = relay(response, via, read_timeout)
                            .map(|body| body.hold_until_end(Box::new((inflight, returning))));
                        if let Some(cookie) = set_cookie {
                            response
                                .headers_mut()
                                .append(http::header::SET_COOKIE, cookie);
                        }
                        return response;
                    }
                    tracing::info!(route = %self.route.name, upstream = %self.pool.name, backend = %backend.addr, status, "retrying on another backend");
                }
                Outcome::Failed { err, retry } => {
                    if !matches!(err, UpstreamError::Request { reused: true, .. }) {
                        tried.push(backend.addr);
                    }
                    if !(retry && more && self.another(&tried) && self.pool.budget.try_retry()) {
                        return failure(self.route, self.pool, &backend, err);
                    }
                    tracing::info!(route = %self.route.name, upstream = %self.pool.name, backend = %backend.addr, kind = err.kind(), error = %err, "retrying on another backend");
                }
            }
        }
    }

    /// Whether some backend is left to try.
    fn another(&self, tried: &[SocketAddr]) -> bool {
        self.pool.pick_except(tried).is_ok()
    }

    async fn try_once(
        &self,
        backend: &Arc<Backend>,
        head: &Head,
        payload: &mut Payload,
        record: &mut AccessRecord,
        limit: Duration,
        retryable_method: bool,
    ) -> Outcome {
        let pool = self.pool;
        let inflight = backend.stats.start();
        let _pending = Held::pending(Arc::clone(&pool.load), Some(Arc::clone(&backend.load)));
        let acquired = match tokio::time::timeout(limit, pool.acquire(backend)).await {
            Ok(Ok(a)) => a,
            Ok(Err(err)) => {
                if !matches!(err, UpstreamError::Overloaded(_)) {
                    let metrics = self.snapshot.backend_metrics(self.upstream, backend.addr);
                    metrics.error(&self.snapshot.metrics, error_kind(&err));
                    pool.report(&self.route.name, backend, false, err.kind());
                }
                // Nothing was sent: any method may go elsewhere, even with a streamed body.
                return Outcome::Failed { err, retry: true };
            }
            Err(_) => {
                let metrics = self.snapshot.backend_metrics(self.upstream, backend.addr);
                metrics.error(&self.snapshot.metrics, "connect_timeout");
                pool.report(&self.route.name, backend, false, "connect_timeout");
                return Outcome::Failed {
                    err: UpstreamError::ConnectTimeout(limit),
                    retry: true,
                };
            }
        };
        let replayable = matches!(payload, Payload::Replay(_));
        // The request and the end-of-upload signal live in this block only, so the future's
        // state does not keep a slot for them across the wait (it is moved often).
        let (send, upload_done) = {
            let req = match self.build(backend, head, payload, record) {
                Ok(r) => r,
                Err(reason) => {
                    return Outcome::Failed {
                        err: UpstreamError::Invalid(reason),
                        retry: false,
                    }
                }
            };
            // The response timeout runs from the end of the request body, not from its
            // start: a large or slow upload is not a slow backend. The body drops `uploaded`
            // when it ends (an in-memory body at once). A request without a body (most
            // GETs) needs no end-of-upload signal.
            if http_body::Body::is_end_stream(req.body()) {
                (pool.send_on(backend, acquired, req), None)
            } else {
                let (uploaded, upload_done) = tokio::sync::oneshot::channel::<()>();
                let req = req.map(|body| body.hold_until_end(Box::new(uploaded)));
                (pool.send_on(backend, acquired, req), Some(upload_done))
            }
        };
        let response_timer = async move {
            if let Some(done) = upload_done {
                let _ = done.await;
            }
            tokio::time::sleep(limit).await;
        };
        let sent_at = Instant::now();
        let answer = tokio::select! {
            sent = send => Ok(sent),
            () = response_timer => Err(()),
        };
        let metrics = self.snapshot.backend_metrics(self.upstream, backend.addr);
        match answer {
            Ok(Ok(sent)) => {
                metrics.response(sent_at.elapsed());
                let status = sent.response.status();
                pool.report(
                    &self.route.name,
                    backend,
                    !status.is_server_error(),
                    status.as_str(),
                );
                Outcome::Answer(sent.response, inflight, sent.returning)
            }
            Ok(Err(err)) => {
                let client_fault = client_body_error(&err).is_some();
                if !client_fault {
                    metrics.error(&self.snapshot.metrics, error_kind(&err));
                    pool.report(&self.route.name, backend, false, err.kind());
                }
                let stale = matches!(err, UpstreamError::Request { reused: true, .. });
                let retry = stale && !client_fault && retryable_method && replayable;
                Outcome::Failed { err, retry }
            }
            Err(_) => {
                metrics.error(&self.snapshot.metrics, "timeout");
                pool.report(&self.route.name, backend, false, "timeout");
                Outcome::Failed {
                    err: UpstreamError::ResponseTimeout(limit),
                    retry: false,
                }
            }
        }
    }

    fn build(
        &self,
        backend: &Backend,
        head: &Head,
        payload: &mut Payload,
        record: &mut AccessRecord,
    ) -> Result<Request<ProxyBody>, &'static str> {
        let mut fresh = Request::new(());
        *fresh.method_mut() = head.method.clone();
        *fresh.uri_mut() = head.uri.clone();
        *fresh.version_mut() = head.version;
        // Room for the forwarding fields up front: a clone is sized to fit exactly, and
        // the first insert would then grow (reallocate and rehash) it.
        let mut headers = HeaderMap::with_capacity(head.headers.len() + 6);
        for (name, value) in &head.headers {
            headers.append(name.clone(), value.clone());
        }
        *fresh.headers_mut() = headers;
        let (mut parts, ()) = fresh.into_parts();
        let dest = Dest {
            route: self.route,
            pool: self.pool,
            backend,
        };
        build_head(
            self.snapshot,
            self.conn,
            &dest,
            &mut parts,
            self.target,
            false,
        )?;
        let limit = self.route.max_body_size;
        let body = match payload {
            Payload::Replay(data) => ProxyBody::full(data.clone()),
            Payload::Stream(slot) => match (slot.take(), record.body_counter()) {
                (Some(body), Some(counter)) => ProxyBody::counted(body, limit, counter),
                (Some(body), None) => ProxyBody::stream(body, limit),
                (None, _) => return Err("request body already sent"),
            },
        };
        Ok(Request::from_parts(parts, body))
    }
}

fn declared(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn no_backend_reason(err: &UpstreamError) -> &'static str {
    match err {
        UpstreamError::Overloaded(reason) => reason,
        _ => "no backend available",
    }
}
