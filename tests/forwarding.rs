//! What crosses the proxy: hop-by-hop removal, X-Forwarded-*/Forwarded/Via, Host, origin-form
//! targets, untouched query bytes, repeated Set-Cookie, bodiless responses, HTTP/1.0, 100-continue.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode, Version};

const COOKIES: [&str; 3] = [
    "a=1; Path=/",
    "b=2; HttpOnly",
    "c=3; Expires=Wed, 21 Oct 2037 07:28:00 GMT",
];

struct Setup {
    ca: TestCa,
    backend: BackendHandle,
    proxy: ProxyHandle,
}

async fn setup(trusted: &str) -> Setup {
    setup_with(trusted, false).await
}

/// One listener called `web`; with `tls` it terminates TLS for `app.test`.
async fn setup_with(trusted: &str, tls: bool) -> Setup {
    let ca = TestCa::new();
    let leaf = ca.leaf("app", &["app.test"]);
    let mut cookies = Reply::text(200, "cookies");
    for c in COOKIES {
        cookies = cookies.header("set-cookie", c);
    }
    let backend = Backend::http1()
        .fallback(Reply::text(200, "ok"))
        .reply("/cookies", cookies)
        .route("/head", "hello")
        .reply("/nocontent", Reply::text(204, ""))
        .reply(
            "/notmodified",
            Reply::text(304, "").header("etag", "\"v1\""),
        )
        .reply("/stream", Reply::Download)
        .reply("/echo", Reply::Echo)
        .spawn()
        .await;
    let yaml = format!(
        r#"
settings:
  trusted_proxies: {trusted}
listeners:
  - name: web
    bind: "127.0.0.1:0"
{tls}
routes:
  - name: backend-host
    match: {{ path_prefix: /bh/ }}
    upstream: app
    host_header: backend
  - name: all
    upstream: app
upstreams:
  app:
    servers: ["{}"]
"#,
        backend.addr,
        tls = if tls {
            format!(
                "    tls:\n      certificates: [{{ cert: \"{}\", key: \"{}\" }}]",
                leaf.cert_path.display(),
                leaf.key_path.display()
            )
        } else {
            String::new()
        },
    );
    let proxy = Proxy::start(&yaml).await;
    Setup { ca, backend, proxy }
}

async fn raw(s: &Setup, request: &str) -> RawResponse {
    raw_request(s.proxy.addr("web"), request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("no response to {request:?}: {e:?}"))
}

/// `Forwarded` elements as (key, value) pairs with quotes removed, lower-case keys.
fn forwarded_pairs(value: &str) -> Vec<(String, String)> {
    value
        .split([',', ';'])
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.trim().trim_matches('"').to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed() {
    let s = setup("[]").await;
    let resp = raw(
        &s,
        "GET /hop HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Drop-Me\r\n\
         X-Drop-Me: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\n\
         X-Keep-Me: 1\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = s.backend.last();
    for gone in [
        "x-drop-me",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        assert!(
            seen.header(gone).is_none(),
            "{gone} reached the backend: {:?}",
            seen.headers
        );
    }
    if let Some(connection) = seen.header("connection") {
        assert!(
            !connection.to_ascii_lowercase().contains("x-drop-me"),
            "connection: {connection}"
        );
    }
    if let Some(te) = seen.header("te") {
        assert_eq!(te, "trailers", "only `TE: trailers` may pass");
    }
    assert_eq!(seen.header("x-keep-me").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_gets_forwarding_headers_rebuilt() {
    let s = setup("[]").await;
    let resp = raw(
        &s,
        "GET /fwd HTTP/1.1\r\nHost: app.test:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\
         Forwarded: for=9.9.9.9;proto=https\r\nVia: 1.0 edge\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = s.backend.last();
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host").as_deref(),
        Some("app.test:8080")
    );
    assert_eq!(
        seen.header("host").as_deref(),
        Some("app.test:8080"),
        "Host is kept"
    );
    let forwarded = seen.header("forwarded").expect("Forwarded header");
    assert!(
        !forwarded.contains("9.9.9.9"),
        "spoofed Forwarded kept: {forwarded}"
    );
    let pairs = forwarded_pairs(&forwarded);
    assert!(
        pairs.contains(&("for".into(), "127.0.0.1".into())),
        "{forwarded}"
    );
    assert!(
        pairs.contains(&("proto".into(), "http".into())),
        "{forwarded}"
    );
    let via = seen.header("via").expect("Via header");
    let edge = via.find("edge").expect("earlier Via hop kept");
    let me = via.find("portico").expect("Via names portico");
    assert!(edge < me, "Via appends: {via}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peer_gets_forwarding_headers_appended() {
    let s = setup("[\"127.0.0.1/32\"]").await;
    let resp = raw(
        &s,
        "GET /fwd HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 1.2.3.4\r\n\
         Forwarded: for=9.9.9.9\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = s.backend.last();
    assert_eq!(
        seen.header("x-forwarded-for").as_deref(),
        Some("1.2.3.4, 127.0.0.1")
    );
    let forwarded = seen.header("forwarded").expect("Forwarded header");
    let fors: Vec<String> = forwarded_pairs(&forwarded)
        .into_iter()
        .filter(|(k, _)| k == "for")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(fors, ["9.9.9.9", "127.0.0.1"], "{forwarded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_forwards_https_and_h2_becomes_http1_with_host() {
    let s = setup_with("[]", true).await;
    let mut conn = HttpConn::tls(s.proxy.addr("web"), &s.ca, Sni::Name("app.test"), Alpn::H2).await;
    let resp = conn.get("app.test", "/via-h2?x=1").await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.backend.last();
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.uri, "/via-h2?x=1");
    assert_eq!(seen.header("host").as_deref(), Some("app.test"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    let forwarded = seen.header("forwarded").expect("Forwarded header");
    assert!(forwarded_pairs(&forwarded).contains(&("proto".into(), "https".into())));
    assert!(seen.header("via").expect("Via").contains("portico"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_backend_uses_the_backend_address() {
    let s = setup("[]").await;
    let resp = HttpConn::h1(s.proxy.addr("web"))
        .await
        .get("app.test", "/bh/x")
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let seen = s.backend.last();
    assert_eq!(seen.header("host"), Some(s.backend.addr.to_string()));
    assert_eq!(seen.header("x-forwarded-host").as_deref(), Some("app.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_is_forwarded_as_origin_form() {
    let s = setup("[]").await;
    let resp = raw(
        &s,
        "GET http://app.test/abs/path?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let seen = s.backend.last();
    assert_eq!(seen.uri.to_string(), "/abs/path?x=1");
    assert_eq!(seen.header("host").as_deref(), Some("app.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_bytes_are_kept_verbatim() {
    let s = setup("[]").await;
    let target = "/q?b=2&a=1&c=%2F%20x&e=&&f=%E2%82%AC&g=a+b&h=%2e";
    let resp = raw(
        &s,
        &format!("GET {target} HTTP/1.1\r\nHost: app.test\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(s.backend.last().uri.to_string(), target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_set_cookie_fields_stay_separate() {
    let s = setup("[]").await;
    for mut conn in [
        HttpConn::h1(s.proxy.addr("web")).await,
        HttpConn::h2c(s.proxy.addr("web")).await,
    ] {
        let resp = conn.get("app.test", "/cookies").await;
        let cookies: Vec<&str> = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, COOKIES, "h2: {}", conn.is_h2());
    }
}

/// HTTP/2 clients may split `Cookie` into several fields; the HTTP/1.1 backend gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_h2_cookies_reach_http1_backend_joined() {
    let s = setup("[]").await;
    let mut conn = HttpConn::h2c(s.proxy.addr("web")).await;
    let req = conn
        .request(http::Method::GET, "app.test", "/")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .body(full(""))
        .unwrap();
    assert_eq!(conn.exchange(req).await.status, 200);
    let seen = s.backend.last();
    let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
    assert_eq!(cookies, vec!["a=1; b=2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_response_has_length_but_no_body() {
    let s = setup("[]").await;
    let mut conn = RawConn::connect(s.proxy.addr("web")).await;
    conn.send(b"HEAD /head HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let head = conn
        .read_response(Duration::from_secs(10), true)
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("5"));
    assert_eq!(s.backend.last().method, Method::HEAD);
    // Any stray body bytes would be read here as the next status line.
    conn.send(b"GET /head HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let get = conn
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_content_and_not_modified_have_no_body() {
    let s = setup("[]").await;
    let mut conn = RawConn::connect(s.proxy.addr("web")).await;
    conn.send(b"GET /nocontent HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let resp = conn
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(resp.status, 204);
    assert!(
        resp.header("transfer-encoding").is_none(),
        "{:?}",
        resp.headers
    );
    conn.send(b"GET /notmodified HTTP/1.1\r\nHost: app.test\r\nIf-None-Match: \"v1\"\r\n\r\n")
        .await
        .unwrap();
    let resp = conn
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(resp.status, 304);
    assert_eq!(resp.header("etag"), Some("\"v1\""));
    assert!(
        resp.header("transfer-encoding").is_none(),
        "{:?}",
        resp.headers
    );
    assert_eq!(
        s.backend.last().header("if-none-match").as_deref(),
        Some("\"v1\"")
    );
    conn.send(b"GET /head HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let resp = conn
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(
        resp.body, b"hello",
        "connection still in sync after bodiless answers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_client_never_gets_chunked() {
    let s = setup("[]").await;
    let size = 200_000;
    let resp = raw(
        &s,
        &format!("GET /stream?size={size}&nolength=1 HTTP/1.0\r\nHost: app.test\r\n\r\n"),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert!(resp.version.starts_with("HTTP/1."), "{}", resp.version);
    assert!(
        !resp.chunked,
        "chunked sent to an HTTP/1.0 client: {:?}",
        resp.headers
    );
    assert!(resp.header("transfer-encoding").is_none());
    assert_eq!(resp.body.len(), size as usize);
    assert_eq!(resp.body, pattern(size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_honoured() {
    let s = setup("[]").await;
    let mut conn = RawConn::connect(s.proxy.addr("web")).await;
    conn.send(b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let interim = conn
        .read_response(Duration::from_secs(5), false)
        .await
        .unwrap();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue before sending the body"
    );
    conn.send(b"hello").await.unwrap();
    let resp = conn
        .read_response(Duration::from_secs(10), false)
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello");
    assert_eq!(s.backend.last().body_len, 5);
}
