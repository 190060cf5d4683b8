//! Balancing of WebSocket upgrades: an open tunnel counts as a request in flight until it
//! closes (least_requests sends the next one elsewhere), and the sealed sticky cookie comes
//! with the 101, marked `Secure` on a TLS listener, and pins later upgrades.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use std::net::SocketAddr;

use common::*;
use ws_support::*;

fn yaml(ca: &TestCa, a: SocketAddr, b: SocketAddr) -> String {
    let leaf = ca.leaf("portico", &["localhost"]);
    format!(
        r#"
listeners:
  - name: wss
    bind: "127.0.0.1:0"
    tls:
      certificates:
        - {{ cert: "{}", key: "{}" }}
routes:
  - name: ws
    upstream: chat
    websocket:
      enabled: true
upstreams:
  chat:
    servers: ["{a}", "{b}"]
    balancer: least_requests
    sticky: {{ cookie: srv, secret: "0123456789abcdef-ws" }}
"#,
        leaf.cert_path.display(),
        leaf.key_path.display(),
    )
}

/// Opens a tunnel over TLS, with `cookie` when given; returns it and the `Set-Cookie` of the 101.
async fn open(addr: SocketAddr, ca: &TestCa, cookie: Option<&str>) -> (Client, Option<String>) {
    let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
    let req = request("wss://localhost/chat", &headers);
    let io = stream(addr, Some(ca)).await;
    let (ws, response) = tokio_tungstenite::client_async_with_config(req, io, Some(unlimited()))
        .await
        .unwrap();
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, set_cookie)
}

#[tokio::test]
async fn open_tunnels_count_as_in_flight_and_sticky_cookie_pins_upgrades() {
    let ca = TestCa::new();
    let (a, b) = (WsBackend::spawn(None).await, WsBackend::spawn(None).await);
    let proxy = Proxy::start(&yaml(&ca, a.addr, b.addr)).await;
    let addr = proxy.addr("wss");
    let counts = || [a.handshake_count(), b.handshake_count()];

    let (_first, set_cookie) = open(addr, &ca, None).await;
    let line = set_cookie.expect("the 101 carries the sticky cookie");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure"] {
        assert!(line.contains(attr), "{line} lacks {attr}");
    }
    let pinned = counts().iter().position(|&n| n == 1).unwrap();
    let other = 1 - pinned;

    // The first tunnel is still open: least_requests sends a new client to the other backend.
    let (_second, _) = open(addr, &ca, None).await;
    assert_eq!(counts()[other], 1, "{:?}", counts());

    // The cookie wins over the balancer.
    let pair = line.split(';').next().unwrap().to_owned();
    let (_third, again) = open(addr, &ca, Some(&pair)).await;
    assert_eq!(counts()[pinned], 2, "{:?}", counts());
    assert!(
        again.is_none(),
        "a valid cookie is not re-issued: {again:?}"
    );

    // Two tunnels on the pinned backend, one on the other: a new client goes to the other.
    let (_fourth, _) = open(addr, &ca, None).await;
    assert_eq!(counts()[other], 2, "{:?}", counts());
}
