//! Route selection: host (exact, wildcard, list), path (exact, prefix, regex), methods, headers,
//! query, listener scoping, first match wins, 404 with a reason, direct responses and redirects.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use http::{Method, StatusCode};

struct Setup {
    api: BackendHandle,
    files: BackendHandle,
    proxy: ProxyHandle,
}

async fn setup() -> Setup {
    let api = Backend::http1()
        .fallback(Reply::text(200, "api"))
        .spawn()
        .await;
    let files = Backend::http1()
        .fallback(Reply::text(200, "files"))
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - name: main
    bind: "127.0.0.1:0"
routes:
  - name: api-host
    match: {{ host: api.test }}
    upstream: api
  - name: wildcard
    match: {{ host: "*.wild.test" }}
    respond: {{ status: 200, body: wild }}
  - name: host-list
    match: {{ host: [one.test, two.test] }}
    respond: {{ status: 200, body: list }}
  - name: exact
    match: {{ path: /exact }}
    respond: {{ status: 200, body: exact }}
  - name: static
    match: {{ path_prefix: /static/ }}
    upstream: files
  - name: items
    match: {{ path_regex: "^/items/[0-9]+$" }}
    respond: {{ status: 200, body: item }}
  - name: writes
    match: {{ path: /m, methods: [POST, PUT] }}
    respond: {{ status: 200, body: write }}
  - name: reads
    match: {{ path: /m }}
    respond: {{ status: 200, body: read }}
  - name: header-exact
    match: {{ path: /h, headers: {{ x-tenant: blue }} }}
    respond: {{ status: 200, body: blue }}
  - name: header-regex
    match: {{ path: /h, headers: {{ x-tenant: {{ regex: "^gre+n$" }} }} }}
    respond: {{ status: 200, body: green }}
  - name: header-present
    match: {{ path: /h, headers: {{ x-debug: {{ present: true }} }} }}
    respond: {{ status: 200, body: debug }}
  - name: query-exact
    match: {{ path: /q, query: {{ v: "2" }} }}
    respond: {{ status: 200, body: v2 }}
  - name: query-present
    match: {{ path: /q, query: {{ debug: {{ present: true }} }} }}
    respond: {{ status: 200, body: qdebug }}
  - name: teapot
    match: {{ path: /teapot }}
    respond:
      status: 418
      body: short and stout
      headers: {{ x-kettle: "yes" }}
  - name: moved
    match: {{ path: /moved }}
    redirect: {{ to: "https://new.test/landing", status: 301 }}
  - name: old
    match: {{ path_prefix: /old/ }}
    redirect: {{ to: "https://new.test", status: 308, keep_path: true }}
upstreams:
  api:
    servers: ["{}"]
  files:
    servers: ["{}"]
"#,
        api.addr, files.addr
    );
    let proxy = Proxy::start(&yaml).await;
    Setup { api, files, proxy }
}

async fn get(s: &Setup, host: &str, path: &str) -> Collected {
    HttpConn::h1(s.proxy.addr("main"))
        .await
        .get(host, path)
        .await
}

async fn get_with(s: &Setup, path: &str, header: (&str, &str)) -> Collected {
    let mut conn = HttpConn::h1(s.proxy.addr("main")).await;
    let req = conn
        .request(Method::GET, "x.test", path)
        .header(header.0, header.1)
        .body(empty())
        .unwrap();
    conn.exchange(req).await
}

fn assert_body(resp: &Collected, expected: &str, what: &str) {
    assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
    assert_eq!(resp.text(), expected, "{what}");
}

fn assert_not_found(resp: &Collected, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::NOT_FOUND,
        "{what}: {}",
        resp.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_ignores_case_and_port_and_wins_first() {
    let s = setup().await;
    assert_body(
        &get(&s, "API.Test:8080", "/exact").await,
        "api",
        "api host, /exact",
    );
    assert_eq!(s.api.last().uri, "/exact");
    assert_body(
        &get(&s, "api.test", "/static/x").await,
        "api",
        "api host, /static/",
    );
    assert_eq!(s.files.request_count(), 0);
    assert_eq!(s.api.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_and_list_hosts() {
    let s = setup().await;
    assert_body(&get(&s, "a.wild.test", "/").await, "wild", "one label");
    assert_body(&get(&s, "a.b.wild.test", "/").await, "wild", "two labels");
    assert_not_found(
        &get(&s, "wild.test", "/").await,
        "bare domain of a wildcard",
    );
    assert_not_found(&get(&s, "notwild.test", "/").await, "suffix without a dot");
    assert_body(&get(&s, "one.test", "/").await, "list", "first of list");
    assert_body(&get(&s, "two.test", "/").await, "list", "second of list");
    let mut h2 = HttpConn::h2c(s.proxy.addr("main")).await;
    assert_body(
        &h2.get("x.wild.test", "/").await,
        "wild",
        ":authority over h2c",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_exact_prefix_and_regex() {
    let s = setup().await;
    assert_body(&get(&s, "x.test", "/exact").await, "exact", "exact");
    assert_body(
        &get(&s, "x.test", "/exact?q=1").await,
        "exact",
        "exact with a query",
    );
    assert_not_found(&get(&s, "x.test", "/exact/").await, "exact plus slash");
    assert_not_found(&get(&s, "x.test", "/exactly").await, "exact as a prefix");
    assert_body(
        &get(&s, "x.test", "/static/css/app.css").await,
        "files",
        "prefix",
    );
    assert_eq!(s.files.last().uri, "/static/css/app.css");
    assert_not_found(
        &get(&s, "x.test", "/static").await,
        "prefix without its slash",
    );
    assert_body(&get(&s, "x.test", "/items/42").await, "item", "regex");
    assert_not_found(&get(&s, "x.test", "/items/abc").await, "regex mismatch");
    assert_not_found(&get(&s, "x.test", "/items/42/x").await, "regex anchored");
    assert_eq!(s.api.request_count(), 0);
    // A dot segment with parameters is `..` to Tomcat-style backends: refused, not routed
    // to the `/static/` prefix it seems to be under.
    let files_before = s.files.request_count();
    let escape = get(&s, "x.test", "/static/..;/admin").await;
    assert_eq!(escape.status, StatusCode::BAD_REQUEST, "{}", escape.text());
    assert_eq!(s.files.request_count(), files_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_select_between_routes() {
    let s = setup().await;
    let mut conn = HttpConn::h1(s.proxy.addr("main")).await;
    for (method, expected) in [
        (Method::POST, "write"),
        (Method::PUT, "write"),
        (Method::GET, "read"),
        (Method::DELETE, "read"),
    ] {
        let req = conn
            .request(method.clone(), "x.test", "/m")
            .body(empty())
            .unwrap();
        assert_body(&conn.exchange(req).await, expected, method.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_conditions() {
    let s = setup().await;
    assert_body(
        &get_with(&s, "/h", ("x-tenant", "blue")).await,
        "blue",
        "exact",
    );
    assert_body(
        &get_with(&s, "/h", ("x-tenant", "greeen")).await,
        "green",
        "regex",
    );
    assert_not_found(
        &get_with(&s, "/h", ("x-tenant", "red")).await,
        "no header condition holds",
    );
    assert_body(
        &get_with(&s, "/h", ("x-debug", "")).await,
        "debug",
        "present, empty value",
    );
    assert_not_found(&get(&s, "x.test", "/h").await, "no headers at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_conditions() {
    let s = setup().await;
    assert_body(&get(&s, "x.test", "/q?v=2").await, "v2", "exact");
    assert_body(
        &get(&s, "x.test", "/q?a=1&v=2").await,
        "v2",
        "second parameter",
    );
    assert_body(
        &get(&s, "x.test", "/q?debug").await,
        "qdebug",
        "present without a value",
    );
    assert_not_found(&get(&s, "x.test", "/q?v=3").await, "wrong value");
    assert_not_found(&get(&s, "x.test", "/q?vv=2").await, "other name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_with_a_short_reason() {
    let s = setup().await;
    for mut conn in [
        HttpConn::h1(s.proxy.addr("main")).await,
        HttpConn::h2c(s.proxy.addr("main")).await,
    ] {
        let resp = conn.get("nowhere.test", "/nothing/here").await;
        assert_not_found(&resp, "unmatched");
        assert!(!resp.body.is_empty(), "404 must say why");
        assert!(
            resp.body.len() < 1024,
            "404 reason should be short: {}",
            resp.text()
        );
    }
    assert_eq!(s.api.request_count() + s.files.request_count(), 0);
}

/// Two listeners, both on ephemeral ports: a scoped route exists only on its own listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_be_limited_to_listeners() {
    let proxy = Proxy::start(
        r#"
listeners:
  - name: main
    bind: "127.0.0.1:0"
  - name: side
    bind: "127.0.0.1:0"
routes:
  - name: side-only
    listeners: [side]
    match: { path: /side-only }
    respond: { status: 200, body: side }
  - name: everywhere
    match: { path: /everywhere }
    respond: { status: 200, body: everywhere }
"#,
    )
    .await;
    let (main, side) = (proxy.addr("main"), proxy.addr("side"));
    assert_ne!(main, side);
    let resp = HttpConn::h1(main).await.get("x.test", "/side-only").await;
    assert_not_found(&resp, "side route on main");
    let resp = HttpConn::h1(side).await.get("x.test", "/side-only").await;
    assert_body(&resp, "side", "side route on side");
    for addr in [main, side] {
        let resp = HttpConn::h1(addr).await.get("x.test", "/everywhere").await;
        assert_body(&resp, "everywhere", "unscoped route");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_response_with_status_body_and_headers() {
    let s = setup().await;
    for mut conn in [
        HttpConn::h1(s.proxy.addr("main")).await,
        HttpConn::h2c(s.proxy.addr("main")).await,
    ] {
        let resp = conn.get("x.test", "/teapot").await;
        assert_eq!(resp.status.as_u16(), 418);
        assert_eq!(resp.text(), "short and stout");
        assert_eq!(resp.header("x-kettle"), Some("yes"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_with_and_without_the_path() {
    let s = setup().await;
    let resp = get(&s, "x.test", "/moved").await;
    assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.header("location"), Some("https://new.test/landing"));
    let resp = get(&s, "x.test", "/old/a/b?x=1&y=%20").await;
    assert_eq!(resp.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        resp.header("location"),
        Some("https://new.test/old/a/b?x=1&y=%20")
    );
    assert_eq!(s.api.request_count() + s.files.request_count(), 0);
}
