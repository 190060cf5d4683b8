//! Lint unit tests on small configs: each lint fires where it should, with its key path and
//! line, and stays quiet on the near misses.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::parse_str_located;

fn lints(yaml: &str) -> Vec<Diagnostic> {
    let (config, _, locations) =
        parse_str_located(yaml, "config.yaml", std::path::Path::new("/nonexistent")).unwrap();
    lint(&config, &locations)
}

const HEAD: &str = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n";
const UPSTREAM: &str = "upstreams:\n  api:\n    servers: [\"127.0.0.1:1\"]\n";

#[test]
fn shadowed_route_is_reported_at_its_position() {
    let yaml = format!(
        "{HEAD}routes:\n  - name: all-api\n    match: {{ path_prefix: /api/ }}\n    upstream: api\n  - name: users\n    match: {{ path_prefix: /api/users, methods: [GET] }}\n    upstream: api\n  - name: other-host\n    match: {{ host: a.test, path_prefix: /api/ }}\n    upstream: api\n{UPSTREAM}"
    );
    let found = lints(&yaml);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].path, "routes[1]");
    assert_eq!(found[0].line, 8);
    assert!(found[0].message.contains("\"users\" is never reached"));
    assert!(found[0].message.contains("\"all-api\""));
    assert_eq!(found[1].path, "routes[2]");
}

#[test]
fn narrower_earlier_routes_shadow_nothing() {
    let yaml = format!(
        "{HEAD}routes:\n  - name: get\n    match: {{ path_prefix: /, methods: [GET] }}\n    upstream: api\n  - name: host\n    match: {{ host: \"*.a.test\" }}\n    upstream: api\n  - name: rest\n    match: {{ path_prefix: / }}\n    upstream: api\n  - name: regex\n    match: {{ path_regex: \"^/x\" }}\n    upstream: api\n{UPSTREAM}"
    );
    let found = lints(&yaml);
    let names: Vec<&str> = found.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        names,
        ["routes[3]"],
        "only the route after `path_prefix: /`: {found:?}"
    );
}

#[test]
fn websocket_to_h2() {
    let yaml = format!(
        "{HEAD}routes:\n  - name: r\n    upstream: grpc\nupstreams:\n  spare:\n    servers: [\"127.0.0.1:1\"]\n  grpc:\n    servers: [\"127.0.0.1:2\"]\n    protocol: h2\n    tls: {{ server_name: g.test }}\n"
    );
    let found = lints(&yaml);
    let paths: Vec<&str> = found.iter().map(|d| d.path.as_str()).collect();
    assert!(paths.contains(&"routes[0].websocket"), "{found:?}");
    assert!(found.iter().all(|d| d.severity == Severity::Warning));
}

#[test]
fn large_timeouts_and_uncovered_dev_hosts() {
    let yaml = "listeners:\n  - name: tls\n    bind: 127.0.0.1:8443\n    tls: { self_signed: [localhost, \"*.dev.test\"] }\n    limits: { idle_timeout: 2h }\nroutes:\n  - name: a\n    match: { host: a.dev.test }\n    upstream: api\n  - name: b\n    match: { host: example.com }\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:1\"]\n    timeouts: { response: 10m }\n";
    let found = lints(yaml);
    let paths: Vec<&str> = found.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "routes[1].match.host",
            "upstreams.api.timeouts.response",
            "listeners[0].limits.idle_timeout"
        ],
        "{found:?}"
    );
    assert!(found[0].message.contains("\"example.com\""));
    assert!(san_covers("*.dev.test", "a.dev.test") && !san_covers("*.dev.test", "a.b.dev.test"));
}
