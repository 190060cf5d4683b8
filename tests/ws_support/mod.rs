//! WebSocket test helpers: tokio-tungstenite backends (echo with a few commands) and clients
//! over plain TCP or TLS trusting the per-run CA, plus a Portico config around them.
#![allow(dead_code, clippy::unwrap_used, clippy::result_large_err)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::HeaderMap;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::common::TestCa;

/// Deadline for one message round trip in these tests.
pub const STEP: Duration = Duration::from_secs(20);

/// No size limits: the tests decide what is too big, not tungstenite.
pub fn unlimited() -> WebSocketConfig {
    let mut config = WebSocketConfig::default();
    config.max_message_size = None;
    config.max_frame_size = None;
    config
}

/// A tokio-tungstenite echo backend. Text `close:CODE` makes it close with that code; text
/// `send:N` makes it send N bytes of `b` as one binary message; anything else is echoed.
pub struct WsBackend {
    pub addr: SocketAddr,
    /// Handshake request headers, in arrival order.
    pub handshakes: Arc<Mutex<Vec<HeaderMap>>>,
    /// Close codes received from Portico (or a client through it).
    pub closes: Arc<Mutex<Vec<Option<u16>>>>,
    /// Connections whose WebSocket ended.
    pub ended: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WsBackend {
    /// `protocol`: the subprotocol chosen when the client offers it.
    pub async fn spawn(protocol: Option<&'static str>) -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let closes = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(AtomicUsize::new(0));
        let (h, c, e) = (handshakes.clone(), closes.clone(), ended.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (h, c, e) = (h.clone(), c.clone(), e.clone());
                tokio::spawn(async move {
                    let callback = |req: &Request, mut resp: Response| {
                        h.lock().unwrap().push(req.headers().clone());
                        let offered = req
                            .headers()
                            .get("sec-websocket-protocol")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        if let Some(p) = protocol.filter(|p| offered.contains(p)) {
                            resp.headers_mut()
                                .insert("sec-websocket-protocol", p.parse().unwrap());
                        }
                        Ok(resp)
                    };
                    let accepted = tokio_tungstenite::accept_hdr_async_with_config(
                        stream,
                        callback,
                        Some(unlimited()),
                    )
                    .await;
                    if let Ok(ws) = accepted {
                        echo(ws, &c).await;
                    }
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        WsBackend {
            addr,
            handshakes,
            closes,
            ended,
            task,
        }
    }

    pub fn handshake_count(&self) -> usize {
        self.handshakes.lock().unwrap().len()
    }

    pub fn last_handshake(&self) -> HeaderMap {
        self.handshakes.lock().unwrap().last().cloned().unwrap()
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocketStream<S>,
    closes: &Mutex<Vec<Option<u16>>>,
) {
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(t) if t.starts_with("close:") => {
                let code: u16 = t[6..].parse().unwrap_or(1000);
                Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: "backend closes".into(),
                }))
            }
            Message::Text(t) if t.starts_with("send:") => {
                let n: usize = t[5..].parse().unwrap_or(0);
                Message::Binary(vec![b'b'; n].into())
            }
            Message::Text(_) | Message::Binary(_) => msg,
            Message::Close(frame) => {
                closes
                    .lock()
                    .unwrap()
                    .push(frame.map(|f| u16::from(f.code)));
                continue;
            }
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

/// A WebSocket client over plain TCP or TLS.
pub type Client = WebSocketStream<Box<dyn Io>>;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Builds the handshake request for `url` with extra headers.
pub fn request(url: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    req
}

/// Opens the raw stream to `addr`: TLS (ALPN http/1.1, SNI `localhost`) when `ca` is given.
pub async fn stream(addr: SocketAddr, ca: Option<&TestCa>) -> Box<dyn Io> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    match ca {
        None => Box::new(tcp),
        Some(ca) => {
            let connector = TlsConnector::from(ca.client_config(&[b"http/1.1"]));
            let name = ServerName::try_from("localhost").unwrap();
            Box::new(connector.connect(name, tcp).await.unwrap())
        }
    }
}

/// Connects through Portico; panics when the handshake fails.
pub async fn connect(addr: SocketAddr, ca: Option<&TestCa>, path: &str) -> Client {
    let scheme = if ca.is_some() { "wss" } else { "ws" };
    let req = request(&format!("{scheme}://localhost{path}"), &[]);
    try_connect(addr, ca, req).await.unwrap()
}

/// Connects with a prepared request; `Err` carries the HTTP status of a refused handshake.
pub async fn try_connect(
    addr: SocketAddr,
    ca: Option<&TestCa>,
    req: http::Request<()>,
) -> Result<Client, u16> {
    let io = stream(addr, ca).await;
    let handshake = tokio_tungstenite::client_async_with_config(req, io, Some(unlimited()));
    match tokio::time::timeout(STEP, handshake)
        .await
        .expect("handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// The next data or close message (pings and pongs skipped), within `STEP`.
pub async fn next(ws: &mut Client) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("message in time");
        match msg {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

/// The close code the peer sent, reading (and discarding) data until then.
pub async fn close_code(ws: &mut Client) -> Option<u16> {
    loop {
        match next(ws).await? {
            Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
            _ => continue,
        }
    }
}

/// A Portico config: TLS listener `wss` (certificate for localhost and 127.0.0.1) and plain
/// listener `ws`, route `ws` with `websocket_block` (YAML lines indented 6) to `backend`.
pub fn config(ca: &TestCa, backend: SocketAddr, websocket_block: &str, extra: &str) -> String {
    let leaf = ca.leaf("portico", &["localhost", "127.0.0.1"]);
    format!(
        r#"
listeners:
  - name: wss
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert: "{}", key: "{}" }}
  - name: ws
    bind: "127.0.0.1:0"
{extra}
routes:
  - name: ws
    upstream: chat
    websocket:
      enabled: true
{websocket_block}
upstreams:
  chat:
    servers: ["{backend}"]
"#,
        leaf.cert_path.display(),
        leaf.key_path.display(),
    )
}

/// A client config trusting only the CA in the PEM file at `ca_pem` (ALPN http/1.1).
pub fn trust_pem(ca_pem: &std::path::Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects over TLS with `config` (SNI `localhost`) and the prepared request.
pub async fn connect_with(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    req: http::Request<()>,
) -> Client {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config).connect(name, tcp).await.unwrap();
    let io: Box<dyn Io> = Box::new(tls);
    let handshake = tokio_tungstenite::client_async_with_config(req, io, Some(unlimited()));
    let (ws, _) = tokio::time::timeout(STEP, handshake)
        .await
        .expect("handshake in time")
        .unwrap();
    ws
}
