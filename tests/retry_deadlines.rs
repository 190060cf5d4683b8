//! Retry deadlines on real sockets: a backend that never answers ends in a 504 bounded by
//! `retries.per_try_timeout` or by the overall `retries.timeout`, and a timed-out try is not
//! repeated on another backend.
#![allow(clippy::unwrap_used)]

mod common;
mod lb_support;

use common::{HttpConn, Proxy};
use http::StatusCode;
use lb_support::Node;

fn config(servers: &[&Node], retries: &str) -> String {
    let list: Vec<String> = servers.iter().map(|n| format!("\"{}\"", n.addr)).collect();
    format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: api\n    upstream: api\nupstreams:\n  api:\n    servers: [{}]\n    balancer: round_robin\n    retries: {retries}\n",
        list.join(", ")
    )
}

async fn stalled_get(retries: &str) -> (StatusCode, String, usize) {
    let slow = Node::start("slow").await;
    let fast = Node::start("fast").await;
    slow.hold();
    let proxy = Proxy::start(&config(&[&slow, &fast], retries)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;
    // Round robin: the first request goes to `slow`.
    let r = client.get("app.test", "/").await;
    slow.release();
    (r.status, r.text(), fast.hits())
}

#[tokio::test]
async fn per_try_timeout_gives_504_without_a_retry() {
    let (status, body, fast_hits) = stalled_get("{ per_try_timeout: 200ms }").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("timed out"), "{body}");
    assert_eq!(fast_hits, 0, "a timed-out try is not repeated");
}

#[tokio::test]
async fn overall_timeout_bounds_the_tries() {
    let (status, body, fast_hits) = stalled_get("{ per_try_timeout: 60s, timeout: 200ms }").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(fast_hits, 0);
}
