//! Header rules for forwarding (RFC 9110 §7.6): hop-by-hop fields stripped both ways,
//! X-Forwarded-*/Forwarded rebuilt unless the peer is a trusted proxy, and `Via` added.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

pub use crate::config::model::Via;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Fields that only make sense on one connection and never cross the proxy. `Trailer` is
/// not among them (RFC 9110 6.6.2): HTTP/1.1 senders emit only the trailer fields it names.
fn fixed_hop_by_hop() -> [&'static HeaderName; 8] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &HTTP2_SETTINGS,
        &header::PROXY_AUTHENTICATE,
    ]
}

/// Fields a client must not be able to drop by naming them in `Connection`.
fn is_protected(name: &HeaderName) -> bool {
    name == header::HOST || name == header::CONTENT_LENGTH || name == header::CONTENT_TYPE
}

/// Removes hop-by-hop fields. `keep_te_trailers` keeps `TE: trailers` (the only TE value
/// HTTP/2 allows, and what gRPC needs): the proxy relays trailers, so it may say so.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    if let Some(named) = connection_named(headers) {
        for name in named {
            if !is_protected(&name) {
                headers.remove(&name);
            }
        }
    }
    let te_trailers = keep_te_trailers
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    // Most messages carry none of them: one pass over the names present decides whether
    // the eight hashed removals are needed at all.
    let fixed = fixed_hop_by_hop();
    if headers.keys().any(|k| fixed.contains(&k)) {
        for name in fixed {
            headers.remove(name);
        }
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// The field names listed in every `Connection` header, if any.
fn connection_named(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut values = headers.get_all(header::CONNECTION).iter().peekable();
    values.peek()?;
    let mut named = Vec::new();
    for value in values {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',') {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes()) {
                named.push(name);
            }
        }
    }
    Some(named)
}

/// The client's address as the forwarding headers carry it, rendered once per connection
/// instead of once per request.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The X-Forwarded-For element: `192.0.2.7` or `2001:db8::1`.
    xff: HeaderValue,
    /// The RFC 7239 node: `192.0.2.7` or `"[2001:db8::1]"` (quoted, bracketed).
    node: String,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Peer {
        let text = ip.to_string();
        let node = match ip {
            IpAddr::V4(_) => text.clone(),
            IpAddr::V6(_) => format!("\"[{text}]\""),
        };
        // An address renders as visible ASCII, so the value is always valid.
        let xff = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer { xff, node }
    }

    /// The address without quoting, as X-Forwarded-For lists it.
    fn node_plain(&self) -> &str {
        self.xff.to_str().unwrap_or("unknown")
    }
}

/// What the forwarding headers describe about the client side of the hop.
pub struct Hop<'a> {
    pub peer: &'a Peer,
    /// The peer is in `settings.trusted_proxies`: extend its X-Forwarded-* instead of replacing.
    pub trusted: bool,
    /// "http" or "https": how the client reached this proxy.
    pub proto: &'static str,
    /// The authority the client asked for.
    pub host: Option<&'a HeaderValue>,
}

/// Sets X-Forwarded-For/-Proto/-Host and `Forwarded` for the backend.
pub fn set_forwarding(headers: &mut HeaderMap, hop: &Hop<'_>) {
    if !hop.trusted {
        // Frameworks also read X-Forwarded-Port/-Prefix/-Ssl and X-Real-IP: from an untrusted
        // peer none of them may reach the backend.
        let forged: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-forwarded-") || n.as_str() == "x-real-ip")
            .cloned()
            .collect();
        for name in forged {
            headers.remove(&name);
        }
    }
    let prior = hop
        .trusted
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    match prior {
        Some(prior) => set(
            headers,
            &X_FORWARDED_FOR,
            format!("{prior}, {}", hop.peer.node_plain()),
        ),
        None => {
            headers.insert(X_FORWARDED_FOR.clone(), hop.peer.xff.clone());
        }
    }
    if !(hop.trusted && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(hop.proto),
        );
    }
    if !(hop.trusted && headers.contains_key(&X_FORWARDED_HOST)) {
        match hop.host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST.clone(), h.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    let prior = hop
        .trusted
        .then(|| joined(headers, &header::FORWARDED))
        .flatten();
    let host = hop.host.and_then(|h| h.to_str().ok());
    // RFC 7239 §4: a value with characters outside `token` must be a quoted-string.
    let host_is_token = host.is_none_or(|h| {
        h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    // Sized exactly in the common case, so the header value takes the buffer as it is.
    let len = prior.as_ref().map_or(0, |p| p.len() + 2)
        + "for=;proto=".len()
        + hop.peer.node.len()
        + hop.proto.len()
        + host.map_or(0, |h| {
            ";host=".len() + h.len() + 2 * usize::from(!host_is_token)
        });
    let mut element = String::with_capacity(len);
    if let Some(prior) = prior {
        element.push_str(&prior);
        element.push_str(", ");
    }
    element.push_str("for=");
    element.push_str(&hop.peer.node);
    element.push_str(";proto=");
    element.push_str(hop.proto);
    if let Some(h) = host {
        if host_is_token {
            element.push_str(";host=");
            element.push_str(h);
        } else {
            element.push_str(";host=\"");
            element.push_str(&h.replace(['"', '\\'], ""));
            element.push('"');
        }
    }
    set(headers, &header::FORWARDED, element);
}

/// Appends this proxy to `Via` ("1.1 portico").
pub fn add_via(headers: &mut HeaderMap, version: Version, via: &Via) {
    match joined(headers, &header::VIA) {
        Some(prior) => set(
            headers,
            &header::VIA,
            format!("{prior}, {}", via.text(version)),
        ),
        None => {
            headers.insert(header::VIA, via.element(version));
        }
    }
}

/// All values of a field joined by ", " (None when absent or not visible ASCII).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(acc) => {
                acc.push_str(", ");
                acc.push_str(s);
            }
            None => out = Some(s.to_owned()),
        }
    }
    out
}

/// HTTP/2 lets a client split `Cookie` into several fields; an HTTP/1.1 hop must get them
/// as one, joined with "; " (RFC 9113 8.2.3), or many servers read only the first.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: String) {
    // Taking the string's buffer over saves the copy `HeaderValue::from_str` makes; as a
    // boxed slice (no spare capacity, a no-op for exactly sized strings) it needs no
    // separate shared-buffer record either.
    let bytes = bytes::Bytes::from(value.into_bytes().into_boxed_slice());
    match HeaderValue::from_maybe_shared(bytes) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests;
