//! Messages and defaults of `balancer` and `sticky` validation.

use crate::config::model::{BalancerKind, HashKey};
use crate::config::testing::{expect_error, valid};

/// Upstream `api` (used by a route) with one server, then `lines` (indented 4 spaces, line 10 on).
fn with(lines: &str) -> String {
    format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\"]\n{lines}")
}

#[test]
fn balancer_messages() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, u64, &str)] = &[
        ("    balancer: least_request\n", "upstreams.api.balancer", 10, "did you mean \"least_requests\"?"),
        ("    balancer: consistent_hash\n", "upstreams.api.balancer", 10, "consistent_hash needs a key"),
        ("    balancer: { key: path }\n", "upstreams.api.balancer.policy", 10, "missing required key \"policy\""),
        ("    balancer: { policy: consistent_hash }\n", "upstreams.api.balancer.key", 10, "missing required key \"key\""),
        ("    balancer:\n      policy: consistent_hash\n      key: body\n", "upstreams.api.balancer.key", 12, "no hash key named \"body\""),
        ("    balancer: { policy: consistent_hash, key: header }\n", "upstreams.api.balancer.name", 10, "missing required key \"name\""),
        ("    balancer: { policy: consistent_hash, key: header, name: \"a b\" }\n", "upstreams.api.balancer.name", 10, "not a valid header name"),
        ("    balancer: { policy: consistent_hash, key: cookie, name: \"a;b\" }\n", "upstreams.api.balancer.name", 10, "not a valid cookie name"),
        ("    balancer: { policy: consistent_hash, key: path, name: x }\n", "upstreams.api.balancer.name", 10, "only applies to key header or cookie"),
        ("    balancer: { policy: consistent_hash, key: path, fallback: consistent_hash }\n", "upstreams.api.balancer.fallback", 10, "cannot be consistent_hash itself"),
        ("    balancer: { policy: consistent_hash, key: path, virtual_nodes: 0 }\n", "upstreams.api.balancer.virtual_nodes", 10, "must be greater than 0"),
        ("    balancer: { policy: consistent_hash, key: path, virtual_nodes: 20000 }\n", "upstreams.api.balancer.virtual_nodes", 10, "at most 10000"),
        ("    balancer:\n      policy: random\n      key: path\n", "upstreams.api.balancer.key", 12, "only applies to policy consistent_hash"),
        ("    balancer: { policy: least_requests, decay: 5s }\n", "upstreams.api.balancer.decay", 10, "only applies to policy p2c_ewma"),
        ("    balancer: { policy: p2c_ewma, decay: 0s }\n", "upstreams.api.balancer.decay", 10, "must be greater than 0"),
        ("    balancer: { policy: p2c_ewma, weights: 1 }\n", "upstreams.api.balancer.weights", 10, "unknown key \"weights\""),
        ("    sticky: {}\n", "upstreams.api.sticky.cookie", 10, "missing required key \"cookie\""),
        ("    sticky: { cookie: \"a=b\" }\n", "upstreams.api.sticky.cookie", 10, "not a valid cookie name"),
        ("    sticky: { cookie: s, ttl: soon }\n", "upstreams.api.sticky.ttl", 10, "invalid duration"),
        ("    sticky: { cookie: s, secret: short }\n", "upstreams.api.sticky.secret", 10, "at least 16 bytes"),
        ("    sticky:\n      cookie: s\n      secret: 0123456789abcdef\n      secret_file: k\n", "upstreams.api.sticky.secret_file", 13, "not both"),
        ("    sticky:\n      cookie: s\n      secret_file: /nonexistent/portico-key\n", "upstreams.api.sticky.secret_file", 12, "cannot read"),
    ];
    for (lines, path, line, needle) in cases {
        expect_error(&with(lines), path, *line, needle);
    }
}

#[test]
fn balancer_forms_and_defaults() {
    let (config, _) = valid(&with(""));
    let up = &config.upstreams[0];
    assert_eq!(up.balancer, BalancerKind::WeightedRoundRobin);
    assert_eq!(up.balancing.virtual_nodes, 160);
    assert!(up.balancing.sticky.is_none());

    for kind in BalancerKind::ALL {
        if kind != BalancerKind::ConsistentHash {
            let (config, _) = valid(&with(&format!("    balancer: {}\n", kind.name())));
            assert_eq!(config.upstreams[0].balancer, kind);
        }
    }

    let (config, _) = valid(&with(
        "    balancer: { policy: consistent_hash, key: header, name: X-User, fallback: random }\n    sticky: { cookie: srv, ttl: 1h, secret: 0123456789abcdef }\n",
    ));
    let up = &config.upstreams[0];
    assert_eq!(up.balancer, BalancerKind::ConsistentHash);
    assert_eq!(
        up.balancing.hash_key,
        Some(HashKey::Header(http::HeaderName::from_static("x-user")))
    );
    assert_eq!(up.balancing.fallback, BalancerKind::Random);
    let sticky = up
        .balancing
        .sticky
        .as_ref()
        .map(|s| (s.cookie.as_str(), s.ttl));
    assert_eq!(
        sticky,
        Some(("srv", Some(std::time::Duration::from_secs(3600))))
    );
}
