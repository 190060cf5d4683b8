//! Loader tests: defaults, sizes and durations, every error reported at once with positions.
#![allow(clippy::unwrap_used)]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::*;
use super::testing::{diagnostics, valid};
use super::*;

const FULL: &str = include_str!("../../examples/full.yaml");

#[test]
fn full_example_parses_into_the_expected_model() {
    let (config, warnings) = valid(FULL);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.source, PathBuf::from("config.yaml"));

    let s = &config.settings;
    assert_eq!(s.trusted_proxies.len(), 2);
    assert_eq!(s.trusted_proxies[0].to_string(), "10.0.0.0/8");
    assert_eq!(s.trusted_proxies[1].to_string(), "127.0.0.1/32");
    assert!(s.access_log);
    assert_eq!(s.grace_period, Duration::from_secs(30));
    assert_eq!(s.via.pseudonym(), "portico");

    assert_eq!(config.listeners.len(), 2);
    let https = &config.listeners[0];
    assert_eq!(https.name, "https");
    assert_eq!(https.bind, "127.0.0.1:8443".parse::<SocketAddr>().unwrap());
    let tls = https.tls.as_ref().unwrap();
    assert_eq!(
        tls.certificates,
        [CertPair {
            cert: PathBuf::from("/etc/portico/certs/site.pem"),
            key: PathBuf::from("/etc/portico/certs/site.key"),
        }]
    );
    assert_eq!(tls.self_signed, ["localhost"]);
    assert!(tls.strict_sni_host);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    assert_eq!(https.limits.max_connections, 10_000);
    assert_eq!(https.limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(https.limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(https.limits.max_header_bytes, 65_536);
    assert_eq!(https.limits.max_headers, 100);
    assert_eq!(https.limits.max_uri_length, 8192);
    assert_eq!(https.http2.max_concurrent_streams, 256);
    assert_eq!(https.http2.max_pending_accept_reset_streams, 20);
    assert_eq!(https.http2.max_local_error_reset_streams, 1024);
    assert_eq!(https.http2.max_header_list_size, 65_536);
    assert!(config.listeners[1].tls.is_none());

    let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api", "user", "health", "to-https", "chat"]);
    let chat = &config.routes[4].websocket;
    assert_eq!(chat.max_tunnels, Some(5000));
    assert_eq!(chat.max_lifetime, Some(Duration::from_secs(24 * 3600)));
    let policy = chat.policy.as_ref().unwrap();
    assert_eq!(policy.max_message_size, 64 * 1024);
    assert_eq!(policy.allowed_subprotocols, ["chat.v1"]);
    assert!(config.routes[0].websocket.policy.is_none());
    assert_eq!(https.limits.max_tunnels, 10_000);
    assert!(https.http2.enable_connect_protocol);
    let api = &config.routes[0];
    assert_eq!(api.listeners, ["https"]);
    assert_eq!(
        api.matcher.hosts,
        [HostMatch::Exact("api.example.com".into())]
    );
    assert!(matches!(&api.matcher.path, Some(PathMatch::Prefix(p)) if p == "/v1/"));
    assert_eq!(api.matcher.methods, [http::Method::GET, http::Method::POST]);
    let headers: Vec<&str> = api
        .matcher
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(headers, ["x-tenant", "x-id", "x-debug"]);
    assert!(matches!(&api.matcher.headers[0].value, ValueMatch::Exact(v) if v == "acme"));
    assert!(matches!(&api.matcher.headers[1].value, ValueMatch::Regex(r) if r.is_match("42")));
    assert!(matches!(api.matcher.headers[2].value, ValueMatch::Present));
    assert_eq!(api.matcher.query.len(), 2);
    assert_eq!(api.matcher.query[0].name, "version");
    assert!(matches!(&api.matcher.query[0].value, ValueMatch::Exact(v) if v == "2"));
    assert!(matches!(api.matcher.query[1].value, ValueMatch::Present));
    assert!(matches!(api.action, Action::Proxy { upstream: 0 }));
    assert_eq!(api.max_body_size, Some(10 * 1024 * 1024));
    assert_eq!(api.host_header, HostHeader::Keep);

    let user = &config.routes[1];
    assert!(user.listeners.is_empty());
    assert_eq!(
        user.matcher.hosts,
        [
            HostMatch::Exact("api.example.com".into()),
            HostMatch::Suffix(".api.example.com".into())
        ]
    );
    assert!(matches!(&user.matcher.path, Some(PathMatch::Regex(r)) if r.is_match("/users/7")));
    assert_eq!(user.max_body_size, None);
    assert_eq!(user.host_header, HostHeader::Backend);

    match &config.routes[2].action {
        Action::Respond {
            status,
            body,
            headers,
        } => {
            assert_eq!(*status, http::StatusCode::OK);
            assert_eq!(&body[..], b"ok\n");
            assert_eq!(headers.len(), 1);
            assert_eq!(headers[0].0, http::header::CONTENT_TYPE);
            assert_eq!(headers[0].1, "text/plain");
        }
        other => panic!("{other:?}"),
    }
    match &config.routes[3].action {
        Action::Redirect {
            location,
            status,
            keep_path,
        } => {
            assert_eq!(location, "https://example.com");
            assert_eq!(*status, http::StatusCode::PERMANENT_REDIRECT);
            assert!(*keep_path);
        }
        other => panic!("{other:?}"),
    }

    assert_eq!(config.upstreams.len(), 1);
    let up = &config.upstreams[0];
    assert_eq!(up.name, "api");
    assert_eq!(
        up.servers,
        [
            ServerAddr {
                address: "127.0.0.1:9001".parse().unwrap(),
                weight: 2
            },
            ServerAddr {
                address: "127.0.0.1:9002".parse().unwrap(),
                weight: 1
            },
        ]
    );
    assert_eq!(up.balancer, BalancerKind::WeightedRoundRobin);
    assert_eq!(up.protocol, UpstreamProtocol::Http1);
    let utls = up.tls.as_ref().unwrap();
    assert_eq!(utls.ca, Some(PathBuf::from("/etc/portico/certs/ca.pem")));
    assert_eq!(utls.server_name.as_deref(), Some("api.internal"));
    assert_eq!(
        utls.client_cert,
        Some(CertPair {
            cert: PathBuf::from("/etc/portico/c.pem"),
            key: PathBuf::from("/etc/portico/c.key"),
        })
    );
    assert_eq!(up.timeouts.connect, Duration::from_secs(5));
    assert_eq!(up.timeouts.response, Duration::from_secs(60));
    assert_eq!(up.timeouts.idle, Duration::from_secs(90));
    assert_eq!(up.max_idle_per_backend, 32);
    let r = &up.resilience;
    assert_eq!(r.dns_servers.len(), 1);
    assert_eq!(r.dns_servers[0].host, "api.internal");
    assert_eq!(r.discovery.resolver, "127.0.0.1:53".parse().ok());
    let hc = r.health_check.as_ref().unwrap();
    assert_eq!(
        (hc.path.as_str(), hc.slow_start),
        ("/healthz", Duration::from_secs(5))
    );
    assert_eq!(r.outlier.as_ref().unwrap().max_ejected_percent, 50);
    assert_eq!(r.retries.timeout, Some(Duration::from_secs(30)));
    assert_eq!(r.limits.max_pending_per_backend, Some(128));

    let admin = config.admin.as_ref().unwrap();
    assert_eq!(admin.bind, "127.0.0.1:9901".parse::<SocketAddr>().unwrap());
    assert_eq!(admin.token.as_ref().unwrap().expose(), "change-me");
}

#[test]
fn minimal_config_gets_every_default() {
    let (config, warnings) = valid("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n");
    assert!(warnings.is_empty());
    assert!(config.routes.is_empty() && config.upstreams.is_empty());
    let s = &config.settings;
    assert!(s.trusted_proxies.is_empty() && s.access_log && s.via.pseudonym() == "portico");
    assert_eq!(s.grace_period, Duration::from_secs(30));
    let l = &config.listeners[0];
    assert!(l.tls.is_none());
    assert_eq!(l.limits.max_connections, 10_000);
    assert_eq!(l.limits.max_header_bytes, 64 * 1024);
    assert_eq!(l.limits.max_uri_length, 8 * 1024);
    assert_eq!(l.http2.max_header_list_size, 64 * 1024);
}

#[test]
fn two_errors_are_both_reported_with_their_lines() {
    let yaml = "\
listeners:
  - name: web
    bind: 127.0.0.1:99999
routes:
  - name: r
    upstream: apii
upstreams:
  api:
    servers: [\"127.0.0.1:9000\"]
";
    let d = diagnostics(yaml);
    let errors: Vec<String> = d
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
            errors,
            [
                "config.yaml:3:11: error: listeners[0].bind: \"127.0.0.1:99999\" is not an IP:port address (like 127.0.0.1:8443 or [::]:443)",
                "config.yaml:6:15: error: routes[0].upstream: no upstream named \"apii\"; did you mean \"api\"?",
            ]
        );
    // The unreferenced upstream is still reported as a warning alongside the errors.
    assert!(d
        .iter()
        .any(|d| d.severity == Severity::Warning && d.path == "upstreams.api"));
}

#[test]
fn unknown_key_is_located_and_suggests_the_right_one() {
    let yaml = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    match:\n      hostt: a.example\n    respond: {}\n";
    let d = diagnostics(yaml);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].line, d[0].column), (7, 7));
    assert_eq!(d[0].path, "routes[0].match.hostt");
    assert!(
            d[0].message.starts_with("unknown key \"hostt\"; did you mean \"host\"? (valid keys: host, path, path_prefix, path_regex, methods, headers, query)"),
            "{}",
            d[0].message
        );
    let top = diagnostics("listener:\n  - name: web\n");
    assert_eq!(top[0].path, "listener");
    assert!(
        top[0].message.contains("did you mean \"listeners\"?"),
        "{}",
        top[0]
    );
}

#[test]
fn yaml_syntax_error_has_a_line() {
    let d = diagnostics("listeners:\n  - name: web\n    bind: [127.0.0.1:80\n");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].severity, Severity::Error);
    assert!(d[0].line >= 3, "{}", d[0]);
    assert!(d[0]
        .to_string()
        .starts_with(&format!("config.yaml:{}:", d[0].line)));
    let dup = diagnostics("settings: {}\nsettings: {}\n");
    assert_eq!(dup[0].line, 2, "{}", dup[0]);
    assert!(dup[0].message.contains("duplicate"), "{}", dup[0]);
}

#[test]
fn type_errors_carry_path_and_line() {
    let d = diagnostics(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:80\n    limits:\n      max_headers: lots\n",
    );
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].line, d[0].path.as_str()),
        (5, "listeners[0].limits.max_headers")
    );
    assert!(d[0].message.contains("whole number"), "{}", d[0]);
    let d = diagnostics("listeners: 5\n");
    assert_eq!((d[0].line, d[0].path.as_str()), (1, "listeners"));
}

#[test]
fn load_reads_the_file_and_resolves_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portico.yaml");
    std::fs::write(
            &file,
            "listeners:\n  - name: s\n    bind: 127.0.0.1:8443\n    tls:\n      certificates: [{ cert: a.pem, key: /abs/a.key }]\n",
        )
        .unwrap();
    let (config, _) = load(&file).unwrap();
    assert_eq!(config.source, file);
    let pair = &config.listeners[0].tls.as_ref().unwrap().certificates[0];
    assert_eq!(pair.cert, dir.path().join("a.pem"));
    assert_eq!(pair.key, PathBuf::from("/abs/a.key"));

    let missing = dir.path().join("absent.yaml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(&err, ConfigError::Read { path, .. } if *path == missing));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn empty_document_needs_a_listener() {
    let d = diagnostics("");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].path, "listeners");
    assert_eq!(d[0].line, 0);
    assert_eq!(
        d[0].to_string(),
        "config.yaml: error: listeners: at least one listener is required"
    );
}
