//! Graceful drain: in-flight requests finish, new connections are refused, idle connections
//! are closed, and the grace period bounds how long `run()` may take.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

async fn setup(grace: &str, delay: Duration) -> (BackendHandle, ProxyHandle) {
    let backend = Backend::http1()
        .route("/fast", "fast")
        .reply("/slow", Reply::text(200, "done").delayed(delay))
        .spawn()
        .await;
    let yaml = format!(
        r#"
settings:
  grace_period: {grace}
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - name: app
    upstream: app
upstreams:
  app:
    servers: ["{}"]
"#,
        backend.addr
    );
    (backend, Proxy::start(&yaml).await)
}

async fn refuses_connections(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let (backend, mut proxy) = setup("10s", Duration::from_millis(1500)).await;
    let addr = proxy.addr("web");
    let mut h1 = HttpConn::h1(addr).await;
    let mut h2 = HttpConn::h2c(addr).await;
    let in_flight_h1 = tokio::spawn(async move { h1.get("x.test", "/slow").await });
    let in_flight_h2 = tokio::spawn(async move { h2.get("x.test", "/slow").await });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            backend.request_count() == 2
        })
        .await,
        "both slow requests reached the backend"
    );

    let triggered = Instant::now();
    proxy.trigger_shutdown();
    assert!(
        wait_until(Duration::from_secs(3), || refuses_connections(addr)).await,
        "listener still accepting after the drain started"
    );

    for (name, task) in [("h1", in_flight_h1), ("h2", in_flight_h2)] {
        let resp = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{name} in-flight request never finished"))
            .unwrap();
        assert_eq!(resp.status, StatusCode::OK, "{name}");
        assert_eq!(resp.text(), "done", "{name}");
    }
    let result = proxy.join(Duration::from_secs(10)).await;
    assert!(
        matches!(result, Some(Ok(()))),
        "run() after the drain: {result:?}"
    );
    assert!(
        triggered.elapsed() < Duration::from_secs(8),
        "drain took {:?}",
        triggered.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_hold_the_drain() {
    let (_backend, mut proxy) = setup("10s", Duration::from_millis(10)).await;
    let addr = proxy.addr("web");
    let mut idle = RawConn::connect(addr).await;
    idle.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let resp = idle
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(resp.body, b"fast");
    let mut h2_idle = HttpConn::h2c(addr).await;
    assert_eq!(h2_idle.get("x.test", "/fast").await.text(), "fast");

    let start = Instant::now();
    proxy.trigger_shutdown();
    idle.wait_closed(Duration::from_secs(3))
        .await
        .expect("idle keep-alive connection closed by the drain");
    let result = proxy.join(Duration::from_secs(3)).await;
    assert!(
        matches!(result, Some(Ok(()))),
        "run() with only idle connections: {result:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_period_bounds_the_drain() {
    let (backend, mut proxy) = setup("500ms", Duration::from_secs(30)).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    let _stuck = tokio::spawn(async move { conn.get("x.test", "/slow").await });
    assert!(
        wait_until(Duration::from_secs(5), || async {
            backend.request_count() == 1
        })
        .await
    );
    let start = Instant::now();
    proxy.trigger_shutdown();
    let result = proxy.join(Duration::from_secs(5)).await;
    assert!(
        result.is_some(),
        "run() still going 5s after a 500ms grace period"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "did not wait for the in-flight request"
    );
}

/// A request whose bytes were sent before the drain started is answered, not reset: the
/// connection's first request is read before its graceful close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_sent_just_before_the_drain_is_answered() {
    for _ in 0..10 {
        let (_backend, proxy) = setup("5s", Duration::ZERO).await;
        let mut conn = RawConn::connect(proxy.addr("web")).await;
        conn.send(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        proxy.trigger_shutdown();
        let resp = conn.read_response(Duration::from_secs(10), false).await;
        assert_eq!(
            resp.map(|r| r.status).ok(),
            Some(200),
            "the request sent before the drain was dropped"
        );
    }
}
