//! Sticky sessions: a cookie naming a backend, sealed with HMAC-SHA256 so that a client
//! cannot choose (or enumerate) backends by forging it. Pure: no IO, the clock is passed in.
//!
//! Value: `<backend id, 16 hex>.<expiry unix seconds, hex; 0 = none>.<HMAC, 64 hex>`, the MAC
//! covering the upstream's name too (a cookie of one upstream is worthless for another).

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::hmac;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::model::Sticky;

/// The stable identity of a backend inside an upstream, as the cookie names it.
pub fn backend_id(upstream: &str, addr: &SocketAddr) -> u64 {
    xxh3_64(format!("{upstream}\0{addr}").as_bytes())
}

/// Seals and opens the sticky cookie of one upstream.
pub struct Sealer {
    key: hmac::Key,
    cookie: String,
    ttl: Option<Duration>,
    upstream: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("cookie", &self.cookie)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The key used when the config gives no secret: random, drawn once per process, so every
/// reload keeps it while a restart re-pins clients.
fn process_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut key = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            // Not expected; hash randomness still keeps the key unguessable in practice.
            for (i, chunk) in key.chunks_mut(8).enumerate() {
                let word = RandomState::new().hash_one(i).to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
        }
        key
    })
}

impl Sealer {
    pub fn new(upstream: &str, sticky: &Sticky) -> Sealer {
        let secret: &[u8] = match &sticky.secret {
            Some(s) => s,
            None => process_secret(),
        };
        Sealer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            cookie: sticky.cookie.clone(),
            ttl: sticky.ttl,
            upstream: upstream.to_owned(),
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    fn message(&self, body: &str) -> Vec<u8> {
        let mut m = Vec::with_capacity(self.upstream.len() + 1 + body.len());
        m.extend_from_slice(self.upstream.as_bytes());
        m.push(0);
        m.extend_from_slice(body.as_bytes());
        m
    }

    /// The cookie value pinning `backend`, issued at `now` (unix seconds).
    pub fn seal(&self, backend: u64, now: u64) -> String {
        let expires = self
            .ttl
            .map_or(0, |t| now.saturating_add(t.as_secs().max(1)));
        let body = format!("{backend:016x}.{expires:x}");
        let tag = hmac::sign(&self.key, &self.message(&body));
        let mut value = body;
        value.push('.');
        for b in tag.as_ref() {
            let _ = write!(value, "{b:02x}");
        }
        value
    }

    /// The backend a cookie value pins, when its seal is genuine and it has not expired.
    pub fn open(&self, value: &str, now: u64) -> Option<u64> {
        let (body, tag) = value.rsplit_once('.')?;
        let (id, expires) = body.split_once('.')?;
        if id.len() != 16 || tag.len() != 64 {
            return None;
        }
        let tag = unhex(tag)?;
        hmac::verify(&self.key, &self.message(body), &tag).ok()?;
        let expires = u64::from_str_radix(expires, 16).ok()?;
        if expires != 0 && expires <= now {
            return None;
        }
        u64::from_str_radix(id, 16).ok()
    }

    /// A `Set-Cookie` value pinning `backend`; `secure` adds `Secure` (TLS listeners).
    pub fn set_cookie(&self, backend: u64, now: u64, secure: bool) -> String {
        let mut line = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            self.cookie,
            self.seal(backend, now)
        );
        if let Some(ttl) = self.ttl {
            let _ = write!(line, "; Max-Age={}", ttl.as_secs().max(1));
        }
        if secure {
            line.push_str("; Secure");
        }
        line
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    bytes
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sealer(secret: Option<&[u8]>, ttl: Option<u64>) -> Sealer {
        let sticky = Sticky {
            cookie: "srv".into(),
            ttl: ttl.map(Duration::from_secs),
            secret: secret.map(Arc::from),
        };
        Sealer::new("api", &sticky)
    }

    #[test]
    fn sealed_value_round_trips() {
        let s = sealer(Some(b"0123456789abcdef0123"), None);
        let v = s.seal(42, 1000);
        assert_eq!(s.open(&v, 5000), Some(42));
    }

    #[test]
    fn tampering_forgery_and_other_keys_are_refused() {
        let s = sealer(Some(b"0123456789abcdef0123"), None);
        let v = s.seal(42, 1000);
        let forged = v.replacen(&format!("{:016x}", 42), &format!("{:016x}", 43), 1);
        assert_ne!(forged, v);
        assert_eq!(s.open(&forged, 1000), None);
        let mut flipped = v.clone().into_bytes();
        if let Some(last) = flipped.last_mut() {
            *last = if *last == b'0' { b'1' } else { b'0' };
        }
        assert_eq!(
            s.open(&String::from_utf8(flipped).unwrap_or_default(), 1000),
            None
        );
        for junk in [
            "",
            "x",
            "000000000000002a.0.",
            "000000000000002a.0.zz",
            &v[..v.len() - 2],
        ] {
            assert_eq!(s.open(junk, 1000), None, "{junk:?}");
        }
        let other = sealer(Some(b"another secret of 16+ bytes"), None);
        assert_eq!(other.open(&v, 1000), None);
        let sticky = Sticky {
            cookie: "srv".into(),
            ttl: None,
            secret: Some(Arc::from(&b"0123456789abcdef0123"[..])),
        };
        assert_eq!(
            Sealer::new("web", &sticky).open(&v, 1000),
            None,
            "other upstream"
        );
    }

    #[test]
    fn expiry_is_sealed_and_enforced() {
        let s = sealer(None, Some(60));
        let v = s.seal(7, 1000);
        assert_eq!(s.open(&v, 1059), Some(7));
        assert_eq!(s.open(&v, 1060), None);
        let line = s.set_cookie(7, 1000, true);
        assert!(line.starts_with("srv="), "{line}");
        for attr in [
            "; Path=/",
            "; HttpOnly",
            "; SameSite=Lax",
            "; Max-Age=60",
            "; Secure",
        ] {
            assert!(line.contains(attr), "{line} lacks {attr}");
        }
        assert!(!sealer(None, None)
            .set_cookie(7, 0, false)
            .contains("Secure"));
    }

    #[test]
    fn process_secret_is_shared_by_sealers() {
        let v = sealer(None, None).seal(9, 0);
        assert_eq!(sealer(None, None).open(&v, 0), Some(9));
    }
}
