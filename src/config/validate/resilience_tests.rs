//! Validation tests for the resilience keys of `upstreams`.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::config::model::HealthCheckKind;
use crate::config::testing::{diagnostics, expect_error, valid};

/// Upstream `api` (used by a route) whose block is `lines` (indented 4 spaces, line 9 on).
fn with(lines: &str) -> String {
    format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\"]\n{lines}")
}

#[test]
fn resilience_messages() {
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, u64, &str)> = vec![
        ("    discovery: { resolver: dns.local }\n", "upstreams.api.discovery.resolver", 10, "is not an IP:port address"),
        ("    discovery: { interval: 0s }\n", "upstreams.api.discovery.interval", 10, "must be greater than 0"),
        ("    health_check: { type: grpc }\n", "upstreams.api.health_check.type", 10, "no health check type named \"grpc\""),
        ("    health_check:\n      path: health\n", "upstreams.api.health_check.path", 11, "must be an origin-form path"),
        ("    health_check:\n      statuses: [200, 700]\n", "upstreams.api.health_check.statuses[1]", 11, "700 is not an HTTP status"),
        ("    health_check:\n      healthy_threshold: 0\n", "upstreams.api.health_check.healthy_threshold", 11, "must be greater than 0"),
        ("    health_check:\n      intervall: 1s\n", "upstreams.api.health_check.intervall", 11, "did you mean \"interval\"?"),
        ("    outlier_detection: { max_ejected_percent: 150 }\n", "upstreams.api.outlier_detection.max_ejected_percent", 10, "more than 100"),
        ("    outlier_detection:\n      base_ejection: 1m\n      max_ejection: 10s\n", "upstreams.api.outlier_detection.max_ejection", 12, "must not be shorter than base_ejection"),
        ("    retries:\n      methods: [GET, \"PO ST\"]\n", "upstreams.api.retries.methods[1]", 11, "is not an HTTP method"),
        ("    retries:\n      replay_buffer: 0\n", "upstreams.api.retries.replay_buffer", 11, "must be greater than 0"),
        ("    retries:\n      per_try_timeout: soon\n", "upstreams.api.retries.per_try_timeout", 11, "invalid duration"),
        ("    limits:\n      max_pending: 0\n", "upstreams.api.limits.max_pending", 11, "must be greater than 0"),
    ];
    for (lines, path, line, needle) in &cases {
        expect_error(&with(lines), path, *line, needle);
    }
}

#[test]
fn host_port_servers_go_to_discovery() {
    let yaml = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\", \"api.internal:9001\", { address: \"b.internal:80\", weight: 3 }]\n    discovery: { resolver: \"127.0.0.1:5353\", interval: 2s }\n";
    let (config, _) = valid(yaml);
    let r = &config.upstreams[0].resilience;
    assert_eq!(config.upstreams[0].servers.len(), 1);
    let names: Vec<(&str, u16, u32)> = r
        .dns_servers
        .iter()
        .map(|d| (d.host.as_str(), d.port, d.weight))
        .collect();
    assert_eq!(names, [("api.internal", 9001, 1), ("b.internal", 80, 3)]);
    assert_eq!(r.discovery.interval, Duration::from_secs(2));
    assert_eq!(r.discovery.resolver, "127.0.0.1:5353".parse().ok());
}

#[test]
fn defaults_and_full_forms() {
    let (config, _) = valid(&with(""));
    let r = &config.upstreams[0].resilience;
    assert!(r.health_check.is_none());
    assert_eq!(r.outlier.as_ref().map(|o| o.consecutive_failures), Some(5));
    assert_eq!(r.retries.attempts, 2);
    assert_eq!(r.retries.statuses, [502, 503]);
    assert_eq!(r.retries.replay_buffer, 65_536);
    assert_eq!(r.limits.max_pending, None);

    let (config, _) = valid(&with(
        "    health_check: { type: tcp, interval: 1s, slow_start: 0s }\n    outlier_detection: { enabled: false }\n    retries: { attempts: 0, methods: [get, post] }\n    limits: { max_connections: 10, max_pending_per_backend: 2 }\n",
    ));
    let r = &config.upstreams[0].resilience;
    let hc = r.health_check.as_ref().unwrap();
    assert_eq!(hc.kind, HealthCheckKind::Tcp);
    assert_eq!(hc.slow_start, Duration::ZERO);
    assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 3));
    assert!(r.outlier.is_none());
    assert_eq!(r.retries.methods, [http::Method::GET, http::Method::POST]);
    assert_eq!(r.limits.max_connections, Some(10));
    assert_eq!(r.limits.max_pending_per_backend, Some(2));
}

#[test]
fn discovery_without_host_names_warns() {
    let warnings = diagnostics(&with("    discovery: { interval: 5s }\n"));
    assert!(
        warnings.iter().any(
            |d| d.path == "upstreams.api.discovery" && d.message.contains("nothing to resolve")
        ),
        "{warnings:?}"
    );
}
