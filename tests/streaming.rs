//! Bodies are streamed, not buffered: 64 MiB up and down with checksums, full-duplex echo,
//! gRPC-style HTTP/2 with trailers over h2c and TLS h2 backends, and truncation stays visible.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderValue, Method, StatusCode, Version};
use http_body_util::BodyExt;

const BIG: u64 = 64 * 1024 * 1024;
const BIG_TIMEOUT: Duration = Duration::from_secs(180);

struct Setup {
    ca: TestCa,
    app: BackendHandle,
    h2c: BackendHandle,
    h2tls: BackendHandle,
    proxy: ProxyHandle,
}

async fn setup() -> Setup {
    setup_with(false).await
}

/// One listener called `web`; with `tls` it terminates TLS (front.test, h2c.test, tls.test).
async fn setup_with(tls: bool) -> Setup {
    let ca = TestCa::new();
    let front = ca.leaf("front", &["front.test", "h2c.test", "tls.test"]);
    let app = Backend::http1()
        .reply("/sink", Reply::Sink)
        .reply("/download", Reply::Download)
        .reply("/echo", Reply::Echo)
        .reply(
            "/die",
            Reply::DieMidBody {
                announced: Some(1_000_000),
                sent: 100_000,
            },
        )
        .reply("/grpc", Reply::Grpc)
        .reply(
            "/die-chunked",
            Reply::DieMidBody {
                announced: None,
                sent: 100_000,
            },
        )
        .spawn()
        .await;
    let h2c = Backend::h2c()
        .reply("/grpc", Reply::Grpc)
        .reply("/echo", Reply::Echo)
        .reply(
            "/die",
            Reply::DieMidBody {
                announced: None,
                sent: 100_000,
            },
        )
        .spawn()
        .await;
    let h2tls = Backend::h2_tls(&ca)
        .reply("/grpc", Reply::Grpc)
        .spawn()
        .await;
    let yaml = format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
{tls}
routes:
  - name: to-h2c
    match: {{ host: h2c.test }}
    upstream: h2c
  - name: to-h2-tls
    match: {{ host: tls.test }}
    upstream: h2tls
  - name: app
    upstream: app
    max_body_size: 1GiB
upstreams:
  app:
    servers: ["{app}"]
  h2c:
    servers: ["{h2c}"]
    protocol: h2c
  h2tls:
    servers: ["{h2tls}"]
    protocol: h2
    tls:
      ca: "{ca}"
      server_name: backend.test
"#,
        tls = if tls {
            format!(
                "    tls:\n      certificates: [{{ cert: \"{}\", key: \"{}\" }}]",
                front.cert_path.display(),
                front.key_path.display()
            )
        } else {
            String::new()
        },
        app = app.addr,
        h2c = h2c.addr,
        h2tls = h2tls.addr,
        ca = ca.ca_path().display(),
    );
    let proxy = Proxy::start(&yaml).await;
    Setup {
        ca,
        app,
        h2c,
        h2tls,
        proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_64_mib_arrives_intact() {
    let s = setup().await;
    let mut conn = HttpConn::h1(s.proxy.addr("web")).await;
    let req = conn
        .request(Method::POST, "front.test", "/sink")
        .body(PatternBody::new(BIG, 64 * 1024, false).boxed())
        .unwrap();
    let resp = tokio::time::timeout(BIG_TIMEOUT, async {
        let resp = conn.send(req).await.unwrap();
        resp.into_body().collect().await.unwrap().to_bytes()
    })
    .await
    .expect("64 MiB upload within the deadline");
    assert_eq!(
        String::from_utf8_lossy(&resp),
        Checksum::of_pattern(BIG).to_text()
    );
    assert_eq!(s.app.last().body_len, BIG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_64_mib_arrives_intact_over_h2() {
    let s = setup().await;
    let mut conn = HttpConn::h2c(s.proxy.addr("web")).await;
    let req = conn
        .request(Method::GET, "front.test", &format!("/download?size={BIG}"))
        .body(empty())
        .unwrap();
    let sum = tokio::time::timeout(BIG_TIMEOUT, async {
        let resp = conn.send(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut sum = Checksum::default();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.unwrap().data_ref() {
                sum.update(data);
            }
        }
        sum
    })
    .await
    .expect("64 MiB download within the deadline");
    assert_eq!(sum, Checksum::of_pattern(BIG));
}

/// Sends a chunk and waits for its echo before sending the next: a proxy that buffers either
/// direction can never answer.
async fn ping_pong(conn: &mut HttpConn, host: &str) {
    let (tx, body) = body::channel_body(None);
    let req = conn
        .request(Method::POST, host, "/echo")
        .body(body)
        .unwrap();
    assert!(tx.data("ping-0").await);
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.send(req))
        .await
        .expect("response head while the request body is still open")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut incoming = resp.into_body();
    for round in 0..3 {
        if round > 0 {
            assert!(tx.data(format!("ping-{round}")).await);
        }
        let mut got = Vec::new();
        let expected = format!("ping-{round}");
        while got.len() < expected.len() {
            let frame = tokio::time::timeout(Duration::from_secs(10), incoming.frame())
                .await
                .unwrap_or_else(|_| panic!("round {round}: echo not streamed back"))
                .expect("body ended early")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        assert_eq!(got, expected.as_bytes());
    }
    drop(tx);
    let rest = tokio::time::timeout(Duration::from_secs(10), incoming.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_echo_over_h2c_backend() {
    let s = setup().await;
    let mut conn = HttpConn::h2c(s.proxy.addr("web")).await;
    ping_pong(&mut conn, "h2c.test").await;
    assert_eq!(s.h2c.last().version, Version::HTTP_2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_duplex_echo_over_http1_backend() {
    let s = setup().await;
    let mut conn = HttpConn::h2c(s.proxy.addr("web")).await;
    ping_pong(&mut conn, "front.test").await;
    assert_eq!(s.app.last().version, Version::HTTP_11);
}

/// A length-prefixed gRPC message.
fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame.into()
}

async fn grpc_call(conn: &mut HttpConn, host: &str, backend: &BackendHandle) {
    let message = grpc_frame(b"hello grpc");
    let req = conn
        .request(Method::POST, host, "/grpc")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(full(message.clone()))
        .unwrap();
    let resp = conn.exchange(req).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.header("content-type"), Some("application/grpc"));
    assert_eq!(resp.body, message);
    let trailers = resp.trailers.expect("trailers reach the client");
    assert_eq!(
        trailers.get("grpc-status"),
        Some(&HeaderValue::from_static("0"))
    );
    assert_eq!(
        trailers.get("grpc-message"),
        Some(&HeaderValue::from_static("ok"))
    );
    let seen = backend.last();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(
        seen.headers.get("te"),
        Some(&HeaderValue::from_static("trailers"))
    );
    assert_eq!(seen.body_len, message.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trailers_pass_through_h2c_backend() {
    let s = setup().await;
    let mut conn = HttpConn::h2c(s.proxy.addr("web")).await;
    grpc_call(&mut conn, "h2c.test", &s.h2c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_trailers_pass_through_tls_h2_backend() {
    let s = setup_with(true).await;
    let mut conn = HttpConn::tls(s.proxy.addr("web"), &s.ca, Sni::Name("tls.test"), Alpn::H2).await;
    grpc_call(&mut conn, "tls.test", &s.h2tls).await;
}

/// Chunked trailers cross HTTP/1.1 hops too: `TE: trailers` and the `Trailer` field are kept,
/// so an HTTP/1.1 backend may send them and the proxy relays them to HTTP/1.1 and h2 clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_cross_http1_hops() {
    let s = setup().await;
    let message = grpc_frame(b"hello trailers");
    for mut conn in [
        HttpConn::h1(s.proxy.addr("web")).await,
        HttpConn::h2c(s.proxy.addr("web")).await,
    ] {
        let req = conn
            .request(Method::POST, "app.test", "/grpc")
            .header("te", "trailers")
            .body(full(message.clone()))
            .unwrap();
        let resp = conn.exchange(req).await;
        assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
        assert_eq!(resp.body, message);
        let trailers = resp.trailers.expect("trailers reach the client");
        assert_eq!(trailers.get("grpc-status").unwrap(), "0");
        let seen = s.app.last();
        assert_eq!(seen.version, Version::HTTP_11);
        assert_eq!(seen.headers.get("te").unwrap(), "trailers");
    }
}

/// A backend failing mid-body must surface as an error status or a broken body, never as a
/// clean end of a short body.
async fn assert_truncation_visible(conn: &mut HttpConn, host: &str, path: &str) {
    let req = conn.request(Method::GET, host, path).body(empty()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), conn.send(req))
        .await
        .expect("response head within the deadline");
    let Ok(resp) = resp else { return };
    let status = resp.status();
    match collect(resp).await {
        Err(_) => {}
        Ok(_) if status.is_server_error() => {}
        Ok(c) => panic!(
            "{path} (h2: {}): truncated body looked complete: status {status}, {} bytes",
            conn.is_h2(),
            c.body.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_mid_body_is_not_a_complete_response() {
    let s = setup().await;
    let web = s.proxy.addr("web");
    for path in ["/die", "/die-chunked"] {
        assert_truncation_visible(&mut HttpConn::h1(web).await, "front.test", path).await;
        assert_truncation_visible(&mut HttpConn::h2c(web).await, "front.test", path).await;
    }
    assert_truncation_visible(&mut HttpConn::h2c(web).await, "h2c.test", "/die").await;
    assert_truncation_visible(&mut HttpConn::h1(web).await, "h2c.test", "/die").await;
    assert_eq!(s.app.request_count(), 4);
    assert_eq!(s.h2c.request_count(), 2);
}

/// The response timeout starts when the request body has been sent: an upload slower than
/// the timeout still gets its answer, and a backend slow after the upload still gets 504.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_timeout_starts_after_the_upload() {
    let app = Backend::http1()
        .reply("/sink", Reply::Sink)
        .reply(
            "/slow",
            Reply::text(200, "late").delayed(Duration::from_secs(3)),
        )
        .spawn()
        .await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: app\n    upstream: app\nupstreams:\n  app:\n    servers: [\"{}\"]\n    timeouts: {{ response: 500ms }}\n    retries: {{ attempts: 0 }}\n",
        app.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    let (tx, body) = common::body::channel_body(None);
    let req = conn
        .request(Method::POST, "app.test", "/sink")
        .body(body)
        .unwrap();
    let upload = tokio::spawn(async move {
        // Four chunks 300 ms apart: 1.2 s of upload against a 500 ms response timeout.
        for _ in 0..4 {
            assert!(tx.data(vec![b'x'; 1000]).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let resp = conn.exchange(req).await;
    upload.await.unwrap();
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(app.last().body_len, 4000);
    let late = conn.get("app.test", "/slow").await;
    assert_eq!(late.status, StatusCode::GATEWAY_TIMEOUT, "{}", late.text());
}
