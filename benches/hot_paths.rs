//! Criterion micro-benchmarks for the per-request hot paths: route selection over 1,000 routes
//! (exact hosts, wildcard hosts, path regexes; hits and misses) and the header rules
//! (hop-by-hop stripping and the X-Forwarded-* / Forwarded rebuild). `cargo bench` runs them;
//! `cargo test` does not.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use portico::proxy::headers::{set_forwarding, strip_hop_by_hop, Hop, Peer};
use portico::router::{RequestFacts, Router};

/// 1,000 routes: 400 exact hosts with a path prefix, 300 wildcard hosts, 300 hostless regexes.
fn config_yaml() -> String {
    let mut y = String::from(
        "listeners:\n  - { name: web, bind: \"127.0.0.1:0\" }\nupstreams:\n  o: { servers: [\"127.0.0.1:9\"] }\nroutes:\n",
    );
    for i in 0..400 {
        y += &format!("  - {{ name: e{i}, match: {{ host: host{i}.example.com, path_prefix: /api/{i}/ }}, upstream: o }}\n");
    }
    for i in 0..300 {
        y += &format!("  - {{ name: s{i}, match: {{ host: \"*.tenant{i}.example.net\", methods: [GET] }}, upstream: o }}\n");
    }
    for i in 0..300 {
        y += &format!(
            "  - {{ name: r{i}, match: {{ path_regex: \"^/r{i}/[0-9]+$\" }}, upstream: o }}\n"
        );
    }
    y
}

fn router(c: &mut Criterion) {
    let (config, _) = match portico::config::parse_str(&config_yaml(), "bench.yaml", Path::new("."))
    {
        Ok(parsed) => parsed,
        Err(e) => panic!("bench config is invalid: {e}"),
    };
    assert_eq!(config.routes.len(), 1000);
    let router = Router::new(&config.routes);
    let headers = HeaderMap::new();
    let get = Method::GET;
    let facts = |host: &'static str, path: &'static str| RequestFacts {
        listener: "web",
        host: Some(host),
        path,
        query: None,
        method: &get,
        headers: &headers,
    };
    let cases = [
        (
            "exact_hit_first",
            facts("host0.example.com", "/api/0/x"),
            Some(0),
        ),
        (
            "exact_hit_last",
            facts("HOST399.example.com:8080", "/api/399/x"),
            Some(399),
        ),
        (
            "wildcard_hit",
            facts("a.b.tenant250.example.net", "/"),
            Some(650),
        ),
        (
            "regex_hit_last",
            facts("unknown.example.org", "/r299/12345"),
            Some(999),
        ),
        ("miss", facts("unknown.example.org", "/nowhere"), None),
    ];
    let mut group = c.benchmark_group("router_1000_routes");
    for (name, f, want) in cases {
        assert_eq!(router.route(&f), want, "{name}");
        group.bench_function(name, |b| b.iter(|| router.route(black_box(&f))));
    }
    group.finish();
}

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: &'static str| {
        h.append(k, HeaderValue::from_static(v));
    };
    put("host", "api.example.com");
    put("user-agent", "Mozilla/5.0 (X11; Linux x86_64) bench");
    put(
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    );
    put("accept-encoding", "gzip, deflate, br");
    put("accept-language", "en-GB,en;q=0.5");
    put("cookie", "session=abcdef0123456789; theme=dark");
    put("connection", "keep-alive, x-custom-hop");
    put("keep-alive", "timeout=5");
    put("x-custom-hop", "1");
    put("te", "trailers");
    put("x-forwarded-for", "203.0.113.9");
    put("x-real-ip", "203.0.113.9");
    h
}

fn header_rules(c: &mut Criterion) {
    let template = request_headers();
    // Rendered once per connection in the proxy; outside the measured loop here too.
    let peer = Peer::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    let host = http::HeaderValue::from_static("api.example.com");
    let hop = Hop {
        peer: &peer,
        trusted: false,
        proto: "https",
        host: Some(&host),
    };
    let mut group = c.benchmark_group("header_rules");
    group.bench_function("strip_hop_by_hop", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| strip_hop_by_hop(black_box(h), true),
            criterion::BatchSize::SmallInput,
        )
    });
    group.bench_function("strip_and_forwarding", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |h| {
                strip_hop_by_hop(h, true);
                set_forwarding(black_box(h), &hop);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, router, header_rules);
criterion_main!(benches);
