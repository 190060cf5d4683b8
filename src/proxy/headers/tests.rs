//! Unit and property tests for the forwarding header rules.
#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    m
}

fn hop(trusted: bool) -> Hop<'static> {
    Hop {
        peer: Box::leak(Box::new(Peer::new("192.0.2.7".parse().unwrap()))),
        trusted,
        proto: "https",
        host: Some(Box::leak(Box::new(HeaderValue::from_static(
            "api.example.com",
        )))),
    }
}

#[test]
fn strips_fixed_and_connection_named_fields() {
    let mut h = map(&[
        ("connection", "keep-alive, x-secret, Foo"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
        ("trailer", "x-checksum"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
        ("http2-settings", "AAMAAABkAAQAAP__"),
        ("x-secret", "1"),
        ("foo", "2"),
        ("x-kept", "3"),
        ("host", "a.example"),
    ]);
    strip_hop_by_hop(&mut h, false);
    let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
    // `Trailer` is end to end (RFC 9110 6.6.2): it announces the trailers that follow.
    assert_eq!(left, vec!["x-kept", "host", "trailer"]);
}

#[test]
fn connection_cannot_drop_host_or_content_length() {
    let mut h = map(&[
        ("connection", "host, content-length"),
        ("host", "a"),
        ("content-length", "3"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert!(h.contains_key("host"));
    assert!(h.contains_key("content-length"));
}

#[test]
fn te_trailers_kept_only_when_asked() {
    let mut h = map(&[("te", "trailers")]);
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h.get("te").unwrap(), "trailers");
    let mut h = map(&[("te", "trailers")]);
    strip_hop_by_hop(&mut h, false);
    assert!(!h.contains_key("te"));
    let mut h = map(&[("te", "gzip")]);
    strip_hop_by_hop(&mut h, true);
    assert!(!h.contains_key("te"));
}

#[test]
fn untrusted_peer_gets_fresh_forwarding_headers() {
    let mut h = map(&[
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=10.9.9.9"),
    ]);
    set_forwarding(&mut h, &hop(false));
    assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.7");
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
    assert_eq!(h.get("x-forwarded-host").unwrap(), "api.example.com");
    assert_eq!(
        h.get("forwarded").unwrap(),
        "for=192.0.2.7;proto=https;host=api.example.com"
    );
}

#[test]
fn untrusted_peer_cannot_forge_other_forwarding_headers() {
    let mut h = map(&[
        ("x-forwarded-port", "1"),
        ("x-forwarded-prefix", "/admin"),
        ("x-real-ip", "6.6.6.6"),
        ("x-other", "kept"),
    ]);
    set_forwarding(&mut h, &hop(false));
    assert!(!h.contains_key("x-forwarded-port"));
    assert!(!h.contains_key("x-forwarded-prefix"));
    assert!(!h.contains_key("x-real-ip"));
    assert_eq!(h.get("x-other").unwrap(), "kept");
    let mut h = map(&[("x-forwarded-port", "1")]);
    set_forwarding(&mut h, &hop(true));
    assert_eq!(h.get("x-forwarded-port").unwrap(), "1");
}

#[test]
fn trusted_peer_is_extended() {
    let mut h = map(&[
        ("x-forwarded-for", "203.0.113.1"),
        ("x-forwarded-for", "198.51.100.2"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=203.0.113.1"),
    ]);
    set_forwarding(&mut h, &hop(true));
    assert_eq!(
        h.get("x-forwarded-for").unwrap(),
        "203.0.113.1, 198.51.100.2, 192.0.2.7"
    );
    assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        h.get("forwarded").unwrap(),
        "for=203.0.113.1, for=192.0.2.7;proto=https;host=api.example.com"
    );
}

#[test]
fn ipv6_peer_is_quoted_in_forwarded() {
    let mut h = HeaderMap::new();
    let peer = Peer::new("::1".parse().unwrap());
    let v6 = Hop {
        peer: &peer,
        trusted: false,
        proto: "http",
        host: None,
    };
    set_forwarding(&mut h, &v6);
    assert_eq!(h.get("forwarded").unwrap(), "for=\"[::1]\";proto=http");
    assert!(!h.contains_key("x-forwarded-host"));
}

#[test]
fn via_is_appended() {
    let mut h = map(&[("via", "1.0 edge")]);
    let via = Via::new("portico");
    add_via(&mut h, Version::HTTP_11, &via);
    assert_eq!(h.get("via").unwrap(), "1.0 edge, 1.1 portico");
    for (version, expected) in [
        (Version::HTTP_10, "1.0 portico"),
        (Version::HTTP_11, "1.1 portico"),
        (Version::HTTP_2, "2 portico"),
        (Version::HTTP_3, "3 portico"),
        (Version::HTTP_09, "0.9 portico"),
    ] {
        let mut h = HeaderMap::new();
        add_via(&mut h, version, &via);
        assert_eq!(h.get("via").unwrap(), expected);
        assert_eq!(h.get_all("via").iter().count(), 1);
    }
}

#[test]
fn forwarded_host_outside_token_is_quoted() {
    let mut h = HeaderMap::new();
    let host = HeaderValue::from_static("we\"ird\\host");
    let hop = Hop {
        host: Some(&host),
        ..hop(false)
    };
    set_forwarding(&mut h, &hop);
    assert_eq!(
        h.get("forwarded").unwrap(),
        "for=192.0.2.7;proto=https;host=\"weirdhost\""
    );
    assert_eq!(h.get("x-forwarded-host").unwrap(), &host);
}

const HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

proptest! {
    // Past failures are kept next to this file (`tests.proptest-regressions`).
    #![proptest_config(crate::proptest_config())]
    /// Whatever a client sends, no hop-by-hop field and no field named in Connection survives,
    /// and every other field survives untouched.
    #[test]
    fn sanitiser_removes_exactly_the_hop_by_hop_fields(
        names in proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 0..8),
        hop_picks in proptest::collection::vec(0usize..HOP.len(), 0..4),
        named_in_connection in proptest::collection::vec(0usize..8, 0..3),
    ) {
        let mut h = HeaderMap::new();
        for n in &names {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        for i in &hop_picks {
            // "0" names no generated field (they start with a letter), even in `Connection`.
            h.append(HeaderName::from_static(HOP[*i]), HeaderValue::from_static("0"));
        }
        let listed: Vec<&String> = named_in_connection.iter().filter_map(|i| names.get(*i)).collect();
        if !listed.is_empty() {
            let joined = listed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            h.append(header::CONNECTION, HeaderValue::from_str(&joined).unwrap());
        }
        strip_hop_by_hop(&mut h, false);
        for n in HOP {
            prop_assert!(!h.contains_key(n));
        }
        for n in &names {
            let dropped = listed.contains(&n) || HOP.contains(&n.as_str());
            let protected = ["host", "content-length", "content-type"].contains(&n.as_str());
            prop_assert_eq!(h.contains_key(n.as_str()), !dropped || protected, "field {}", n);
        }
    }
}

#[test]
fn split_cookies_are_joined_for_http1() {
    let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
    join_cookies(&mut h);
    let all: Vec<_> = h.get_all("cookie").iter().collect();
    assert_eq!(all, vec!["a=1; b=2; c=3"]);
    let mut one = map(&[("cookie", "a=1; b=2")]);
    join_cookies(&mut one);
    assert_eq!(one.get("cookie").unwrap(), "a=1; b=2");
}
