//! Tunnel lifecycle: idle timeout and maximum lifetime, tunnel limits (503 before the
//! upgrade), a refused upgrade that leaves the client in HTTP, upgrades to an h2c upstream
//! going over HTTP/1.1, and the drain deadline on shutdown.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use ws_support::*;

/// True once the server ended `ws` (close frame, EOF or reset), within `STEP`.
async fn ended(ws: &mut Client) -> bool {
    tokio::time::timeout(STEP, async {
        loop {
            match futures_util::StreamExt::next(ws).await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                Some(Ok(_)) => continue,
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn idle_timeout_closes_the_silent_tunnel_and_spares_the_active_one() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let proxy = Proxy::start(&config(&ca, backend.addr, "      idle_timeout: 1s", "")).await;
    let addr = proxy.addr("ws");
    let mut silent = connect(addr, None, "/").await;
    let mut active = connect(addr, None, "/").await;
    let talker = tokio::spawn(async move {
        // Keeps talking for well over the idle timeout.
        let until = Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while Instant::now() < until {
            let text = format!("still here {n}");
            active.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next(&mut active).await, Some(Message::text(text)));
            n += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        active
    });
    assert!(ended(&mut silent).await, "the silent tunnel was not closed");
    let mut active = talker.await.unwrap();
    active.send(Message::text("after")).await.unwrap();
    assert_eq!(next(&mut active).await, Some(Message::text("after")));
}

#[tokio::test]
async fn max_lifetime_ends_even_a_busy_tunnel() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let proxy = Proxy::start(&config(&ca, backend.addr, "      max_lifetime: 1s", "")).await;
    let mut ws = connect(proxy.addr("ws"), None, "/").await;
    let closed = tokio::time::timeout(STEP, async {
        loop {
            if ws.send(Message::text("busy")).await.is_err() {
                return;
            }
            match tokio::time::timeout(
                Duration::from_secs(2),
                futures_util::StreamExt::next(&mut ws),
            )
            .await
            {
                Ok(Some(Ok(Message::Text(_)))) => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "a tunnel past its lifetime kept running");
}

#[tokio::test]
async fn tunnel_limits_answer_503_before_the_upgrade() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let extra = "    limits: { max_tunnels: 3 }";
    let proxy = Proxy::start(&config(&ca, backend.addr, "      max_tunnels: 2", extra)).await;
    let addr = proxy.addr("ws");
    let first = connect(addr, None, "/").await;
    let _second = connect(addr, None, "/").await;
    let refused = try_connect(addr, None, request("ws://localhost/", &[])).await;
    assert_eq!(refused.err(), Some(503), "route limit of 2");
    assert_eq!(
        backend.handshake_count(),
        2,
        "the refused one never reached the backend"
    );
    drop(first);
    assert!(
        wait_until(STEP, || async {
            try_connect(addr, None, request("ws://localhost/", &[]))
                .await
                .is_ok()
        })
        .await,
        "a slot came free once a tunnel ended"
    );
}

#[tokio::test]
async fn listener_tunnel_limit() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let extra = "    limits: { max_tunnels: 1 }";
    let proxy = Proxy::start(&config(&ca, backend.addr, "", extra)).await;
    let _only = connect(proxy.addr("ws"), None, "/").await;
    let refused = try_connect(proxy.addr("ws"), None, request("ws://localhost/", &[])).await;
    assert_eq!(refused.err(), Some(503));
    // The TLS listener has its own (default) limit.
    let ok = connect(proxy.addr("wss"), Some(&ca), "/").await;
    drop(ok);
}

/// A backend that answers `path` with `body` and every other request (upgrades included)
/// with 400, behind a proxy with one plain listener `web`.
async fn refusing_backend(path: &str, body: &str) -> (BackendHandle, ProxyHandle) {
    let backend = Backend::http1()
        .route(path, body)
        .fallback(Reply::text(400, "no websocket here"))
        .spawn()
        .await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: all\n    upstream: app\nupstreams:\n  app:\n    servers: [\"{}\"]\n",
        backend.addr
    );
    (backend, Proxy::start(&yaml).await)
}

#[tokio::test]
async fn refused_upgrade_leaves_the_connection_in_http() {
    let (backend, proxy) = refusing_backend("/plain", "plain http").await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    // Both requests in one write: the second must be read as HTTP by Portico, not tunnelled.
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    let refused = conn.read_response(STEP, false).await.unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body, b"no websocket here");
    let second = conn.read_response(STEP, false).await.unwrap();
    assert_eq!(second.status, 200);
    assert_eq!(second.body, b"plain http");
    assert!(
        second.header("via").is_some(),
        "second answer was proxied, not tunnelled"
    );
    let plain = backend
        .received()
        .into_iter()
        .find(|r| r.uri.path() == "/plain")
        .expect("backend got /plain");
    assert_eq!(
        plain.header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
}

/// After a refused upgrade the strict framing checks still apply: a request the guard
/// would refuse (bare LF) is not slipped past it as "tunnel" bytes.
#[tokio::test]
async fn refused_upgrade_cannot_smuggle_a_malformed_request() {
    let (backend, proxy) = refusing_backend("/admin", "secret").await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    conn.send(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\
GET /admin HTTP/1.1\nHost: localhost\n\n",
    )
    .await
    .unwrap();
    let refused = conn.read_response(STEP, false).await.unwrap();
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body, b"no websocket here");
    let second = conn.read_response(STEP, false).await.unwrap();
    assert_eq!(
        second.status, 400,
        "the bare-LF request is refused by Portico"
    );
    assert!(second.header("via").is_none(), "answered by Portico itself");
    assert!(
        backend.received().iter().all(|r| r.uri.path() != "/admin"),
        "the malformed request reached the backend"
    );
}

#[tokio::test]
async fn upgrade_to_an_h2c_upstream_goes_over_http1() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let yaml = config(&ca, backend.addr, "", "").replace(
        "  chat:\n    servers:",
        "  chat:\n    protocol: h2c\n    servers:",
    );
    let proxy = Proxy::start(&yaml).await;
    let mut ws = connect(proxy.addr("ws"), None, "/").await;
    ws.send(Message::text("over http/1.1")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("over http/1.1")));
}

#[tokio::test]
async fn drain_lets_tunnels_finish_until_the_deadline() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let mut proxy = Proxy::start(&config(&ca, backend.addr, "      drain_timeout: 1s", "")).await;
    let mut ws = connect(proxy.addr("ws"), None, "/").await;
    proxy.trigger_shutdown();
    // Still carried during the drain...
    ws.send(Message::text("during drain")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("during drain")));
    // ...and closed at the deadline, after which the proxy finishes.
    assert!(ended(&mut ws).await, "tunnel outlived the drain deadline");
    let joined = proxy.join(STEP).await;
    assert!(
        matches!(joined, Some(Ok(()))),
        "proxy did not finish draining"
    );
}

#[tokio::test]
async fn websocket_disabled_forwards_a_plain_request() {
    let backend = Backend::http1()
        .fallback(Reply::text(200, "page"))
        .spawn()
        .await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: all\n    upstream: app\n    websocket: {{ enabled: false }}\nupstreams:\n  app:\n    servers: [\"{}\"]\n",
        backend.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let resp = raw_request(
        proxy.addr("web"),
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(backend.last().header("upgrade"), None);
}
