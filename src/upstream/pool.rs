//! Per-upstream connection pools: TCP (+ TLS re-encryption) connectors and hyper client
//! connections kept alive per backend. HTTP/1.1 keeps a stack of idle connections; HTTP/2
//! shares one multiplexed connection per backend.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::balancer::sticky::Sealer;
pub use super::checkin::Returning;
use super::limits::{connection_refused, Held, Load, RetryBudget};
use super::UpstreamError;
use crate::body::ProxyBody;
use crate::config::model::{Upstream, UpstreamProtocol};

pub(super) type H1Sender = http1::SendRequest<ProxyBody>;
pub(super) type H2Sender = http2::SendRequest<ProxyBody>;

pub use super::backend::{Backend, Members};

/// How to reach the backends of one upstream.
pub struct UpstreamPool {
    pub name: String,
    pub config: Upstream,
    pub(super) members: ArcSwap<Members>,
    /// Seals the sticky-session cookie when the upstream has `sticky`.
    pub(super) sealer: Option<Sealer>,
    /// Connections and pending requests of the whole upstream.
    pub load: Arc<Load>,
    pub budget: RetryBudget,
    /// State of the slow-start dice.
    pub(super) dice: AtomicU64,
    tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
    /// The TLS connector for upgrade connections, which always speak HTTP/1.1 (ALPN
    /// `http/1.1` even when ordinary requests go over h2).
    upgrade_tls: Option<TlsConnector>,
    /// `config::fingerprint_files` of the TLS files the client config was built from (0
    /// without TLS): a reload keeps this pool only while they are unchanged.
    pub tls_files: u64,
}

/// A connection ready for one request.
pub enum Conn {
    H1(H1Sender),
    H2(H2Sender),
}

/// A connection taken for a request, and whether it served before.
pub struct Acquired {
    conn: Conn,
    pub reused: bool,
}

/// A response from a backend, with where it came from.
pub struct Sent {
    pub response: Response<Incoming>,
    pub reused: bool,
    /// An HTTP/1.1 connection goes back to the pool when this drops: keep it until the
    /// response body has been read.
    pub returning: Option<Returning>,
}

impl UpstreamPool {
    /// Builds the pool; `tls` is the client config when the upstream re-encrypts.
    pub fn new(config: Upstream, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self::with_previous(config, tls, None)
    }

    /// Like `new`, carrying each backend's load state over from `previous` (the same
    /// upstream in the configuration being replaced) when its address is still there, and
    /// keeping the addresses discovery had resolved until it resolves them again.
    pub fn with_previous(
        config: Upstream,
        tls: Option<Arc<rustls::ClientConfig>>,
        previous: Option<&UpstreamPool>,
    ) -> Self {
        let mut servers: Vec<(SocketAddr, u32)> = config
            .servers
            .iter()
            .map(|s| (s.address, s.weight))
            .collect();
        if !config.resilience.dns_servers.is_empty() {
            if let Some(before) = previous.filter(|p| p.name == config.name) {
                for b in &before.members().backends {
                    if !servers.iter().any(|(a, _)| *a == b.addr) {
                        servers.push((b.addr, b.weight));
                    }
                }
            }
        }
        let backends: Vec<Arc<Backend>> = servers
            .iter()
            .map(|&(addr, weight)| {
                let before = super::pick::carried(previous, &config.name, addr);
                Arc::new(Backend::carried(
                    &config.name,
                    addr,
                    weight,
                    before.as_deref(),
                ))
            })
            .collect();
        let sealer = config
            .balancing
            .sticky
            .as_ref()
            .map(|s| Sealer::new(&config.name, s));
        let retries = &config.resilience.retries;
        let budget = RetryBudget::new(retries.budget_percent, retries.budget_min_per_second);
        let server_name = config
            .tls
            .as_ref()
            .and_then(|t| t.server_name.as_ref())
            .and_then(|n| ServerName::try_from(n.clone()).ok());
        let upgrade_tls = tls.as_ref().map(|c| {
            if c.alpn_protocols.iter().any(|p| p.as_slice() == b"h2") {
                let mut h1 = (**c).clone();
                h1.alpn_protocols = vec![b"http/1.1".to_vec()];
                TlsConnector::from(Arc::new(h1))
            } else {
                TlsConnector::from(Arc::clone(c))
            }
        });
        let tls = tls.map(|c| (TlsConnector::from(c), server_name));
        Self {
            upgrade_tls,
            name: config.name.clone(),
            members: ArcSwap::from_pointee(Members::new(&config, backends)),
            sealer,
            load: Arc::new(Load::default()),
            budget,
            dice: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            config,
            tls,
            tls_files: 0,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.config.protocol
    }

    /// Sends `req` to `backend` over a pooled connection, waiting for the response head at
    /// most the upstream's response timeout.
    pub async fn send(
        &self,
        backend: &Arc<Backend>,
        req: Request<ProxyBody>,
    ) -> Result<Sent, UpstreamError> {
        let deadline = self.config.timeouts.response;
        match tokio::time::timeout(deadline, self.send_inner(backend, req)).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ResponseTimeout(deadline)),
        }
    }

    /// Sends an upgrade request (WebSocket) on a fresh HTTP/1.1 connection of its own that is
    /// never pooled, whatever the upstream's protocol. On a `101` the connection is handed over
    /// through `hyper::upgrade::on(response)`; otherwise it closes once the response is read.
    pub async fn upgrade(
        &self,
        backend: &Backend,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let deadline = self.config.timeouts.response;
        let exchange = async {
            let connector = self.upgrade_tls.as_ref();
            let io = self.connect_io(backend.addr, connector).await?;
            let (mut sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(UpstreamError::Handshake)?;
            let addr = backend.addr;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(backend = %addr, error = %e, "backend upgrade connection ended");
                }
            });
            sender
                .send_request(req)
                .await
                .map_err(|source| UpstreamError::Request {
                    source,
                    reused: false,
                })
        };
        match tokio::time::timeout(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ResponseTimeout(deadline)),
        }
    }

    async fn send_inner(
        &self,
        backend: &Arc<Backend>,
        req: Request<ProxyBody>,
    ) -> Result<Sent, UpstreamError> {
        let acquired = self.acquire(backend).await?;
        self.send_on(backend, acquired, req).await
    }

    /// A connection to `backend`: a pooled one when there is, else a new one within the
    /// connection limits. Nothing of the request is sent yet, so failing here is always safe
    /// to try elsewhere.
    pub async fn acquire(&self, backend: &Arc<Backend>) -> Result<Acquired, UpstreamError> {
        match self.config.protocol {
            UpstreamProtocol::Http1 => match self.checkout_h1(backend) {
                Some(s) => Ok(Acquired {
                    conn: Conn::H1(s),
                    reused: true,
                }),
                // Boxed: connecting (TCP, TLS, handshake) is the cold path, and inline its
                // state would make every request's future kilobytes larger to move around.
                None => Ok(Acquired {
                    conn: Conn::H1(Box::pin(self.connect_h1(backend)).await?),
                    reused: false,
                }),
            },
            UpstreamProtocol::H2 | UpstreamProtocol::H2c => {
                let existing = backend
                    .shared_h2
                    .lock()
                    .ok()
                    .and_then(|g| g.as_ref().filter(|s| !s.is_closed()).cloned());
                let (sender, reused) = match existing {
                    Some(s) => (s, true),
                    None => {
                        let s = Box::pin(self.connect_h2(backend)).await?;
                        if let Ok(mut slot) = backend.shared_h2.lock() {
                            *slot = Some(s.clone());
                        }
                        (s, false)
                    }
                };
                Ok(Acquired {
                    conn: Conn::H2(sender),
                    reused,
                })
            }
        }
    }

    /// Sends `req` over an acquired connection (no timeout of its own).
    pub async fn send_on(
        &self,
        backend: &Arc<Backend>,
        acquired: Acquired,
        req: Request<ProxyBody>,
    ) -> Result<Sent, UpstreamError> {
        let reused = acquired.reused;
        match acquired.conn {
            Conn::H1(mut sender) => {
                let result = sender.send_request(req).await;
                let response =
                    result.map_err(|source| UpstreamError::Request { source, reused })?;
                let returning = Returning::new(
                    sender,
                    Arc::clone(backend),
                    self.config.max_idle_per_backend,
                );
                Ok(Sent {
                    response,
                    reused,
                    returning: Some(returning),
                })
            }
            Conn::H2(mut sender) => {
                let response = sender
                    .send_request(req)
                    .await
                    .map_err(|source| UpstreamError::Request { source, reused })?;
                Ok(Sent {
                    response,
                    reused,
                    returning: None,
                })
            }
        }
    }

    fn checkout_h1(&self, backend: &Backend) -> Option<H1Sender> {
        let idle_limit = self.config.timeouts.idle;
        let mut idle = backend.idle.lock().ok()?;
        while let Some((sender, since)) = idle.pop() {
            if since.elapsed() < idle_limit && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn hold_connection(&self, backend: &Backend) -> Result<Held, UpstreamError> {
        let limits = &self.config.resilience.limits;
        if let Some(reason) = connection_refused(limits, &self.load, &backend.load) {
            return Err(UpstreamError::Overloaded(reason));
        }
        Ok(Held::connection(
            Arc::clone(&self.load),
            Some(Arc::clone(&backend.load)),
        ))
    }

    async fn connect_h1(&self, backend: &Backend) -> Result<H1Sender, UpstreamError> {
        let held = self.hold_connection(backend)?;
        let io = self.connect_io(backend.addr, self.connector()).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        let addr = backend.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend connection ended");
            }
            drop(held);
        });
        Ok(sender)
    }

    async fn connect_h2(&self, backend: &Backend) -> Result<H2Sender, UpstreamError> {
        let held = self.hold_connection(backend)?;
        let io = self.connect_io(backend.addr, self.connector()).await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_while_idle(false);
        let (sender, conn) = builder
            .handshake(io)
            .await
            .map_err(UpstreamError::Handshake)?;
        let addr = backend.addr;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(backend = %addr, error = %e, "backend h2 connection ended");
            }
            drop(held);
        });
        Ok(sender)
    }

    pub(crate) fn connector(&self) -> Option<&TlsConnector> {
        self.tls.as_ref().map(|(c, _)| c)
    }

    /// A plain TCP connection to `addr` under the upstream's connect timeout, with Nagle off
    /// (small requests, responses and tunnelled messages must not wait). Layer 4 tunnels use
    /// it directly; HTTP adds TLS and a protocol on top.
    pub async fn connect_tcp(&self, addr: SocketAddr) -> Result<TcpStream, UpstreamError> {
        let limit = self.config.timeouts.connect;
        let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(UpstreamError::Connect(e)),
            Err(_) => return Err(UpstreamError::ConnectTimeout(limit)),
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// TCP connect under the connect timeout, then TLS through `connector` when the upstream
    /// re-encrypts.
    pub(crate) async fn connect_io(
        &self,
        addr: SocketAddr,
        connector: Option<&TlsConnector>,
    ) -> Result<TokioIo<BackendStream>, UpstreamError> {
        let limit = self.config.timeouts.connect;
        let tcp = self.connect_tcp(addr).await?;
        let Some(connector) = connector else {
            return Ok(TokioIo::new(BackendStream::Plain(tcp)));
        };
        let name = self
            .tls
            .as_ref()
            .and_then(|(_, name)| name.clone())
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let handshake = connector.connect(name, tcp);
        match tokio::time::timeout(limit, handshake).await {
            Ok(Ok(tls)) => Ok(TokioIo::new(BackendStream::from(tls))),
            Ok(Err(e)) => Err(UpstreamError::Tls(e)),
            Err(_) => Err(UpstreamError::ConnectTimeout(limit)),
        }
    }
}

pub use crate::net::MaybeTls as BackendStream;
