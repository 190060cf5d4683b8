//! `mode: tcp` on real sockets: balancing over two backends, half-close, one side closing
//! both, 8 MiB each way with exact byte counts, PROXY v2 towards the backend, PROXY v1/v2 from trusted peers (plain data from
//! others), connect retries, the idle timeout, the drain, the session log and `portico check`.
#![allow(clippy::unwrap_used)]

mod common;
mod l4_support;

use std::net::SocketAddr;

use common::{unused_addr, wait_until, Proxy};
use l4_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One `tcp` listener per (name, upstream, extra lines) and the given upstreams block.
fn config(listeners: &[(&str, &str, &str)], upstreams: &str) -> String {
    let mut yaml = String::from("listeners:\n");
    for (name, upstream, extra) in listeners {
        yaml.push_str(&format!(
            "  - name: {name}\n    bind: \"127.0.0.1:0\"\n    mode: tcp\n    upstream: {upstream}\n{extra}"
        ));
    }
    format!("{yaml}upstreams:\n{upstreams}")
}

fn pool(name: &str, servers: &[SocketAddr]) -> String {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!("  {name}:\n    servers: [{}]\n", list.join(", "))
}

/// Sends `len` patterned bytes on `s` and half-closes, while reading the echo to the end of
/// the stream: it must come back whole and unchanged within `deadline`.
async fn echo_to_the_end(s: TcpStream, len: u32, deadline: std::time::Duration) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let (mut rd, mut wr) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut back = Vec::new();
    tokio::time::timeout(deadline, rd.read_to_end(&mut back))
        .await
        .expect("echo and end of stream within the deadline")
        .unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "echoed bytes differ");
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn connections_are_balanced_over_two_backends_and_echo_both_ways() {
    let a = EchoBackend::plain("a").spawn().await;
    let b = EchoBackend::plain("b").spawn().await;
    let proxy = Proxy::start(&config(
        &[("tcp", "app", "")],
        &pool("app", &[a.addr, b.addr]),
    ))
    .await;
    let mut tags = Vec::new();
    for i in 0..4 {
        // The backend speaks first: the tunnel must not wait for the client's bytes.
        let (mut s, tag) = greeted(proxy.addr("tcp")).await;
        let msg = format!("message {i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        assert_eq!(read_n(&mut s, msg.len()).await, msg.as_bytes());
        tags.push(tag);
    }
    assert_eq!(tags, ["a", "b", "a", "b"]);
    assert_eq!((a.connections(), b.connections()), (2, 2));
}

#[tokio::test]
async fn half_close_is_passed_on_and_a_closing_backend_closes_the_client() {
    let echo = EchoBackend::plain("echo").spawn().await;
    let closer = EchoBackend::plain("bye")
        .close_after_greeting()
        .spawn()
        .await;
    let upstreams = format!(
        "{}{}",
        pool("echo", &[echo.addr]),
        pool("closer", &[closer.addr])
    );
    let proxy = Proxy::start(&config(
        &[("echo", "echo", ""), ("closer", "closer", "")],
        &upstreams,
    ))
    .await;

    // The client sends 1 MiB and half-closes; the backend sees the end, echoes everything
    // and closes its side; the client reads it all, then the end of the stream.
    let (s, _) = greeted(proxy.addr("echo")).await;
    echo_to_the_end(s, 1024 * 1024, STEP).await;

    let (mut s, tag) = greeted(proxy.addr("closer")).await;
    assert_eq!(tag, "bye");
    assert!(
        closed(&mut s).await,
        "backend closed, so must the client side"
    );
}

#[tokio::test]
async fn bulk_data_arrives_intact_with_exact_byte_counts() {
    let log = LogCapture::start();
    let echo = EchoBackend::plain("echo").spawn().await;
    let proxy = Proxy::start(&config(&[("tcp", "app", "")], &pool("app", &[echo.addr]))).await;
    let (s, greeting) = greeted(proxy.addr("tcp")).await;
    // 8 MiB up and back while both directions are busy at once.
    let len = 8 * 1024 * 1024;
    echo_to_the_end(s, len, STEP * 4).await;

    assert!(wait_until(STEP, || async { !log.sessions().is_empty() }).await);
    let record = &log.sessions()[0];
    let field = |name: &str| -> u64 {
        let start = record.find(&format!("{name}=")).unwrap() + name.len() + 1;
        record[start..].split(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(field("bytes_in"), u64::from(len), "{record}");
    // The greeting line and the echo.
    assert_eq!(
        field("bytes_out"),
        u64::from(len) + greeting.len() as u64 + 1,
        "{record}"
    );
}

#[tokio::test]
async fn proxy_v2_gives_the_backend_the_real_client_address() {
    let backend = EchoBackend::plain("pp").expect_proxy().spawn().await;
    let yaml = config(
        &[("tcp", "app", "    proxy_protocol: { send: v2 }\n")],
        &pool("app", &[backend.addr]),
    );
    let proxy = Proxy::start(&yaml).await;
    let (mut s, tag) = greeted(proxy.addr("tcp")).await;
    assert_eq!(tag, "pp");
    s.write_all(b"after the header").await.unwrap();
    assert_eq!(read_n(&mut s, 16).await, b"after the header");
    assert_eq!(
        backend.proxy_headers(),
        [ProxySeen {
            source: s.local_addr().unwrap(),
            destination: proxy.addr("tcp"),
        }]
    );
}

/// A v2 PROXY header as a load balancer would send it.
fn v2_from(source: &str, destination: &str) -> Vec<u8> {
    let s: SocketAddr = source.parse().unwrap();
    let d: SocketAddr = destination.parse().unwrap();
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (s, d),
    )
    .build()
    .unwrap()
}

#[tokio::test]
async fn a_trusted_peers_proxy_header_names_the_client_and_others_are_data() {
    let log = LogCapture::start();
    let backend = EchoBackend::plain("pp").expect_proxy().spawn().await;
    let trusted = "    proxy_protocol: { send: v2, accept_from: [127.0.0.1] }\n";
    let untrusted = "    proxy_protocol: { send: v2, accept_from: [10.0.0.0/8] }\n";
    let yaml = config(
        &[("trusted", "app", trusted), ("untrusted", "app", untrusted)],
        &pool("app", &[backend.addr]),
    );
    let proxy = Proxy::start(&yaml).await;

    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n";
    let mut s = TcpStream::connect(proxy.addr("trusted")).await.unwrap();
    s.write_all(&[&v1[..], b"hello"].concat()).await.unwrap();
    assert_eq!(read_line(&mut s).await, "pp");
    assert_eq!(read_n(&mut s, 5).await, b"hello");
    drop(s);

    let v2 = v2_from("[2001:db8::7]:40000", "[2001:db8::1]:8443");
    let mut s = TcpStream::connect(proxy.addr("trusted")).await.unwrap();
    s.write_all(&v2).await.unwrap();
    assert_eq!(read_line(&mut s).await, "pp");
    s.write_all(b"v2 data").await.unwrap();
    assert_eq!(read_n(&mut s, 7).await, b"v2 data");
    drop(s);

    // Not a trusted peer: the header is forwarded untouched, as payload.
    let mut s = TcpStream::connect(proxy.addr("untrusted")).await.unwrap();
    s.write_all(v1).await.unwrap();
    assert_eq!(read_line(&mut s).await, "pp");
    assert_eq!(read_n(&mut s, v1.len()).await, v1);
    let untrusted_client = s.local_addr().unwrap();
    drop(s);

    // A trusted peer must send a header: without one the connection is refused.
    let mut s = TcpStream::connect(proxy.addr("trusted")).await.unwrap();
    s.write_all(b"no header here\r\n").await.unwrap();
    assert!(closed(&mut s).await, "refused");
    assert_eq!(
        backend.connections(),
        3,
        "the refused client reached no backend"
    );

    let seen: Vec<(SocketAddr, SocketAddr)> = backend
        .proxy_headers()
        .iter()
        .map(|p| (p.source, p.destination))
        .collect();
    let parse = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert_eq!(
        seen,
        [
            (parse("203.0.113.7:51000"), parse("192.0.2.1:443")),
            (parse("[2001:db8::7]:40000"), parse("[2001:db8::1]:8443")),
            (untrusted_client, proxy.addr("untrusted")),
        ]
    );

    assert!(
        wait_until(STEP, || async { log.sessions().len() >= 4 }).await,
        "four session records: {:?}",
        log.sessions()
    );
    let records = log.sessions();
    let v1_record = records
        .iter()
        .find(|r| r.contains("client=203.0.113.7:51000"))
        .unwrap_or_else(|| panic!("no record for the v1 client: {records:#?}"));
    for field in [
        "listener=trusted".to_owned(),
        "peer=127.0.0.1:".to_owned(),
        "proxy_protocol=\"v1\"".to_owned(),
        format!("backend={}", backend.addr),
        "bytes_in=5 ".to_owned(),
        "bytes_out=8 ".to_owned(),
        "end=\"closed\"".to_owned(),
    ] {
        assert!(
            v1_record.contains(&field),
            "{field:?} missing in {v1_record}"
        );
    }
    assert!(records
        .iter()
        .any(|r| r.contains("client=[2001:db8::7]:40000") && r.contains("proxy_protocol=\"v2\"")));
    assert!(records
        .iter()
        .any(|r| r.contains("end=\"bad_proxy_header\"") && r.contains("backend=-")));
}

#[tokio::test]
async fn a_dead_backend_is_skipped_and_no_live_backend_closes_the_client() {
    let live = EchoBackend::plain("live").spawn().await;
    let dead = unused_addr();
    let upstreams = format!(
        "{}{}",
        pool("mixed", &[dead, live.addr]),
        pool("dead", &[dead])
    );
    let proxy = Proxy::start(&config(
        &[("mixed", "mixed", ""), ("dead", "dead", "")],
        &upstreams,
    ))
    .await;
    for _ in 0..4 {
        let (_s, tag) = greeted(proxy.addr("mixed")).await;
        assert_eq!(tag, "live");
    }
    let mut s = TcpStream::connect(proxy.addr("dead")).await.unwrap();
    assert!(closed(&mut s).await, "no backend: the client is closed");
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let log = LogCapture::start();
    let backend = EchoBackend::plain("idle").spawn().await;
    let yaml = config(
        &[("tcp", "app", "    limits: { idle_timeout: 300ms }\n")],
        &pool("app", &[backend.addr]),
    );
    let proxy = Proxy::start(&yaml).await;
    let (mut s, _) = greeted(proxy.addr("tcp")).await;
    assert!(closed(&mut s).await, "idle tunnel closed");
    assert!(wait_until(STEP, || async { !log.sessions().is_empty() }).await);
    assert!(
        log.sessions()[0].contains("end=\"idle_timeout\""),
        "{:?}",
        log.sessions()
    );
}

#[tokio::test]
async fn the_drain_keeps_tunnels_until_the_grace_period_ends() {
    let backend = EchoBackend::plain("drain").spawn().await;
    let yaml = format!(
        "settings:\n  grace_period: 3s\n{}",
        config(&[("tcp", "app", "")], &pool("app", &[backend.addr]))
    );
    let mut proxy = Proxy::start(&yaml).await;
    let addr = proxy.addr("tcp");
    let (mut s, _) = greeted(addr).await;
    proxy.trigger_shutdown();
    assert!(
        wait_until(STEP, || async { TcpStream::connect(addr).await.is_err() }).await,
        "still accepting after the drain started"
    );
    s.write_all(b"still here").await.unwrap();
    assert_eq!(read_n(&mut s, 10).await, b"still here");
    assert!(closed(&mut s).await, "closed when the grace period ended");
    let result = proxy.join(STEP).await;
    assert!(matches!(result, Some(Ok(()))), "{result:?}");
}

#[test]
fn check_reports_every_layer4_mistake_and_accepts_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listeners:
  - name: db
    bind: 127.0.0.1:5432
    mode: tcp
    tls: { self_signed: [localhost] }
  - name: sni
    bind: 127.0.0.1:8443
    mode: tls_passthrough
    sni:
      \"10.0.0.1\": app
  - name: web
    bind: 127.0.0.1:8080
    upstream: app
routes:
  - name: r
    listeners: [db]
    upstream: app
upstreams:
  app:
    servers: [\"127.0.0.1:9000\"]
",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_portico");
    let out = std::process::Command::new(bin)
        .args(["--config", bad.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for needle in [
        ":2:5: error: listeners[0].upstream: a tcp listener needs `upstream`",
        ":5:10: error: listeners[0].tls: a tcp listener does not terminate TLS",
        ":10:19: error: listeners[1].sni.10.0.0.1: \"10.0.0.1\": SNI never carries an IP address",
        ":13:15: error: listeners[2].upstream: `upstream` applies only to `mode: tcp`",
        ":16:17: error: routes[0].listeners[0]: listener \"db\" is a `mode: tcp` listener",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/l4.yaml");
    let out = std::process::Command::new(bin)
        .args(["--config", example, "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("OK (0 warnings)"), "{text}");
}
