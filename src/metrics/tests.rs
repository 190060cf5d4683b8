//! Unit tests of the metric recording methods and their text encoding.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::*;

#[test]
fn requests_count_by_route_and_class_and_encode() {
    let m = Metrics::new();
    let route = RouteLabels::new("web", "api");
    m.request(&route, 200, Duration::from_millis(3));
    m.request(&route, 204, Duration::from_millis(3));
    m.request(&route, 503, Duration::from_millis(3));
    assert_eq!(m.request_count("web", "api", "2xx"), 2);
    assert_eq!(m.request_count("web", "api", "5xx"), 1);
    assert_eq!(m.request_count("web", "other", "2xx"), 0);
    let text = m.encode();
    assert!(
        text.contains(r#"portico_requests_total{listener="web",route="api",class="2xx"} 2"#),
        "{text}"
    );
    assert!(
        text.contains("portico_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn guards_keep_gauges_up_while_alive() {
    let m = Metrics::new();
    let web = m.listener_metrics("web");
    let a = web.connection();
    let b = web.connection();
    assert_eq!(m.active_connections("web"), 2);
    drop(a);
    assert_eq!(m.active_connections("web"), 1);
    drop(b);
    let t = m.tunnel("web", "websocket");
    assert_eq!(m.active_tunnels("web", "websocket"), 1);
    drop(t);
    assert_eq!(m.active_tunnels("web", "websocket"), 0);
    let backend = BackendLabels::new("api", "127.0.0.1:1");
    let f = m.backend_in_flight(backend.clone());
    assert_eq!(m.in_flight_count(&backend), 1);
    drop(f);
    assert_eq!(m.in_flight_count(&backend), 0);
}

#[test]
fn passive_health_follows_reachability() {
    let m = Metrics::new();
    let b = BackendLabels::new("api", "127.0.0.1:1");
    assert_eq!(m.backend_health(&b), None);
    m.backend_response(&b, Duration::from_millis(1));
    assert_eq!(m.backend_health(&b), Some(true));
    m.upstream_error(&b, "timeout");
    assert_eq!(
        m.backend_health(&b),
        Some(true),
        "a slow answer is not down"
    );
    m.upstream_error(&b, "connect");
    assert_eq!(m.backend_health(&b), Some(false));
    assert_eq!(m.upstream_error_count(&b, "connect"), 1);
}

#[test]
fn certificates_are_replaced_not_accumulated() {
    let m = Metrics::new();
    m.set_certificates([("https", "a.pem".to_owned(), 100)]);
    m.set_certificates([("https", "b.pem".to_owned(), 200)]);
    let text = m.encode();
    assert!(!text.contains("a.pem"), "{text}");
    assert!(
        text.contains(
            r#"portico_certificate_expiry_timestamp_seconds{listener="https",file="b.pem"} 200"#
        ),
        "{text}"
    );
}

#[test]
fn status_classes() {
    assert_eq!(status_class(101), "1xx");
    assert_eq!(status_class(308), "3xx");
    assert_eq!(status_class(404), "4xx");
    assert_eq!(status_class(600), "5xx");
}

/// Every `portico_*` name the Grafana dashboard and the operations guide use is exported.
#[test]
fn dashboard_and_docs_use_existing_metric_names() {
    let m = Metrics::new();
    let b = BackendLabels::new("u", "127.0.0.1:1");
    m.request(&RouteLabels::new("l", "r"), 200, Duration::from_millis(1));
    m.backend_response(&b, Duration::from_millis(1));
    m.upstream_error(&b, "connect");
    m.retry("u");
    let _in_flight = m.backend_in_flight(b.clone());
    let l = m.listener_metrics("l");
    let _conn = l.connection();
    let _tunnel = m.tunnel("l", "tcp");
    m.bytes("l", 1, 1);
    l.tls_handshake();
    m.tls_handshake_failed("l", "eof");
    m.reload(true, 2);
    m.set_certificates([("l", "c.pem".to_owned(), 1)]);
    let text = m.encode();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.len() >= 18, "{families:?}");
    let sources = [
        include_str!("../../examples/grafana-dashboard.json"),
        include_str!("../../docs/operations.md"),
    ];
    let mut checked = 0;
    for source in sources {
        for (i, _) in source.match_indices("portico_") {
            let name: String = source[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "portico_" || name.ends_with('_') {
                continue;
            }
            let family = ["_total", "_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(families.contains(&family), "{name} is not exported");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} names checked");
}

/// Handles resolved for two snapshots feed the same series, created only when first used.
#[test]
fn handles_of_two_snapshots_share_series() {
    let m = Metrics::new();
    let old = m.route_metrics("web", "api");
    let new = m.route_metrics("web", "api");
    assert!(
        !m.encode().contains("route=\"api\""),
        "series made before use"
    );
    old.record(200, Duration::from_millis(1));
    new.record(201, Duration::from_millis(1));
    new.record(502, Duration::from_millis(1));
    assert_eq!(m.request_count("web", "api", "2xx"), 2);
    assert_eq!(m.request_count("web", "api", "5xx"), 1);

    let labels = BackendLabels::new("api", "127.0.0.1:1");
    let a = m.backend_metrics(labels.clone());
    let b = m.backend_metrics(labels.clone());
    let guard = a.in_flight();
    assert_eq!(m.in_flight_count(&labels), 1);
    drop(guard);
    b.response(Duration::from_millis(1));
    assert_eq!(m.backend_response_count(&labels), 1);
    assert_eq!(m.backend_health(&labels), Some(true));
    a.error(&m, "connect");
    assert_eq!(m.backend_health(&labels), Some(false));

    let l = m.listener_metrics("web");
    l.bytes(3, 0);
    assert!(m
        .encode()
        .contains(r#"portico_bytes_total{listener="web",direction="in"} 3"#));
    assert!(!m.encode().contains(r#"direction="out""#));
}
