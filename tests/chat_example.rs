//! The chat example as shipped (examples/chat: its server and its Portico config, with only
//! the addresses changed): several clients see each other's messages, and a real headless
//! Chromium loads the page over HTTPS through Portico and sees its own message come back.
#![allow(clippy::unwrap_used)]

#[path = "../examples/chat/server.rs"]
mod chat_server;
mod common;
mod ws_support;

use std::path::Path;

use common::*;
use futures_util::SinkExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use ws_support::*;

struct Chat {
    proxy: ProxyHandle,
    dir: tempfile::TempDir,
}

/// Starts the chat server and Portico with the example's config; `keep_origins: false`
/// drops the Origin allowlist (a browser's origin names the test's random port).
async fn start(keep_origins: bool) -> Chat {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chat_addr = listener.local_addr().unwrap();
    tokio::spawn(chat_server::serve(listener));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chat/portico.yaml");
    let mut yaml = std::fs::read_to_string(shipped)
        .unwrap()
        .replace("127.0.0.1:8443", "127.0.0.1:0")
        .replace("127.0.0.1:9100", &chat_addr.to_string());
    if !keep_origins {
        yaml = yaml
            .lines()
            .filter(|l| !l.contains("allowed_origins"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_in(&yaml, dir.path()).await;
    Chat { proxy, dir }
}

#[tokio::test]
async fn clients_see_each_others_messages() {
    let chat = start(true).await;
    let trust = trust_pem(&chat.dir.path().join("certs/portico-dev-ca.pem"));
    let addr = chat.proxy.addr("https");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let req = request(
            "wss://localhost/ws",
            &[
                ("origin", "https://localhost:8443"),
                ("sec-websocket-protocol", "chat"),
            ],
        );
        clients.push(connect_with(addr, trust.clone(), req).await);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        ws.send(Message::text(format!("client{i}: hello")))
            .await
            .unwrap();
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let mut heard = Vec::new();
        while heard.len() < 4 {
            match next(ws).await {
                Some(Message::Text(t)) => heard.push(t.to_string()),
                other => panic!("client {i} got {other:?}"),
            }
        }
        heard.sort();
        let expected: Vec<String> = (0..4).map(|n| format!("client{n}: hello")).collect();
        assert_eq!(heard, expected, "client {i}");
    }
}

#[tokio::test]
async fn the_example_refuses_foreign_origins() {
    let chat = start(true).await;
    let trust = trust_pem(&chat.dir.path().join("certs/portico-dev-ca.pem"));
    let tcp = tokio::net::TcpStream::connect(chat.proxy.addr("https"))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(trust)
        .connect(name, tcp)
        .await
        .unwrap();
    let req = request(
        "wss://localhost/ws",
        &[
            ("origin", "https://evil.example"),
            ("sec-websocket-protocol", "chat"),
        ],
    );
    match tokio_tungstenite::client_async(req, tls).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn headless_chromium_sees_its_own_message() {
    let Some((browser, mut cdp)) = Browser::launch(
        "headless_chromium_sees_its_own_message",
        &["--ignore-certificate-errors"],
    )
    .await
    else {
        return;
    };
    let chat = start(false).await;
    let url = format!(
        "https://127.0.0.1:{}/?name=chromium&auto=hello",
        chat.proxy.addr("https").port()
    );
    let session = cdp.open(&url).await;
    let (ok, last) = cdp
        .poll(
            &session,
            "[document.getElementById('status') && document.getElementById('status').textContent, document.getElementById('echoed') && document.getElementById('echoed').textContent]",
            |v| v[1] == "chromium: hello",
        )
        .await;
    drop(browser);
    assert!(ok, "the page never saw its own message; last state {last}");
    assert_eq!(last[0], "connected", "{last}");
}
