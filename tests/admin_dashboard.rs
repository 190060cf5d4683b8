//! The admin dashboard in a real headless Chromium (Debian's `chromium`): the page renders the
//! upstreams and their backends from `/status`, and a backend that stops answering shows as
//! down within a few polls. Skipped with a warning when chromium is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(20);

/// A backend that answers every request with `ok` and closes, so the proxy keeps no pooled
/// connection to it: once the task is aborted, the next request fails to connect.
async fn closing_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, task)
}

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

    /// Evaluates `expression` in the page until it returns `want`; panics with the last value.
    async fn wait_for(&mut self, session: &str, expression: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = serde_json::Value::Null;
        while Instant::now() < deadline {
            let result = self
                .call(
                    Some(session),
                    "Runtime.evaluate",
                    serde_json::json!({ "expression": expression, "returnByValue": true }),
                )
                .await;
            last = result["result"]["value"].clone();
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("{expression} never became {want:?}; last {last}");
    }
}

struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

#[tokio::test]
async fn dashboard_shows_a_backend_go_down() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        eprintln!("SKIPPED dashboard_shows_a_backend_go_down: chromium is not installed (.ci/run installs it)");
        return;
    };
    let steady = Backend::http1().route("/", "steady").spawn().await;
    let (flaky, flaky_task) = closing_backend().await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: app\n    upstream: app\nupstreams:\n  app:\n    servers: [\"{}\", \"{flaky}\"]\n    balancer: round_robin\n    retries: {{ attempts: 0 }}\nadmin:\n  bind: 127.0.0.1:0\n  token: dash-token\n",
        steady.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let web = proxy.addr("web");
    for _ in 0..4 {
        let mut conn = HttpConn::h1(web).await;
        assert_eq!(conn.get("a.test", "/").await.status, 200);
    }

    let profile = tempfile::tempdir().unwrap();
    let mut browser = Browser(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
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
    let url = format!("http://{}/#token=dash-token", proxy.admin_addr());
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

    let health = |addr: SocketAddr| {
        format!("(document.querySelector('[data-upstream=\"app\"] [data-backend=\"{addr}\"]') || {{dataset: {{}}}}).dataset.health || 'missing'")
    };
    cdp.wait_for(
        &session,
        "document.getElementById('state').textContent",
        "live",
    )
    .await;
    cdp.wait_for(&session, &health(steady.addr), "up").await;
    cdp.wait_for(&session, &health(flaky), "up").await;
    cdp.wait_for(
        &session,
        "document.querySelector('[data-route=\"app\"] td:nth-child(3)').textContent",
        "app",
    )
    .await;

    // The flaky backend goes away; round robin sends it one of the next two requests (retries
    // are off so that its failure reaches the client).
    flaky_task.abort();
    let mut failed = false;
    for _ in 0..4 {
        let mut conn = HttpConn::h1(web).await;
        failed |= conn.get("a.test", "/").await.status == 502;
    }
    assert!(failed, "no request reached the stopped backend");
    cdp.wait_for(&session, &health(flaky), "down").await;
    cdp.wait_for(&session, &health(steady.addr), "up").await;
    drop(browser);
}
