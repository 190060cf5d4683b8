//! Self-checks of the test harness against its own backends, without the proxy, so a failure
//! elsewhere can be blamed on Portico rather than on the tools.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode, Version};
use http_body_util::BodyExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_records_requests_and_answers_routes() {
    let backend = Backend::http1()
        .route("/a", "A")
        .fallback(Reply::text(200, "any"))
        .spawn()
        .await;
    let mut conn = HttpConn::h1(backend.addr).await;
    let resp = conn.get("app.test", "/a?x=1").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), "A");
    let resp = conn.post("app.test", "/other", "12345").await;
    assert_eq!(resp.text(), "any");
    let seen = backend.received();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].uri, "/a?x=1");
    assert_eq!(seen[0].headers["host"], "app.test");
    assert_eq!(seen[1].method, Method::POST);
    assert_eq!(seen[1].body_len, 5);
    assert_eq!(backend.connection_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_backend_echoes_and_sends_grpc_trailers() {
    let backend = Backend::h2c().reply("/grpc", Reply::Grpc).spawn().await;
    let mut conn = HttpConn::h2c(backend.addr).await;
    let resp = conn.post("app.test", "/grpc", "ping").await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.text(), "ping");
    assert_eq!(resp.header("content-type"), Some("application/grpc"));
    let trailers = resp.trailers.expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backend_presents_ca_signed_certificate() {
    let ca = TestCa::new();
    let backend = Backend::h2_tls(&ca).route("/", "secure").spawn().await;
    let mut conn = HttpConn::tls(backend.addr, &ca, Sni::Name("backend.test"), Alpn::H2).await;
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(conn.get("backend.test", "/").await.text(), "secure");
    let mut by_ip = HttpConn::tls(backend.addr, &ca, Sni::None, Alpn::H2).await;
    assert_eq!(by_ip.get("127.0.0.1", "/").await.text(), "secure");
    let other_ca = TestCa::new();
    let refused =
        HttpConn::try_tls(backend.addr, &other_ca, Sni::Name("backend.test"), Alpn::H2).await;
    assert!(refused.is_err(), "a foreign CA must not be trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_sink_and_checksums_agree() {
    let backend = Backend::http1()
        .reply("/download", Reply::Download)
        .reply("/sink", Reply::Sink)
        .spawn()
        .await;
    let size = 3 * 1024 * 1024 + 7;
    let mut conn = HttpConn::h1(backend.addr).await;
    let resp = conn.get("x", &format!("/download?size={size}")).await;
    let mut sum = Checksum::default();
    sum.update(&resp.body);
    assert_eq!(sum, Checksum::of_pattern(size));
    assert_eq!(resp.body, pattern(size));
    let req = conn
        .request(Method::POST, "x", "/sink")
        .body(PatternBody::new(size, 10_000, false).boxed())
        .unwrap();
    let resp = conn.exchange(req).await;
    assert_eq!(resp.text(), Checksum::of_pattern(size).to_text());
    assert_eq!(backend.last().body_len, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_streams_before_the_request_ends() {
    let backend = Backend::http1().reply("/echo", Reply::Echo).spawn().await;
    let mut conn = HttpConn::h1(backend.addr).await;
    let (tx, body) = body::channel_body(None);
    let req = conn.request(Method::POST, "x", "/echo").body(body).unwrap();
    tx.data("first").await;
    let resp = tokio::time::timeout(Duration::from_secs(5), conn.send(req))
        .await
        .expect("head before the body ended")
        .unwrap();
    let mut incoming = resp.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), incoming.frame())
        .await
        .expect("first chunk echoed while the request is still open")
        .unwrap()
        .unwrap();
    assert_eq!(frame.into_data().unwrap(), "first");
    tx.data("second").await;
    drop(tx);
    let rest = incoming.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_backend_is_an_error_not_a_short_body() {
    let backend = Backend::http1()
        .reply(
            "/die",
            Reply::DieMidBody {
                announced: Some(1_000_000),
                sent: 100_000,
            },
        )
        .reply(
            "/die-chunked",
            Reply::DieMidBody {
                announced: None,
                sent: 100_000,
            },
        )
        .spawn()
        .await;
    for path in ["/die", "/die-chunked"] {
        let mut conn = HttpConn::h1(backend.addr).await;
        let req = conn.request(Method::GET, "x", path).body(empty()).unwrap();
        let resp = conn.send(req).await.unwrap();
        assert!(collect(resp).await.is_err(), "{path}: body must fail");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_parses_chunked_and_sees_garbage() {
    let backend = Backend::http1()
        .reply("/download", Reply::Download)
        .spawn()
        .await;
    let resp = raw_request(
        backend.addr,
        b"GET /download?size=70000&nolength=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.chunked);
    assert_eq!(resp.body, pattern(70000));

    let garbage = Backend::garbage().spawn().await;
    let mut conn = RawConn::connect(garbage.addr).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = conn.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert!(!answer.starts_with(b"HTTP/"));
    assert!(
        wait_until(Duration::from_secs(2), || async {
            garbage.connection_count() == 1
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_reply_waits() {
    let backend = Backend::h2c()
        .reply(
            "/slow",
            Reply::text(200, "late").delayed(Duration::from_millis(300)),
        )
        .spawn()
        .await;
    let mut conn = HttpConn::h2c(backend.addr).await;
    let start = std::time::Instant::now();
    assert_eq!(conn.get("x", "/slow").await.text(), "late");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[test]
fn unused_addr_refuses_connections() {
    let addr = unused_addr();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
