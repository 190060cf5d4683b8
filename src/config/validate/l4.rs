//! Validation of a listener's `mode` and its Layer 4 keys (`upstream`, `sni`,
//! `proxy_protocol`), and of keys that belong to the other kind of listener.

use std::collections::HashMap;
use std::net::IpAddr;

use super::matcher::parse_host;
use super::route::unknown_name;
use super::{join, parse_net, Ctx};
use crate::config::model::{HostMatch, ListenerMode, ProxyProtocol, SniRoutes};
use crate::config::raw::{RawListener, RawUpstream};

/// The mode a listener asked for, before its other keys are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Http,
    Tcp,
    TlsPassthrough,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Tcp => "tcp",
            Kind::TlsPassthrough => "tls_passthrough",
        }
    }

    pub(super) fn is_layer4(self) -> bool {
        self != Kind::Http
    }
}

/// `mode:`; `None` (reported) when it names no mode.
pub(super) fn kind(ctx: &mut Ctx<'_>, path: &str, raw: &RawListener) -> Option<Kind> {
    match raw.mode.as_deref().map(str::trim) {
        None | Some("http") => Some(Kind::Http),
        Some("tcp") => Some(Kind::Tcp),
        Some("tls_passthrough") => Some(Kind::TlsPassthrough),
        Some(other) => {
            let known = ["http", "tcp", "tls_passthrough"];
            ctx.error(&join(path, "mode"), unknown_name("mode", other, &known));
            None
        }
    }
}

/// Resolves the mode's upstreams and SNI table.
pub(super) fn mode(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawListener,
    kind: Kind,
    upstreams: &[(String, RawUpstream)],
) -> Option<ListenerMode> {
    let upstream = match raw.upstream.as_deref() {
        Some(name) if kind.is_layer4() => {
            upstream_ref(ctx, &join(path, "upstream"), name, kind, upstreams).map(Some)
        }
        _ => Some(None),
    };
    match kind {
        Kind::Http => Some(ListenerMode::Http),
        Kind::Tcp => {
            if raw.upstream.is_none() {
                ctx.error(
                    &join(path, "upstream"),
                    "a tcp listener needs `upstream`: the pool its connections are tunnelled to",
                );
            }
            upstream?.map(|upstream| ListenerMode::Tcp { upstream })
        }
        Kind::TlsPassthrough => {
            let entries = raw.sni.as_ref().map(|m| m.0.as_slice()).unwrap_or_default();
            if entries.is_empty() && raw.upstream.is_none() {
                ctx.error(
                    path,
                    "a tls_passthrough listener needs `sni`, `upstream` (the pool for connections no `sni` entry matches), or both",
                );
                return None;
            }
            let routes = sni(ctx, &join(path, "sni"), entries, upstreams);
            let default = upstream?;
            routes.map(|r| ListenerMode::TlsPassthrough(SniRoutes { default, ..r }))
        }
    }
}

/// Index of the upstream `name` refers to; it must exist and must not re-encrypt.
fn upstream_ref(
    ctx: &mut Ctx<'_>,
    path: &str,
    name: &str,
    kind: Kind,
    upstreams: &[(String, RawUpstream)],
) -> Option<usize> {
    let Some(index) = upstreams.iter().position(|(n, _)| n == name) else {
        let names: Vec<&str> = upstreams.iter().map(|(n, _)| n.as_str()).collect();
        ctx.error(path, unknown_name("upstream", name, &names));
        return None;
    };
    if upstreams[index].1.tls.is_some() {
        ctx.error(
            path,
            format!(
                "upstream {name:?} re-encrypts to its backends (`tls`), but a {} listener forwards bytes as they are; use an upstream without `tls`",
                kind.name()
            ),
        );
        return None;
    }
    Some(index)
}

fn sni(
    ctx: &mut Ctx<'_>,
    path: &str,
    entries: &[(String, String)],
    upstreams: &[(String, RawUpstream)],
) -> Option<SniRoutes> {
    let mut routes = SniRoutes::default();
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut ok = true;
    for (pattern, upstream) in entries {
        let at = format!("{path}.{pattern}");
        let target = upstream_ref(ctx, &at, upstream, Kind::TlsPassthrough, upstreams);
        let parsed = match parse_host(pattern) {
            Ok(HostMatch::Exact(host))
                if host.starts_with('[') || host.parse::<IpAddr>().is_ok() =>
            {
                Err(format!(
                    "{pattern:?}: SNI never carries an IP address; clients that connect by address send no SNI and go to `upstream`"
                ))
            }
            other => other,
        };
        let key = match parsed {
            Ok(h) => h,
            Err(reason) => {
                ctx.error(&at, reason);
                ok = false;
                continue;
            }
        };
        let canonical = match &key {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*{s}"),
        };
        if let Some(first) = seen.get(&canonical) {
            ctx.error(
                &at,
                format!("{pattern:?} is the same name as the earlier entry {first:?}"),
            );
            ok = false;
            continue;
        }
        seen.insert(canonical, pattern);
        let Some(target) = target else {
            ok = false;
            continue;
        };
        match key {
            HostMatch::Exact(h) => {
                routes.exact.insert(h, target);
            }
            HostMatch::Suffix(s) => routes.suffixes.push((s, target)),
        }
    }
    // Longest suffix first: `*.a.example.com` beats `*.example.com` whatever the file order.
    routes
        .suffixes
        .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    ok.then_some(routes)
}

/// `proxy_protocol:`; only Layer 4 listeners may have it.
pub(super) fn proxy_protocol(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawListener,
    kind: Kind,
) -> Option<ProxyProtocol> {
    let Some(pp) = &raw.proxy_protocol else {
        return Some(ProxyProtocol::default());
    };
    if !kind.is_layer4() {
        // Reported by `misplaced_keys`.
        return Some(ProxyProtocol::default());
    }
    let mut ok = true;
    let send_v2 = match pp.send.as_deref().map(str::trim) {
        None => false,
        Some("v2") => true,
        Some(other) => {
            ctx.error(
                &join(path, "send"),
                format!("{other:?} is not supported: the only value is v2 (leave `send` out to send no header)"),
            );
            ok = false;
            false
        }
    };
    let mut accept_from = Vec::new();
    for (i, text) in pp
        .accept_from
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match parse_net(text) {
            Some(net) => accept_from.push(net),
            None => {
                ctx.error(
                    &format!("{path}.accept_from[{i}]"),
                    format!("{text:?} is not an IP address or CIDR range (like 10.0.0.0/8 or 127.0.0.1)"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(ProxyProtocol {
        send_v2,
        accept_from,
    })
}

/// Reports keys the listener's kind has no use for; false when there was one.
pub(super) fn misplaced_keys(ctx: &mut Ctx<'_>, path: &str, raw: &RawListener, kind: Kind) -> bool {
    let mut misplaced: Vec<(String, String)> = Vec::new();
    let mut say = |key: &str, message: String| misplaced.push((join(path, key), message));
    match kind {
        Kind::Http => {
            let layer4 = "applies only to `mode: tcp` and `mode: tls_passthrough` listeners";
            if raw.upstream.is_some() {
                say(
                    "upstream",
                    format!(
                        "`upstream` {layer4} (HTTP listeners reach upstreams through `routes`)"
                    ),
                );
            }
            if raw.sni.is_some() {
                say(
                    "sni",
                    "`sni` applies only to `mode: tls_passthrough` listeners".to_owned(),
                );
            }
            if raw.proxy_protocol.is_some() {
                say("proxy_protocol", format!("`proxy_protocol` {layer4}"));
            }
        }
        Kind::Tcp | Kind::TlsPassthrough => {
            let mode = kind.name();
            if raw.tls.is_some() {
                let why = if kind == Kind::Tcp {
                    "a tcp listener does not terminate TLS; use `mode: http` with `tls` to terminate it, or `mode: tls_passthrough` to route TLS by SNI without decrypting"
                } else {
                    "a tls_passthrough listener never decrypts, so it takes no `tls` settings: the backends present their own certificates"
                };
                say("tls", why.to_owned());
            }
            if kind == Kind::Tcp && raw.sni.is_some() {
                say(
                    "sni",
                    "`sni` applies only to `mode: tls_passthrough` listeners".to_owned(),
                );
            }
            if raw.http2.is_some() {
                say(
                    "http2",
                    format!("`http2` applies only to `mode: http` listeners, not {mode}"),
                );
            }
            if let Some(limits) = &raw.limits {
                let http_only = [
                    ("max_header_bytes", limits.max_header_bytes.is_some()),
                    ("max_headers", limits.max_headers.is_some()),
                    ("max_uri_length", limits.max_uri_length.is_some()),
                ];
                for (key, set) in http_only {
                    if set {
                        say(
                            &format!("limits.{key}"),
                            format!("`{key}` applies only to `mode: http` listeners, not {mode}"),
                        );
                    }
                }
            }
        }
    }
    let clean = misplaced.is_empty();
    for (at, message) in misplaced {
        ctx.error(&at, message);
    }
    clean
}

#[cfg(test)]
mod tests;
