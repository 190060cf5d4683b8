//! Backends for the resilience tests: a hyper server whose answer status can be switched,
//! that can hold requests until released, be killed (listener closed, connections drained)
//! and brought back on the same address; and a tiny UDP DNS server with switchable A records.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Default)]
struct State {
    status: AtomicU16,
    /// Requests other than the health check.
    hits: AtomicUsize,
    /// Health checks answered 2xx since the status last changed.
    health_ok: AtomicUsize,
    /// Health checks answered 2xx when the first request arrived after the last status change.
    health_ok_at_first_hit: Mutex<Option<usize>>,
    pending: AtomicUsize,
}

/// A switchable backend. `name` is its answer body.
pub struct Node {
    pub addr: SocketAddr,
    name: String,
    state: Arc<State>,
    release: watch::Sender<bool>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl Node {
    pub async fn start(name: &str) -> Node {
        Node::start_at(name, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await
    }

    pub async fn start_at(name: &str, addr: SocketAddr) -> Node {
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::SeqCst);
        let (release, _) = watch::channel(false);
        let mut node = Node {
            addr,
            name: name.to_owned(),
            state,
            release,
            stop: None,
            task: None,
        };
        node.listen().await;
        node
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.expect("bind node");
        self.addr = listener.local_addr().expect("node addr");
        let (stop, stop_rx) = watch::channel(false);
        let state = Arc::clone(&self.state);
        let release = self.release.subscribe();
        let name = Bytes::from(self.name.clone());
        let mut accept_stop = stop_rx.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                    _ = accept_stop.changed() => return,
                };
                let state = Arc::clone(&state);
                let release = release.clone();
                let name = name.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, Arc::clone(&state), release.clone(), name.clone())
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        });
        self.stop = Some(stop);
        self.task = Some(task);
    }

    /// Closes the listener and drains every connection (in-flight requests finish).
    pub async fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Listens on the same address again.
    pub async fn revive(&mut self) {
        self.listen().await;
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
        self.state.health_ok.store(0, Ordering::SeqCst);
        *self.state.health_ok_at_first_hit.lock().expect("lock") = None;
    }

    /// Holds every request until `release` (answering then).
    pub fn hold(&self) {
        self.release.send_replace(false);
        self.state.status.store(1200, Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.state.status.store(200, Ordering::SeqCst);
        self.release.send_replace(true);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn pending(&self) -> usize {
        self.state.pending.load(Ordering::SeqCst)
    }

    pub fn health_ok_at_first_hit(&self) -> Option<usize> {
        *self.state.health_ok_at_first_hit.lock().expect("lock")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    mut release: watch::Receiver<bool>,
    name: Bytes,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let health = req.uri().path() == "/health";
    let _ = req.into_body().collect().await;
    let mut status = state.status.load(Ordering::SeqCst);
    if health {
        if (200..300).contains(&status) {
            state.health_ok.fetch_add(1, Ordering::SeqCst);
        }
        let status = if status == 1200 { 200 } else { status };
        return Ok(reply(status, name));
    }
    {
        let mut first = state.health_ok_at_first_hit.lock().expect("lock");
        if first.is_none() {
            *first = Some(state.health_ok.load(Ordering::SeqCst));
        }
    }
    state.hits.fetch_add(1, Ordering::SeqCst);
    if status == 1200 {
        state.pending.fetch_add(1, Ordering::SeqCst);
        let _ = release.wait_for(|r| *r).await;
        state.pending.fetch_sub(1, Ordering::SeqCst);
        status = 200;
    }
    Ok(reply(status, name))
}

fn reply(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
    resp
}

/// A UDP DNS server answering A and AAAA queries for any name with the current address
/// lists (or SERVFAIL when `fail` is set).
pub struct Dns {
    pub addr: SocketAddr,
    answers: Arc<Mutex<(Vec<IpAddr>, bool)>>,
    pub queries: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Dns {
    pub async fn start(initial: &[Ipv4Addr]) -> Dns {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns addr");
        let initial: Vec<IpAddr> = initial.iter().map(|&ip| IpAddr::V4(ip)).collect();
        let answers = Arc::new(Mutex::new((initial, false)));
        let queries = Arc::new(AtomicUsize::new(0));
        let (a, q) = (Arc::clone(&answers), Arc::clone(&queries));
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let (ips, fail) = a.lock().expect("lock").clone();
                let _ = socket.send_to(&answer(&buf[..n], &ips, fail), peer).await;
            }
        });
        Dns {
            addr,
            answers,
            queries,
            task,
        }
    }

    pub fn set(&self, ips: &[Ipv4Addr]) {
        let ips: Vec<IpAddr> = ips.iter().map(|&ip| IpAddr::V4(ip)).collect();
        self.set_any(&ips);
    }

    /// Answers with these addresses: IPv4 ones to A queries, IPv6 ones to AAAA queries.
    pub fn set_any(&self, ips: &[IpAddr]) {
        *self.answers.lock().expect("lock") = (ips.to_vec(), false);
    }

    pub fn fail(&self) {
        self.answers.lock().expect("lock").1 = true;
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to `query` (one question): its header with QR/RA set, the question, and one
/// record per address of the asked type (A or AAAA) pointing back at the question's name.
fn answer(query: &[u8], ips: &[IpAddr], fail: bool) -> Vec<u8> {
    // Header + question (name up to its terminating zero, then type and class).
    let name_end = 12 + query[12..].iter().position(|&b| b == 0).expect("qname end") + 1;
    let qtype = u16::from_be_bytes([query[name_end], query[name_end + 1]]);
    let mut out = query[..name_end + 4].to_vec();
    out[2] = 0x81;
    out[3] = if fail { 0x82 } else { 0x80 };
    let records: Vec<Vec<u8>> = if fail {
        Vec::new()
    } else {
        ips.iter()
            .filter_map(|ip| match (qtype, ip) {
                (1, IpAddr::V4(v4)) => Some(v4.octets().to_vec()),
                (28, IpAddr::V6(v6)) => Some(v6.octets().to_vec()),
                _ => None,
            })
            .collect()
    };
    out[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    out[8..12].fill(0);
    for data in records {
        // Name pointer, type, class IN, TTL 1 s, data length, data.
        out.extend_from_slice(&[0xC0, 12]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0, 1]);
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(&data);
    }
    out
}
