//! Request-head checks for `H1Guard`: finds the end of a head while refusing bare LF, NUL and
//! bare CR, then parses it and decides the body framing (or why the request is refused).

use super::{Rejection, State, Tunnel};
use crate::conn::chunked::Chunked;

/// Heads with at most this many fields are parsed without a heap allocation.
const STACK_HEADERS: usize = 32;

/// Incremental scan of the buffered head; offsets are relative to the head's start.
#[derive(Debug, Default)]
pub(super) struct HeadScan {
    pos: usize,
    line_start: usize,
    pub(super) lines: usize,
}

pub(super) enum Scan {
    More,
    LeadingEmptyLine,
    Complete(usize),
    Bad(Rejection),
}

/// Finds the end of the head, checking every line terminator on the way.
pub(super) fn scan_head(head: &[u8], scan: &mut HeadScan) -> Scan {
    while let Some(at) = head[scan.pos..]
        .iter()
        .position(|&b| b == b'\r' || b == b'\n' || b == 0)
    {
        let at = scan.pos + at;
        match (head[at], head.get(at + 1)) {
            (b'\r', None) => {
                scan.pos = at;
                return Scan::More;
            }
            (b'\r', Some(b'\n')) => {
                let empty = at == scan.line_start;
                scan.pos = at + 2;
                scan.line_start = scan.pos;
                match (empty, scan.lines) {
                    (true, 0) => return Scan::LeadingEmptyLine,
                    (true, _) => return Scan::Complete(scan.pos),
                    (false, _) => scan.lines += 1,
                }
            }
            (b'\n', _) => return Scan::Bad(Rejection::BareLf),
            _ => return Scan::Bad(Rejection::NulOrCr),
        }
    }
    scan.pos = head.len();
    Scan::More
}

/// Parses a complete head and decides how its body is framed (or why it is refused), and
/// whether the request asks for a tunnel once its body is through.
pub(super) fn framing(head: &[u8], lines: usize) -> Result<(State, Option<Tunnel>), Rejection> {
    let count = lines.saturating_sub(1);
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let fields = if count <= STACK_HEADERS {
        &mut stack[..count]
    } else {
        heap = vec![httparse::EMPTY_HEADER; count];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(fields);
    match req.parse(head) {
        Ok(httparse::Status::Complete(n)) if n == head.len() => {}
        _ => return Err(Rejection::Malformed),
    }
    let http11 = req.version == Some(1);
    let (mut length, mut bad_length, mut has_length) = (None, false, false);
    let (mut has_te, mut bad_te, mut chunked_last) = (false, !http11, false);
    let mut upgrade = false;
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            has_length = true;
            match (content_length(field.value), length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(prev)) if n == prev => {}
                _ => bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_te = true;
            for coding in field.value.split(|&b| b == b',').map(trim_ows) {
                // Nothing may follow chunked (RFC 9112 6.1); empty elements are refused, not
                // guessed at. Other codings (gzip, ...) are refused too: the proxy re-frames
                // the body on the next hop, so it could not pass them on, only drop them.
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                bad_te |= !chunked || chunked_last;
                chunked_last = chunked;
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    if has_length && has_te {
        return Err(Rejection::ContentLengthWithTransferEncoding);
    }
    if bad_length {
        return Err(Rejection::BadContentLength);
    }
    if has_te && (bad_te || !chunked_last) {
        return Err(Rejection::BadTransferEncoding);
    }
    // A 101 (or a 2xx to CONNECT) turns the stream into a tunnel: the guard holds further
    // reads until it has seen which answer the request got.
    let tunnel = if req.method == Some("CONNECT") {
        Some(Tunnel::Connect)
    } else if upgrade && http11 {
        Some(Tunnel::Upgrade)
    } else {
        None
    };
    let body = match length {
        _ if has_te => State::Chunked(Chunked::new()),
        Some(n) if n > 0 => State::Fixed(n),
        _ => State::Head,
    };
    Ok((body, tunnel))
}

/// A Content-Length value: digits only (no lists, no sign), within u64.
fn content_length(value: &[u8]) -> Option<u64> {
    let digits = trim_ows(value);
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(head: &str) -> Result<State, Rejection> {
        decide_tunnel(head).map(|(state, _)| state)
    }

    fn decide_tunnel(head: &str) -> Result<(State, Option<Tunnel>), Rejection> {
        let mut scan = HeadScan::default();
        match scan_head(head.as_bytes(), &mut scan) {
            Scan::Complete(len) => {
                assert_eq!(len, head.len());
                framing(head.as_bytes(), scan.lines)
            }
            _ => panic!("incomplete head {head:?}"),
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 007\t"), Some(7));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b" ",
            b"1 2",
            b"1,1",
            b"-1",
            b"+1",
            b"0x10",
            b"18446744073709551616",
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn framing_follows_the_headers() {
        let fixed = decide("POST / HTTP/1.1\r\nContent-Length: 12\r\ncontent-length: 12\r\n\r\n");
        assert!(matches!(fixed, Ok(State::Fixed(12))));
        let te = decide("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert!(matches!(te, Ok(State::Chunked(_))));
        let gzip = decide(
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: Chunked\r\n\r\n",
        );
        assert!(matches!(gzip, Err(Rejection::BadTransferEncoding)));
        assert!(matches!(decide("GET / HTTP/1.0\r\n\r\n"), Ok(State::Head)));
        let zero = decide("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(zero, Ok(State::Head)));
        let ws = decide_tunnel("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert!(matches!(ws, Ok((State::Head, Some(Tunnel::Upgrade)))));
        let connect = decide_tunnel("CONNECT x:1 HTTP/1.1\r\nHost: x:1\r\n\r\n");
        assert!(matches!(connect, Ok((State::Head, Some(Tunnel::Connect)))));
        let old_ws = decide_tunnel("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n");
        assert!(matches!(old_ws, Ok((State::Head, None))));
        let many: String = (0..STACK_HEADERS + 5)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let long = decide(&format!(
            "POST / HTTP/1.1\r\n{many}Content-Length: 3\r\n\r\n"
        ));
        assert!(matches!(long, Ok(State::Fixed(3))));
    }

    #[test]
    fn framing_refuses_ambiguity() {
        let cases = [
            (
                "Transfer-Encoding: chunked,\r\n",
                Rejection::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: ,chunked\r\n",
                Rejection::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked, chunked\r\n",
                Rejection::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked;q=1\r\n",
                Rejection::BadTransferEncoding,
            ),
            ("Transfer-Encoding: \r\n", Rejection::BadTransferEncoding),
            (
                "Content-Length: 1\r\nContent-Length: 01x\r\n",
                Rejection::BadContentLength,
            ),
            (
                "Content-Length: x\r\nTransfer-Encoding: chunked\r\n",
                Rejection::ContentLengthWithTransferEncoding,
            ),
        ];
        for (fields, why) in cases {
            let head = format!("POST / HTTP/1.1\r\n{fields}\r\n");
            assert!(matches!(decide(&head), Err(w) if w == why), "{fields:?}");
        }
        let h2 = decide("PRI * HTTP/2.0\r\n\r\n");
        assert!(matches!(h2, Err(Rejection::Malformed)));
    }
}
