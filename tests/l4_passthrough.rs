//! `mode: tls_passthrough` on real sockets: backends that terminate TLS themselves with their
//! own certificates, chosen by SNI (exact and wildcard) and verified by the client through
//! Portico, so nothing was decrypted; no SNI and unknown SNI to the default pool or refused;
//! a ClientHello in one-byte segments; non-TLS input and a stalled hello; PROXY v2 both ways.
#![allow(clippy::unwrap_used)]

mod common;
mod l4_support;

use std::net::SocketAddr;

use common::{wait_until, Leaf, Proxy, ProxyHandle, TestCa};
use l4_support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

struct Setup {
    ca: TestCa,
    a: (Leaf, EchoHandle),
    b: (Leaf, EchoHandle),
    fallback: (Leaf, EchoHandle),
    proxy: ProxyHandle,
}

/// Backends `a` (a.test), `b` (b.test and *.w.test) and `fallback` (127.0.0.1 and
/// other.test), each terminating TLS with its own certificate; `fallback` is the listener's
/// default pool when `with_default`.
async fn setup(with_default: bool, extra: &str) -> Setup {
    let ca = TestCa::new();
    let leaf_a = ca.leaf("a", &["a.test"]);
    let leaf_b = ca.leaf("b", &["b.test", "*.w.test"]);
    let leaf_f = ca.leaf("fallback", &["127.0.0.1", "other.test"]);
    let a = EchoBackend::tls("a", leaf_a.server_config(&[]))
        .spawn()
        .await;
    let b = EchoBackend::tls("b", leaf_b.server_config(&[]))
        .spawn()
        .await;
    let f = EchoBackend::tls("fallback", leaf_f.server_config(&[]))
        .spawn()
        .await;
    let default = if with_default {
        "    upstream: fallback\n"
    } else {
        ""
    };
    let yaml = format!(
        r#"
listeners:
  - name: sni
    bind: "127.0.0.1:0"
    mode: tls_passthrough
{default}{extra}    sni:
      a.test: a
      b.test: b
      "*.w.test": b
upstreams:
  a:
    servers: ["{}"]
  b:
    servers: ["{}"]
  fallback:
    servers: ["{}"]
"#,
        a.addr, b.addr, f.addr
    );
    let proxy = Proxy::start(&yaml).await;
    Setup {
        ca,
        a: (leaf_a, a),
        b: (leaf_b, b),
        fallback: (leaf_f, f),
        proxy,
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test]
async fn sni_picks_the_backend_whose_own_certificate_the_client_verifies() {
    let log = LogCapture::start();
    let s = setup(true, "").await;
    let addr = s.proxy.addr("sni");
    let cases = [
        ("a.test", &s.a.0, "a"),
        ("b.test", &s.b.0, "b"),
        ("x.w.test", &s.b.0, "b"),
        ("other.test", &s.fallback.0, "fallback"),
        // By address: rustls sends no SNI.
        ("127.0.0.1", &s.fallback.0, "fallback"),
    ];
    for (name, leaf, tag) in cases {
        let (mut tls, cert, greeting) =
            tls_connect(connect(addr).await, s.ca.client_config(&[]), name)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cert, leaf.der, "{name}: the backend's own certificate");
        assert_eq!(greeting, tag, "{name}");
        tls.write_all(b"ping").await.unwrap();
        assert_eq!(read_n(&mut tls, 4).await, b"ping", "{name}");
    }
    let counts = (
        s.a.1.connections(),
        s.b.1.connections(),
        s.fallback.1.connections(),
    );
    assert_eq!(counts, (1, 2, 2));

    assert!(wait_until(STEP, || async { log.sessions().len() >= 5 }).await);
    let records = log.sessions();
    let x = records
        .iter()
        .find(|r| r.contains("sni=\"x.w.test\""))
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert!(x.contains("mode=\"tls_passthrough\""), "{x}");
    assert!(x.contains("upstream=\"b\""), "{x}");
    assert!(x.contains(&format!("backend={}", s.b.1.addr)), "{x}");
    assert!(records
        .iter()
        .any(|r| r.contains("sni=\"-\"") && r.contains("upstream=\"fallback\"")));
}

#[tokio::test]
async fn without_a_default_unknown_and_missing_sni_are_closed() {
    let log = LogCapture::start();
    let s = setup(false, "").await;
    let addr = s.proxy.addr("sni");
    for name in ["other.test", "127.0.0.1"] {
        let refused = tls_connect(connect(addr).await, s.ca.client_config(&[]), name).await;
        assert!(refused.is_err(), "{name} must be refused");
    }
    let (_, cert, _) = tls_connect(connect(addr).await, s.ca.client_config(&[]), "a.test")
        .await
        .unwrap();
    assert_eq!(cert, s.a.0.der);
    assert_eq!(s.fallback.1.connections(), 0);
    assert_eq!(s.b.1.connections(), 0);
    assert!(
        wait_until(STEP, || async {
            log.sessions()
                .iter()
                .filter(|r| r.contains("end=\"no_route\""))
                .count()
                == 2
        })
        .await,
        "{:#?}",
        log.sessions()
    );
}

#[tokio::test]
async fn a_client_hello_sent_one_byte_per_segment_is_reassembled() {
    let s = setup(true, "").await;
    // Every byte of the handshake goes in its own write (Nagle off), the first 64 with pauses
    // so that the record and handshake headers surely arrive in separate reads.
    let trickle = Trickle::new(connect(s.proxy.addr("sni")).await, 64, usize::MAX);
    let (mut tls, cert, greeting) = tls_connect(trickle, s.ca.client_config(&[]), "x.w.test")
        .await
        .unwrap();
    assert!(
        tls.get_ref().0.written() > 200,
        "the hello went out byte by byte"
    );
    assert_eq!(cert, s.b.0.der);
    assert_eq!(greeting, "b");
    tls.write_all(b"after").await.unwrap();
    assert_eq!(read_n(&mut tls, 5).await, b"after");
}

#[tokio::test]
async fn plain_bytes_and_a_stalled_hello_are_refused() {
    let log = LogCapture::start();
    let s = setup(true, "    limits: { header_read_timeout: 500ms }\n").await;
    let addr = s.proxy.addr("sni");
    let mut plain = connect(addr).await;
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    assert!(closed(&mut plain).await, "not TLS: closed");

    let mut stalled = connect(addr).await;
    stalled.write_all(&[22, 3, 1, 1, 0, 1, 0]).await.unwrap();
    assert!(
        closed(&mut stalled).await,
        "a hello that never completes times out"
    );

    let total = s.a.1.connections() + s.b.1.connections() + s.fallback.1.connections();
    assert_eq!(total, 0, "nothing reached a backend");
    assert!(wait_until(STEP, || async { log.sessions().len() == 2 }).await);
    let records = log.sessions().join("\n");
    assert!(records.contains("end=\"bad_client_hello\""), "{records}");
    assert!(records.contains("end=\"header_timeout\""), "{records}");
    assert!(
        records.contains("no complete ClientHello within the header read timeout"),
        "{records}"
    );
}

#[tokio::test]
async fn proxy_headers_are_read_before_the_hello_and_sent_to_the_backend() {
    let ca = TestCa::new();
    let leaf = ca.leaf("a", &["a.test"]);
    let backend = EchoBackend::tls("a", leaf.server_config(&[]))
        .expect_proxy()
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - name: sni
    bind: "127.0.0.1:0"
    mode: tls_passthrough
    sni: {{ a.test: a }}
    proxy_protocol: {{ send: v2, accept_from: ["127.0.0.1"] }}
upstreams:
  a:
    servers: ["{}"]
"#,
        backend.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let mut tcp = connect(proxy.addr("sni")).await;
    let source: SocketAddr = "198.51.100.4:5000".parse().unwrap();
    let original: SocketAddr = "192.0.2.10:443".parse().unwrap();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (source, original),
    )
    .build()
    .unwrap();
    tcp.write_all(&header).await.unwrap();
    let (_, cert, greeting) = tls_connect(tcp, ca.client_config(&[]), "a.test")
        .await
        .unwrap();
    assert_eq!((cert, greeting.as_str()), (leaf.der.clone(), "a"));
    let seen = backend.proxy_headers();
    assert_eq!(
        seen,
        [ProxySeen {
            source,
            destination: original
        }]
    );
}
