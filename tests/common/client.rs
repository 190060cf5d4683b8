//! Test clients on one real connection each: HTTP/1.1, h2c (prior knowledge), and TLS with a
//! chosen SNI (or none) and ALPN, built on hyper's connection API with hyper-util's Tokio glue.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

use super::body::{empty, full, BoxError, TestBody};
use super::certs::TestCa;

/// Deadline for any single exchange done by these helpers.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http1,
}

/// What the client sends as SNI.
#[derive(Debug, Clone, Copy)]
pub enum Sni<'a> {
    Name(&'a str),
    /// Connect by IP (`ServerName::IpAddress`): rustls sends no SNI, the certificate must carry
    /// an IP SAN for 127.0.0.1.
    None,
}

enum Sender {
    H1(http1::SendRequest<TestBody>),
    H2(http2::SendRequest<TestBody>),
}

/// One client connection.
pub struct HttpConn {
    sender: Sender,
    scheme: &'static str,
    /// Negotiated ALPN protocol (TLS only).
    pub alpn: Option<Vec<u8>>,
    /// The end-entity certificate the server presented (TLS only).
    pub peer_cert: Option<CertificateDer<'static>>,
}

/// A fully read response.
#[derive(Debug)]
pub struct Collected {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Collected {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HttpConn {
    pub async fn h1(addr: SocketAddr) -> HttpConn {
        let tcp = TcpStream::connect(addr).await.expect("connect (h1)");
        HttpConn::h1_over(TokioIo::new(tcp), "http").await
    }

    pub async fn h2c(addr: SocketAddr) -> HttpConn {
        let tcp = TcpStream::connect(addr).await.expect("connect (h2c)");
        HttpConn::h2_over(TokioIo::new(tcp), "http").await
    }

    /// TLS to `addr`, trusting `ca`, sending `sni`, offering exactly one ALPN protocol.
    pub async fn tls(addr: SocketAddr, ca: &TestCa, sni: Sni<'_>, alpn: Alpn) -> HttpConn {
        HttpConn::try_tls(addr, ca, sni, alpn)
            .await
            .expect("TLS handshake")
    }

    pub async fn try_tls(
        addr: SocketAddr,
        ca: &TestCa,
        sni: Sni<'_>,
        alpn: Alpn,
    ) -> Result<HttpConn, std::io::Error> {
        let protos: &[&[u8]] = match alpn {
            Alpn::H2 => &[b"h2"],
            Alpn::Http1 => &[b"http/1.1"],
        };
        let connector = tokio_rustls::TlsConnector::from(ca.client_config(protos));
        let name = match sni {
            Sni::Name(host) => ServerName::try_from(host.to_string()).expect("server name"),
            Sni::None => ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
        };
        let tcp = TcpStream::connect(addr).await?;
        let tls = tokio::time::timeout(EXCHANGE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))??;
        let (_, session) = tls.get_ref();
        let negotiated = session.alpn_protocol().map(<[u8]>::to_vec);
        let peer_cert = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|c| c.clone().into_owned());
        let mut conn = if negotiated.as_deref() == Some(b"h2") {
            HttpConn::h2_over(TokioIo::new(tls), "https").await
        } else {
            HttpConn::h1_over(TokioIo::new(tls), "https").await
        };
        conn.alpn = negotiated;
        conn.peer_cert = peer_cert;
        Ok(conn)
    }

    async fn h1_over<T>(io: T, scheme: &'static str) -> HttpConn
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::handshake(io).await.expect("h1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        HttpConn {
            sender: Sender::H1(sender),
            scheme,
            alpn: None,
            peer_cert: None,
        }
    }

    async fn h2_over<T>(io: T, scheme: &'static str) -> HttpConn
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        HttpConn {
            sender: Sender::H2(sender),
            scheme,
            alpn: None,
            peer_cert: None,
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// A request builder for `host` + `path` in the form this connection's protocol needs:
    /// origin-form plus Host for HTTP/1.1, an absolute URI (`:authority`) for HTTP/2.
    pub fn request(&self, method: Method, host: &str, path: &str) -> http::request::Builder {
        let builder = Request::builder().method(method);
        match self.sender {
            Sender::H1(_) => builder.uri(path).header("host", host),
            Sender::H2(_) => builder
                .uri(format!("{}://{}{}", self.scheme, host, path))
                .version(Version::HTTP_2),
        }
    }

    pub async fn send(
        &mut self,
        req: Request<TestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// Sends and reads the whole response, panicking on any error or after the deadline.
    pub async fn exchange(&mut self, req: Request<TestBody>) -> Collected {
        let resp = tokio::time::timeout(EXCHANGE_TIMEOUT, self.send(req))
            .await
            .expect("response head within the deadline")
            .expect("response head");
        collect(resp).await.expect("response body")
    }

    pub async fn get(&mut self, host: &str, path: &str) -> Collected {
        let req = self
            .request(Method::GET, host, path)
            .body(empty())
            .expect("request");
        self.exchange(req).await
    }

    pub async fn post(&mut self, host: &str, path: &str, body: impl Into<Bytes>) -> Collected {
        let req = self
            .request(Method::POST, host, path)
            .body(full(body))
            .expect("request");
        self.exchange(req).await
    }
}

/// Reads a response's body and trailers; an error mid-body is returned, never hidden.
pub async fn collect(resp: Response<Incoming>) -> Result<Collected, BoxError> {
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(EXCHANGE_TIMEOUT, body.collect())
        .await
        .map_err(|_| "response body not complete within the deadline")??;
    let trailers = collected.trailers().cloned();
    Ok(Collected {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}
