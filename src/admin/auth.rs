//! The admin bearer token, compared in constant time (the time taken does not depend on how
//! many leading bytes of a guess are right).

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::config::model::Secret;

/// True when no token is configured, or the request carries `Authorization: Bearer <token>`.
pub fn authorized(token: Option<&Secret>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    match presented {
        Some(p) => constant_time_eq(p.as_bytes(), token.expose().as_bytes()),
        None => false,
    }
}

/// Compares every byte of the longer input whatever the differences; only the lengths leak.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    // Keep the optimiser from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn compares_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_header() {
        let token = Secret("s3cret".to_owned());
        let mut h = HeaderMap::new();
        assert!(!authorized(Some(&token), &h));
        assert!(authorized(None, &h));
        h.insert(AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(Some(&token), &h));
        h.insert(AUTHORIZATION, "bearer  s3cret ".parse().unwrap());
        assert!(authorized(Some(&token), &h));
        h.insert(AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!authorized(Some(&token), &h));
        h.insert(AUTHORIZATION, "Bearer s3cre".parse().unwrap());
        assert!(!authorized(Some(&token), &h));
    }
}
