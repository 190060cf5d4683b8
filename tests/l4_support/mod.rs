//! Helpers for the Layer 4 tests: tagged echo backends (plain or TLS, optionally reading the
//! PROXY v2 header Portico sends), line reading with deadlines, a client that trickles its
//! first bytes, and capture of Portico's session log.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Deadline for any single read or handshake in these tests.
pub const STEP: Duration = Duration::from_secs(10);

/// What a backend learnt from the PROXY v2 header in front of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySeen {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

/// A backend that greets every connection with `"<tag>\n"`, then echoes until the client
/// finishes sending, then half-closes (or closes right after the greeting when asked).
pub struct EchoBackend {
    tag: String,
    tls: Option<Arc<ServerConfig>>,
    expect_proxy: bool,
    close_after_greeting: bool,
}

pub struct EchoHandle {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    proxy: Arc<Mutex<Vec<ProxySeen>>>,
}

impl EchoBackend {
    pub fn plain(tag: &str) -> Self {
        EchoBackend {
            tag: tag.to_owned(),
            tls: None,
            expect_proxy: false,
            close_after_greeting: false,
        }
    }

    /// Terminates TLS itself with `config` (its own certificate), then greets and echoes.
    pub fn tls(tag: &str, config: Arc<ServerConfig>) -> Self {
        EchoBackend {
            tls: Some(config),
            ..EchoBackend::plain(tag)
        }
    }

    /// Reads (with ppp) and records a PROXY v2 header before anything else.
    pub fn expect_proxy(mut self) -> Self {
        self.expect_proxy = true;
        self
    }

    pub fn close_after_greeting(mut self) -> Self {
        self.close_after_greeting = true;
        self
    }

    pub async fn spawn(self) -> EchoHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let proxy = Arc::new(Mutex::new(Vec::new()));
        let spec = Arc::new(self);
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&proxy));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (spec, seen) = (Arc::clone(&spec), Arc::clone(&seen));
                tokio::spawn(async move {
                    let _ = spec.handle(stream, seen).await;
                });
            }
        });
        EchoHandle {
            addr,
            connections,
            proxy,
        }
    }

    async fn handle(
        &self,
        mut stream: TcpStream,
        seen: Arc<Mutex<Vec<ProxySeen>>>,
    ) -> io::Result<()> {
        if self.expect_proxy {
            let header = read_proxy_v2(&mut stream).await?;
            seen.lock().unwrap().push(header);
        }
        match &self.tls {
            None => self.greet_and_echo(stream).await,
            Some(config) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
                let tls = acceptor.accept(stream).await?;
                self.greet_and_echo(tls).await
            }
        }
    }

    async fn greet_and_echo<S: AsyncRead + AsyncWrite + Unpin>(&self, mut s: S) -> io::Result<()> {
        s.write_all(format!("{}\n", self.tag).as_bytes()).await?;
        s.flush().await?;
        if self.close_after_greeting {
            return s.shutdown().await;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return s.shutdown().await;
            }
            s.write_all(&buf[..n]).await?;
        }
    }
}

/// Exactly one v2 header: the 16 fixed bytes, then the length they announce.
async fn read_proxy_v2(stream: &mut TcpStream) -> io::Result<ProxySeen> {
    let mut header = vec![0u8; 16];
    stream.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    header.resize(16 + len, 0);
    stream.read_exact(&mut header[16..]).await?;
    let parsed = ppp::v2::Header::try_from(header.as_slice())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let (source, destination) = match parsed.addresses {
        ppp::v2::Addresses::IPv4(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        ppp::v2::Addresses::IPv6(a) => (
            SocketAddr::new(a.source_address.into(), a.source_port),
            SocketAddr::new(a.destination_address.into(), a.destination_port),
        ),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected addresses {other:?}"),
            ))
        }
    };
    Ok(ProxySeen {
        source,
        destination,
    })
}

impl EchoHandle {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn proxy_headers(&self) -> Vec<ProxySeen> {
        self.proxy.lock().unwrap().clone()
    }
}

/// Reads one line (without its `\n`), failing the test after `STEP`.
pub async fn read_line<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut line = Vec::new();
    let read = async {
        loop {
            let mut byte = [0u8; 1];
            if s.read(&mut byte).await.unwrap() == 0 || byte[0] == b'\n' {
                break;
            }
            line.push(byte[0]);
        }
    };
    tokio::time::timeout(STEP, read)
        .await
        .expect("line within the deadline");
    String::from_utf8(line).unwrap()
}

/// Reads exactly `n` bytes within `STEP`.
pub async fn read_n<S: AsyncRead + Unpin>(s: &mut S, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(STEP, s.read_exact(&mut buf))
        .await
        .expect("bytes within the deadline")
        .unwrap();
    buf
}

/// True once the peer has closed: a read returns end-of-stream or an error within `STEP`.
pub async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 256];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(STEP, wait).await.unwrap_or(false)
}

/// Connects, then reads the backend's greeting through the tunnel.
pub async fn greeted(addr: SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let tag = read_line(&mut s).await;
    (s, tag)
}

/// A TLS client through the proxy: the greeting, the certificate the backend presented, and
/// the stream. `Err` when the handshake fails.
pub async fn tls_connect<IO>(
    io: IO,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> io::Result<(
    tokio_rustls::client::TlsStream<IO>,
    CertificateDer<'static>,
    String,
)>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let mut tls = tokio::time::timeout(STEP, connector.connect(server_name, io))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake"))??;
    let cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let tag = read_line(&mut tls).await;
    Ok((tls, cert, tag))
}

/// A TCP stream whose first `slow` bytes are written one per write call, each after a short
/// pause so that they leave as separate segments and arrive in separate reads; the rest of
/// the first `single` bytes still go one per write, without pauses.
pub struct Trickle {
    inner: TcpStream,
    written: usize,
    slow: usize,
    single: usize,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Trickle {
    pub fn new(inner: TcpStream, slow: usize, single: usize) -> Self {
        inner.set_nodelay(true).unwrap();
        Trickle {
            inner,
            written: 0,
            slow,
            single,
            pause: None,
        }
    }

    pub fn written(&self) -> usize {
        self.written
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.written < this.slow {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(1))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let limit = if this.written < this.single {
            1
        } else {
            buf.len()
        };
        let polled = Pin::new(&mut this.inner).poll_write(cx, &buf[..limit.min(buf.len())]);
        if let Poll::Ready(Ok(n)) = &polled {
            this.written += n;
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Collects Portico's `portico::l4` records for the current thread (use a current-thread
/// runtime so the proxy's tasks log on it).
pub struct LogCapture {
    lines: Arc<Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> Self {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&lines));
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("portico::l4=info")
            .with_ansi(false)
            .without_time()
            .with_writer(move || sink.clone())
            .finish();
        LogCapture {
            lines,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Every session record written so far.
    pub fn sessions(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| l.contains("portico::l4") && l.contains("session"))
            .map(str::to_owned)
            .collect()
    }
}
