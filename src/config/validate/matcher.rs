//! Validation of a route's `match:` block: hosts, path, methods, header and query conditions.

use std::net::Ipv6Addr;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use super::Ctx;
use crate::config::model::{HeaderMatch, HostMatch, PathMatch, QueryMatch, RouteMatch, ValueMatch};
use crate::config::raw::{OrderedMap, RawMatch, RawValueMatch};

pub(super) fn route_match(ctx: &mut Ctx<'_>, path: &str, raw: &RawMatch) -> Option<RouteMatch> {
    let mut ok = true;
    let mut hosts = Vec::new();
    let host_list = raw
        .host
        .as_ref()
        .map(|h| h.0.as_slice())
        .unwrap_or_default();
    let single = matches!(&raw.host, Some(h) if h.0.len() == 1);
    for (i, host) in host_list.iter().enumerate() {
        let at = if single {
            format!("{path}.host")
        } else {
            format!("{path}.host[{i}]")
        };
        match parse_host(host) {
            Ok(h) if !hosts.contains(&h) => hosts.push(h),
            Ok(_) => {}
            Err(reason) => {
                ctx.error(&at, reason);
                ok = false;
            }
        }
    }
    let path_match = path_condition(ctx, path, raw);
    let mut methods: Vec<Method> = Vec::new();
    for (i, m) in raw
        .methods
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()) {
            Ok(method) if !m.trim().is_empty() => {
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            _ => {
                ctx.error(
                    &format!("{path}.methods[{i}]"),
                    format!("{m:?} is not a valid HTTP method"),
                );
                ok = false;
            }
        }
    }
    let headers = conditions(
        ctx,
        &format!("{path}.headers"),
        raw.headers.as_ref(),
        |name| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))
        },
    );
    let query = conditions(ctx, &format!("{path}.query"), raw.query.as_ref(), |name| {
        if name.is_empty() {
            Err("query parameter name must not be empty".to_owned())
        } else {
            Ok(name.to_owned())
        }
    });
    Some(RouteMatch {
        hosts,
        path: path_match?,
        methods,
        headers: headers?
            .into_iter()
            .map(|(name, value)| HeaderMatch { name, value })
            .collect(),
        query: query?
            .into_iter()
            .map(|(name, value)| QueryMatch { name, value })
            .collect(),
    })
    .filter(|_| ok)
}

/// `Ok(None)` when no path condition is given; at most one of the three keys may be.
fn path_condition(ctx: &mut Ctx<'_>, path: &str, raw: &RawMatch) -> Option<Option<PathMatch>> {
    let given: Vec<(&str, &String)> = [
        ("path", raw.path.as_ref()),
        ("path_prefix", raw.path_prefix.as_ref()),
        ("path_regex", raw.path_regex.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let [(key, value)] = given.as_slice() else {
        if given.is_empty() {
            return Some(None);
        }
        let keys: Vec<&str> = given.iter().map(|(k, _)| *k).collect();
        ctx.error(
            &format!("{path}.{}", keys[1]),
            format!(
                "use only one of path, path_prefix and path_regex (found {})",
                keys.join(", ")
            ),
        );
        return None;
    };
    let at = format!("{path}.{key}");
    if *key == "path_regex" {
        return compile(ctx, &at, value).map(|re| Some(PathMatch::Regex(re)));
    }
    if !value.starts_with('/') {
        ctx.error(&at, format!("{value:?} must start with \"/\""));
        return None;
    }
    Some(Some(if *key == "path" {
        PathMatch::Exact(value.to_string())
    } else {
        PathMatch::Prefix(value.to_string())
    }))
}

/// Header or query conditions; `name` validates and converts each key.
fn conditions<N>(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&OrderedMap<RawValueMatch>>,
    name: impl Fn(&str) -> Result<N, String>,
) -> Option<Vec<(N, ValueMatch)>> {
    let mut out = Some(Vec::new());
    for (key, value) in raw.map(|m| m.0.as_slice()).unwrap_or_default() {
        let at = format!("{path}.{key}");
        let name = name(key).map_err(|reason| ctx.error(&at, reason)).ok();
        let value = value_match(ctx, &at, value);
        match (name, value, out.as_mut()) {
            (Some(n), Some(v), Some(list)) => list.push((n, v)),
            _ => out = None,
        }
    }
    out
}

fn value_match(ctx: &mut Ctx<'_>, path: &str, raw: &RawValueMatch) -> Option<ValueMatch> {
    match raw {
        RawValueMatch::Exact(text) => {
            if HeaderValue::from_str(text).is_err() {
                ctx.error(
                    path,
                    format!("{text:?} contains characters not allowed in a header or query value"),
                );
                return None;
            }
            Some(ValueMatch::Exact(text.clone()))
        }
        RawValueMatch::Condition(cond) => match (&cond.regex, cond.present) {
            (Some(re), None) => compile(ctx, &format!("{path}.regex"), re).map(ValueMatch::Regex),
            (None, Some(true)) => Some(ValueMatch::Present),
            (None, Some(false)) => {
                ctx.error(
                    &format!("{path}.present"),
                    "`present: false` is not supported; only `present: true` can be matched",
                );
                None
            }
            (Some(_), Some(_)) => {
                ctx.error(path, "use either `regex` or `present`, not both");
                None
            }
            (None, None) => {
                ctx.error(path, "needs `regex` or `present: true`");
                None
            }
        },
    }
}

fn compile(ctx: &mut Ctx<'_>, path: &str, pattern: &str) -> Option<Regex> {
    Regex::new(pattern)
        .map_err(|e| {
            // The regex crate's syntax errors span several lines (pattern, caret, reason);
            // a diagnostic is one line, so keep the reason.
            let text = e.to_string();
            let reason = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("error: "))
                .map_or_else(|| text.lines().collect::<Vec<_>>().join(" "), str::to_owned);
            ctx.error(
                path,
                format!("invalid regular expression {pattern:?}: {reason}"),
            );
        })
        .ok()
}

/// A host condition: lower-cased exact name, or `*.suffix`. No port, no other wildcard.
pub(crate) fn parse_host(text: &str) -> Result<HostMatch, String> {
    let host = text.trim().to_ascii_lowercase();
    if host.is_empty() {
        return Err("host must not be empty".to_owned());
    }
    if host == "*" {
        return Err("\"*\" is not a host pattern; leave out `host` to match every host".to_owned());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(_) => Ok(HostMatch::Exact(host)),
            Err(_) => Err(format!("{text:?} is not a valid IPv6 address")),
        };
    }
    if host.contains(':') {
        return Err(format!(
            "{text:?} must not include a port (hosts are matched without one)"
        ));
    }
    let (suffix, name) = match host.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, host.as_str()),
    };
    if name.contains('*') {
        return Err(format!(
            "{text:?}: a wildcard is only allowed as a leading \"*.\""
        ));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("{text:?} is not a valid host name"));
    }
    Ok(if suffix {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(host)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::{expect_error, valid};

    #[test]
    fn hosts() {
        assert_eq!(
            parse_host("API.Example.com"),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host("*.example.com"),
            Ok(HostMatch::Suffix(".example.com".into()))
        );
        assert_eq!(parse_host("[::1]"), Ok(HostMatch::Exact("[::1]".into())));
        assert_eq!(
            parse_host("10.0.0.1"),
            Ok(HostMatch::Exact("10.0.0.1".into()))
        );
        assert!(parse_host("").unwrap_err().contains("empty"));
        assert!(parse_host("*").unwrap_err().contains("leave out"));
        assert!(parse_host("example.com:8080").unwrap_err().contains("port"));
        assert!(parse_host("a.*.com").unwrap_err().contains("wildcard"));
        assert!(parse_host("*example.com").unwrap_err().contains("wildcard"));
        assert!(parse_host("a..b").unwrap_err().contains("not a valid host"));
        assert!(parse_host("a b").unwrap_err().contains("not a valid host"));
        assert!(parse_host("[zz]").unwrap_err().contains("IPv6"));
    }

    /// A route `r` whose `match:` block holds `lines` (indented 6 spaces, line 8 on).
    fn with(lines: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    respond: {{}}\n    match:\n{lines}")
    }

    #[test]
    fn match_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("      host: \"\"\n", "routes[0].match.host", 8, "host must not be empty"),
            ("      host: \"*\"\n", "routes[0].match.host", 8, "leave out `host`"),
            ("      host: [a.com, \"b.com:80\"]\n", "routes[0].match.host[1]", 8, "must not include a port"),
            ("      host:\n        - a.com\n        - a.*.com\n", "routes[0].match.host[1]", 10, "a wildcard is only allowed as a leading"),
            ("      path: /a\n      path_prefix: /b\n", "routes[0].match.path_prefix", 9, "use only one of path, path_prefix and path_regex (found path, path_prefix)"),
            ("      path: a\n", "routes[0].match.path", 8, "\"a\" must start with \"/\""),
            ("      path_prefix: v1/\n", "routes[0].match.path_prefix", 8, "must start with \"/\""),
            ("      path_regex: \"(\"\n", "routes[0].match.path_regex", 8, "invalid regular expression \"(\": unclosed group"),
            ("      methods: [GET, \"BAD METHOD\"]\n", "routes[0].match.methods[1]", 8, "\"BAD METHOD\" is not a valid HTTP method"),
            ("      headers:\n        \"bad header\": x\n", "routes[0].match.headers.bad header", 9, "not a valid header name"),
            ("      headers:\n        x-a: \"a\\u0001\"\n", "routes[0].match.headers.x-a", 9, "characters not allowed"),
            ("      headers:\n        x-a: { regex: \"[\" }\n", "routes[0].match.headers.x-a.regex", 9, "invalid regular expression"),
            ("      headers:\n        x-a: { present: false }\n", "routes[0].match.headers.x-a.present", 9, "`present: false` is not supported"),
            ("      headers:\n        x-a: { regex: a, present: true }\n", "routes[0].match.headers.x-a", 9, "either `regex` or `present`"),
            ("      headers:\n        x-a: {}\n", "routes[0].match.headers.x-a", 9, "needs `regex` or `present: true`"),
            ("      headers:\n        x-a: { regexp: a }\n", "routes[0].match.headers.x-a.regexp", 9, "did you mean \"regex\"?"),
            ("      query:\n        \"\": x\n", "routes[0].match.query.", 9, "query parameter name must not be empty"),
            ("      query:\n        v: { present: maybe }\n", "routes[0].match.query.v.present", 9, "true or false"),
        ];
        for (lines, path, line, needle) in cases {
            expect_error(&with(lines), path, *line, needle);
        }
    }

    #[test]
    fn methods_are_normalised_and_values_kept_as_text() {
        let (config, _) = valid(&with(
            "      methods: [get, Post, GET]\n      query: { v: 2, flag: true }\n",
        ));
        let m = &config.routes[0].matcher;
        assert_eq!(m.methods, [Method::GET, Method::POST]);
        assert!(matches!(&m.query[0].value, ValueMatch::Exact(v) if v == "2"));
        assert!(matches!(&m.query[1].value, ValueMatch::Exact(v) if v == "true"));
    }
}
