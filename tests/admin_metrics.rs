//! `/metrics` for what is not a plain request: TLS handshakes (and failures by reason),
//! certificate expiry, WebSocket and Layer 4 tunnels (active while open, bytes when done).
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use futures_util::SinkExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use ws_support::{WsBackend, STEP};

const ADMIN: &str = "admin:\n  bind: 127.0.0.1:0\n";

/// Scrapes until `check` holds on the samples; panics after 5 s with the last scrape.
async fn until(admin: SocketAddr, what: &str, check: impl Fn(&[Sample]) -> bool) {
    let ok = wait_until(Duration::from_secs(5), || async {
        check(&scrape(admin, None).await)
    })
    .await;
    assert!(ok, "{what}; last scrape:\n{:#?}", scrape(admin, None).await);
}

#[tokio::test]
async fn tls_handshakes_certificates_and_websocket_tunnels() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let proxy = Proxy::start(&ws_support::config(&ca, backend.addr, "", ADMIN)).await;
    let adm = proxy.admin_addr();
    let wss = [("listener", "wss")];

    let mut ws = ws_support::connect(proxy.addr("wss"), Some(&ca), "/chat").await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        ws_support::next(&mut ws).await,
        Some(Message::text("hello"))
    );
    let samples = scrape(adm, None).await;
    assert_eq!(
        value(&samples, "portico_tls_handshakes_total", &wss),
        Some(1.0)
    );
    let websocket = [("listener", "wss"), ("kind", "websocket")];
    assert_eq!(
        value(&samples, "portico_tunnels_active", &websocket),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "portico_tunnels_total", &websocket),
        Some(1.0)
    );
    let expiry = value(
        &samples,
        "portico_certificate_expiry_timestamp_seconds",
        &wss,
    )
    .unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now,
        "certificate expiry {expiry} is not in the future"
    );

    ws.close(None).await.unwrap();
    drop(ws);
    until(adm, "tunnel closed and its bytes counted", |s| {
        value(s, "portico_tunnels_active", &websocket) == Some(0.0)
            && value(
                s,
                "portico_bytes_total",
                &[("listener", "wss"), ("direction", "in")],
            )
            .is_some_and(|n| n >= 5.0)
    })
    .await;

    // Plain text on a TLS port is not a ClientHello.
    let mut tcp = TcpStream::connect(proxy.addr("wss")).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(STEP, tcp.read_to_end(&mut sink)).await;
    let invalid = [("listener", "wss"), ("reason", "invalid_message")];
    until(adm, "a failed handshake counted by reason", |s| {
        value(s, "portico_tls_handshake_failures_total", &invalid) == Some(1.0)
    })
    .await;
}

/// Echoes every byte back until the client closes.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn layer4_tunnels_and_connect_errors() {
    let echo = echo_backend().await;
    let dead = unused_addr();
    let yaml = format!(
        "listeners:\n  - name: db\n    bind: 127.0.0.1:0\n    mode: tcp\n    upstream: db\n  - name: gone\n    bind: 127.0.0.1:0\n    mode: tcp\n    upstream: gone\nupstreams:\n  db:\n    servers: [\"{echo}\"]\n  gone:\n    servers: [\"{dead}\"]\n{ADMIN}"
    );
    let proxy = Proxy::start(&yaml).await;
    let adm = proxy.admin_addr();
    let tcp_db = [("listener", "db"), ("kind", "tcp")];

    let mut client = TcpStream::connect(proxy.addr("db")).await.unwrap();
    client.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(STEP, client.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    until(adm, "one open tcp tunnel", |s| {
        value(s, "portico_tunnels_active", &tcp_db) == Some(1.0)
            && value(s, "portico_connections_active", &[("listener", "db")]) == Some(1.0)
    })
    .await;
    drop(client);
    until(adm, "the tunnel closed with its bytes counted", |s| {
        value(s, "portico_tunnels_active", &tcp_db) == Some(0.0)
            && value(
                s,
                "portico_bytes_total",
                &[("listener", "db"), ("direction", "out")],
            ) == Some(4.0)
    })
    .await;

    let mut refused = TcpStream::connect(proxy.addr("gone")).await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(STEP, refused.read_to_end(&mut sink)).await;
    let dead_addr = dead.to_string();
    let labels = [("upstream", "gone"), ("backend", dead_addr.as_str())];
    until(adm, "the connect error and the backend marked down", |s| {
        value(
            s,
            "portico_upstream_errors_total",
            &[("upstream", "gone"), ("kind", "connect")],
        ) == Some(1.0)
            && value(s, "portico_backend_up", &labels) == Some(0.0)
    })
    .await;
}

/// Reads a request head and closes without answering.
async fn hanging_up_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_errors_tell_reset_from_protocol() {
    let garbage = Backend::garbage().spawn().await;
    let hangup = hanging_up_backend().await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: g\n    match: {{ path_prefix: /g }}\n    upstream: g\n  - name: h\n    upstream: h\nupstreams:\n  g:\n    servers: [\"{}\"]\n  h:\n    servers: [\"{hangup}\"]\n{ADMIN}",
        garbage.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    assert_eq!(conn.get("a.test", "/g").await.status, 502);
    assert_eq!(conn.get("a.test", "/h").await.status, 502);
    until(
        proxy.admin_addr(),
        "one protocol error and one reset",
        |s| {
            let errors = |u, k| {
                value(
                    s,
                    "portico_upstream_errors_total",
                    &[("upstream", u), ("kind", k)],
                )
            };
            errors("g", "protocol") == Some(1.0) && errors("h", "reset") == Some(1.0)
        },
    )
    .await;
    // A backend that answers nonsense or hangs up is still reachable: not marked down.
    let samples = scrape(proxy.admin_addr(), None).await;
    assert_eq!(
        value(&samples, "portico_backend_up", &[("upstream", "h")]),
        None
    );
}
