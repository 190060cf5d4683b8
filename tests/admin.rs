//! The admin listener on real sockets: probes, `/metrics` parsed as Prometheus text with
//! counters that move as requests flow through the proxy, `/status` JSON, the bearer token,
//! reload without a reload mechanism (501), and `check` refusing a public admin without token.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_portico");

/// `web` with routes `api` (live backend), `dead` (nothing listens) and `hello` (respond).
fn config(api: SocketAddr, admin_extra: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: api\n    match: {{ path_prefix: /api/ }}\n    upstream: api\n  - name: dead\n    match: {{ path_prefix: /dead/ }}\n    upstream: dead\n  - name: hello\n    respond: {{ status: 200, body: hi }}\nupstreams:\n  api:\n    servers: [\"{api}\"]\n  dead:\n    servers: [\"{}\"]\n    timeouts: {{ connect: 2s }}\nadmin:\n  bind: 127.0.0.1:0\n{admin_extra}",
        unused_addr()
    )
}

#[tokio::test]
async fn probes_and_metrics_move_with_traffic() {
    let backend = Backend::http1().route("/api/a", "A").spawn().await;
    let proxy = Proxy::start(&config(backend.addr, "")).await;
    let (web, adm) = (proxy.addr("web"), proxy.admin_addr());

    let live = admin(adm, "GET", "/livez", None).await;
    assert_eq!((live.status, body(&live).as_str()), (200, "ok\n"));
    let ready = admin(adm, "GET", "/readyz", None).await;
    assert_eq!((ready.status, body(&ready).as_str()), (200, "ready\n"));

    let before = scrape(adm, None).await;
    assert_eq!(value(&before, "portico_config_generation", &[]), Some(1.0));
    assert_eq!(
        value(&before, "portico_requests_total", &[("route", "api")]),
        None
    );

    let mut conn = HttpConn::h1(web).await;
    for _ in 0..3 {
        assert_eq!(conn.get("a.test", "/api/a").await.status, 200);
    }
    assert_eq!(conn.get("a.test", "/dead/x").await.status, 502);
    assert_eq!(conn.get("a.test", "/other").await.text(), "hi");

    let counted = wait_until(Duration::from_secs(5), || async {
        let s = scrape(adm, None).await;
        value(&s, "portico_requests_total", &[("route", "hello")]) == Some(1.0)
    })
    .await;
    assert!(counted, "requests never counted");
    let samples = scrape(adm, None).await;
    let api_2xx = [("listener", "web"), ("route", "api"), ("class", "2xx")];
    assert_eq!(
        value(&samples, "portico_requests_total", &api_2xx),
        Some(3.0)
    );
    let dead_5xx = [("route", "dead"), ("class", "5xx")];
    assert_eq!(
        value(&samples, "portico_requests_total", &dead_5xx),
        Some(1.0)
    );
    let api = [("route", "api")];
    assert_eq!(
        value(&samples, "portico_request_duration_seconds_count", &api),
        Some(3.0)
    );
    let connect = [("upstream", "dead"), ("kind", "connect")];
    assert_eq!(
        value(&samples, "portico_upstream_errors_total", &connect),
        Some(1.0)
    );
    let backend_api = [("upstream", "api"), ("backend", &*backend.addr.to_string())];
    assert_eq!(
        value(&samples, "portico_backend_up", &backend_api),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "portico_backend_up", &[("upstream", "dead")]),
        Some(0.0)
    );
    assert_eq!(
        value(
            &samples,
            "portico_backend_response_duration_seconds_count",
            &backend_api
        ),
        Some(3.0)
    );
    let out = [("listener", "web"), ("direction", "out")];
    assert!(value(&samples, "portico_bytes_total", &out).unwrap() >= 5.0);
    assert_eq!(
        value(
            &samples,
            "portico_connections_active",
            &[("listener", "web")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &samples,
            "portico_connections_total",
            &[("listener", "web")]
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn status_json_shape() {
    let backend = Backend::http1().route("/api/a", "A").spawn().await;
    let proxy = Proxy::start(&config(backend.addr, "")).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    assert_eq!(conn.get("a.test", "/api/a").await.status, 200);
    assert_eq!(conn.get("a.test", "/dead/").await.status, 502);

    let r = admin(proxy.admin_addr(), "GET", "/status", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(s["generation"], 1);
    assert_eq!(s["ready"], true);
    assert_eq!(s["draining"], false);
    assert!(s["last_reload"].is_null());
    let l = &s["listeners"][0];
    assert_eq!(l["name"], "web");
    assert_eq!(l["address"], proxy.addr("web").to_string());
    assert_eq!(l["mode"], "http");
    assert_eq!(l["connections_active"], 1);
    let names: Vec<&str> = s["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "dead", "hello"]);
    assert_eq!(s["routes"][0]["upstream"], "api");
    assert_eq!(s["routes"][2]["action"], "respond");
    assert!(
        wait_until(Duration::from_secs(5), || async {
            let r = admin(proxy.admin_addr(), "GET", "/status", None).await;
            let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            s["routes"][0]["requests"]["2xx"] == 1
        })
        .await
    );
    let up = &s["upstreams"][0];
    assert_eq!(up["name"], "api");
    let b = &up["backends"][0];
    assert_eq!(b["address"], backend.addr.to_string());
    assert_eq!(b["health"], "up");
    assert_eq!(b["responses"], 1);
    assert!(b.get("in_flight").is_some() && b.get("ejected").is_some());
    assert!(
        b["ewma_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "a latency estimate after one response: {b}"
    );
    let dead = &s["upstreams"][1]["backends"][0];
    assert!(dead["ewma_ms"].is_null(), "no response, no estimate");
    assert_eq!(dead["health"], "down");
    assert_eq!(dead["errors"]["connect"], 1);
}

#[tokio::test]
async fn token_guards_everything_but_probes_and_the_page() {
    let backend = Backend::http1().spawn().await;
    let proxy = Proxy::start(&config(backend.addr, "  token: s3cret\n")).await;
    let adm = proxy.admin_addr();
    for path in ["/livez", "/readyz", "/"] {
        assert_eq!(admin(adm, "GET", path, None).await.status, 200, "{path}");
    }
    for (method, path) in [("GET", "/metrics"), ("GET", "/status"), ("POST", "/reload")] {
        for token in [None, Some("s3cre"), Some("s3cret2"), Some("")] {
            let r = admin(adm, method, path, token).await;
            assert_eq!(r.status, 401, "{method} {path} with {token:?}");
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        }
    }
    assert_eq!(
        admin(adm, "GET", "/metrics", Some("s3cret")).await.status,
        200
    );
    assert_eq!(
        admin(adm, "GET", "/status", Some("s3cret")).await.status,
        200
    );
    let reload = admin(adm, "POST", "/reload", Some("s3cret")).await;
    assert_eq!(reload.status, 501);
    assert_eq!(body(&reload), "reload not available in this build\n");
}

#[tokio::test]
async fn methods_paths_and_the_dashboard_page() {
    let backend = Backend::http1().spawn().await;
    let proxy = Proxy::start(&config(backend.addr, "")).await;
    let adm = proxy.admin_addr();
    assert_eq!(admin(adm, "GET", "/nope", None).await.status, 404);
    let r = admin(adm, "GET", "/reload", None).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(admin(adm, "POST", "/status", None).await.status, 405);
    let page = admin(adm, "GET", "/", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = body(&page);
    assert!(html.contains("fetch(\"/status\""), "the page polls /status");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert_eq!(admin(adm, "GET", "/dashboard", None).await.status, 200);
}

#[test]
fn check_refuses_a_public_admin_without_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portico.yaml");
    let base =
        "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nadmin:\n  bind: 0.0.0.0:9901\n";
    std::fs::write(&file, base).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("portico.yaml:5:"), "{text}");
    assert!(text.contains("admin.bind"), "{text}");
    assert!(text.contains("needs `token` or `token_file`"), "{text}");

    std::fs::write(&file, format!("{base}  token: s3cret\n")).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn reload_cli_posts_to_the_admin_listener() {
    let backend = Backend::http1().spawn().await;
    let proxy = Proxy::start(&config(backend.addr, "  token: cli-token\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portico.yaml");
    // The file names the running admin listener; its other sections do not matter here.
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: nowhere\nadmin:\n  bind: {}\n  token: cli-token\n",
        proxy.admin_addr()
    );
    std::fs::write(&file, yaml).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["reload", "--dry-run", "-c", file.to_str().unwrap()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("reload not available in this build"),
        "{text}"
    );
    assert!(text.contains("HTTP 501"), "{text}");
}

/// Counts reloads and answers like a reload mechanism would.
struct FakeReload {
    calls: std::sync::atomic::AtomicUsize,
}

impl portico::admin::Control for FakeReload {
    fn reload(
        &self,
        dry_run: bool,
    ) -> Option<futures_util::future::BoxFuture<'static, serde_json::Value>> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        Some(Box::pin(async move {
            serde_json::json!({ "ok": true, "dry_run": dry_run, "generation": n, "changes": ["routes[0]"], "errors": [], "warnings": [] })
        }))
    }

    fn last_reload(&self) -> Option<serde_json::Value> {
        let n = self.calls.load(std::sync::atomic::Ordering::SeqCst);
        (n > 0).then(|| serde_json::json!({ "ok": true, "generation": n }))
    }
}

#[tokio::test]
async fn an_installed_control_answers_reload_over_the_socket() {
    let backend = Backend::http1().spawn().await;
    let (config, _) =
        portico::config::parse_str(&config(backend.addr, ""), "t.yaml", &std::env::temp_dir())
            .unwrap();
    let mut server = portico::Server::bind(config).await.unwrap();
    server.set_control(std::sync::Arc::new(FakeReload {
        calls: Default::default(),
    }));
    let adm = server.admin_addr().unwrap();
    let shutdown = server.shutdown_handle();
    let run = tokio::spawn(server.run());
    let r = admin(adm, "POST", "/reload?dry_run=1", None).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["dry_run"].clone(), v["changes"][0].clone()),
        (true.into(), "routes[0]".into())
    );
    let status: serde_json::Value =
        serde_json::from_slice(&admin(adm, "GET", "/status", None).await.body).unwrap();
    assert_eq!(status["last_reload"]["generation"], 1);
    shutdown.trigger();
    run.await.unwrap().unwrap();
}
