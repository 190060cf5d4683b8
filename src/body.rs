//! The one body type that flows through the proxy in both directions: a streamed hyper body
//! (with an optional size limit), a small in-memory body, or nothing. No boxing per request.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

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
}

/// Something kept alive until a streamed body ends (an in-flight guard of the backend).
pub type Hold = Box<dyn std::any::Any + Send + Sync>;

pin_project_lite::pin_project! {
    /// A request or response body as Portico forwards it.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Empty,
        Full { data: Option<Bytes> },
        Stream { #[pin] inner: Incoming, limit: u64, seen: u64, counter: Option<Arc<AtomicU64>>, hold: Option<Hold> },
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
        }
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
            } => match std::task::ready!(inner.poll_frame(cx)) {
                Some(Ok(frame)) => {
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
                Some(Err(e)) => {
                    *hold = None;
                    Poll::Ready(Some(Err(BodyError::Stream(e))))
                }
                None => {
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
