//! Validation of `routes:`: names, listener references, body limit, Host policy, and the
//! "can never match" warning.

use std::collections::HashMap;

use super::action::action;
use super::matcher::route_match;
use super::websocket::websocket;
use super::{join, Ctx};
use crate::config::diagnostic::suggest;
use crate::config::model::{HostHeader, Route, RouteMatch};
use crate::config::raw::{RawListener, RawRoute};
use crate::config::units::parse_size;

const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;

/// The listener names routes may refer to, and which of them are Layer 4 (routes never apply
/// to those).
pub(super) struct ListenerNames<'a> {
    all: Vec<&'a str>,
    http: Vec<&'a str>,
    layer4: Vec<(&'a str, &'a str)>,
}

impl<'a> ListenerNames<'a> {
    pub(super) fn new(raw: &'a [RawListener]) -> Self {
        let mut names = ListenerNames {
            all: Vec::new(),
            http: Vec::new(),
            layer4: Vec::new(),
        };
        for l in raw {
            let Some(name) = l.name.as_deref() else {
                continue;
            };
            names.all.push(name);
            match l.mode.as_deref().map(str::trim) {
                Some(mode @ ("tcp" | "tls_passthrough")) => names.layer4.push((name, mode)),
                _ => names.http.push(name),
            }
        }
        names
    }
}

pub(super) fn routes(
    ctx: &mut Ctx<'_>,
    raw: &[RawRoute],
    listeners: &ListenerNames<'_>,
    upstreams: &[&str],
) -> Option<Vec<Route>> {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(name) = r.name.as_deref() {
            if let Some(first) = names.insert(name, i) {
                ctx.error(
                    &join(&path, "name"),
                    format!("duplicate route name {name:?} (also used by routes[{first}])"),
                );
                names.insert(name, first);
            }
        }
        out.push(route(ctx, &path, r, listeners, upstreams));
    }
    warn_unreachable(ctx, &out, &listeners.http);
    out.into_iter().collect()
}

fn route(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawRoute,
    names: &ListenerNames<'_>,
    upstreams: &[&str],
) -> Option<Route> {
    let name = ctx.required(path, "name", raw.name.as_ref());
    let mut ok = true;
    let mut route_listeners: Vec<String> = Vec::new();
    for (i, l) in raw
        .listeners
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Some((_, mode)) = names.layer4.iter().find(|(n, _)| n == l) {
            ctx.error(
                &format!("{path}.listeners[{i}]"),
                format!("listener {l:?} is a `mode: {mode}` listener; routes apply only to `mode: http` listeners"),
            );
            ok = false;
        } else if names.all.contains(&l.as_str()) {
            if !route_listeners.contains(l) {
                route_listeners.push(l.clone());
            }
        } else {
            ctx.error(
                &format!("{path}.listeners[{i}]"),
                unknown_name("listener", l, &names.all),
            );
            ok = false;
        }
    }
    let matcher = match &raw.matcher {
        None => Some(RouteMatch::default()),
        Some(m) => route_match(ctx, &join(path, "match"), m),
    };
    let action = action(ctx, path, raw, upstreams);
    let max_body_size = max_body_size(
        ctx,
        &join(path, "max_body_size"),
        raw.max_body_size.as_ref(),
    );
    let host_header = match raw.host_header.as_deref() {
        None | Some("keep") => Some(HostHeader::Keep),
        Some("backend") => Some(HostHeader::Backend),
        Some(other) => {
            ctx.error(
                &join(path, "host_header"),
                unknown_name("host_header value", other, &["keep", "backend"]),
            );
            None
        }
    };
    let websocket = websocket(ctx, &join(path, "websocket"), raw.websocket.as_ref());
    Some(Route {
        websocket: websocket?,
        name: name?.to_owned(),
        listeners: route_listeners,
        matcher: matcher?,
        action: action?,
        max_body_size: max_body_size?,
        host_header: host_header?,
    })
    .filter(|_| ok)
}

/// `no upstream named "apii"; did you mean "api"?`, or the list of valid names.
pub(super) fn unknown_name(kind: &str, name: &str, known: &[&str]) -> String {
    let mut message = format!("no {kind} named {name:?}");
    match suggest(name, known.iter().copied()) {
        Some(s) => message.push_str(&format!("; did you mean {s:?}?")),
        None if known.is_empty() => message.push_str(&format!(" (no {kind}s are defined)")),
        None => message.push_str(&format!(" (expected one of: {})", known.join(", "))),
    }
    message
}

fn max_body_size(ctx: &mut Ctx<'_>, path: &str, raw: Option<&String>) -> Option<Option<u64>> {
    match raw {
        None => Some(Some(DEFAULT_MAX_BODY)),
        Some(text) if text.trim().eq_ignore_ascii_case("unlimited") => Some(None),
        Some(text) => match parse_size(text) {
            Ok(n) => Some(Some(n)),
            Err(e) => {
                ctx.error(path, format!("{e}, or \"unlimited\""));
                None
            }
        },
    }
}

/// Warns about a route shadowed by an earlier one that has no conditions at all and applies to
/// every listener the later one does. Only this simple case: overlapping conditions are legal.
fn warn_unreachable(ctx: &mut Ctx<'_>, routes: &[Option<Route>], all_listeners: &[&str]) {
    if all_listeners.is_empty() {
        return;
    }
    let applies_to = |r: &Route| -> Vec<String> {
        if r.listeners.is_empty() {
            all_listeners.iter().map(|s| (*s).to_owned()).collect()
        } else {
            r.listeners.clone()
        }
    };
    for (i, later) in routes.iter().enumerate() {
        let Some(later) = later else { continue };
        let later_on = applies_to(later);
        let shadow = routes[..i].iter().enumerate().find_map(|(j, earlier)| {
            let earlier = earlier.as_ref()?;
            let covers = applies_to(earlier);
            (matches_everything(&earlier.matcher) && later_on.iter().all(|l| covers.contains(l)))
                .then_some((j, earlier))
        });
        if let Some((j, earlier)) = shadow {
            ctx.warning(
                &format!("routes[{i}]"),
                format!(
                    "route {:?} can never match: route {:?} (routes[{j}]) comes first and matches every request on its listeners (the first matching route wins)",
                    later.name, earlier.name
                ),
            );
        }
    }
}

fn matches_everything(m: &RouteMatch) -> bool {
    m.hosts.is_empty()
        && m.path.is_none()
        && m.methods.is_empty()
        && m.headers.is_empty()
        && m.query.is_empty()
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{diagnostics, expect_error, valid};
    use crate::config::Severity;

    /// A config whose `routes:` list is `body` (line 8 on), with listener `web` and upstream `api`.
    fn with(body: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\"]\nroutes:\n{body}")
    }

    #[test]
    fn route_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("  - upstream: api\n", "routes[0].name", 8, "missing required key \"name\""),
            ("  - name: r\n    upstream: api\n  - name: r\n    upstream: api\n", "routes[1].name", 10, "duplicate route name \"r\" (also used by routes[0])"),
            ("  - name: r\n    listeners: [wbe]\n    upstream: api\n", "routes[0].listeners[0]", 9, "no listener named \"wbe\"; did you mean \"web\"?"),
            ("  - name: r\n    upstream: api\n    max_body_size: lots\n", "routes[0].max_body_size", 10, "or \"unlimited\""),
            ("  - name: r\n    upstream: api\n    host_header: backnd\n", "routes[0].host_header", 10, "did you mean \"backend\"?"),
        ];
        for (body, path, line, needle) in cases {
            expect_error(&with(body), path, *line, needle);
        }
    }

    #[test]
    fn shadowed_route_and_unused_upstream_warn() {
        let yaml = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n  - name: alt\n    bind: 127.0.0.1:8081\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\"]\n  spare:\n    servers: [\"127.0.0.1:9001\"]\nroutes:\n  - name: all\n    listeners: [web]\n    upstream: api\n  - name: later\n    listeners: [web]\n    match: { path: /x }\n    respond: {}\n  - name: elsewhere\n    respond: {}\n";
        let (_, warnings) = valid(yaml);
        let shown: Vec<(String, u64)> = warnings.iter().map(|w| (w.path.clone(), w.line)).collect();
        assert_eq!(
            shown,
            [
                ("upstreams.spare".to_owned(), 10),
                ("routes[1]".to_owned(), 15)
            ]
        );
        assert!(warnings.iter().all(|w| w.severity == Severity::Warning));
        assert!(warnings[0]
            .message
            .contains("\"spare\" is not used by any route"));
        assert!(warnings[1]
            .message
            .contains("route \"later\" can never match: route \"all\" (routes[0])"));
    }

    #[test]
    fn routes_with_conditions_do_not_shadow() {
        let d = diagnostics(&with("  - name: a\n    match: { methods: [GET] }\n    upstream: api\n  - name: b\n    upstream: api\n"));
        assert!(d.is_empty(), "{d:?}");
    }
}
