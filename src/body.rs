//! The one body type that flows through the proxy in both directions: a streamed hyper body
//! (with an optional size limit), a small in-memory body, or nothing. No boxing per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why a streamed body stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body exceeds the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("body stream failed: {0}")]
    Stream(#[from] hyper::Error),
    #[error("no body data for {0:?}")]
    ReadTimeout(Duration),
}

/// A bound on how long a streamed body may keep its reader waiting for the next frame
/// (nginx's `proxy_read_timeout`). Only time spent waiting on the sender counts: a reader
/// that is slow to ask does not use it up.
pub struct Gap {
    limit: Duration,
    /// Made at the first wait only: a body whose frames are always ready costs no timer.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl Gap {
    fn new(limit: Duration) -> Gap {
        Gap {
            limit,
            sleep: None,
            waiting: false,
        }
    }

    /// Called when the sender had nothing: true once it has had nothing for `limit`.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.waiting {
            self.waiting = true;
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// Something kept alive until a streamed body ends (an in-flight guard of the backend).
pub type Hold = Box<dyn std::any::Any + Send + Sync>;

pin_project_lite::pin_project! {
    /// A request or response body as Portico forwards it.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Empty,
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: Incoming, limit: u64, seen: u64, counter: Option<Arc<AtomicU64>>, hold: Option<Hold>, gap: Option<Gap> },
    }
}

impl ProxyBody {
    pub fn empty() -> Self {
        ProxyBody::Empty
    }

    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        if data.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full { data: Some(data) }
        }
    }

    /// A streamed body; `limit` caps the data bytes it may carry (`u64::MAX` for none).
    pub fn stream(inner: Incoming, limit: Option<u64>) -> Self {
        ProxyBody::Stream {
            inner,
            limit: limit.unwrap_or(u64::MAX),
            seen: 0,
            counter: None,
            hold: None,
            gap: None,
        }
    }

    /// Like `stream`, also publishing the bytes seen so far to `counter` (for access logs).
    pub fn counted(inner: Incoming, limit: Option<u64>, counter: Arc<AtomicU64>) -> Self {
        ProxyBody::Stream {
            inner,
            limit: limit.unwrap_or(u64::MAX),
            seen: 0,
            counter: Some(counter),
            hold: None,
            gap: None,
        }
    }

    /// Fails a streamed body whose sender leaves the reader waiting longer than `limit` for
    /// the next frame.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        if let ProxyBody::Stream { gap, .. } = &mut self {
            *gap = Some(Gap::new(limit));
        }
        self
    }

    /// Keeps `value` alive until the stream ends (or the body is dropped); an in-memory body
    /// drops it at once.
    pub fn hold_until_end(mut self, value: Hold) -> Self {
        if let ProxyBody::Stream { hold, .. } = &mut self {
            *hold = Some(value);
        }
        self
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            ProxyBodyProj::Empty => Poll::Ready(None),
            ProxyBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBodyProj::Stream {
                inner,
                limit,
                seen,
                counter,
                hold,
                gap,
            } => match inner.poll_frame(cx) {
                Poll::Pending => {
                    let expired = gap.as_mut().and_then(|g| g.expired(cx).then_some(g.limit));
                    match expired {
                        Some(limit) => {
                            *hold = None;
                            Poll::Ready(Some(Err(BodyError::ReadTimeout(limit))))
                        }
                        None => Poll::Pending,
                    }
                }
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(g) = gap {
                        g.waiting = false;
                    }
                    if let Some(data) = frame.data_ref() {
                        *seen += data.len() as u64;
                        if let Some(c) = counter {
                            c.store(*seen, Ordering::Relaxed);
                        }
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(BodyError::TooLarge { limit: *limit })));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    *hold = None;
                    Poll::Ready(Some(Err(BodyError::Stream(e))))
                }
                Poll::Ready(None) => {
                    *hold = None;
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full { data } => data.is_none(),
            ProxyBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}
