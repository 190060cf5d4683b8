//! The access log: one record per request, emitted through `tracing` when the response body
//! ends (or is dropped), so it carries the real bytes sent and the full duration. The request
//! metrics (count, latency, bytes) are recorded at the same point, so there is one place.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};

use crate::body::{BodyError, ProxyBody};
use crate::metrics::{InFlight, RouteLabels};
use crate::state::{ListenerState, Snapshot};

/// What is known about a request while it is handled.
pub struct AccessRecord {
    snapshot: Arc<Snapshot>,
    listener: Arc<ListenerState>,
    peer: SocketAddr,
    method: Method,
    uri: Uri,
    started: Instant,
    /// Request body bytes read, when the body is streamed and logging is on.
    bytes_in: Option<Arc<AtomicU64>>,
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub backend: Option<SocketAddr>,
    /// Counts the request in flight to its backend until the response ends.
    in_flight: Option<InFlight>,
    /// Another record (a WebSocket session's) stands for this request.
    suppressed: bool,
}

impl AccessRecord {
    pub fn new<B>(
        snapshot: &Arc<Snapshot>,
        listener: &Arc<ListenerState>,
        peer: SocketAddr,
        req: &Request<B>,
        started: Instant,
    ) -> Self {
        Self {
            snapshot: Arc::clone(snapshot),
            listener: Arc::clone(listener),
            peer,
            method: req.method().clone(),
            uri: req.uri().clone(),
            started,
            bytes_in: None,
            route: None,
            upstream: None,
            backend: None,
            in_flight: None,
            suppressed: false,
        }
    }

    /// Writes no record for this request: a WebSocket session logs its own when it ends.
    pub fn suppress(&mut self) {
        self.suppressed = true;
    }

    /// The backend chosen for this request; it counts as in flight there until the response
    /// body ends (or the request is dropped).
    pub fn set_backend(&mut self, upstream: usize, backend: SocketAddr) {
        self.backend = Some(backend);
        self.in_flight = Some(self.snapshot.backend_metrics(upstream, backend).in_flight());
    }

    /// A counter for the request body's bytes (access log and metrics).
    pub fn body_counter(&mut self) -> Option<Arc<AtomicU64>> {
        let counter = Arc::new(AtomicU64::new(0));
        self.bytes_in = Some(Arc::clone(&counter));
        Some(counter)
    }

    /// Wraps the response so the record is written once its body is done.
    pub fn finish(self, response: Response<ProxyBody>) -> Response<LoggedBody> {
        let status = response.status();
        response.map(|inner| LoggedBody {
            inner,
            pending: Some(Box::new(Pending {
                record: self,
                status,
                bytes_out: 0,
            })),
        })
    }
}

struct Pending {
    record: AccessRecord,
    status: StatusCode,
    bytes_out: u64,
}

fn name(v: Option<&String>) -> &str {
    v.map_or("-", String::as_str)
}

impl Drop for Pending {
    fn drop(&mut self) {
        let r = &self.record;
        let cfg = &r.snapshot.config;
        let route = name(r.route.and_then(|i| cfg.routes.get(i)).map(|x| &x.name));
        let bytes_in = r.bytes_in.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        let elapsed = r.started.elapsed();
        let listener = &r.listener.config.name;
        let status = self.status.as_u16();
        match r.listener.route_metrics(r.route) {
            Some(m) => m.record(status, elapsed),
            None => r
                .snapshot
                .metrics
                .request(&RouteLabels::new(listener, route), status, elapsed),
        }
        r.listener.metrics.bytes(bytes_in, self.bytes_out);
        if !cfg.settings.access_log || r.suppressed {
            return;
        }
        tracing::info!(
            target: "portico::access",
            listener = %listener,
            route,
            upstream = name(r.upstream.and_then(|i| cfg.upstreams.get(i)).map(|x| &x.name)),
            backend = %r.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            client = %r.peer.ip(),
            method = %r.method,
            path = r.uri.path(),
            status = self.status.as_u16(),
            bytes_in,
            bytes_out = self.bytes_out,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request",
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts bytes and writes the access record when done.
    pub struct LoggedBody {
        #[pin]
        inner: ProxyBody,
        pending: Option<Box<Pending>>,
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Some(p) = this.pending.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    p.bytes_out += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                    // Dropping the pending record writes the log line now rather than when
                    // hyper gets round to dropping the body.
                    this.pending.take();
                }
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
