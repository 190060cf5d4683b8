//! Messages and results of Layer 4 listener validation.

use crate::config::model::ListenerMode;
use crate::config::testing::{diagnostics, expect_error, valid};
use crate::config::Severity;

/// Upstreams `db` (plain) and `secure` (`tls`), then listener `l4` whose block continues with
/// `extra` (indented 4 spaces, line 10 on).
fn with(extra: &str) -> String {
    format!(
        "upstreams:\n  db:\n    servers: [\"127.0.0.1:5432\"]\n  secure:\n    servers: [\"127.0.0.1:9443\"]\n    tls: {{}}\nlisteners:\n  - name: l4\n    bind: 127.0.0.1:7000\n{extra}"
    )
}

#[test]
fn layer4_messages() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, u64, &str)] = &[
        ("    mode: udp\n", "listeners[0].mode", 10, "no mode named \"udp\""),
        ("    mode: tcp\n", "listeners[0].upstream", 8, "a tcp listener needs `upstream`"),
        ("    mode: tcp\n    upstream: dbb\n", "listeners[0].upstream", 11, "no upstream named \"dbb\"; did you mean \"db\"?"),
        ("    mode: tcp\n    upstream: secure\n", "listeners[0].upstream", 11, "re-encrypts to its backends"),
        ("    mode: tcp\n    upstream: db\n    tls:\n      self_signed: [localhost]\n", "listeners[0].tls", 13, "a tcp listener does not terminate TLS"),
        ("    mode: tls_passthrough\n    upstream: db\n    tls:\n      self_signed: [localhost]\n", "listeners[0].tls", 13, "never decrypts"),
        ("    mode: tcp\n    upstream: db\n    sni: { a.test: db }\n", "listeners[0].sni", 12, "only to `mode: tls_passthrough`"),
        ("    mode: tcp\n    upstream: db\n    http2: { max_concurrent_streams: 10 }\n", "listeners[0].http2", 12, "only to `mode: http` listeners, not tcp"),
        ("    mode: tcp\n    upstream: db\n    limits:\n      max_headers: 10\n", "listeners[0].limits.max_headers", 13, "only to `mode: http`"),
        ("    mode: tcp\n    upstream: db\n    limits:\n      idle_timeout: 0s\n", "listeners[0].limits.idle_timeout", 13, "must be greater than 0"),
        ("    mode: tls_passthrough\n", "listeners[0]", 8, "needs `sni`, `upstream`"),
        ("    mode: tls_passthrough\n    sni: {}\n", "listeners[0]", 8, "needs `sni`, `upstream`"),
        ("    mode: tls_passthrough\n    sni:\n      a.test: nope\n", "listeners[0].sni.a.test", 12, "no upstream named \"nope\""),
        ("    mode: tls_passthrough\n    sni:\n      a.test: secure\n", "listeners[0].sni.a.test", 12, "re-encrypts"),
        ("    mode: tls_passthrough\n    sni:\n      \"bad name\": db\n", "listeners[0].sni.bad name", 12, "not a valid host name"),
        ("    mode: tls_passthrough\n    sni:\n      \"10.0.0.1\": db\n", "listeners[0].sni.10.0.0.1", 12, "SNI never carries an IP address"),
        ("    mode: tls_passthrough\n    sni:\n      \"*.a.test\": db\n      \"*.A.test\": db\n", "listeners[0].sni.*.A.test", 13, "same name as the earlier entry \"*.a.test\""),
        ("    mode: tcp\n    upstream: db\n    proxy_protocol: { send: v1 }\n", "listeners[0].proxy_protocol.send", 12, "the only value is v2"),
        ("    mode: tcp\n    upstream: db\n    proxy_protocol:\n      accept_from: [10.0.0.0/8, lb]\n", "listeners[0].proxy_protocol.accept_from[1]", 13, "\"lb\" is not an IP address or CIDR range"),
        ("    mode: tcp\n    upstream: db\n    proxy_protocol: { sendd: v2 }\n", "listeners[0].proxy_protocol.sendd", 12, "did you mean \"send\"?"),
        ("    upstream: db\n", "listeners[0].upstream", 10, "`upstream` applies only to `mode: tcp` and `mode: tls_passthrough`"),
        ("    sni: { a.test: db }\n", "listeners[0].sni", 10, "only to `mode: tls_passthrough`"),
        ("    proxy_protocol: { send: v2 }\n", "listeners[0].proxy_protocol", 10, "`proxy_protocol` applies only"),
    ];
    for (extra, path, line, needle) in cases {
        expect_error(&with(extra), path, *line, needle);
    }
}

#[test]
fn every_layer4_error_is_reported_at_once() {
    let yaml = with("    mode: tcp\n    tls:\n      self_signed: [localhost]\n    http2: {}\n    proxy_protocol: { send: v3, accept_from: [nope] }\n    limits: { max_uri_length: 1KiB }\nroutes:\n  - name: r\n    listeners: [l4]\n    upstream: db\n");
    let errors: Vec<String> = diagnostics(&yaml)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.path)
        .collect();
    assert_eq!(
        errors,
        [
            "listeners[0].upstream",
            "listeners[0].tls",
            "listeners[0].http2",
            "listeners[0].proxy_protocol.send",
            "listeners[0].proxy_protocol.accept_from[0]",
            "listeners[0].limits.max_uri_length",
            "routes[0].listeners[0]",
        ]
    );
}

#[test]
fn routes_cannot_name_a_layer4_listener() {
    let yaml = with("    mode: tls_passthrough\n    upstream: db\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    listeners: [web, l4]\n    upstream: db\n");
    expect_error(
        &yaml,
        "routes[0].listeners[1]",
        16,
        "listener \"l4\" is a `mode: tls_passthrough` listener; routes apply only to `mode: http` listeners",
    );
}

#[test]
fn passthrough_listener_builds_its_sni_table() {
    let yaml = with("    mode: tls_passthrough\n    upstream: db\n    sni:\n      App.Test: db\n      \"*.test\": db\n      \"*.deep.test\": db\n    proxy_protocol:\n      send: v2\n      accept_from: [\"10.0.0.0/8\", \"::1\"]\n  - name: tcp\n    bind: 127.0.0.1:7001\n    mode: tcp\n    upstream: db\n");
    let (config, warnings) = valid(&yaml);
    // `secure` is unused; `db` counts as used by the listeners.
    let unused: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(unused, ["upstreams.secure"]);
    let l = &config.listeners[0];
    let ListenerMode::TlsPassthrough(sni) = &l.mode else {
        panic!("mode {:?}", l.mode);
    };
    assert_eq!(sni.exact.get("app.test"), Some(&0));
    let suffixes: Vec<&str> = sni.suffixes.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(suffixes, [".deep.test", ".test"], "longest suffix first");
    assert_eq!(sni.default, Some(0));
    assert!(l.proxy_protocol.send_v2);
    let nets: Vec<String> = l
        .proxy_protocol
        .accept_from
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(
        l.limits.idle_timeout,
        std::time::Duration::from_secs(600),
        "Layer 4 idle default"
    );
    assert!(matches!(
        config.listeners[1].mode,
        ListenerMode::Tcp { upstream: 0 }
    ));
    assert!(!config.listeners[1].proxy_protocol.send_v2);
}

#[test]
fn mode_defaults_to_http() {
    let (config, _) = valid("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n");
    assert!(matches!(config.listeners[0].mode, ListenerMode::Http));
    assert_eq!(
        config.listeners[0].limits.idle_timeout,
        std::time::Duration::from_secs(60)
    );
    let (config, _) =
        valid("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n    mode: http\n");
    assert_eq!(config.listeners[0].mode.name(), "http");
}
