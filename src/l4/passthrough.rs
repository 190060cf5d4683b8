//! `mode: tls_passthrough`: choosing the upstream from the ClientHello's SNI (exact names
//! first, then the longest `*.suffix`, then the listener's default) without decrypting.

use crate::config::model::SniRoutes;

use super::client_hello::{self, HelloError, Scan};

/// Looks at the bytes buffered so far: `Some(sni)` once the ClientHello is complete, `None`
/// while more are needed. Bytes beyond `MAX_BUFFERED` without a complete hello are refused.
pub fn sni_so_far(buf: &[u8]) -> Result<Option<Option<String>>, HelloError> {
    match client_hello::scan(buf)? {
        Scan::Complete(sni) => Ok(Some(sni)),
        Scan::Incomplete if buf.len() >= client_hello::MAX_BUFFERED => Err(HelloError::TooLarge),
        Scan::Incomplete => Ok(None),
    }
}

/// The upstream index for `sni`, or the default; `None`: refuse the connection.
pub fn pick(routes: &SniRoutes, sni: Option<&str>) -> Option<usize> {
    if let Some(name) = sni {
        if let Some(&upstream) = routes.exact.get(name) {
            return Some(upstream);
        }
        // Suffixes are sorted longest first, so the first hit is the most specific.
        let by_suffix = routes
            .suffixes
            .iter()
            .find(|(suffix, _)| name.len() > suffix.len() && name.ends_with(suffix.as_str()));
        if let Some((_, upstream)) = by_suffix {
            return Some(*upstream);
        }
    }
    routes.default
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(default: Option<usize>) -> SniRoutes {
        SniRoutes {
            exact: [("a.test".to_owned(), 0), ("x.deep.test".to_owned(), 3)]
                .into_iter()
                .collect(),
            suffixes: vec![(".deep.test".to_owned(), 1), (".test".to_owned(), 2)],
            default,
        }
    }

    #[test]
    fn exact_beats_wildcard_and_the_longest_wildcard_wins() {
        let r = routes(Some(9));
        assert_eq!(pick(&r, Some("a.test")), Some(0));
        assert_eq!(pick(&r, Some("x.deep.test")), Some(3));
        assert_eq!(pick(&r, Some("y.deep.test")), Some(1));
        assert_eq!(pick(&r, Some("b.c.deep.test")), Some(1));
        assert_eq!(pick(&r, Some("b.test")), Some(2));
        assert_eq!(
            pick(&r, Some("deep.test")),
            Some(2),
            "*.test covers deep.test"
        );
        assert_eq!(
            pick(&r, Some("test")),
            Some(9),
            "a wildcard never matches its own base"
        );
        assert_eq!(pick(&r, Some("other.example")), Some(9));
        assert_eq!(pick(&r, None), Some(9));
    }

    #[test]
    fn without_a_default_unknown_and_missing_sni_are_refused() {
        let r = routes(None);
        assert_eq!(pick(&r, Some("other.example")), None);
        assert_eq!(pick(&r, None), None);
    }

    #[test]
    fn an_endless_incomplete_hello_is_bounded() {
        // A large hello sent as one-byte records: each byte costs six, so the buffer bound is
        // reached long before the message completes.
        let message = [1u8, 0, 0x3f, 0xfb].into_iter().chain(std::iter::repeat(0));
        let mut buf: Vec<u8> = message
            .take(client_hello::MAX_BUFFERED / 6 + 1)
            .flat_map(|b| [22, 3, 1, 0, 1, b])
            .collect();
        assert_eq!(sni_so_far(&buf[..client_hello::MAX_BUFFERED - 6]), Ok(None));
        buf.truncate(client_hello::MAX_BUFFERED);
        assert_eq!(sni_so_far(&buf), Err(HelloError::TooLarge));
    }
}
