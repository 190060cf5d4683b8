//! Unit and property tests for the router (kept apart to keep `router.rs` short).
#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::model::{Action, HeaderMatch, HostHeader, QueryMatch};
use http::HeaderValue;
use proptest::prelude::*;
use regex::Regex;

fn route(matcher: RouteMatch) -> Route {
    Route {
        name: "r".into(),
        listeners: Vec::new(),
        matcher,
        action: Action::Proxy { upstream: 0 },
        max_body_size: None,
        host_header: HostHeader::Keep,
        websocket: Default::default(),
    }
}

fn exact(h: &str) -> HostMatch {
    HostMatch::Exact(h.into())
}

fn suffix(h: &str) -> HostMatch {
    HostMatch::Suffix(h.into())
}

fn hosts(h: Vec<HostMatch>) -> Route {
    route(RouteMatch {
        hosts: h,
        ..RouteMatch::default()
    })
}

fn path(p: PathMatch) -> Route {
    route(RouteMatch {
        path: Some(p),
        ..RouteMatch::default()
    })
}

/// A request with everything configurable; `route_of` runs it through a fresh router.
struct Req {
    listener: &'static str,
    host: Option<&'static str>,
    path: &'static str,
    query: Option<&'static str>,
    method: Method,
    headers: HeaderMap,
}

impl Req {
    fn new(host: Option<&'static str>, path: &'static str) -> Req {
        Req {
            listener: "main",
            host,
            path,
            query: None,
            method: Method::GET,
            headers: HeaderMap::new(),
        }
    }

    fn facts(&self) -> RequestFacts<'_> {
        RequestFacts {
            listener: self.listener,
            host: self.host,
            path: self.path,
            query: self.query,
            method: &self.method,
            headers: &self.headers,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }
}

fn route_of(routes: &[Route], req: &Req) -> Option<usize> {
    let got = Router::new(routes).route(&req.facts());
    let reference = routes
        .iter()
        .position(|r| check_route(r, &req.facts()).is_ok());
    assert_eq!(got, reference, "index disagrees with the linear scan");
    got
}

#[test]
fn host_without_port_normalises() {
    assert_eq!(
        host_without_port("Example.COM:8080").unwrap(),
        "example.com"
    );
    assert_eq!(host_without_port("example.com.").unwrap(), "example.com");
    assert_eq!(host_without_port("example.com:").unwrap(), "example.com");
    assert_eq!(host_without_port("10.0.0.1:80").unwrap(), "10.0.0.1");
    assert_eq!(host_without_port("[::1]:443").unwrap(), "[::1]");
    assert_eq!(host_without_port("[0:0::1]").unwrap(), "[::1]");
    assert_eq!(host_without_port("[FE80::A]").unwrap(), "[fe80::a]");
    for bad in [
        "", ".", ":80", "a b", "a..b", ".a", "a:b", "a:99999", "::1", "[::1", "[x]", "[::1]x",
    ] {
        assert_eq!(host_without_port(bad), None, "{bad:?}");
    }
}

#[test]
fn host_key_borrows_unless_it_must_lower_case() {
    assert!(matches!(
        host_key("example.com:443"),
        Some(Cow::Borrowed("example.com"))
    ));
    assert!(matches!(
        host_key("a.example.com."),
        Some(Cow::Borrowed("a.example.com"))
    ));
    assert!(matches!(host_key("Example.com"), Some(Cow::Owned(_))));
}

#[test]
fn exact_host_ignores_case_port_and_trailing_dot() {
    let routes = [hosts(vec![exact("example.com")])];
    for h in ["example.com", "EXAMPLE.com:8443", "example.com."] {
        assert_eq!(route_of(&routes, &Req::new(Some(h), "/")), Some(0), "{h}");
    }
    assert_eq!(
        route_of(&routes, &Req::new(Some("www.example.com"), "/")),
        None
    );
    assert_eq!(route_of(&routes, &Req::new(None, "/")), None);
}

#[test]
fn ipv6_hosts_match_with_or_without_brackets_in_config() {
    let routes = [hosts(vec![exact("::1")]), hosts(vec![exact("[::2]")])];
    assert_eq!(
        route_of(&routes, &Req::new(Some("[::1]:8080"), "/")),
        Some(0)
    );
    assert_eq!(route_of(&routes, &Req::new(Some("[0::2]"), "/")), Some(1));
}

#[test]
fn wildcard_needs_a_label_before_the_domain() {
    let routes = [hosts(vec![suffix(".example.com")])];
    assert_eq!(
        route_of(&routes, &Req::new(Some("a.example.com"), "/")),
        Some(0)
    );
    assert_eq!(
        route_of(&routes, &Req::new(Some("A.B.Example.com:80"), "/")),
        Some(0)
    );
    assert_eq!(route_of(&routes, &Req::new(Some("example.com"), "/")), None);
    assert_eq!(
        route_of(&routes, &Req::new(Some("badexample.com"), "/")),
        None
    );
}

#[test]
fn without_a_usable_host_only_hostless_routes_match() {
    let routes = [hosts(vec![exact("a.com")]), route(RouteMatch::default())];
    assert_eq!(route_of(&routes, &Req::new(None, "/")), Some(1));
    assert_eq!(
        route_of(&routes, &Req::new(Some("not a host"), "/")),
        Some(1)
    );
    assert_eq!(route_of(&routes, &Req::new(Some("a.com"), "/")), Some(0));
}

#[test]
fn path_matchers() {
    let routes = [
        path(PathMatch::Exact("/exact".into())),
        path(PathMatch::Prefix("/api".into())),
        path(PathMatch::Regex(Regex::new("^/v[0-9]+/").unwrap())),
    ];
    let at = |p: &'static str| route_of(&routes, &Req::new(None, p));
    assert_eq!(at("/exact"), Some(0));
    assert_eq!(at("/exact/"), None);
    assert_eq!(at("/api"), Some(1));
    assert_eq!(at("/apiary"), Some(1), "prefix is a plain string prefix");
    assert_eq!(at("/v2/x"), Some(2));
    assert_eq!(at("/v/x"), None);
}

#[test]
fn methods_match_any_listed() {
    let routes = [route(RouteMatch {
        methods: vec![Method::GET, Method::HEAD],
        ..RouteMatch::default()
    })];
    let mut req = Req::new(None, "/");
    assert_eq!(route_of(&routes, &req), Some(0));
    req.method = Method::POST;
    assert_eq!(route_of(&routes, &req), None);
}

fn header_route(name: &'static str, value: ValueMatch) -> Route {
    route(RouteMatch {
        headers: vec![HeaderMatch {
            name: HeaderName::from_static(name),
            value,
        }],
        ..RouteMatch::default()
    })
}

#[test]
fn header_matchers_check_every_value() {
    let exact_r = [header_route("x-tenant", ValueMatch::Exact("Blue".into()))];
    let req = |v: &'static str| Req::new(None, "/").header("x-tenant", v);
    assert_eq!(route_of(&exact_r, &req("Blue")), Some(0));
    assert_eq!(
        route_of(&exact_r, &req("blue")),
        None,
        "exact is case-sensitive"
    );
    assert_eq!(
        route_of(&exact_r, &req("red").header("x-tenant", "Blue")),
        Some(0)
    );

    let regex_r = [header_route(
        "x-tenant",
        ValueMatch::Regex(Regex::new("^b").unwrap()),
    )];
    assert_eq!(
        route_of(&regex_r, &req("red").header("x-tenant", "blue")),
        Some(0)
    );
    assert_eq!(route_of(&regex_r, &req("red")), None);

    let present_r = [header_route("x-debug", ValueMatch::Present)];
    assert_eq!(
        route_of(&present_r, &Req::new(None, "/").header("x-debug", "")),
        Some(0)
    );
    assert_eq!(route_of(&present_r, &Req::new(None, "/")), None);
}

fn query_route(matches: Vec<(&str, ValueMatch)>) -> Route {
    route(RouteMatch {
        query: matches
            .into_iter()
            .map(|(name, value)| QueryMatch {
                name: name.into(),
                value,
            })
            .collect(),
        ..RouteMatch::default()
    })
}

#[test]
fn query_matchers_decode_names_and_values() {
    let routes = [
        query_route(vec![("user id", ValueMatch::Exact("a b&c".into()))]),
        query_route(vec![("v", ValueMatch::Regex(Regex::new("^2").unwrap()))]),
        query_route(vec![
            ("debug", ValueMatch::Present),
            ("x", ValueMatch::Present),
        ]),
    ];
    let at = |q: Option<&'static str>| {
        let mut req = Req::new(None, "/");
        req.query = q;
        route_of(&routes, &req)
    };
    assert_eq!(at(Some("user+id=a%20b%26c")), Some(0));
    assert_eq!(at(Some("user%20id=a+b%26c&v=2")), Some(0));
    assert_eq!(at(Some("v=1&v=20")), Some(1), "any value of the name");
    assert_eq!(at(Some("debug&x=")), Some(2));
    assert_eq!(at(Some("debug")), None, "every query condition must hold");
    assert_eq!(at(None), None);
    assert_eq!(decode_query("%zz%4"), "%zz%4");
    assert_eq!(
        decode_query("%+1"),
        "% 1",
        "'+' is no hex digit, so the '%' stays"
    );
}

#[test]
fn first_route_in_config_order_wins_across_buckets() {
    let api = |h: HostMatch| {
        route(RouteMatch {
            hosts: vec![h],
            path: Some(PathMatch::Prefix("/api".into())),
            ..RouteMatch::default()
        })
    };
    let routes = [
        api(suffix(".example.com")),
        hosts(vec![exact("www.example.com")]),
        route(RouteMatch::default()),
        hosts(vec![suffix(".example.com")]),
    ];
    let at = |p: &'static str| route_of(&routes, &Req::new(Some("www.example.com"), p));
    assert_eq!(at("/api/x"), Some(0));
    assert_eq!(at("/"), Some(1));
    assert_eq!(
        route_of(&routes, &Req::new(Some("a.example.com"), "/")),
        Some(2)
    );

    let hostless_first = [route(RouteMatch::default()), hosts(vec![exact("a.com")])];
    assert_eq!(
        route_of(&hostless_first, &Req::new(Some("a.com"), "/")),
        Some(0)
    );
}

#[test]
fn listener_filter() {
    let mut admin_only = route(RouteMatch::default());
    admin_only.listeners = vec!["admin".into(), "internal".into()];
    let routes = [admin_only, path(PathMatch::Prefix("/".into()))];
    let mut req = Req::new(None, "/");
    assert_eq!(route_of(&routes, &req), Some(1));
    req.listener = "internal";
    assert_eq!(route_of(&routes, &req), Some(0));
}

#[test]
fn explain_lists_reasons_until_the_winner() {
    let mut on_admin = route(RouteMatch::default());
    on_admin.listeners = vec!["admin".into()];
    let routes = [
        on_admin,
        hosts(vec![exact("other.com")]),
        path(PathMatch::Exact("/x".into())),
        route(RouteMatch {
            methods: vec![Method::POST],
            ..RouteMatch::default()
        }),
        header_route("x-tenant", ValueMatch::Present),
        query_route(vec![("debug", ValueMatch::Present)]),
        route(RouteMatch::default()),
        route(RouteMatch::default()),
    ];
    let req = Req::new(Some("a.com"), "/");
    let out = Router::new(&routes).explain(&routes, &req.facts());
    let text: Vec<String> = out
        .iter()
        .map(|(i, r)| match r {
            Ok(()) => format!("{i}:ok"),
            Err(why) => format!("{i}:{why}"),
        })
        .collect();
    assert_eq!(
        text,
        [
            "0:listener",
            "1:host",
            "2:path",
            "3:method",
            "4:header x-tenant",
            "5:query debug",
            "6:ok"
        ]
    );

    let none = Router::new(&routes[..3]).explain(&routes[..3], &req.facts());
    assert_eq!(none.len(), 3);
    assert!(none.iter().all(|(_, r)| r.is_err()));
}

const HOSTS: &[&str] = &["example.com", "a.example.com", "b.example.org", "[::1]"];
const SUFFIXES: &[&str] = &[".example.com", ".org"];
const REQ_HOSTS: &[&str] = &[
    "Example.COM:8080",
    "a.example.com.",
    "x.a.example.com",
    "b.example.org",
    "example.org",
    "[::1]:443",
    "bad host",
];
const PATHS: &[&str] = &["/", "/a", "/a/b", "/b"];

prop_compose! {
    fn arb_route()(
        listener in 0usize..3,
        exact_hosts in prop::collection::vec(0..HOSTS.len(), 0..3),
        suffix_hosts in prop::collection::vec(0..SUFFIXES.len(), 0..2),
        path_kind in 0usize..5,
        methods in 0usize..3,
        header in 0usize..4,
        query in 0usize..3,
    ) -> Route {
        let mut matcher = RouteMatch {
            hosts: exact_hosts.iter().map(|&i| exact(HOSTS[i])).collect(),
            ..RouteMatch::default()
        };
        matcher.hosts.extend(suffix_hosts.iter().map(|&i| suffix(SUFFIXES[i])));
        matcher.path = match path_kind {
            0 => None,
            1 => Some(PathMatch::Exact("/a".into())),
            2 => Some(PathMatch::Prefix("/a".into())),
            3 => Some(PathMatch::Prefix("/".into())),
            _ => Some(PathMatch::Regex(Regex::new("^/b").unwrap())),
        };
        matcher.methods = match methods {
            0 => vec![],
            1 => vec![Method::GET],
            _ => vec![Method::POST, Method::PUT],
        };
        let value = match header {
            1 => Some(ValueMatch::Exact("1".into())),
            2 => Some(ValueMatch::Present),
            3 => Some(ValueMatch::Regex(Regex::new("^[12]$").unwrap())),
            _ => None,
        };
        matcher.headers = value
            .map(|value| HeaderMatch { name: HeaderName::from_static("x-t"), value })
            .into_iter()
            .collect();
        matcher.query = match query {
            1 => vec![QueryMatch { name: "q".into(), value: ValueMatch::Exact("a b".into()) }],
            2 => vec![QueryMatch { name: "q".into(), value: ValueMatch::Present }],
            _ => vec![],
        };
        let mut r = route(matcher);
        r.listeners = match listener {
            0 => vec![],
            1 => vec!["a".into()],
            _ => vec!["b".into(), "c".into()],
        };
        r
    }
}

proptest! {
    #![proptest_config(crate::proptest_config())]
    #[test]
    fn index_agrees_with_linear_scan(
        routes in prop::collection::vec(arb_route(), 0..12),
        listener in prop::sample::select(vec!["a", "b", "d"]),
        host in prop::option::of(prop::sample::select(REQ_HOSTS.to_vec())),
        path in prop::sample::select(PATHS.to_vec()),
        post in any::<bool>(),
        header in prop::option::of(prop::sample::select(vec!["1", "2", "3"])),
        query in prop::option::of(prop::sample::select(vec!["q=a+b", "q", "x=1&q=zz"])),
    ) {
        let mut headers = HeaderMap::new();
        if let Some(v) = header {
            headers.insert("x-t", HeaderValue::from_static(v));
        }
        let method = if post { Method::POST } else { Method::GET };
        let facts = RequestFacts { listener, host, path, query, method: &method, headers: &headers };
        let router = Router::new(&routes);
        let linear = routes.iter().position(|r| check_route(r, &facts).is_ok());
        prop_assert_eq!(router.route(&facts), linear);
        let explained = router.explain(&routes, &facts);
        prop_assert_eq!(explained.len(), linear.map_or(routes.len(), |w| w + 1));
    }
}
