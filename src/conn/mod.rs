//! Serving one client connection: TLS handshake (under a timeout, in this task), protocol
//! choice (ALPN, or the h2c preface on plain listeners), hyper with Portico's limits, and a
//! graceful end when the drain starts.

mod chunked;
pub mod h1guard;
pub mod idle;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::net::MaybeTls;
use crate::proxy::{self, ConnInfo, TlsInfo};
use crate::shutdown::Watcher;
use crate::state::{ListenerState, SharedState};
use h1guard::H1Guard;
use idle::{Activity, BusyBody, Tracked};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a connection that has answered nothing yet may take to start answering its first
/// request once the drain has begun.
const FIRST_REQUEST_ON_DRAIN: Duration = Duration::from_secs(1);

/// Serves `stream` accepted on `listener` (as the snapshot current at accept time had it).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerState>,
    state: SharedState,
    shutdown: Watcher,
) {
    let name = listener.config.name.as_str();
    // Handles resolved once per listener: no label strings or lookups per connection.
    let _active = listener.metrics.connection();
    let _ = stream.set_nodelay(true);
    if let Some(tls) = &listener.tls {
        let limit = listener
            .config
            .tls
            .as_ref()
            .map_or(Duration::from_secs(10), |t| t.handshake_timeout);
        let tls_stream = match tokio::time::timeout(limit, tls.acceptor.accept(stream)).await {
            Ok(Ok(s)) => {
                listener.metrics.tls_handshake();
                s
            }
            Ok(Err(e)) => {
                state
                    .load()
                    .metrics
                    .tls_handshake_failed(name, handshake_failure(&e));
                tracing::debug!(%peer, listener = %listener.config.name, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                state.load().metrics.tls_handshake_failed(name, "timeout");
                tracing::debug!(%peer, listener = %listener.config.name, "TLS handshake timed out");
                return;
            }
        };
        let session = tls_stream.get_ref().1;
        let h2 = session.alpn_protocol() == Some(b"h2");
        let sni_cert = session.server_name().map(|name| tls.sni.cert_for(name));
        let info = ConnInfo {
            tls: Some(TlsInfo {
                sni: tls.sni.clone(),
                sni_cert,
            }),
            listener: Arc::clone(&listener),
            peer,
            client: proxy::headers::Peer::new(peer.ip()),
            shutdown: shutdown.clone(),
        };
        let io = MaybeTls::from(tls_stream);
        if h2 {
            serve_h2(io, info, state, shutdown).await;
        } else {
            serve_h1(io, info, state, shutdown).await;
        }
        return;
    }
    let info = ConnInfo {
        listener: Arc::clone(&listener),
        peer,
        client: proxy::headers::Peer::new(peer.ip()),
        tls: None,
        shutdown: shutdown.clone(),
    };
    match sniff_h2c(&stream, listener.config.limits.header_read_timeout).await {
        Some(true) => serve_h2(stream, info, state, shutdown).await,
        Some(false) => serve_h1(stream, info, state, shutdown).await,
        None => {}
    }
}

/// The `reason` label of a failed TLS handshake.
fn handshake_failure(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::InvalidMessage(_) | E::InappropriateMessage { .. }) => "invalid_message",
        Some(E::InappropriateHandshakeMessage { .. }) => "invalid_message",
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(E::NoApplicationProtocol) => "no_alpn",
        Some(E::AlertReceived(_)) => "alert_received",
        Some(E::PeerMisbehaved(_)) => "peer_misbehaved",
        Some(E::General(_)) => "no_certificate",
        Some(_) => "other",
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "eof",
        None => "io",
    }
}

/// Peeks (without consuming) until the bytes either are or cannot be the HTTP/2 preface.
/// `None`: the client closed or stayed silent past the header timeout.
async fn sniff_h2c(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let mut buf = [0u8; 24];
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Some(false);
        }
        if n == H2_PREFACE.len() {
            return Some(true);
        }
        // A partial preface: peek again later. `readable()` would return at once because the
        // peeked bytes are still queued, so back off instead of spinning.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

fn service(
    info: ConnInfo,
    state: SharedState,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = proxy::ProxyResponse,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<proxy::ProxyResponse, Infallible>> + Send,
> + Clone {
    let info = Arc::new(info);
    service_fn(move |req| {
        let info = Arc::clone(&info);
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(proxy::handle(&state, &info, req).await) }
    })
}

/// `service` for HTTP/2: each request holds the connection busy until its response body
/// ends, which is what idleness means there (PINGs move bytes but are not activity).
fn busy_service(
    info: ConnInfo,
    state: SharedState,
    activity: Activity,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<BusyBody<proxy::LoggedBody>>,
    Error = Infallible,
    Future = impl std::future::Future<
        Output = Result<http::Response<BusyBody<proxy::LoggedBody>>, Infallible>,
    > + Send,
> + Clone {
    let info = Arc::new(info);
    service_fn(move |req| {
        let info = Arc::clone(&info);
        let state = Arc::clone(&state);
        let busy = activity.busy();
        async move {
            let resp = proxy::handle(&state, &info, req).await;
            Ok::<_, Infallible>(resp.map(|body| BusyBody::new(body, busy)))
        }
    })
}

/// After an idle-triggered graceful close, a connection whose request is still stuck (no
/// byte moving, nothing finishing) gets one more idle period, then is dropped.
async fn close_when_stalled<F, E>(conn: Pin<&mut F>, activity: &Activity, limit: Duration)
where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    activity.touch();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error after its idle close");
            }
        }
        _ = activity.idle_for(limit) => {
            tracing::debug!("connection dropped: still stalled after its idle close");
        }
    }
}

async fn serve_h1<IO>(io: IO, info: ConnInfo, state: SharedState, mut shutdown: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = info.listener.config.limits.clone();
    let peer = info.peer;
    let activity = Activity::new();
    let guard = H1Guard::new(Tracked::new(io, activity.clone()), limits.max_header_bytes);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true)
        .half_close(false);
    // Upgrades: a WebSocket's 101 hands the stream to its tunnel task and ends this one.
    let conn = builder
        .serve_connection(TokioIo::new(guard), service(info, state))
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.triggered() => {
            // Accepted just before the drain and not answered yet: its first request may be
            // on the wire; let it start being answered before the graceful close, which
            // would otherwise close the connection under it.
            let early = if activity.has_written() {
                None
            } else {
                tokio::select! {
                    r = conn.as_mut() => Some(r),
                    () = activity.first_write(FIRST_REQUEST_ON_DRAIN) => None,
                }
            };
            match early {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            }
        }
        _ = activity.idle_for(limits.idle_timeout) => {
            conn.as_mut().graceful_shutdown();
            close_when_stalled(conn.as_mut(), &activity, limits.idle_timeout).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP/1 connection ended with an error");
    }
}

async fn serve_h2<IO>(io: IO, info: ConnInfo, state: SharedState, mut shutdown: Watcher)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let h2 = info.listener.config.http2.clone();
    let idle_limit = info.listener.config.limits.idle_timeout;
    let peer = info.peer;
    let activity = Activity::new();
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(h2.max_concurrent_streams)
        .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(h2.max_local_error_reset_streams)
        .max_header_list_size(h2.max_header_list_size)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    if h2.enable_connect_protocol {
        // RFC 8441: lets clients open WebSockets as extended CONNECT streams.
        builder.enable_connect_protocol();
    }
    let conn = builder.serve_connection(
        TokioIo::new(io),
        busy_service(info, state, activity.clone()),
    );
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.triggered() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
        _ = activity.idle_for(idle_limit) => {
            conn.as_mut().graceful_shutdown();
            close_when_stalled(conn.as_mut(), &activity, idle_limit).await;
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
    }
}
