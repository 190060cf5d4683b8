//! Layer 4 listeners: `mode: tcp` tunnels every connection to one upstream; `mode:
//! tls_passthrough` reads the ClientHello's SNI (without decrypting or consuming it) and
//! tunnels to the upstream it selects. Both accept a PROXY v1/v2 header from trusted peers,
//! may send a PROXY v2 header to the backend, and log one record per session.
//!
//! Bytes from peers not listed in `proxy_protocol.accept_from` are never parsed as a PROXY
//! header: in `tcp` mode they are payload like any other (a server-speaks-first protocol
//! cannot wait to see what the client might send), and in `tls_passthrough` mode they are not
//! a ClientHello, so the connection is closed.

mod client_hello;
mod copy;
mod log;
mod passthrough;
mod proxy_protocol;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::model::{Listener, ListenerMode};
use crate::metrics::{BackendLabels, Metrics};
use crate::shutdown::Watcher;
use crate::state::{ListenerState, SharedState, Snapshot};
use crate::upstream::{UpstreamError, UpstreamPool};
use client_hello::HelloError;
use copy::{Counters, End};
use log::Session;
use proxy_protocol::{Parsed, ProxyHeaderError};

/// Distinct backends tried when connecting fails (no byte has been sent, so a retry is safe).
const CONNECT_ATTEMPTS: usize = 3;
/// Bytes asked of the socket per read while waiting for a header.
const HEADER_READ: usize = 2048;
/// What the handshake waits for, in messages.
const PROXY_HEADER: &str = "PROXY header";
const CLIENT_HELLO: &str = "ClientHello";

/// Why a Layer 4 connection was refused or broke before its tunnel started.
#[derive(Debug, thiserror::Error)]
pub enum L4Error {
    #[error("the client closed the connection before its {0} was complete")]
    ClientClosed(&'static str),
    #[error("reading the {what} failed: {source}")]
    ClientRead {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("no complete {0} within the header read timeout")]
    Timeout(&'static str),
    #[error("{0} larger than the buffer allows")]
    TooLarge(&'static str),
    #[error(transparent)]
    ProxyHeader(#[from] ProxyHeaderError),
    #[error(transparent)]
    ClientHello(#[from] HelloError),
    #[error("no `sni` entry matches and the listener has no default `upstream`")]
    NoRoute,
    #[error("upstream {upstream:?}: {source}")]
    Upstream {
        upstream: String,
        #[source]
        source: UpstreamError,
    },
    #[error("writing to the backend failed: {0}")]
    BackendWrite(#[source] io::Error),
    #[error("listener is not a Layer 4 listener")]
    NotLayer4,
}

impl L4Error {
    /// A short, stable label for the session log.
    pub fn kind(&self) -> &'static str {
        match self {
            L4Error::ClientClosed(_) | L4Error::ClientRead { .. } => "client_error",
            L4Error::Timeout(_) => "header_timeout",
            L4Error::TooLarge(_) => "header_too_large",
            L4Error::ProxyHeader(_) => "bad_proxy_header",
            L4Error::ClientHello(_) => "bad_client_hello",
            L4Error::NoRoute => "no_route",
            L4Error::Upstream { source, .. } => match source {
                UpstreamError::NoBackend => "no_backend",
                UpstreamError::ConnectTimeout(_) => "connect_timeout",
                _ => "connect_failed",
            },
            L4Error::BackendWrite(_) => "backend_error",
            L4Error::NotLayer4 => "internal",
        }
    }
}

/// Serves one connection accepted on the Layer 4 `listener`. The tunnel keeps the snapshot
/// it started with until it ends.
pub async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerState>,
    state: SharedState,
    shutdown: Watcher,
) {
    let snapshot = state.load_full();
    let config = &listener.config;
    // Interactive protocols in the tunnel must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let _active = listener.metrics.connection();
    let mut session = Session::new(&config.name, config.mode.name(), peer);
    let counters = Counters::default();
    let outcome = tunnel(
        &mut stream,
        &snapshot,
        config,
        &mut session,
        &counters,
        shutdown,
    )
    .await;
    listener.metrics.bytes(
        counters.client_to_backend.load(Ordering::Relaxed),
        counters.backend_to_client.load(Ordering::Relaxed),
    );
    if snapshot.config.settings.access_log {
        session.log(&counters, &outcome);
    }
}

async fn tunnel(
    stream: &mut TcpStream,
    snapshot: &Arc<Snapshot>,
    listener: &Listener,
    session: &mut Session,
    counters: &Counters,
    shutdown: Watcher,
) -> Result<End, L4Error> {
    let mut destination = stream.local_addr().unwrap_or(session.peer);
    let mut early = Vec::new();
    let mut stage = PROXY_HEADER;
    let handshake = handshake(
        stream,
        listener,
        session,
        &mut early,
        &mut destination,
        &mut stage,
    );
    // The handshake and connect phases are boxed: their futures are large and short-lived,
    // and inline they would enlarge every tunnel's task for its whole life.
    let limit = listener.limits.header_read_timeout;
    let waited = Box::pin(tokio::time::timeout(limit, handshake)).await;
    let upstream = waited.map_err(|_| L4Error::Timeout(stage))??;
    let pool = snapshot
        .upstreams
        .get(upstream)
        .ok_or_else(|| L4Error::Upstream {
            upstream: format!("#{upstream}"),
            source: UpstreamError::NoBackend,
        })?;
    session.upstream = Some(pool.name.clone());
    let (backend, addr) = Box::pin(connect(pool, &snapshot.metrics, &listener.name))
        .await
        .map_err(|source| L4Error::Upstream {
            upstream: pool.name.clone(),
            source,
        })?;
    session.backend = Some(addr);
    let _tunnel = snapshot
        .metrics
        .tunnel(&listener.name, listener.mode.name());
    // The tunnel counts as a request in flight (least_requests, p2c_ewma) until it ends.
    let _inflight = pool
        .members()
        .backends
        .iter()
        .find(|b| b.addr == addr)
        .map(|b| b.stats.start());
    // What the client sent while the upstream was chosen (the ClientHello, or payload that
    // followed a PROXY header) goes first, exactly as received, after our own PROXY header.
    let from_client = early.len() as u64;
    let prelude = if listener.proxy_protocol.send_v2 {
        let mut header = proxy_protocol::v2_header(session.client, destination);
        header.extend_from_slice(&early);
        header
    } else {
        std::mem::take(&mut early)
    };
    Box::pin(copy::write_all(&backend, &prelude))
        .await
        .map_err(L4Error::BackendWrite)?;
    counters
        .client_to_backend
        .fetch_add(from_client, Ordering::Relaxed);
    // The tunnel may live for hours: it must not keep the header buffers.
    drop((early, prelude));
    let grace = snapshot.config.settings.grace_period;
    let idle = listener.limits.idle_timeout;
    Ok(copy::run(stream, &backend, idle, grace, shutdown, counters).await)
}

/// Reads what must come before the upstream is known (a trusted peer's PROXY header, the
/// ClientHello) into `early`, leaving there every byte that belongs to the backend.
async fn handshake(
    stream: &mut TcpStream,
    listener: &Listener,
    session: &mut Session,
    early: &mut Vec<u8>,
    destination: &mut SocketAddr,
    stage: &mut &'static str,
) -> Result<usize, L4Error> {
    let peer_ip = session.peer.ip().to_canonical();
    if listener
        .proxy_protocol
        .accept_from
        .iter()
        .any(|net| net.contains(&peer_ip))
    {
        *stage = PROXY_HEADER;
        let header = read_until(
            stream,
            early,
            proxy_protocol::MAX_HEADER,
            PROXY_HEADER,
            |buf| match proxy_protocol::parse(buf)? {
                Parsed::Header(h) => Ok(Some(h)),
                Parsed::Incomplete => Ok(None),
            },
        )
        .await?;
        // `len` counts bytes of `early`; `min` only keeps a parser bug from panicking here.
        early.drain(..header.len.min(early.len()));
        session.proxy_version = Some(header.version);
        if let Some(source) = header.source {
            session.client = source;
        }
        if let Some(original) = header.destination {
            *destination = original;
        }
    }
    match &listener.mode {
        ListenerMode::Tcp { upstream } => Ok(*upstream),
        ListenerMode::TlsPassthrough(routes) => {
            *stage = CLIENT_HELLO;
            let sni = read_until(
                stream,
                early,
                client_hello::MAX_BUFFERED,
                CLIENT_HELLO,
                |buf| Ok(passthrough::sni_so_far(buf)?),
            )
            .await?;
            let upstream = passthrough::pick(routes, sni.as_deref());
            session.sni = sni;
            upstream.ok_or(L4Error::NoRoute)
        }
        ListenerMode::Http => Err(L4Error::NotLayer4),
    }
}

/// Reads into `buf` until `parse` finds what it looks for in everything read so far.
async fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limit: usize,
    what: &'static str,
    mut parse: impl FnMut(&[u8]) -> Result<Option<T>, L4Error>,
) -> Result<T, L4Error> {
    loop {
        if let Some(found) = parse(buf)? {
            return Ok(found);
        }
        let room = limit.saturating_sub(buf.len());
        if room == 0 {
            return Err(L4Error::TooLarge(what));
        }
        // Exact, so that the buffer never grows past the limit.
        buf.reserve_exact(room.min(HEADER_READ));
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|source| L4Error::ClientRead { what, source })?;
        if n == 0 {
            return Err(L4Error::ClientClosed(what));
        }
    }
}

/// Connects to a backend picked by the upstream's balancer, trying up to `CONNECT_ATTEMPTS`
/// distinct backends.
async fn connect(
    pool: &UpstreamPool,
    metrics: &Metrics,
    listener: &str,
) -> Result<(TcpStream, SocketAddr), UpstreamError> {
    let mut tried: Vec<SocketAddr> = Vec::new();
    let mut last = UpstreamError::NoBackend;
    for attempt in 0..CONNECT_ATTEMPTS {
        let backend = match pool.pick_except(&tried) {
            Ok(b) => b,
            Err(e) => {
                if tried.is_empty() {
                    last = e;
                }
                break;
            }
        };
        tried.push(backend.addr);
        if attempt > 0 {
            metrics.retry(&pool.name);
        }
        let labels = BackendLabels::new(&pool.name, backend.addr);
        match pool.connect_tcp(backend.addr).await {
            Ok(stream) => {
                metrics.backend_connected(&labels);
                pool.report(listener, &backend, true, "connected");
                return Ok((stream, backend.addr));
            }
            Err(e) => {
                metrics.upstream_error(&labels, e.kind());
                tracing::debug!(upstream = %pool.name, backend = %backend.addr, error = %e, "backend connect failed");
                pool.report(listener, &backend, false, e.kind());
                last = e;
            }
        }
    }
    Err(last)
}
