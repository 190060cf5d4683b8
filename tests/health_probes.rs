//! Active health probes speak each upstream's protocol: an HTTP/1.1 GET with `Host` and
//! `Connection: close`, and an HTTP/2 GET with `:authority` to an h2c backend.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use http::Version;

const DEADLINE: Duration = Duration::from_secs(10);

fn probes(backend: &BackendHandle) -> Vec<RecordedRequest> {
    backend
        .received()
        .into_iter()
        .filter(|r| r.uri.path() == "/health")
        .collect()
}

#[tokio::test]
async fn probes_use_the_upstream_protocol() {
    let h1 = Backend::http1().spawn().await;
    let h2c = Backend::h2c().spawn().await;
    let check = "health_check: { path: /health, interval: 50ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 }";
    let yaml = format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - name: app
    upstream: h1
upstreams:
  h1:
    servers: ["{h1}"]
    {check}
  h2c:
    servers: ["{h2c}"]
    protocol: h2c
    health_check: {{ path: /health, interval: 50ms, timeout: 1s, host: probe.test }}
"#,
        h1 = h1.addr,
        h2c = h2c.addr,
    );
    let _proxy = Proxy::start(&yaml).await;
    assert!(
        wait_until(DEADLINE, || async {
            !probes(&h1).is_empty() && !probes(&h2c).is_empty()
        })
        .await,
        "both backends are probed"
    );

    let p = &probes(&h1)[0];
    assert_eq!(p.version, Version::HTTP_11);
    assert_eq!(p.header("host").unwrap(), h1.addr.to_string());
    assert_eq!(p.header("connection").unwrap(), "close");
    assert_eq!(p.header("user-agent").unwrap(), "portico-health-check");

    let p = &probes(&h2c)[0];
    assert_eq!(p.version, Version::HTTP_2);
    assert_eq!(p.uri.authority().unwrap().as_str(), "probe.test");
    assert_eq!(p.uri.scheme_str(), Some("http"));
    assert_eq!(p.header("user-agent").unwrap(), "portico-health-check");
    assert!(p.header("connection").is_none());
}
