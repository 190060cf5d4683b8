//! Backend keep-alive: an HTTP/1.1 backend connection goes back to the pool once its response
//! has been read to the end, whatever the response's shape, and a connection whose response
//! was abandoned is not reused.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn setup() -> (BackendHandle, ProxyHandle) {
    let backend = Backend::http1()
        .fallback(Reply::text(200, "ok"))
        .reply("/empty", Reply::text(204, ""))
        .reply("/stream", Reply::Download)
        .reply("/echo", Reply::Echo)
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - {{ name: web, bind: "127.0.0.1:0" }}
routes:
  - {{ name: all, upstream: app }}
upstreams:
  app: {{ servers: ["{}"], max_idle_per_backend: 4 }}
"#,
        backend.addr
    );
    (backend, Proxy::start(&yaml).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_of_every_shape_share_one_backend_connection() {
    let (backend, proxy) = setup().await;
    for round in 0..5 {
        // A fresh client connection each round: the pool is the backend side's.
        let mut conn = HttpConn::h1(proxy.addr("web")).await;
        let resp = conn.get("app.test", "/small").await;
        assert_eq!(resp.text(), "ok", "round {round}");
        let resp = conn.get("app.test", "/empty").await;
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
        let resp = conn.get("app.test", "/stream?size=300000").await;
        assert_eq!(resp.body.len(), 300_000);
        let resp = conn.get("app.test", "/stream?size=70000&nolength=1").await;
        assert_eq!(resp.body.len(), 70_000);
        let resp = conn.post("app.test", "/echo", vec![7u8; 100_000]).await;
        assert_eq!(resp.body.len(), 100_000);
    }
    assert_eq!(backend.request_count(), 25);
    assert_eq!(
        backend.connection_count(),
        1,
        "every request reused the one connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_abandons_does_not_poison_the_pool() {
    let (backend, proxy) = setup().await;
    // The client reads only the head of a large download, then goes away.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr("web"))
        .await
        .unwrap();
    raw.write_all(b"GET /stream?size=8000000 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = raw.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    drop(raw);
    // Later requests are answered in full, on a connection that is not the cut one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    for _ in 0..3 {
        let resp = tokio::time::timeout_at(deadline, conn.get("app.test", "/stream?size=100000"))
            .await
            .expect("answered before the deadline");
        assert_eq!(resp.body.len(), 100_000);
    }
    assert_eq!(backend.request_count(), 4);
    assert_eq!(backend.connection_count(), 2);
}
