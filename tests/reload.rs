//! Hot reload on real sockets: no request dropped under load, bad configs refused with every
//! error, no-ops kept as no-ops, listeners kept / added / removed by name and address,
//! certificates rotated for new connections only, `max_connections` resized, WebSockets
//! surviving reloads unless their route goes away.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const LIMIT: Duration = Duration::from_secs(20);

fn assert_applied(outcome: &portico::reload::ReloadOutcome, generation: u64) {
    assert!(
        outcome.ok && outcome.generation == generation,
        "{outcome:?}"
    );
}

/// One message through the tunnel and back.
async fn assert_echoes(ws: &mut ws_support::Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(ws_support::next(ws).await, Some(Message::text(text)));
}

fn two_upstreams(route_to: &str, a: SocketAddr, b: SocketAddr, note: &str) -> String {
    format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - name: note
    match: {{ path_prefix: /note }}
    respond: {{ status: 200, body: "{note}" }}
  - name: app
    upstream: {route_to}
upstreams:
  a:
    servers: ["{a}"]
  b:
    servers: ["{b}"]
"#
    )
}

/// Fifty reloads under constant HTTP/1.1, HTTP/2 and WebSocket traffic: no request fails,
/// the WebSocket stays open and echoing, and both upstreams took turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_drop_no_request() {
    let a = Backend::http1()
        .fallback(Reply::text(200, "a"))
        .spawn()
        .await;
    let b = Backend::http1()
        .fallback(Reply::text(200, "b"))
        .spawn()
        .await;
    let ws_backend = ws_support::WsBackend::spawn(None).await;
    let config = |to: &str, n: usize| {
        two_upstreams(to, a.addr, b.addr, &n.to_string())
            .replace(
                "routes:\n",
                "routes:\n  - name: chat\n    match: { path_prefix: /chat }\n    upstream: chat\n    websocket: { enabled: true }\n",
            )
            + &format!("  chat:\n    servers: [\"{}\"]\n", ws_backend.addr)
    };
    let proxy = ReloadableProxy::start(&config("a", 0)).await;
    let addr = proxy.addr("web");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for h2 in [false, false, true, true] {
        let (stop, failed, done) = (stop.clone(), failed.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut conn = if h2 {
                HttpConn::h2c(addr).await
            } else {
                HttpConn::h1(addr).await
            };
            for _ in 0..5_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let resp = conn.get("x.test", "/").await;
                if resp.status != 200 {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut ws = ws_support::connect(addr, None, "/chat").await;
    for n in 1..=50 {
        let to = if n % 2 == 0 { "a" } else { "b" };
        let outcome = proxy.reload_with(&config(to, n)).await;
        assert_applied(&outcome, n as u64 + 1);
        assert_echoes(&mut ws, &format!("m{n}")).await;
        // Let the load run a little between reloads.
        let seen = done.load(Ordering::SeqCst);
        wait_until(LIMIT, || {
            let done = done.clone();
            async move { done.load(Ordering::SeqCst) >= seen + 4 }
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "failed requests");
    assert!(done.load(Ordering::SeqCst) >= 200);
    assert!(a.request_count() > 0 && b.request_count() > 0);
    assert_echoes(&mut ws, "still here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_with_every_error_and_the_old_one_keeps_serving() {
    let a = Backend::http1()
        .fallback(Reply::text(200, "a"))
        .spawn()
        .await;
    let good = two_upstreams("a", a.addr, a.addr, "first");
    let proxy = ReloadableProxy::start(&good).await;
    let bad = good
        .replace("upstream: a\n", "upstream: nowhere\n")
        .replace("path_prefix: /note", "path_prefix: note");
    let outcome = proxy.reload_with(&bad).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.generation, 1, "still the first configuration");
    let all = outcome.errors.join("\n");
    assert!(
        all.contains("nowhere") && all.contains("path_prefix"),
        "{all}"
    );
    assert!(
        all.contains("portico.yaml:"),
        "errors name file:line:column: {all}"
    );
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    assert_eq!(conn.get("x.test", "/note").await.text(), "first");
    assert_eq!(conn.get("x.test", "/").await.text(), "a");
    let last = proxy.reloader.last().unwrap();
    assert!(!last.ok && !last.errors.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_op_reload_keeps_the_generation_and_dry_run_changes_nothing() {
    let a = Backend::http1()
        .fallback(Reply::text(200, "a"))
        .spawn()
        .await;
    let yaml = two_upstreams("a", a.addr, a.addr, "first");
    let proxy = ReloadableProxy::start(&yaml).await;
    let same = proxy.reload_with(&yaml).await;
    assert!(same.ok && same.changes.is_empty(), "{same:?}");
    assert_eq!(same.generation, 1);
    std::fs::write(&proxy.path, yaml.replace("first", "second")).unwrap();
    let dry = proxy.reloader.reload(true).await;
    assert!(dry.ok && dry.dry_run);
    assert_eq!(dry.changes, ["route \"note\" changed"]);
    assert_eq!(dry.generation, 1);
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    assert_eq!(conn.get("x.test", "/note").await.text(), "first");
    let real = proxy.reloader.reload(false).await;
    assert_eq!(real.generation, 2);
    assert_eq!(conn.get("x.test", "/note").await.text(), "second");
}

fn listeners(names: &[&str]) -> String {
    let mut yaml = String::from("listeners:\n");
    for n in names {
        yaml.push_str(&format!("  - name: {n}\n    bind: \"127.0.0.1:0\"\n"));
    }
    yaml.push_str("routes:\n  - name: hello\n    respond: { status: 200, body: hi }\n");
    yaml
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_kept_added_and_removed_by_name() {
    let proxy = ReloadableProxy::start(&listeners(&["web", "old"])).await;
    let web = proxy.addr("web");
    let old = proxy.addr("old");
    let mut kept = HttpConn::h1(web).await;
    assert_eq!(kept.get("x.test", "/").await.text(), "hi");
    let mut on_old = RawConn::connect(old).await;
    let outcome = proxy.reload_with(&listeners(&["web", "new"])).await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(
        proxy.addr("web"),
        web,
        "an unchanged listener keeps its socket"
    );
    assert_eq!(
        kept.get("x.test", "/").await.text(),
        "hi",
        "same connection"
    );
    let new = proxy.addr("new");
    assert_eq!(
        HttpConn::h1(new).await.get("x.test", "/").await.text(),
        "hi"
    );
    // The removed listener stops accepting; its open connection drains (closed when idle).
    let refused = wait_until(LIMIT, || async move {
        match tokio::net::TcpStream::connect(old).await {
            Err(_) => true,
            Ok(s) => raw_request_on(s).await,
        }
    })
    .await;
    assert!(refused, "the removed listener still serves");
    on_old.wait_closed(LIMIT).await.expect("drained");
}

/// `max_connections` follows a reload: raised, a client waiting in the backlog is served;
/// lowered below what is open, new clients wait until enough connections end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_follows_a_reload() {
    let yaml = |max: usize| {
        format!("listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\n    limits: {{ max_connections: {max} }}\nroutes:\n  - name: hi\n    respond: {{ status: 200, body: hi }}\n")
    };
    let get = |addr| async move { HttpConn::h1(addr).await.get("x.test", "/").await.text() };
    let held = Duration::from_millis(500);
    let proxy = ReloadableProxy::start(&yaml(1)).await;
    let web = proxy.addr("web");
    let mut first = HttpConn::h1(web).await;
    assert_eq!(first.get("x.test", "/").await.text(), "hi");

    // At the limit the second client is not served...
    let mut second = tokio::spawn(get(web));
    assert!(
        tokio::time::timeout(held, &mut second).await.is_err(),
        "served over max_connections 1"
    );
    // ...until a reload raises the limit, while the first connection stays open.
    assert_applied(&proxy.reload_with(&yaml(2)).await, 2);
    let text = tokio::time::timeout(LIMIT, second)
        .await
        .expect("served after the raise");
    assert_eq!(text.unwrap(), "hi");
    assert_eq!(first.get("x.test", "/").await.text(), "hi");

    // Lowered back to 1 with the first connection open: a new client waits for it to end.
    assert_applied(&proxy.reload_with(&yaml(1)).await, 3);
    let mut third = tokio::spawn(get(web));
    assert!(
        tokio::time::timeout(held, &mut third).await.is_err(),
        "served over the lowered max_connections"
    );
    drop(first);
    let text = tokio::time::timeout(LIMIT, third)
        .await
        .expect("served once the first ended");
    assert_eq!(text.unwrap(), "hi");
}

/// True when a connection to a stopped listener gets no HTTP answer.
async fn raw_request_on(mut s: tokio::net::TcpStream) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    !matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_serves_new_connections_and_keeps_old_ones() {
    let ca = TestCa::new();
    let first = ca.leaf("first", &["site.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("site.pem"), dir.path().join("site.key"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let yaml = format!(
        "listeners:\n  - name: tls\n    bind: \"127.0.0.1:0\"\n    tls:\n      certificates: [{{ cert: \"{}\", key: \"{}\" }}]\nroutes:\n  - name: hello\n    respond: {{ status: 200, body: hi }}\n",
        cert.display(),
        key.display()
    );
    let proxy = ReloadableProxy::start(&yaml).await;
    let addr = proxy.addr("tls");
    let mut before = HttpConn::tls(addr, &ca, Sni::Name("site.test"), Alpn::H2).await;
    assert_eq!(before.get("site.test", "/").await.text(), "hi");
    assert_eq!(ca.peer_certificate(addr, "site.test").await, first.der);
    let second = ca.leaf("second", &["site.test"]);
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::fs::write(&key, &second.key_pem).unwrap();
    let outcome = proxy.reloader.reload(false).await;
    assert!(outcome.ok && outcome.generation == 2, "{outcome:?}");
    assert_eq!(ca.peer_certificate(addr, "site.test").await, second.der);
    assert_eq!(
        before.get("site.test", "/").await.text(),
        "hi",
        "old connection kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_reloads_and_drains_when_its_route_is_removed() {
    let ca = TestCa::new();
    let backend = ws_support::WsBackend::spawn(None).await;
    let base = ws_support::config(&ca, backend.addr, "      drain_timeout: 1s\n", "");
    let with_note = |n: usize| {
        base.replace(
            "routes:\n",
            &format!("routes:\n  - name: note\n    match: {{ path_prefix: /note }}\n    respond: {{ status: 200, body: \"{n}\" }}\n"),
        )
    };
    let proxy = ReloadableProxy::start(&with_note(0)).await;
    let mut ws = ws_support::connect(proxy.addr("ws"), None, "/chat").await;
    for n in 1..=20 {
        let outcome = proxy.reload_with(&with_note(n)).await;
        assert_applied(&outcome, n as u64 + 1);
        assert_echoes(&mut ws, &format!("m{n}")).await;
    }
    // Remove the WebSocket route: the tunnel drains and is closed after its deadline.
    let without = with_note(21).replace(
        "  - name: ws\n    upstream: chat\n    websocket:\n      enabled: true\n      drain_timeout: 1s\n",
        "",
    );
    assert!(!without.contains("name: ws\n    upstream"), "route removed");
    let outcome = proxy.reload_with(&without).await;
    assert!(outcome.ok, "{outcome:?}");
    assert!(outcome.changes.iter().any(|c| c == "route \"ws\" removed"));
    let ended = tokio::time::timeout(LIMIT, async {
        while let Some(Ok(m)) = futures_util::StreamExt::next(&mut ws).await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the tunnel on the removed route was not closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_endpoint_dry_run_apply_and_refuse() {
    let a = Backend::http1()
        .fallback(Reply::text(200, "a"))
        .spawn()
        .await;
    let yaml = format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\n{}",
        two_upstreams("a", a.addr, a.addr, "first")
    );
    let proxy = ReloadableProxy::start(&yaml).await;
    let adm = proxy.handle.admin_addr();
    std::fs::write(&proxy.path, yaml.replace("first", "second")).unwrap();
    let dry = admin(adm, "POST", "/reload?dry_run=1", None).await;
    assert_eq!(dry.status, 200, "{}", body(&dry));
    let dry: serde_json::Value = serde_json::from_str(&body(&dry)).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["generation"], 1);
    assert_eq!(dry["changes"][0], "route \"note\" changed");
    let applied = admin(adm, "POST", "/reload", None).await;
    assert_eq!(applied.status, 200, "{}", body(&applied));
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    assert_eq!(conn.get("x.test", "/note").await.text(), "second");
    std::fs::write(&proxy.path, "listeners: [").unwrap();
    let refused = admin(adm, "POST", "/reload", None).await;
    assert_eq!(refused.status, 422, "{}", body(&refused));
    let samples = scrape(adm, None).await;
    let count = |outcome| value(&samples, "portico_reloads_total", &[("outcome", outcome)]);
    assert_eq!((count("ok"), count("error")), (Some(1.0), Some(1.0)));
    assert_eq!(value(&samples, "portico_config_generation", &[]), Some(2.0));
    let status = admin(adm, "GET", "/status", None).await;
    let status: serde_json::Value = serde_json::from_str(&body(&status)).unwrap();
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(
        conn.get("x.test", "/note").await.text(),
        "second",
        "still serving"
    );
}
