//! Failures become short, honest answers: 502 refused or garbage backend, 504 response timeout,
//! 503 no backend, 413 body too large, 414 URI too long, 431 header section too large.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Method, StatusCode};

struct Setup {
    app: BackendHandle,
    slow: BackendHandle,
    garbage: BackendHandle,
    proxy: ProxyHandle,
}

async fn setup() -> Setup {
    let app = Backend::http1()
        .fallback(Reply::text(200, "ok"))
        .spawn()
        .await;
    let slow = Backend::http1()
        .fallback(Reply::text(200, "too late").delayed(Duration::from_secs(3)))
        .spawn()
        .await;
    let garbage = Backend::garbage().spawn().await;
    let yaml = format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
    limits:
      max_uri_length: 256
      max_header_bytes: 8KiB
      max_headers: 20
routes:
  - name: refused
    match: {{ host: refused.test }}
    upstream: refused
  - name: slow
    match: {{ host: slow.test }}
    upstream: slow
  - name: garbage
    match: {{ host: garbage.test }}
    upstream: garbage
  - name: small
    match: {{ path_prefix: /upload }}
    upstream: app
    max_body_size: 1KiB
  - name: app
    upstream: app
upstreams:
  app:
    servers: ["{app}"]
  refused:
    servers: ["{refused}"]
    timeouts: {{ connect: 2s }}
  slow:
    servers: ["{slow}"]
    timeouts: {{ response: 300ms }}
  garbage:
    servers: ["{garbage}"]
"#,
        app = app.addr,
        refused = unused_addr(),
        slow = slow.addr,
        garbage = garbage.addr,
    );
    let proxy = Proxy::start(&yaml).await;
    Setup {
        app,
        slow,
        garbage,
        proxy,
    }
}

fn assert_short_reason(resp: &Collected, expected: StatusCode, what: &str) {
    assert_eq!(resp.status, expected, "{what}: {}", resp.text());
    assert!(!resp.body.is_empty(), "{what}: the answer should say why");
    assert!(
        resp.body.len() < 512,
        "{what}: reason too long: {}",
        resp.text()
    );
}

async fn h1_and_h2(s: &Setup) -> [HttpConn; 2] {
    [
        HttpConn::h1(s.proxy.addr("web")).await,
        HttpConn::h2c(s.proxy.addr("web")).await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_502() {
    let s = setup().await;
    for mut conn in h1_and_h2(&s).await {
        let start = Instant::now();
        let resp = conn.get("refused.test", "/").await;
        assert_short_reason(&resp, StatusCode::BAD_GATEWAY, "refused");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_is_504() {
    let s = setup().await;
    for mut conn in h1_and_h2(&s).await {
        let start = Instant::now();
        let resp = conn.get("slow.test", "/").await;
        let took = start.elapsed();
        assert_short_reason(&resp, StatusCode::GATEWAY_TIMEOUT, "slow backend");
        assert!(
            took >= Duration::from_millis(250),
            "answered before the timeout: {took:?}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "timeout not applied: {took:?}"
        );
    }
    assert_eq!(
        s.slow.request_count(),
        2,
        "the slow backend did get the requests"
    );
}

/// An upstream deliberately emptied (`servers: []`) answers 503 instead of failing to load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_without_backends_is_503() {
    let proxy = Proxy::start(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - name: drained
    upstream: empty
upstreams:
  empty:
    servers: []
"#,
    )
    .await;
    for mut conn in [
        HttpConn::h1(proxy.addr("web")).await,
        HttpConn::h2c(proxy.addr("web")).await,
    ] {
        let resp = conn.get("empty.test", "/").await;
        assert_short_reason(&resp, StatusCode::SERVICE_UNAVAILABLE, "no backend");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_backend_is_502() {
    let s = setup().await;
    for mut conn in h1_and_h2(&s).await {
        let resp = conn.get("garbage.test", "/").await;
        assert_short_reason(&resp, StatusCode::BAD_GATEWAY, "garbage");
        assert!(
            !resp.text().contains("not HTTP"),
            "backend bytes leaked: {}",
            resp.text()
        );
    }
    assert!(s.garbage.connection_count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_route_limit_is_413() {
    let s = setup().await;
    let mut conn = HttpConn::h1(s.proxy.addr("web")).await;
    let resp = conn.post("x.test", "/upload", vec![b'a'; 1024]).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "a body of exactly the limit passes"
    );
    assert_eq!(s.app.last().body_len, 1024);

    for mut conn in h1_and_h2(&s).await {
        let resp = conn.post("x.test", "/upload", vec![b'a'; 4096]).await;
        assert_eq!(
            resp.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "declared length over the limit"
        );
    }
    assert_eq!(
        s.app.request_count(),
        1,
        "an over-long declared body never reaches the backend"
    );

    // Without a declared length the limit can only bite mid-stream.
    let mut conn = HttpConn::h1(s.proxy.addr("web")).await;
    let req = conn
        .request(Method::POST, "x.test", "/upload")
        .body(PatternBody::new(64 * 1024, 1000, false).boxed())
        .unwrap();
    if let Ok(resp) = conn.send(req).await {
        let status = resp.status();
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "streamed body over the limit"
        );
    }
    assert!(
        s.app.received().iter().all(|r| r.body_len <= 1024),
        "backend received more than the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uri_over_the_limit_is_414() {
    let s = setup().await;
    let ok = raw_request(
        s.proxy.addr("web"),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200)).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200, "a URI under the limit passes");
    let resp = raw_request(
        s.proxy.addr("web"),
        format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1000)).as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 414);
    let mut h2 = HttpConn::h2c(s.proxy.addr("web")).await;
    let resp = h2.get("x.test", &format!("/{}", "b".repeat(1000))).await;
    assert_eq!(resp.status, StatusCode::URI_TOO_LONG, "over h2");
    assert_eq!(s.app.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_section_over_the_limits_is_431() {
    let s = setup().await;
    let addr = s.proxy.addr("web");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(12 * 1024)
    );
    assert_eq!(
        raw_request(addr, big.as_bytes()).await.unwrap().status,
        431,
        "bytes"
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        raw_request(addr, many.as_bytes()).await.unwrap().status,
        431,
        "count"
    );
    let fine = "GET / HTTP/1.1\r\nHost: x\r\nX-Small: 1\r\n\r\n";
    assert_eq!(
        raw_request(addr, fine.as_bytes()).await.unwrap().status,
        200,
        "control"
    );
    // HTTP/2 is bound by the same field count.
    let mut h2 = HttpConn::h2c(addr).await;
    let mut req = h2.request(http::Method::GET, "x.test", "/");
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), i.to_string());
    }
    let resp = h2.exchange(req.body(full("")).unwrap()).await;
    assert_eq!(resp.status.as_u16(), 431, "h2 count: {}", resp.text());
    assert_eq!(s.app.request_count(), 1);
}

/// A backend answer with both Content-Length and Transfer-Encoding: the client must get the
/// whole chunked body, never a Content-Length that cuts it short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_content_length_with_transfer_encoding_is_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5\r\nhello\r\n0\r\n\r\n",
                )
                .await;
        }
    });
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: app\n    \
         upstream: app\nupstreams:\n  app:\n    servers: [\"{backend}\"]\n"
    );
    let proxy = Proxy::start(&yaml).await;
    let resp = raw_request(proxy.addr("web"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_ne!(resp.header("content-length"), Some("3"));
    assert_eq!(String::from_utf8_lossy(&resp.body), "hello");
}
