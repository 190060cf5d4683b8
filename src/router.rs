//! Route selection: picks the first route, in config order, whose listener, host, path,
//! method, header and query conditions all hold. Pure; built once per config snapshot.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv6Addr;

use http::{HeaderMap, HeaderName, Method};

use crate::config::model::{HostMatch, PathMatch, Route, RouteMatch, ValueMatch};

/// What the router looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Name of the listener the request arrived on.
    pub listener: &'a str,
    /// Raw `Host` or `:authority`: any case, may carry a port or be a bracketed IPv6 literal.
    pub host: Option<&'a str>,
    /// Already normalised (see `crate::normalize`).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Why a route did not match, as reported by [`Router::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch<'r> {
    Listener,
    Host,
    Path,
    Method,
    Header(&'r HeaderName),
    Query(&'r str),
}

impl fmt::Display for Mismatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Listener => f.write_str("listener"),
            Mismatch::Host => f.write_str("host"),
            Mismatch::Path => f.write_str("path"),
            Mismatch::Method => f.write_str("method"),
            Mismatch::Header(name) => write!(f, "header {name}"),
            Mismatch::Query(name) => write!(f, "query {name}"),
        }
    }
}

/// The route table indexed by host. Route indices in every bucket are sorted, so the first
/// match found in a bucket is that bucket's earliest route.
#[derive(Debug, Clone, Default)]
pub struct Router {
    /// Conditions other than the host, per route, in config order.
    routes: Vec<Entry>,
    /// Normalised exact host -> routes naming it.
    exact: HashMap<String, Vec<usize>>,
    /// Normalised suffix (".example.com") -> routes naming it.
    suffix: HashMap<String, Vec<usize>>,
    /// Routes without a host condition.
    hostless: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Entry {
    listeners: Vec<String>,
    matcher: RouteMatch,
}

impl Router {
    pub fn new(routes: &[Route]) -> Router {
        let mut router = Router::default();
        for (index, route) in routes.iter().enumerate() {
            router.routes.push(Entry {
                listeners: route.listeners.clone(),
                matcher: route.matcher.clone(),
            });
            if route.matcher.hosts.is_empty() {
                router.hostless.push(index);
            }
            for host in &route.matcher.hosts {
                let (map, key) = match host {
                    HostMatch::Exact(name) => (&mut router.exact, config_host(name)),
                    HostMatch::Suffix(suffix) => (&mut router.suffix, config_suffix(suffix)),
                };
                let bucket = map.entry(key).or_default();
                // Indices arrive in increasing order; a route naming a host twice adds it once.
                if bucket.last() != Some(&index) {
                    bucket.push(index);
                }
            }
        }
        router
    }

    /// Index of the first route (config order) matching the request, if any.
    pub fn route(&self, facts: &RequestFacts<'_>) -> Option<usize> {
        let mut best = self.first_in(&self.hostless, facts, usize::MAX);
        let Some(host) = facts.host.and_then(host_key) else {
            return best;
        };
        if let Some(bucket) = self.exact.get(host.as_ref()) {
            best = self
                .first_in(bucket, facts, best.unwrap_or(usize::MAX))
                .or(best);
        }
        if !self.suffix.is_empty() {
            // Every proper ".label..." tail of the host is a suffix it may match; the host
            // itself never is, so a bare domain does not match its own wildcard.
            for (at, _) in host.match_indices('.').filter(|&(at, _)| at > 0) {
                if let Some(bucket) = self.suffix.get(&host[at..]) {
                    best = self
                        .first_in(bucket, facts, best.unwrap_or(usize::MAX))
                        .or(best);
                }
            }
        }
        best
    }

    /// Per route, in order until the one `route` picks (or all when none matches): `Ok`, or
    /// the first condition that failed. `routes` must be the slice this router was built from.
    pub fn explain<'r>(
        &self,
        routes: &'r [Route],
        facts: &RequestFacts<'_>,
    ) -> Vec<(usize, Result<(), Mismatch<'r>>)> {
        let end = self
            .route(facts)
            .map_or(routes.len(), |winner| winner + 1)
            .min(routes.len());
        routes[..end]
            .iter()
            .enumerate()
            .map(|(index, route)| (index, check_route(route, facts)))
            .collect()
    }

    /// The earliest route in `bucket` before `limit` whose non-host conditions hold; the
    /// bucket already settled the host.
    fn first_in(&self, bucket: &[usize], facts: &RequestFacts<'_>, limit: usize) -> Option<usize> {
        bucket
            .iter()
            .copied()
            .take_while(|&index| index < limit)
            .find(|&index| {
                self.routes.get(index).is_some_and(|entry| {
                    listener_ok(&entry.listeners, facts.listener)
                        && rest_mismatch(&entry.matcher, facts).is_none()
                })
            })
    }
}

/// The straightforward evaluation of one route, also the reference the index is tested
/// against.
pub fn check_route<'r>(route: &'r Route, facts: &RequestFacts<'_>) -> Result<(), Mismatch<'r>> {
    if !listener_ok(&route.listeners, facts.listener) {
        return Err(Mismatch::Listener);
    }
    let hosts = &route.matcher.hosts;
    if !hosts.is_empty() {
        let host = facts.host.and_then(host_key).ok_or(Mismatch::Host)?;
        let host_ok = hosts.iter().any(|want| match want {
            HostMatch::Exact(name) => config_host(name) == host.as_ref(),
            HostMatch::Suffix(suffix) => {
                let suffix = config_suffix(suffix);
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        });
        if !host_ok {
            return Err(Mismatch::Host);
        }
    }
    rest_mismatch(&route.matcher, facts).map_or(Ok(()), Err)
}

fn listener_ok(listeners: &[String], listener: &str) -> bool {
    listeners.is_empty() || listeners.iter().any(|l| l == listener)
}

/// The first failing condition among path, method, headers and query.
fn rest_mismatch<'r>(m: &'r RouteMatch, facts: &RequestFacts<'_>) -> Option<Mismatch<'r>> {
    let path_ok = match &m.path {
        None => true,
        Some(PathMatch::Exact(p)) => facts.path == p,
        Some(PathMatch::Prefix(p)) => facts.path.starts_with(p.as_str()),
        Some(PathMatch::Regex(re)) => re.is_match(facts.path),
    };
    if !path_ok {
        return Some(Mismatch::Path);
    }
    if !m.methods.is_empty() && !m.methods.contains(facts.method) {
        return Some(Mismatch::Method);
    }
    for want in &m.headers {
        let mut values = facts.headers.get_all(&want.name).iter();
        let ok = match &want.value {
            ValueMatch::Present => values.next().is_some(),
            ValueMatch::Exact(s) => values.any(|v| v.as_bytes() == s.as_bytes()),
            ValueMatch::Regex(re) => {
                values.any(|v| std::str::from_utf8(v.as_bytes()).is_ok_and(|v| re.is_match(v)))
            }
        };
        if !ok {
            return Some(Mismatch::Header(&want.name));
        }
    }
    for want in &m.query {
        let query = facts.query.unwrap_or("");
        let mut values = query_pairs(query)
            .filter(|(name, _)| decode_query(name) == want.name.as_str())
            .map(|(_, value)| value);
        let ok = match &want.value {
            ValueMatch::Present => values.next().is_some(),
            ValueMatch::Exact(s) => values.any(|v| decode_query(v) == s.as_str()),
            ValueMatch::Regex(re) => values.any(|v| re.is_match(&decode_query(v))),
        };
        if !ok {
            return Some(Mismatch::Query(&want.name));
        }
    }
    None
}

/// Raw `name=value` pairs; a pair without '=' has an empty value, empty pairs are skipped.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Form-style decoding: '+' is a space, `%XX` a byte; a malformed escape stays literal and
/// invalid UTF-8 becomes U+FFFD. Borrows when there is nothing to decode.
fn decode_query(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|&b| crate::normalize::hex_value(b));
                match hex(i + 1).zip(hex(i + 2)) {
                    Some((hi, lo)) => {
                        out.push((hi << 4) | lo);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The host part of a `Host` / `:authority` value as the router compares it: lower-cased,
/// port and one trailing dot removed. IPv6 literals keep their brackets and are written in
/// canonical form (`[0:0::1]:8443` -> `[::1]`), so they can never be confused with a
/// `host:port` pair. `None` for empty or malformed values.
pub fn host_without_port(host: &str) -> Option<String> {
    host_key(host).map(Cow::into_owned)
}

/// As [`host_without_port`], borrowing unless the host has upper-case letters or is IPv6.
pub fn host_key(raw: &str) -> Option<Cow<'_, str>> {
    if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        if !valid_port_suffix(after) {
            return None;
        }
        let addr: Ipv6Addr = literal.parse().ok()?;
        return Some(Cow::Owned(format!("[{addr}]")));
    }
    let name = match raw.split_once(':') {
        Some((name, port)) if valid_port_suffix_digits(port) => name,
        Some(_) => return None,
        None => raw,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels_ok = name
        .split('.')
        .all(|label| !label.is_empty() && label.bytes().all(is_host_byte));
    if name.is_empty() || !labels_ok {
        return None;
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(name.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(name))
    }
}

/// What may follow a bracketed literal: nothing or ":port".
fn valid_port_suffix(after: &str) -> bool {
    after.is_empty()
        || after
            .strip_prefix(':')
            .is_some_and(valid_port_suffix_digits)
}

/// An empty port is allowed by RFC 3986 (`host:`), a non-empty one must fit in 16 bits.
fn valid_port_suffix_digits(port: &str) -> bool {
    port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
}

fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A configured exact host in the form `host_key` produces: validation should already have
/// lower-cased it, but a bare IPv6 address or a trailing dot must still compare equal.
fn config_host(name: &str) -> String {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if let Ok(addr) = trimmed.parse::<Ipv6Addr>() {
        return format!("[{addr}]");
    }
    host_key(trimmed).map_or_else(|| trimmed.to_ascii_lowercase(), Cow::into_owned)
}

/// A configured suffix as ".example.com", lower-cased, without a trailing dot.
fn config_suffix(suffix: &str) -> String {
    let s = suffix.strip_prefix('*').unwrap_or(suffix);
    let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    if s.starts_with('.') {
        s
    } else {
        format!(".{s}")
    }
}

#[cfg(test)]
mod tests;
