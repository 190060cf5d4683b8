//! Client connections go idle by what matters: HTTP/1 when no byte moves, HTTP/2 when no
//! request is open (keep-alive PINGs are not activity), and a connection still stalled
//! after its idle close is dropped rather than held forever.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: Duration = Duration::from_secs(20);

fn yaml(backend: SocketAddr) -> String {
    format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
    limits: {{ idle_timeout: 1s }}
routes:
  - name: app
    upstream: app
upstreams:
  app:
    servers: ["{backend}"]
    timeouts: {{ response: 60s }}
"#
    )
}

/// A backend that answers the head of a 1,000-byte body, sends 3 bytes, then goes silent
/// while keeping the connection open.
async fn stalling_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
                .await;
            held.push(sock);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http1_keepalive_connection_is_closed() {
    let backend = Backend::http1().route("/", "ok").spawn().await;
    let proxy = Proxy::start(&yaml(backend.addr)).await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = conn.read_response(LIMIT, false).await.unwrap();
    assert_eq!(resp.status, 200);
    conn.wait_closed(LIMIT)
        .await
        .expect("closed after the idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_response_is_dropped_after_the_idle_close() {
    let proxy = Proxy::start(&yaml(stalling_backend().await)).await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = conn
        .wait_closed(LIMIT)
        .await
        .expect("a stalled response does not hold the connection forever");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_pings_do_not_keep_a_connection_open() {
    let backend = Backend::http1().route("/", "ok").spawn().await;
    let proxy = Proxy::start(&yaml(backend.addr)).await;
    let tcp = tokio::net::TcpStream::connect(proxy.addr("web"))
        .await
        .unwrap();
    let (mut client, mut connection) = h2::client::handshake(tcp).await.unwrap();
    let mut pings = connection.ping_pong().expect("ping handle");
    let request = http::Request::get("http://x.test/").body(()).unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let driver = tokio::spawn(connection);
    let resp = tokio::time::timeout(LIMIT, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    // Ping every 200 ms, well inside the 1 s idle timeout, until the proxy closes.
    let deadline = Instant::now() + LIMIT;
    while !driver.is_finished() {
        assert!(
            Instant::now() < deadline,
            "PINGs kept an idle HTTP/2 connection open"
        );
        let _ =
            tokio::time::timeout(Duration::from_millis(500), pings.ping(h2::Ping::opaque())).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A backend that answers every request on a connection with a keep-alive 200 and counts the
/// connections the proxy has closed.
async fn counting_backend() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if sock.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_backend_connection_is_closed_without_another_request() {
    use std::sync::atomic::Ordering;
    let (backend, closed) = counting_backend().await;
    let yaml = yaml(backend).replace("response: 60s", "response: 60s, idle: 1s");
    let proxy = Proxy::start(&yaml).await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(conn.read_response(LIMIT, false).await.unwrap().status, 200);
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "kept alive after the answer"
    );
    let closed_in_time = wait_until(LIMIT, || {
        let closed = closed.clone();
        async move { closed.load(Ordering::SeqCst) == 1 }
    })
    .await;
    assert!(
        closed_in_time,
        "the idle pooled connection was never closed"
    );
}

/// A backend that stops sending mid-body is cut off after the response timeout of silence,
/// even on an HTTP/2 connection the client keeps open (no idle close can help there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_backend_body_fails_after_the_read_timeout() {
    use http_body_util::BodyExt;
    let yaml = yaml(stalling_backend().await)
        .replace("idle_timeout: 1s", "idle_timeout: 60s")
        .replace("response: 60s", "response: 500ms");
    let proxy = Proxy::start(&yaml).await;
    let mut conn = HttpConn::h2c(proxy.addr("web")).await;
    let req = conn
        .request(http::Method::GET, "x.test", "/")
        .body(common::body::full(""))
        .unwrap();
    let resp = conn.send(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(LIMIT, resp.into_body().collect())
        .await
        .expect("the stalled body ends instead of hanging");
    assert!(body.is_err(), "a cut-off body must not look complete");
}
