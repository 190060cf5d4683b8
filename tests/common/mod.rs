//! Shared harness for Portico's integration tests: per-run certificates, real hyper backends,
//! the proxy in-process on ephemeral loopback ports, clients (hyper and raw TCP), polling helpers.
#![allow(dead_code)]

pub mod admin;
pub mod backend;
pub mod body;
pub mod browser;
pub mod certs;
pub mod client;
pub mod proxy;
pub mod raw;
pub mod reloadable;
pub mod reply;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// Each test file uses a different subset of the harness.
#[allow(unused_imports)]
pub use admin::{admin, body, parse_metrics, scrape, value, Sample};
#[allow(unused_imports)]
pub use backend::{Backend, BackendHandle, RecordedRequest, Reply};
#[allow(unused_imports)]
pub use body::{empty, full, pattern, Checksum, PatternBody, TestBody};
#[allow(unused_imports)]
pub use browser::{Browser, Cdp};
#[allow(unused_imports)]
pub use certs::{Leaf, TestCa};
#[allow(unused_imports)]
pub use client::{collect, Alpn, Collected, HttpConn, Sni};
#[allow(unused_imports)]
pub use proxy::{Proxy, ProxyHandle};
#[allow(unused_imports)]
pub use raw::{raw_request, RawConn, RawError, RawResponse};
#[allow(unused_imports)]
pub use reloadable::ReloadableProxy;

/// Polls `condition` every 20 ms until it holds (true) or `timeout` passes (false).
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Blocking twin of `wait_until`, for tests driving a child process.
pub fn wait_until_blocking(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback address nothing listens on (bound, read, released).
pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe");
    listener.local_addr().expect("probe addr")
}

/// Honours RUST_LOG when a test run wants to see the proxy's logs.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A YAML flow list of the backends' addresses: `["127.0.0.1:1", "127.0.0.1:2"]`.
pub fn servers(backends: &[&BackendHandle]) -> String {
    let items: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!("[{}]", items.join(", "))
}

/// Runs the built `portico` binary with `args`; its exit code and stdout+stderr together.
pub fn run_portico(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .output()
        .expect("run portico");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
