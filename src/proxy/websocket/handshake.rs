//! The WebSocket opening handshake as Portico sees it (RFC 6455 §4, RFC 8441 §4): header
//! tokens, the route's Origin and subprotocol allowlists, the request the backend gets, and the
//! checks on its 101.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};

use super::Kind;
use crate::body::ProxyBody;
use crate::config::model::MessagePolicy;

pub const WEBSOCKET: &str = "websocket";
pub const CONNECTION_UPGRADE: &str = "Upgrade";
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// RFC 8441 §5: the `:protocol` must be `websocket` and the version 13.
pub fn check_extended_connect<B>(req: &Request<B>) -> Result<(), (StatusCode, &'static str)> {
    let protocol = req.extensions().get::<hyper::ext::Protocol>();
    if !protocol.is_some_and(|p| p.as_str().eq_ignore_ascii_case(WEBSOCKET)) {
        return Err((
            StatusCode::NOT_IMPLEMENTED,
            "only the websocket protocol is supported",
        ));
    }
    match req.headers().get(header::SEC_WEBSOCKET_VERSION) {
        Some(v) if v.as_bytes() == b"13" => Ok(()),
        _ => Err((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Version 13 is required",
        )),
    }
}

/// What the client offered, after the route's policy.
#[derive(Debug, Default)]
pub struct Offer {
    /// The subprotocols forwarded (allowlist applied); `None` when the route does not filter.
    pub protocols: Option<Vec<String>>,
    /// Message-policy mode: frames are read, so no extension may be negotiated.
    pub framed: bool,
}

/// Applies the Origin and subprotocol allowlists; `Err` is the reason for a 403.
pub fn check_policy(
    headers: &HeaderMap,
    policy: Option<&MessagePolicy>,
) -> Result<Offer, &'static str> {
    let Some(policy) = policy else {
        return Ok(Offer::default());
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !policy.origin_allowed(origin) {
        return Err("origin not allowed");
    }
    let protocols = if policy.allowed_subprotocols.is_empty() {
        None
    } else {
        let chosen: Vec<String> = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|p| policy.allowed_subprotocols.iter().any(|a| a == p))
            .map(str::to_owned)
            .collect();
        if chosen.is_empty() {
            return Err("no allowed subprotocol offered");
        }
        Some(chosen)
    };
    Ok(Offer {
        protocols,
        framed: true,
    })
}

/// Turns the rewritten request into the backend's HTTP/1.1 upgrade request.
pub fn to_backend(
    mut req: Request<ProxyBody>,
    kind: Kind,
    key: Option<&str>,
    offer: &Offer,
) -> Request<ProxyBody> {
    let headers = req.headers_mut();
    // Kept for this hop only: the rewrite removed the client's hop-by-hop fields.
    headers.insert(header::UPGRADE, HeaderValue::from_static(WEBSOCKET));
    headers.insert(
        header::CONNECTION,
        HeaderValue::from_static(CONNECTION_UPGRADE),
    );
    if let Some(list) = &offer.protocols {
        headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
        if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    if offer.framed {
        // Compressed frames could not be measured or inspected.
        headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    }
    if kind == Kind::ExtendedConnect {
        if let Some(v) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert(header::SEC_WEBSOCKET_KEY, v);
        }
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        *req.method_mut() = Method::GET;
        *req.body_mut() = ProxyBody::empty();
    }
    req
}

/// Checks the backend's 101 before anything is switched; `Err` is the reason for a 502.
pub fn check_switch(
    headers: &HeaderMap,
    key: Option<&str>,
    offer: &Offer,
) -> Result<(), &'static str> {
    if !has_token(headers, &header::UPGRADE, WEBSOCKET) {
        return Err("backend switched to a protocol other than websocket");
    }
    if let Some(key) = key {
        let accept = headers
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .map(HeaderValue::as_bytes);
        if accept != Some(accept_for(key).as_bytes()) {
            return Err("backend sent a wrong Sec-WebSocket-Accept");
        }
    }
    if let Some(list) = &offer.protocols {
        let chosen = headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok());
        if chosen.is_some_and(|c| !list.iter().any(|p| p == c.trim())) {
            return Err("backend chose a subprotocol the route does not allow");
        }
    }
    if offer.framed && headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return Err("backend negotiated an extension the message policy cannot read");
    }
    Ok(())
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 16];
    // The key only guards against caches and confused servers, not attackers (RFC 6455 §10.3):
    // a clock-derived fallback is acceptable if the system RNG ever fails.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    base64(&bytes)
}

/// The `Sec-WebSocket-Accept` that answers `key`.
pub fn accept_for(key: &str) -> String {
    let mut input = String::with_capacity(key.len() + ACCEPT_GUID.len());
    input.push_str(key);
    input.push_str(ACCEPT_GUID);
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        input.as_bytes(),
    );
    base64(digest.as_ref())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(generate_key().len(), 24);
    }

    #[test]
    fn tokens_are_found_in_lists() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(has_token(&h, &header::CONNECTION, "upgrade"));
        assert!(!has_token(&h, &header::CONNECTION, "close"));
    }

    #[test]
    fn subprotocols_are_filtered() {
        let policy = MessagePolicy {
            max_message_size: 10,
            messages_per_second: None,
            allowed_origins: vec!["https://a.test".into()],
            allowed_subprotocols: vec!["chat".into()],
            ping_interval: None,
        };
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_static("https://A.test"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("x, chat"),
        );
        let offer = check_policy(&h, Some(&policy)).unwrap_or_default();
        assert_eq!(offer.protocols, Some(vec!["chat".to_owned()]));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("x"),
        );
        assert_eq!(
            check_policy(&h, Some(&policy)).err(),
            Some("no allowed subprotocol offered")
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.test"),
        );
        assert_eq!(
            check_policy(&h, Some(&policy)).err(),
            Some("origin not allowed")
        );
        h.remove(header::ORIGIN);
        assert_eq!(
            check_policy(&h, Some(&policy)).err(),
            Some("origin not allowed")
        );
    }
}
