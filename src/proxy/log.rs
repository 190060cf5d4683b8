//! The access log: one record per request, emitted through `tracing` when the response body
//! ends (or is dropped), so it carries the real bytes sent and the full duration.

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
            suppressed: false,
        }
    }

    /// Writes no record for this request: a WebSocket session logs its own when it ends.
    pub fn suppress(&mut self) {
        self.suppressed = true;
    }

    /// A counter for the request body's bytes, when the access log is on.
    pub fn body_counter(&mut self) -> Option<Arc<AtomicU64>> {
        if !self.snapshot.config.settings.access_log {
            return None;
        }
        let counter = Arc::new(AtomicU64::new(0));
        self.bytes_in = Some(Arc::clone(&counter));
        Some(counter)
    }

    /// Wraps the response so the record is written once its body is done.
    pub fn finish(self, response: Response<ProxyBody>) -> Response<LoggedBody> {
        let enabled = self.snapshot.config.settings.access_log && !self.suppressed;
        let status = response.status();
        response.map(|inner| LoggedBody {
            inner,
            pending: enabled.then(|| {
                Box::new(Pending {
                    record: self,
                    status,
                    bytes_out: 0,
                })
            }),
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
        tracing::info!(
            target: "portico::access",
            listener = %r.listener.config.name,
            route = name(r.route.and_then(|i| cfg.routes.get(i)).map(|x| &x.name)),
            upstream = name(r.upstream.and_then(|i| cfg.upstreams.get(i)).map(|x| &x.name)),
            backend = %r.backend.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            client = %r.peer.ip(),
            method = %r.method,
            path = r.uri.path(),
            status = self.status.as_u16(),
            bytes_in = r.bytes_in.as_ref().map_or(0, |c| c.load(Ordering::Relaxed)),
            bytes_out = self.bytes_out,
            duration_ms = r.started.elapsed().as_secs_f64() * 1000.0,
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
