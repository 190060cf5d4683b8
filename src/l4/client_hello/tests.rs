//! The SNI reader against real rustls ClientHellos, hand-made edge cases, every truncation,
//! re-framing into many records, and random or mutated input (which must never panic).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use rustls::pki_types::ServerName;

use super::*;

/// The first flight rustls sends for `name` (a DNS name, or an IP address: then no SNI).
fn rustls_hello(name: &str) -> Vec<u8> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn u16_be(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap().to_be_bytes()
}

/// One handshake record holding `msg`.
fn record(msg: &[u8]) -> Vec<u8> {
    let mut out = vec![CONTENT_HANDSHAKE, 3, 1];
    out.extend(u16_be(msg.len()));
    out.extend(msg);
    out
}

/// A minimal ClientHello message with the given extensions block (`None`: no block at all).
fn hello_message(extensions: Option<&[u8]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01]);
    body.extend([1, 0]);
    if let Some(ext) = extensions {
        body.extend(u16_be(ext.len()));
        body.extend(ext);
    }
    let mut msg = vec![HANDSHAKE_CLIENT_HELLO];
    msg.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// A server_name extension with the given (name type, name) entries.
fn sni_extension(entries: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in entries {
        list.push(*kind);
        list.extend(u16_be(name.len()));
        list.extend(*name);
    }
    let mut ext = vec![0, 0];
    ext.extend(u16_be(list.len() + 2));
    ext.extend(u16_be(list.len()));
    ext.extend(list);
    ext
}

/// The handshake bytes of `flight` re-framed into records of at most `size` bytes each.
fn reframe(flight: &[u8], size: usize) -> Vec<u8> {
    let len = usize::from(u16::from_be_bytes([flight[3], flight[4]]));
    let message = &flight[5..5 + len];
    message.chunks(size).flat_map(record).collect()
}

#[test]
fn reads_the_sni_of_a_real_client_hello() {
    let flight = rustls_hello("api.example.test");
    assert_eq!(
        scan(&flight),
        Ok(Scan::Complete(Some("api.example.test".to_owned())))
    );
}

#[test]
fn a_client_connecting_by_address_sends_no_sni() {
    assert_eq!(scan(&rustls_hello("127.0.0.1")), Ok(Scan::Complete(None)));
}

#[test]
fn every_prefix_of_a_valid_hello_is_incomplete() {
    let flight = rustls_hello("a.test");
    for cut in 0..flight.len() {
        assert_eq!(scan(&flight[..cut]), Ok(Scan::Incomplete), "cut at {cut}");
    }
}

#[test]
fn a_hello_split_over_many_records_is_reassembled() {
    let flight = rustls_hello("split.example.test");
    for size in [1, 7, 100] {
        let framed = reframe(&flight, size);
        assert_eq!(
            scan(&framed),
            Ok(Scan::Complete(Some("split.example.test".to_owned()))),
            "records of {size} bytes"
        );
        for cut in (0..framed.len()).step_by(13) {
            assert_eq!(scan(&framed[..cut]), Ok(Scan::Incomplete), "{size}/{cut}");
        }
    }
}

#[test]
fn bytes_after_the_hello_are_ignored() {
    let mut flight = rustls_hello("a.test");
    flight.extend(b"\x14\x03\x03\x00\x01\x01 and more");
    assert_eq!(scan(&flight), Ok(Scan::Complete(Some("a.test".to_owned()))));
}

#[test]
fn hand_made_hellos() {
    let complete = |ext: Option<&[u8]>| scan(&record(&hello_message(ext)));
    assert_eq!(
        complete(None),
        Ok(Scan::Complete(None)),
        "no extensions block"
    );
    assert_eq!(complete(Some(&[])), Ok(Scan::Complete(None)));
    let upper = sni_extension(&[(0, b"WWW.Example.TEST.")]);
    assert_eq!(
        complete(Some(&upper)),
        Ok(Scan::Complete(Some("www.example.test".to_owned()))),
        "lower-cased, trailing dot dropped"
    );
    let other_type_first = sni_extension(&[(9, b"\x00\x01"), (0, b"b.test"), (0, b"c.test")]);
    assert_eq!(
        complete(Some(&other_type_first)),
        Ok(Scan::Complete(Some("b.test".to_owned())))
    );
    let mut unknown_then_sni = vec![0xfa, 0xfa, 0, 3, 1, 2, 3];
    unknown_then_sni.extend(sni_extension(&[(0, b"x.test")]));
    assert_eq!(
        complete(Some(&unknown_then_sni)),
        Ok(Scan::Complete(Some("x.test".to_owned())))
    );
}

#[test]
fn malformed_and_foreign_input_is_refused() {
    let bad = |ext: &[u8]| scan(&record(&hello_message(Some(ext))));
    let mut twice = sni_extension(&[(0, b"a.test")]);
    twice.extend(sni_extension(&[(0, b"b.test")]));
    assert_eq!(
        bad(&twice),
        Err(HelloError::Malformed("two server_name extensions"))
    );
    for name in [
        &b"bad name"[..],
        b"",
        b".",
        b"a..b",
        b"caf\xc3\xa9.test",
        &[b'a'; 64],
    ] {
        assert_eq!(
            bad(&sni_extension(&[(0, name)])),
            Err(HelloError::BadServerName),
            "{name:?}"
        );
    }
    assert_eq!(
        bad(&[0, 0, 0, 9, 0, 7, 0]),
        Err(HelloError::Malformed("truncated"))
    );
    assert_eq!(bad(&[0, 0]), Err(HelloError::Malformed("truncated")));

    assert_eq!(scan(b"GET / HTTP/1.1\r\n"), Err(HelloError::NotTls));
    assert_eq!(scan(b"PROXY TCP4 "), Err(HelloError::NotTls));
    assert_eq!(scan(b"\r\n\r\n\0\r\nQUIT\n"), Err(HelloError::NotTls));
    assert_eq!(scan(b"\x16\x02"), Err(HelloError::NotTls), "SSL 2 style");
    assert_eq!(scan(b"\x16\x03\x09"), Err(HelloError::NotTls));
    assert_eq!(
        scan(&record(&[2, 0, 0, 1, 0])),
        Err(HelloError::NotClientHello)
    );
    assert_eq!(
        scan(&[22, 3, 1, 0, 0]),
        Err(HelloError::Malformed("bad record length"))
    );
    assert_eq!(
        scan(&[22, 3, 1, 0x40, 1]),
        Err(HelloError::Malformed("bad record length"))
    );
    assert_eq!(
        scan(&[22, 3, 1, 0, 4, 1, 0, 0x40, 0]),
        Err(HelloError::TooLarge)
    );
    // A record with the message header only, claiming more than it will ever hold.
    assert_eq!(scan(&[22, 3, 1, 0, 4, 1, 0, 1, 0]), Ok(Scan::Incomplete));
    // A handshake message whose fields overrun its own length.
    let mut msg = hello_message(None);
    msg.truncate(msg.len() - 3);
    msg[3] -= 3;
    assert_eq!(scan(&record(&msg)), Err(HelloError::Malformed("truncated")));
}

#[test]
fn records_between_fragments_must_be_handshakes() {
    let flight = rustls_hello("a.test");
    let mut framed = reframe(&flight, 50);
    framed[55] = 23; // the second record's content type: application data
    assert_eq!(scan(&framed), Err(HelloError::NotTls));
}

proptest! {
    #![proptest_config(crate::proptest_config())]
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = scan(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..400),
        claimed in 0usize..500,
    ) {
        let mut msg = vec![HANDSHAKE_CLIENT_HELLO, 0];
        msg.extend(u16_be(claimed.min(u16::MAX as usize)));
        msg.extend(&body);
        let _ = scan(&record(&msg));
        let _ = scan(&reframe(&record(&msg), 3));
    }

    #[test]
    fn mutated_real_hellos_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut flight = rustls_hello("fuzz.example.test");
        for (at, value) in flips {
            let i = at.index(flight.len());
            flight[i] = value;
        }
        let _ = scan(&flight);
        let _ = scan(&flight[..cut.index(flight.len())]);
    }
}
