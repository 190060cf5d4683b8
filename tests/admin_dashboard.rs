//! The admin dashboard in a real headless Chromium (Debian's `chromium`): the page renders the
//! upstreams and their backends from `/status`, and a backend that stops answering shows as
//! down within a few polls. Skipped with a warning when chromium is not installed.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

/// Waits until `expression` evaluates to `want` in the page.
async fn wait_for(cdp: &mut Cdp, session: &str, expression: &str, want: &str) {
    let (ok, last) = cdp.poll(session, expression, |v| v == want).await;
    assert!(ok, "{expression} never became {want:?}; last {last}");
}

#[tokio::test]
async fn dashboard_shows_a_backend_go_down() {
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

    let Some((browser, mut cdp)) = Browser::launch("dashboard_shows_a_backend_go_down", &[]).await
    else {
        return;
    };
    let url = format!("http://{}/#token=dash-token", proxy.admin_addr());
    let session = cdp.open(&url).await;

    let health = |addr: SocketAddr| {
        format!("(document.querySelector('[data-upstream=\"app\"] [data-backend=\"{addr}\"]') || {{dataset: {{}}}}).dataset.health || 'missing'")
    };
    wait_for(
        &mut cdp,
        &session,
        "document.getElementById('state').textContent",
        "live",
    )
    .await;
    wait_for(&mut cdp, &session, &health(steady.addr), "up").await;
    wait_for(&mut cdp, &session, &health(flaky), "up").await;
    wait_for(
        &mut cdp,
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
    wait_for(&mut cdp, &session, &health(flaky), "down").await;
    wait_for(&mut cdp, &session, &health(steady.addr), "up").await;
    drop(browser);
}
