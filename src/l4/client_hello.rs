//! Finds the SNI host name in the bytes a TLS client sends first, without decrypting and
//! without keeping anything: the caller forwards the same bytes to the backend untouched.
//!
//! Hand-written on purpose (about a hundred lines of length-prefixed walking). rustls's
//! `Acceptor` could read a ClientHello, but it parses every extension it knows strictly, so a
//! quirk in an unrelated extension would refuse a connection the backend itself would accept,
//! and it buffers per connection; `tls-parser` pulls in `nom` and decodes far more than needed.
//! A passthrough proxy needs only the record and handshake framing and one extension.

use std::borrow::Cow;

/// Largest ClientHello handshake message accepted (the same as nginx's default preread buffer).
pub const MAX_HELLO: usize = 16 * 1024;
/// Most bytes buffered while looking for the end of the ClientHello: record headers add 5
/// bytes per record, and a hello split into many tiny records must still be bounded.
pub const MAX_BUFFERED: usize = MAX_HELLO + 4 * 1024;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// TLS plaintext records carry at most 2^14 bytes (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// How far the bytes so far go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// Nothing wrong yet; more bytes are needed.
    Incomplete,
    /// The whole ClientHello is there: its SNI host name (lower case, no trailing dot), if any.
    Complete(Option<String>),
}

/// Why the bytes cannot be a ClientHello worth forwarding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("not a TLS handshake record")]
    NotTls,
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("the SNI is not a valid host name")]
    BadServerName,
}

/// Looks at everything received so far (from the first byte the client sent).
pub fn scan(buf: &[u8]) -> Result<Scan, HelloError> {
    // First pass: walk the record headers without copying, learning how long the handshake
    // message is and whether all of it has arrived. A hello trickling in byte by byte is
    // scanned once per read, so this must stay cheap.
    let mut pos = 0;
    let mut have = 0usize;
    let mut head = [0u8; 4];
    let mut records = 0usize;
    let needed = loop {
        let header = buf.get(pos..).unwrap_or_default();
        check_record_header(header)?;
        if header.len() < 5 {
            return Ok(Scan::Incomplete);
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(HelloError::Malformed("bad record length"));
        }
        let body_start = pos + 5;
        let body = buf
            .get(body_start..buf.len().min(body_start + len))
            .unwrap_or_default();
        if have < 4 {
            let fill = body.len().min(4 - have);
            head[have..have + fill].copy_from_slice(&body[..fill]);
        }
        have += body.len();
        records += 1;
        if have >= 4 {
            if head[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(HelloError::NotClientHello);
            }
            let msg_len =
                usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
            if msg_len + 4 > MAX_HELLO {
                return Err(HelloError::TooLarge);
            }
            if have >= msg_len + 4 {
                break msg_len + 4;
            }
        }
        if body.len() < len {
            return Ok(Scan::Incomplete);
        }
        pos = body_start + len;
    };
    // Second pass, only once: the message itself, borrowed when one record holds it.
    let message: Cow<'_, [u8]> = if records == 1 {
        Cow::Borrowed(buf.get(5..5 + needed).unwrap_or_default())
    } else {
        let mut joined = Vec::with_capacity(needed);
        let mut pos = 0;
        while joined.len() < needed {
            let len = buf
                .get(pos + 3..pos + 5)
                .map_or(0, |l| usize::from(u16::from_be_bytes([l[0], l[1]])));
            let body = buf.get(pos + 5..pos + 5 + len).unwrap_or_default();
            let take = body.len().min(needed - joined.len());
            joined.extend_from_slice(&body[..take]);
            if body.is_empty() {
                break;
            }
            pos += 5 + len;
        }
        Cow::Owned(joined)
    };
    let body = message
        .get(4..needed)
        .ok_or(HelloError::Malformed("truncated"))?;
    client_hello(body).map(Scan::Complete)
}

/// Rejects early: a byte that cannot start a TLS handshake record ends the wait at once.
fn check_record_header(header: &[u8]) -> Result<(), HelloError> {
    if header.first().is_some_and(|&t| t != CONTENT_HANDSHAKE) {
        return Err(HelloError::NotTls);
    }
    // Record versions are 3.0 (SSL 3) to 3.4; clients use 3.1 or 3.3 here.
    if header.get(1).is_some_and(|&major| major != 3) || header.get(2).is_some_and(|&m| m > 4) {
        return Err(HelloError::NotTls);
    }
    Ok(())
}

/// The ClientHello body (after the 4-byte handshake header): its SNI, if any.
fn client_hello(body: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(body);
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    if r.vec8()?.len() > 32 {
        return Err(HelloError::Malformed("session id longer than 32 bytes"));
    }
    let suites = r.vec16()?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err(HelloError::Malformed("bad cipher suite list"));
    }
    if r.vec8()?.is_empty() {
        return Err(HelloError::Malformed("no compression methods"));
    }
    if r.0.is_empty() {
        // TLS 1.2 and older may omit extensions altogether.
        return Ok(None);
    }
    let mut extensions = Reader(r.vec16()?);
    if !r.0.is_empty() {
        return Err(HelloError::Malformed("bytes after the extensions"));
    }
    let mut sni = None;
    let mut seen = false;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        if kind == EXTENSION_SERVER_NAME {
            if seen {
                return Err(HelloError::Malformed("two server_name extensions"));
            }
            seen = true;
            sni = server_name(data)?;
        }
    }
    Ok(sni)
}

/// RFC 6066 §3: a list of (type, name); the first host_name is the one that counts.
fn server_name(data: &[u8]) -> Result<Option<String>, HelloError> {
    if data.is_empty() {
        return Ok(None);
    }
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec16()?);
    if !outer.0.is_empty() {
        return Err(HelloError::Malformed("bytes after the server name list"));
    }
    let mut host = None;
    while !list.0.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == NAME_TYPE_HOST && host.is_none() {
            host = Some(host_name(name)?);
        }
    }
    Ok(host)
}

/// ASCII letters, digits, `-` and `_` in non-empty labels of at most 63 bytes; lower-cased.
fn host_name(raw: &[u8]) -> Result<String, HelloError> {
    let name = raw.strip_suffix(b".").unwrap_or(raw);
    let label_ok = |l: &[u8]| {
        !l.is_empty()
            && l.len() <= 63
            && l.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split(|&b| b == b'.').all(label_ok) {
        return Err(HelloError::BadServerName);
    }
    Ok(name
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect())
}

/// Length-prefixed reads that fail instead of panicking on short input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, HelloError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, HelloError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests;
