//! The behaviours a test backend can have (`Reply`) and the bodies that implement them:
//! echo, checksum sink, pattern download, gRPC trailers, dying mid-body, delays.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::backend::Shared;
use super::body::{channel_body, full, BoxError, Checksum, PatternBody, TestBody};

/// How the backend answers a path.
#[derive(Debug, Clone)]
pub enum Reply {
    Text {
        status: StatusCode,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// Streams the request body back as it arrives.
    Echo,
    /// Reads the whole body and answers with its `Checksum::to_text`.
    Sink,
    /// `?size=N` pattern bytes in 64 KiB chunks; `&nolength=1` omits Content-Length.
    Download,
    /// gRPC style: echoes the body as `application/grpc` and ends with a `grpc-status: 0` trailer.
    Grpc,
    /// Sends the head (with Content-Length `announced` if given), `sent` bytes, then fails.
    DieMidBody { announced: Option<u64>, sent: u64 },
    /// Waits, then answers as the inner reply.
    Delay(Duration, Box<Reply>),
}

impl Reply {
    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Text {
            status: StatusCode::from_u16(status).expect("status code"),
            headers: Vec::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    /// Adds a response header (repeatable: `Set-Cookie` twice gives two fields).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Text { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    pub fn delayed(self, delay: Duration) -> Reply {
        Reply::Delay(delay, Box::new(self))
    }
}

pub(super) async fn answer(
    mut reply: Reply,
    body: CountingBody,
    query: &str,
) -> Response<TestBody> {
    while let Reply::Delay(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Text {
            status,
            headers,
            body: text,
        } => {
            // Drain the request body first so it is counted and the connection stays usable.
            let _ = body.collect().await;
            let mut resp = Response::new(full(text));
            *resp.status_mut() = status;
            for (name, value) in headers {
                resp.headers_mut().append(
                    HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            resp
        }
        Reply::Echo => Response::new(BodyExt::boxed(body)),
        Reply::Sink => {
            let mut sum = Checksum::default();
            let mut body = body;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            sum.update(data);
                        }
                    }
                    Err(_) => return status_only(StatusCode::BAD_REQUEST),
                }
            }
            Response::new(full(sum.to_text()))
        }
        Reply::Download => {
            let _ = body.collect().await;
            let size = query_param(query, "size")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let sized = query_param(query, "nolength").is_none();
            Response::new(PatternBody::new(size, 64 * 1024, sized).boxed())
        }
        Reply::Grpc => {
            let mut resp = Response::new(BodyExt::boxed(GrpcBody {
                inner: body,
                done: false,
            }));
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            // HTTP/1.1 senders emit only the trailer fields announced here (RFC 9110 6.6.2).
            resp.headers_mut().insert(
                "trailer",
                HeaderValue::from_static("grpc-status, grpc-message"),
            );
            resp
        }
        Reply::DieMidBody { announced, sent } => {
            let _ = body.collect().await;
            let (tx, out) = channel_body(announced);
            tokio::spawn(async move {
                let mut left = sent;
                while left > 0 {
                    let n = left.min(16 * 1024);
                    if !tx.data(vec![b'x'; n as usize]).await {
                        return;
                    }
                    left -= n;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.fail("backend dies mid-body").await;
            });
            let mut resp = Response::new(out);
            if let Some(n) = announced {
                resp.headers_mut()
                    .insert("content-length", HeaderValue::from(n));
            }
            resp
        }
        Reply::Delay(..) => status_only(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

fn status_only(status: StatusCode) -> Response<TestBody> {
    let mut resp = Response::new(super::body::empty());
    *resp.status_mut() = status;
    resp
}

pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Passes the request body through while counting it into the request's record.
pub(super) struct CountingBody {
    pub(super) inner: Incoming,
    pub(super) shared: Arc<Shared>,
    pub(super) index: usize,
    pub(super) count: u64,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count += data.len() as u64;
                let (count, index) = (self.count, self.index);
                if let Some(record) = self
                    .shared
                    .requests
                    .lock()
                    .expect("records lock")
                    .get_mut(index)
                {
                    record.body_len = count;
                }
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Echo that drops incoming trailers and ends with `grpc-status: 0`.
struct GrpcBody {
    inner: CountingBody,
    done: bool,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) if frame.is_data() => {
                    return Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Ok(_trailers))) => continue,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    trailers.insert("grpc-message", HeaderValue::from_static("ok"));
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
