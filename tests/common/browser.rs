//! A real headless Chromium (Debian's package) driven over the Chrome DevTools Protocol, for
//! the browser tests. `Browser::launch` returns `None` (the test then skips with a warning)
//! when chromium is not installed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(20);

/// The running browser (killed on drop) and its profile directory.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal DevTools Protocol session over the browser's WebSocket endpoint.
pub struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    /// Starts headless Chromium with the flags this machine needs (no sandbox as root, no
    /// background networking) plus `extra`; `None` when it is not installed.
    pub async fn launch(test: &str, extra: &[&str]) -> Option<(Browser, Cdp)> {
        let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        }) else {
            eprintln!("SKIPPED {test}: chromium is not installed (.ci/run installs it)");
            return None;
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let endpoint = devtools_endpoint(child.stderr.take().expect("stderr"));
        let browser = Browser {
            child,
            _profile: profile,
        };
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .expect("DevTools connection");
        Some((browser, Cdp { ws, next_id: 0 }))
    }
}

impl Cdp {
    /// Calls `method`; panics on a protocol error or when no reply comes in time.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = Value::from(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("CDP send");
        loop {
            let reply = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("CDP reply in time")
                .expect("CDP socket open")
                .expect("CDP message");
            let Message::Text(text) = reply else { continue };
            let value: Value = serde_json::from_str(&text).expect("CDP JSON");
            if value["id"] == id {
                assert!(value.get("error").is_none(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    /// Opens `url` in a new tab and returns the session to evaluate in it.
    pub async fn open(&mut self, url: &str) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": url }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned()
    }

    /// Evaluates `expression` in the page until `done` accepts its value (polling for up to
    /// 30 s); returns the last value either way, and whether `done` accepted it.
    pub async fn poll(
        &mut self,
        session: &str,
        expression: &str,
        done: impl Fn(&Value) -> bool,
    ) -> (bool, Value) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let result = self
                .call(
                    Some(session),
                    "Runtime.evaluate",
                    json!({ "expression": expression, "returnByValue": true }),
                )
                .await;
            last = result["result"]["value"].clone();
            if done(&last) {
                return (true, last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (false, last)
    }
}

/// Reads Chromium's stderr until it names its DevTools WebSocket endpoint.
fn devtools_endpoint(stderr: std::process::ChildStderr) -> String {
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
