//! The chat example as shipped (examples/chat: its server and its Portico config, with only
//! the addresses changed): several clients see each other's messages, and a real headless
//! Chromium loads the page over HTTPS through Portico and sees its own message come back.
#![allow(clippy::unwrap_used)]

#[path = "../examples/chat/server.rs"]
mod chat_server;
mod common;
mod ws_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
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

/// A minimal Chrome DevTools Protocol session over the browser's WebSocket endpoint.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    async fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = serde_json::Value::from(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let reply = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("CDP reply in time")
                .expect("CDP socket open")
                .unwrap();
            let Message::Text(text) = reply else { continue };
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }
}

/// Kills the browser however the test ends.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn headless_chromium_sees_its_own_message() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED headless_chromium_sees_its_own_message: chromium is not installed (.ci/run installs it)");
        return;
    };
    let chat = start(false).await;
    let profile = tempfile::tempdir().unwrap();
    let mut browser = Browser(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let endpoint = devtools_endpoint(browser.0.stderr.take().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
        .await
        .unwrap();
    let mut cdp = Cdp { ws, next_id: 0 };

    let url = format!(
        "https://127.0.0.1:{}/?name=chromium&auto=hello",
        chat.proxy.addr("https").port()
    );
    let target = cdp
        .call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": url }),
        )
        .await;
    let attached = cdp
        .call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    let session = attached["sessionId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        let result = cdp
            .call(
                Some(&session),
                "Runtime.evaluate",
                serde_json::json!({
                    "expression": "[document.getElementById('status') && document.getElementById('status').textContent, document.getElementById('echoed') && document.getElementById('echoed').textContent]",
                    "returnByValue": true
                }),
            )
            .await;
        last = result["result"]["value"].clone();
        if last[1] == "chromium: hello" {
            eprintln!("browser state: {last}");
            assert_eq!(last[0], "connected");
            drop(browser);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = browser.0.kill();
    panic!("the page never saw its own message; last state {last}");
}

/// Reads Chromium's stderr until it names its DevTools WebSocket endpoint.
fn devtools_endpoint(stderr: std::process::ChildStderr) -> String {
    use std::io::{BufRead, BufReader};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("chromium printed its DevTools endpoint")
}
