//! Test backends on real sockets: a builder of hyper 1 servers (HTTP/1.1, h2c, h2 over TLS)
//! whose behaviour is chosen per path, and which record every request they receive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::body::TestBody;
use super::certs::TestCa;
pub use super::reply::Reply;
use super::reply::{answer, CountingBody};

/// What a backend saw. `body_len` is filled in once the body has been read to its end.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub body_len: u64,
}

impl RecordedRequest {
    /// All values of header `name` joined with ", " (None when absent).
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }
}

#[derive(Clone)]
enum Proto {
    Http1,
    H2c,
    H2Tls(Arc<rustls::ServerConfig>),
    Garbage,
}

pub struct Backend {
    proto: Proto,
    routes: HashMap<String, Reply>,
    fallback: Reply,
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) requests: Mutex<Vec<RecordedRequest>>,
    pub(super) connections: AtomicUsize,
}

pub struct BackendHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl BackendHandle {
    pub fn received(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().expect("records lock").clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().expect("records lock").len()
    }

    /// TCP connections accepted so far (for the garbage backend: connections answered).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// The last recorded request; panics when there is none.
    pub fn last(&self) -> RecordedRequest {
        self.received().pop().expect("backend received no request")
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    fn new(proto: Proto) -> Backend {
        Backend {
            proto,
            routes: HashMap::new(),
            fallback: Reply::text(404, "backend: no such path"),
        }
    }

    pub fn http1() -> Backend {
        Backend::new(Proto::Http1)
    }

    pub fn h2c() -> Backend {
        Backend::new(Proto::H2c)
    }

    /// HTTP/2 over TLS with a certificate for `backend.test` and `127.0.0.1` issued by `certs`.
    pub fn h2_tls(certs: &TestCa) -> Backend {
        let leaf = certs.leaf("backend", &["backend.test", "127.0.0.1"]);
        Backend::new(Proto::H2Tls(leaf.server_config(&[b"h2"])))
    }

    /// Accepts TCP, reads a little, answers bytes that are not HTTP and closes.
    pub fn garbage() -> Backend {
        Backend::new(Proto::Garbage)
    }

    /// Exact path -> 200 with `body`.
    pub fn route(self, path: &str, body: &str) -> Backend {
        self.reply(path, Reply::text(200, body))
    }

    pub fn reply(mut self, path: &str, reply: Reply) -> Backend {
        self.routes.insert(path.to_string(), reply);
        self
    }

    /// The answer for every path without its own route (default: 404).
    pub fn fallback(mut self, reply: Reply) -> Backend {
        self.fallback = reply;
        self
    }

    pub async fn spawn(self) -> BackendHandle {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend");
        let addr = listener.local_addr().expect("backend addr");
        let shared = Arc::new(Shared::default());
        let behaviour = Arc::new((self.routes, self.fallback));
        let proto = self.proto;
        let accept_shared = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                let shared = accept_shared.clone();
                let behaviour = behaviour.clone();
                let proto = proto.clone();
                tokio::spawn(serve_connection(stream, proto, shared, behaviour));
            }
        });
        BackendHandle { addr, shared, task }
    }
}

type Behaviour = Arc<(HashMap<String, Reply>, Reply)>;

async fn serve_connection(
    mut stream: tokio::net::TcpStream,
    proto: Proto,
    shared: Arc<Shared>,
    behaviour: Behaviour,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let behaviour = behaviour.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(req, &shared, &behaviour).await) }
    });
    match proto {
        Proto::Http1 => {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Proto::H2c => {
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
        Proto::H2Tls(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            if let Ok(tls) = acceptor.accept(stream).await {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        }
        Proto::Garbage => {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let _ = stream
                .write_all(b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: &Arc<Shared>,
    behaviour: &Behaviour,
) -> Response<TestBody> {
    let index = {
        let mut records = shared.requests.lock().expect("records lock");
        records.push(RecordedRequest {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            body_len: 0,
        });
        records.len() - 1
    };
    let (routes, fallback) = &**behaviour;
    let reply = routes.get(req.uri().path()).unwrap_or(fallback).clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let body = CountingBody {
        inner: req.into_body(),
        shared: shared.clone(),
        index,
        count: 0,
    };
    answer(reply, body, &query).await
}
