//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) with `ppp`: reading the header
//! a trusted peer puts in front of a connection, and writing a v2 header towards a backend.

use std::net::{IpAddr, SocketAddr};

use ppp::v2::{self, Builder, Command, Protocol, Version};
use ppp::PartialResult;

/// Largest header accepted: v1 is at most 107 bytes; v2 TLVs from cloud load balancers stay
/// well under this.
pub const MAX_HEADER: usize = 4096;
const V2_PREFIX_AND_FIXED: usize = 16;
/// The v1 limit, CRLF included.
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY";

/// What a complete header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The original client; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the peer's own health
    /// checks) and address families other than IPv4/IPv6.
    pub source: Option<SocketAddr>,
    /// The address the client originally connected to, when the header carries it.
    pub destination: Option<SocketAddr>,
    /// Header bytes: everything after them is the connection's payload.
    pub len: usize,
    pub version: u8,
}

/// How far the bytes so far go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Incomplete,
    Header(Received),
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("invalid PROXY v1 header: {0}")]
    V1(#[source] ppp::v1::BinaryParseError),
    #[error("invalid PROXY v2 header: {0}")]
    V2(#[source] ppp::v2::ParseError),
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLarge,
}

/// Parses the start of a connection from a trusted peer.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let prefix = v2::PROTOCOL_PREFIX;
    if buf.len() < prefix.len() && prefix.starts_with(buf) {
        return Ok(Parsed::Incomplete);
    }
    if buf.starts_with(prefix) {
        return parse_v2(buf);
    }
    // ppp mistakes some v1 headers cut right after a space for invalid ones (an empty last
    // field), so a v1 header is only parsed once its line is complete.
    let v1_start = &V1_PREFIX[..buf.len().min(V1_PREFIX.len())];
    if buf.starts_with(v1_start) && buf.len() < V1_MAX && !buf.contains(&b'\n') {
        return Ok(Parsed::Incomplete);
    }
    let h = ppp::v1::Header::try_from(buf).map_err(ProxyHeaderError::V1)?;
    let (source, destination) = match h.addresses {
        ppp::v1::Addresses::Tcp4(a) => (
            Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        ),
        ppp::v1::Addresses::Tcp6(a) => (
            Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        ),
        ppp::v1::Addresses::Unknown => (None, None),
    };
    Ok(Parsed::Header(Received {
        source,
        destination,
        len: h.header.len(),
        version: 1,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    // Refuse an oversized header as soon as its length field arrives instead of reading it.
    if let Some(len) = buf.get(14..16) {
        let declared = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if V2_PREFIX_AND_FIXED + declared > MAX_HEADER {
            return Err(ProxyHeaderError::TooLarge);
        }
    }
    let h = match v2::Header::try_from(buf) {
        Ok(h) => h,
        Err(e) if e.is_incomplete() => return Ok(Parsed::Incomplete),
        Err(e) => return Err(ProxyHeaderError::V2(e)),
    };
    let (source, destination) = match (h.command, h.addresses) {
        (Command::Proxy, v2::Addresses::IPv4(a)) => (
            Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        ),
        (Command::Proxy, v2::Addresses::IPv6(a)) => (
            Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            Some(SocketAddr::new(
                a.destination_address.into(),
                a.destination_port,
            )),
        ),
        _ => (None, None),
    };
    Ok(Parsed::Header(Received {
        source,
        destination,
        len: h.len(),
        version: 2,
    }))
}

/// A v2 `PROXY` header for a TCP connection from `source` to `destination`. Mixed address
/// families (an IPv4 client reaching an IPv6 listener) are written as IPv6, IPv4-mapped.
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = match (source, destination) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            (source, destination)
        }
        _ => (as_v6(source), as_v6(destination)),
    };
    let builder = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (source, destination),
    );
    // Building into a Vec cannot fail: the address block is fixed-size and there are no TLVs.
    builder.build().unwrap_or_default()
}

fn as_v6(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), addr.port()),
        IpAddr::V6(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_headers_give_the_client_and_the_payload_offset() {
        let text = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\nhello";
        let Parsed::Header(h) = parse(text).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(h.source, Some(addr("203.0.113.7:51000")));
        assert_eq!(h.destination, Some(addr("192.0.2.1:443")));
        assert_eq!(&text[h.len..], b"hello");
        assert_eq!(h.version, 1);

        let six = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        let Parsed::Header(h) = parse(six).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(h.source, Some(addr("[2001:db8::7]:51000")));

        let Parsed::Header(h) = parse(b"PROXY UNKNOWN\r\n").unwrap() else {
            panic!("incomplete")
        };
        assert_eq!((h.source, h.len), (None, 15));
    }

    #[test]
    fn v2_headers_round_trip_and_local_means_no_client() {
        let mut bytes = v2_header(addr("198.51.100.9:40000"), addr("10.0.0.1:443"));
        let len = bytes.len();
        bytes.extend(b"payload");
        let Parsed::Header(h) = parse(&bytes).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(h.source, Some(addr("198.51.100.9:40000")));
        assert_eq!(h.destination, Some(addr("10.0.0.1:443")));
        assert_eq!((h.len, h.version), (len, 2));

        let mixed = v2_header(addr("198.51.100.9:1"), addr("[::1]:2"));
        let Parsed::Header(h) = parse(&mixed).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(h.source, Some(addr("[::ffff:198.51.100.9]:1")));

        let local = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Stream,
            (addr("10.0.0.2:1"), addr("10.0.0.1:2")),
        )
        .build()
        .unwrap();
        let Parsed::Header(h) = parse(&local).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(h.source, None);
    }

    #[test]
    fn partial_headers_wait_and_garbage_or_oversize_is_refused() {
        let full = v2_header(addr("198.51.100.9:40000"), addr("10.0.0.1:443"));
        for cut in 0..full.len() {
            assert_eq!(
                parse(&full[..cut]).unwrap(),
                Parsed::Incomplete,
                "v2 cut {cut}"
            );
        }
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
        for cut in 0..v1.len() {
            assert_eq!(
                parse(&v1[..cut]).unwrap(),
                Parsed::Incomplete,
                "v1 cut {cut}"
            );
        }
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyHeaderError::V1(_))
        ));
        assert!(matches!(
            parse(b"PROXY TCP9 x\r\n"),
            Err(ProxyHeaderError::V1(_))
        ));
        let mut huge = v2::PROTOCOL_PREFIX.to_vec();
        huge.extend([0x21, 0x11, 0x10, 0x00]);
        assert!(matches!(parse(&huge), Err(ProxyHeaderError::TooLarge)));
        let mut bad_version = v2::PROTOCOL_PREFIX.to_vec();
        bad_version.extend([0x31, 0x11, 0, 12]);
        assert!(matches!(parse(&bad_version), Err(ProxyHeaderError::V2(_))));
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn random_bytes_after_a_signature_never_panic(
            v2 in any::<bool>(),
            rest in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = if v2 { v2::PROTOCOL_PREFIX.to_vec() } else { b"PROXY ".to_vec() };
            bytes.extend(rest);
            let _ = parse(&bytes);
        }
    }
}
