//! TLS termination: certificate choice by SNI (two hosts and a client sending no SNI), ALPN for
//! HTTP/1.1 and HTTP/2, and 421 Misdirected Request when Host belongs to another certificate.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http::{StatusCode, Version};

struct Setup {
    ca: TestCa,
    a: Leaf,
    b: Leaf,
    backend: BackendHandle,
    proxy: ProxyHandle,
}

async fn setup(strict: bool) -> Setup {
    let ca = TestCa::new();
    // The first certificate is the default; it also covers 127.0.0.1 for clients without SNI.
    let a = ca.leaf("a", &["a.test", "127.0.0.1"]);
    let b = ca.leaf("b", &["b.test", "*.b.test"]);
    let backend = Backend::http1()
        .fallback(Reply::text(200, "from backend"))
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - name: tls
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert: "{}", key: "{}" }}
        - {{ cert: "{}", key: "{}" }}
      strict_sni_host: {strict}
routes:
  - name: all
    upstream: app
upstreams:
  app:
    servers: ["{}"]
"#,
        a.cert_path.display(),
        a.key_path.display(),
        b.cert_path.display(),
        b.key_path.display(),
        backend.addr
    );
    let proxy = Proxy::start(&yaml).await;
    Setup {
        ca,
        a,
        b,
        backend,
        proxy,
    }
}

async fn check_sni(alpn: Alpn, version: Version) {
    let s = setup(true).await;
    let addr = s.proxy.addr("tls");
    for (host, leaf) in [("a.test", &s.a), ("b.test", &s.b), ("x.b.test", &s.b)] {
        let mut conn = HttpConn::tls(addr, &s.ca, Sni::Name(host), alpn).await;
        assert_eq!(
            conn.peer_cert.as_ref(),
            Some(&leaf.der),
            "certificate for SNI {host}"
        );
        let expected_alpn: &[u8] = if alpn == Alpn::H2 { b"h2" } else { b"http/1.1" };
        assert_eq!(conn.alpn.as_deref(), Some(expected_alpn), "ALPN for {host}");
        let resp = conn.get(host, "/hello").await;
        assert_eq!(resp.status, StatusCode::OK, "{host}: {}", resp.text());
        assert_eq!(resp.version, version);
        assert_eq!(resp.text(), "from backend");
        let seen = s.backend.last();
        assert_eq!(seen.uri, "/hello");
        assert_eq!(seen.headers["host"], host);
    }
    assert_eq!(s.backend.request_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_over_tls_picks_certificate_by_sni() {
    check_sni(Alpn::Http1, Version::HTTP_11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_picks_certificate_by_sni() {
    check_sni(Alpn::H2, Version::HTTP_2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_sni_gets_the_default_certificate() {
    let s = setup(true).await;
    for alpn in [Alpn::Http1, Alpn::H2] {
        let mut conn = HttpConn::tls(s.proxy.addr("tls"), &s.ca, Sni::None, alpn).await;
        assert_eq!(
            conn.peer_cert.as_ref(),
            Some(&s.a.der),
            "default certificate ({alpn:?})"
        );
        let resp = conn.get("a.test", "/").await;
        assert_eq!(resp.status, StatusCode::OK, "{alpn:?}: {}", resp.text());
        assert_eq!(resp.text(), "from backend");
    }
    assert_eq!(s.backend.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_of_another_certificate_is_misdirected() {
    let s = setup(true).await;
    let addr = s.proxy.addr("tls");
    for alpn in [Alpn::Http1, Alpn::H2] {
        let mut conn = HttpConn::tls(addr, &s.ca, Sni::Name("a.test"), alpn).await;
        let resp = conn.get("b.test", "/").await;
        assert_eq!(resp.status, StatusCode::MISDIRECTED_REQUEST, "{alpn:?}");
        let mut conn = HttpConn::tls(addr, &s.ca, Sni::Name("a.test"), alpn).await;
        let resp = conn.get("a.test", "/").await;
        assert_eq!(resp.status, StatusCode::OK, "{alpn:?} after 421");
    }
    let mut conn = HttpConn::tls(addr, &s.ca, Sni::Name("b.test"), Alpn::H2).await;
    let resp = conn.get("a.test:443", "/").await;
    assert_eq!(
        resp.status,
        StatusCode::MISDIRECTED_REQUEST,
        "Host with a port"
    );
    // Only the two requests to the connection's own host reached the backend.
    assert_eq!(s.backend.request_count(), 2);
    assert!(s
        .backend
        .received()
        .iter()
        .all(|r| r.headers["host"] == "a.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_covered_by_no_certificate_is_not_misdirected() {
    let s = setup(true).await;
    let mut conn =
        HttpConn::tls(s.proxy.addr("tls"), &s.ca, Sni::Name("a.test"), Alpn::Http1).await;
    let resp = conn.get("elsewhere.test", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(s.backend.last().headers["host"], "elsewhere.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_sni_host_can_be_turned_off() {
    let s = setup(false).await;
    let mut conn = HttpConn::tls(s.proxy.addr("tls"), &s.ca, Sni::Name("a.test"), Alpn::H2).await;
    let resp = conn.get("b.test", "/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(s.backend.last().headers["host"], "b.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_tls_listener_is_not_served() {
    let s = setup(true).await;
    let mut conn = RawConn::connect(s.proxy.addr("tls")).await;
    conn.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let answer = conn.wait_closed(std::time::Duration::from_secs(15)).await;
    let answer = answer.expect("connection closed after a non-TLS hello");
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "served plain HTTP on a TLS port"
    );
    assert_eq!(s.backend.request_count(), 0);
}
