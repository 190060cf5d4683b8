//! `portico explain` through the real binary on a sample config: the route chosen and why the
//! earlier ones were not, the normalised path, the request as the backend would get it, and
//! the upstream and balancer, as text and as JSON.
#![allow(clippy::unwrap_used)]

mod common;

use common::run_portico;

const SAMPLE: &str = r#"listeners:
  - name: web
    bind: 127.0.0.1:8080
routes:
  - name: admin
    match: { host: admin.example.com }
    respond: { status: 403, body: "no" }
  - name: writes
    match: { host: api.example.com, path_prefix: /v1/, methods: [POST] }
    upstream: api
  - name: tenant
    match: { host: "*.example.com", path_prefix: /v1/, headers: { x-tenant: acme } }
    upstream: api
  - name: fallback
    match: { path_prefix: / }
    respond: { status: 200, body: "hello" }
upstreams:
  api:
    balancer: least_requests
    servers: [ { address: "127.0.0.1:9001", weight: 2 }, "127.0.0.1:9002" ]
"#;

fn explain(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portico.yaml");
    std::fs::write(&path, SAMPLE).unwrap();
    let mut all = vec!["explain", "-c", path.to_str().unwrap()];
    all.extend_from_slice(args);
    run_portico(&all)
}

#[test]
fn text_names_the_route_the_misses_and_the_backend_request() {
    let (code, text) = explain(&[
        "GET",
        "http://api.example.com/a/../v1/users?q=1",
        "-H",
        "x-tenant: acme",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        "--client-ip",
        "192.0.2.7",
    ]);
    assert_eq!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let route_line = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("] {name} ")))
            .copied()
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"))
    };
    assert!(
        route_line("admin").ends_with("no: host does not match"),
        "{text}"
    );
    assert!(
        route_line("writes").ends_with("no: method does not match"),
        "{text}"
    );
    assert!(route_line("tenant").ends_with("MATCHES"), "{text}");
    assert!(
        !text.contains("fallback"),
        "routes after the match are not listed:\n{text}"
    );
    assert!(text.contains("path:      /v1/users (normalised)"), "{text}");
    assert!(text.contains("GET /v1/users?q=1 HTTP/1.1"), "{text}");
    assert!(
        text.contains("x-forwarded-for: 192.0.2.7\n"),
        "untrusted XFF rebuilt:\n{text}"
    );
    assert!(!text.contains("6.6.6.6"), "{text}");
    assert!(text.contains("host: api.example.com"), "{text}");
    assert!(text.contains("balancer LeastRequests"), "{text}");
    assert!(
        text.contains("127.0.0.1:9001 (weight 2), 127.0.0.1:9002 (weight 1)"),
        "{text}"
    );
}

#[test]
fn json_for_tools_and_direct_responses() {
    let (code, text) = explain(&["get", "http://other.test/x", "--format", "json"]);
    assert_eq!(code, 0, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["outcome"]["route"], "fallback");
    assert_eq!(v["outcome"]["action"], "respond");
    assert_eq!(v["outcome"]["status"], 200);
    let failed: Vec<&str> = v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["failed"].as_str())
        .collect();
    assert_eq!(failed, ["host", "host", "host"]);
}

#[test]
fn refused_paths_and_bad_input_are_explained() {
    let (code, text) = explain(&["GET", "http://api.example.com/a%2Fb"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("refused with 400 before routing"), "{text}");
    let (code, text) = explain(&["GET", "/relative"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("needs a scheme and a host"), "{text}");
}
