//! Strict HTTP/1.1 framing on raw TCP: ambiguous or malformed requests get 400 and never reach
//! the backend; `Upgrade: h2c` is never forwarded; a slowloris client is cut off.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn setup() -> (BackendHandle, ProxyHandle) {
    let backend = Backend::http1()
        .fallback(Reply::text(200, "ok"))
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
    limits:
      header_read_timeout: 1s
routes:
  - name: app
    upstream: app
upstreams:
  app:
    servers: ["{}"]
"#,
        backend.addr
    );
    (backend, Proxy::start(&yaml).await)
}

/// The request must be refused with 400, and a valid request afterwards must be the backend's
/// first and only one.
async fn assert_rejected(request: &[u8]) {
    let (backend, proxy) = setup().await;
    let addr = proxy.addr("web");
    match raw_request(addr, request).await {
        Ok(resp) => assert_eq!(
            resp.status,
            400,
            "for {:?}",
            String::from_utf8_lossy(request)
        ),
        Err(e) => panic!("no 400 for {:?}: {e:?}", String::from_utf8_lossy(request)),
    }
    let ok = raw_request(addr, b"GET /sentinel HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let seen = backend.received();
    assert_eq!(seen.len(), 1, "backend saw the bad request: {seen:?}");
    assert_eq!(seen[0].uri, "/sentinel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_with_transfer_encoding() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
}

/// A coding the proxy would silently drop when it re-frames the body (gzip before chunked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_coding_other_than_chunked() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths() {
    assert_rejected(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_line_endings() {
    assert_rejected(b"GET / HTTP/1.1\nHost: x\n\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_lf_inside_the_header_section() {
    assert_rejected(b"GET / HTTP/1.1\r\nHost: x\nX-Sneaky: 1\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obsolete_line_folding() {
    assert_rejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_header_value() {
    assert_rejected(b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_host_in_http11() {
    assert_rejected(b"GET / HTTP/1.1\r\nX-No-Host: 1\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_host() {
    assert_rejected(b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_h2c_is_never_forwarded() {
    let (backend, proxy) = setup().await;
    let resp = raw_request(
        proxy.addr("web"),
        b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .unwrap();
    assert_ne!(resp.status, 101, "proxy switched to h2c");
    assert!(resp.header("upgrade").is_none(), "{:?}", resp.headers);
    for seen in backend.received() {
        assert!(
            seen.headers.get("upgrade").is_none(),
            "Upgrade forwarded: {:?}",
            seen.headers
        );
        assert!(
            seen.headers.get("http2-settings").is_none(),
            "HTTP2-Settings forwarded"
        );
    }
    if resp.status == 200 {
        assert_eq!(backend.request_count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_dropped_after_the_header_timeout() {
    let (backend, proxy) = setup().await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr("web"))
        .await
        .unwrap();
    let start = Instant::now();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let closed_after = loop {
        if start.elapsed() > Duration::from_secs(6) {
            panic!("slow client still connected after 6s");
        }
        if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break start.elapsed();
        }
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => break start.elapsed(),
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(
                    text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 4"),
                    "{text}"
                );
            }
        }
    };
    assert!(
        closed_after >= Duration::from_millis(800),
        "dropped too early: {closed_after:?}"
    );
    assert!(
        closed_after < Duration::from_secs(4),
        "dropped too late: {closed_after:?}"
    );
    assert_eq!(backend.request_count(), 0);
}

/// After a request that asked for an upgrade but got no 101, the framing guard is no longer
/// watching: the connection must close instead of parsing a smuggled second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upgrade_closes_the_connection() {
    let (backend, proxy) = setup().await;
    let mut conn = RawConn::connect(proxy.addr("web")).await;
    conn.send(
        b"GET /first HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n\
          POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let rest = conn.wait_closed(Duration::from_secs(10)).await.unwrap();
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    let seen = backend.received();
    assert!(
        seen.iter().all(|r| r.uri != "/smuggle"),
        "smuggled request reached the backend: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_without_host() {
    assert_rejected(b"GET http://x/ HTTP/1.1\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_with_two_hosts() {
    assert_rejected(b"GET http://x/ HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n").await;
}
