//! Tests for `H1Guard`: its raw output, and a real hyper 1 server behind it.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::*;

const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
const FIXED: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
const CHUNKED_LAST: &[u8] = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
    Connection: close\r\n\r\n5;e=1\r\nhel\nl\r\n0\r\nX-Sum: 1\r\n\r\n";
const LIMIT: usize = 8192;

/// A scripted client: each element is what one read returns. After the script, reads end
/// (EOF) or stay pending forever, so that only the server can end the exchange.
struct Script {
    reads: VecDeque<Vec<u8>>,
    eof: bool,
    written: Vec<u8>,
}

impl Script {
    fn new(reads: &[&[u8]], eof: bool) -> Self {
        let reads = reads.iter().map(|r| r.to_vec()).collect();
        Self {
            reads,
            eof,
            written: Vec::new(),
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        dst: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(front) = self.reads.front_mut() else {
            return if self.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        };
        let n = front.len().min(dst.remaining());
        dst.put_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.reads.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Everything the guard hands its reader, read `step` bytes at a time.
/// A held upgrade or CONNECT is answered so that it opens the tunnel.
async fn through_guard(reads: &[&[u8]], step: usize) -> (Vec<u8>, Option<Rejection>) {
    through_guard_answering(reads, step, true).await
}

/// Like `through_guard`; while the guard holds a tunnel request, writes a response that
/// opens it (101, or 200 to CONNECT) or refuses it (403).
async fn through_guard_answering(
    reads: &[&[u8]],
    step: usize,
    open: bool,
) -> (Vec<u8>, Option<Rejection>) {
    let mut guard = H1Guard::new(Script::new(reads, true), LIMIT);
    let mut out = Vec::new();
    let mut chunk = vec![0; step];
    loop {
        if let State::Held(tunnel) = guard.core.state {
            let answer: &[u8] = match (open, tunnel) {
                (true, Tunnel::Upgrade) => b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                (true, Tunnel::Connect) => b"HTTP/1.1 200 OK\r\n\r\n",
                (false, _) => b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            };
            // Byte by byte: the status line may arrive in any number of writes.
            for byte in answer {
                guard.write_all(std::slice::from_ref(byte)).await.unwrap();
            }
        }
        match guard.read(&mut chunk).await.unwrap() {
            0 => return (out, guard.rejected()),
            n => out.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Outcome {
    response: String,
    /// Requests whose head reached the service.
    called: usize,
    /// Paths of requests whose whole body reached the service.
    completed: Vec<String>,
    rejected: Option<Rejection>,
    closed: bool,
}

/// Serves the scripted client with hyper's http1 server behind the guard.
async fn serve(reads: &[&[u8]]) -> Outcome {
    let called = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(Mutex::new(Vec::new()));
    let mut guard = H1Guard::new(Script::new(reads, false), LIMIT);
    let (calls, done) = (called.clone(), completed.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        let (calls, done) = (calls.clone(), done.clone());
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let path = req.uri().path().to_owned();
            // A body cut short by the guard shows up as a body error, as it would in the proxy.
            let status = match req.into_body().collect().await {
                Ok(_) => {
                    done.lock().unwrap().push(path);
                    StatusCode::OK
                }
                Err(_) => StatusCode::BAD_REQUEST,
            };
            let body = Full::new(Bytes::from_static(b"ok"));
            Ok::<_, Infallible>(Response::builder().status(status).body(body).unwrap())
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .max_buf_size(LIMIT)
        .serve_connection(TokioIo::new(&mut guard), svc);
    let closed = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .is_ok();
    let completed = completed.lock().unwrap().clone();
    Outcome {
        response: String::from_utf8_lossy(&guard.get_ref().written).into_owned(),
        called: called.load(Ordering::SeqCst),
        completed,
        rejected: guard.rejected(),
        closed,
    }
}

fn statuses(response: &str) -> Vec<&str> {
    response
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &response[i + 9..i + 12])
        .collect()
}

fn assert_all_served(out: &Outcome) {
    assert_eq!(
        statuses(&out.response),
        ["200", "200", "200"],
        "{}",
        out.response
    );
    assert_eq!(out.completed, ["/a", "/b", "/c"]);
    assert_eq!(out.rejected, None);
    assert!(out.closed, "Connection: close must end the connection");
}

#[tokio::test]
async fn pipelined_requests_in_one_read_reach_the_service() {
    let all = [GET, FIXED, b"\r\n", CHUNKED_LAST].concat();
    assert_all_served(&serve(&[&all]).await);
}

#[tokio::test]
async fn keep_alive_requests_in_separate_reads_reach_the_service() {
    assert_all_served(&serve(&[GET, FIXED, CHUNKED_LAST]).await);
}

#[tokio::test]
async fn byte_by_byte_delivery_reaches_the_service() {
    let all = [GET, FIXED, CHUNKED_LAST].concat();
    let bytes: Vec<&[u8]> = all.chunks(1).collect();
    assert_all_served(&serve(&bytes).await);
}

#[tokio::test]
async fn large_bodies_pass_unchanged() {
    let big = vec![b'\n'; 100_000];
    let head = format!("POST /b HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len());
    let chunked = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n186a0\r\n";
    let reads: [&[u8]; 7] = [
        head.as_bytes(),
        &big,
        chunked,
        &big[..60_000],
        &big[60_000..],
        b"\r\n0\r\n\r\n",
        b"GET /d HTTP/1.1\r\nConnection: close\r\n\r\n",
    ];
    let (out, why) = through_guard(&reads, 16 * 1024).await;
    assert_eq!(out, reads.concat());
    assert_eq!(why, None);
    let out = serve(&reads).await;
    assert_eq!(out.completed, ["/b", "/c", "/d"]);
}

/// Requests the guard refuses before hyper sees their head; `|` splits the client's reads.
#[rustfmt::skip]
const HEAD_REJECTIONS: &[(&str, Rejection)] = {
    use Rejection::*;
    const CL_TE: Rejection = ContentLengthWithTransferEncoding;
    &[
        ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", CL_TE),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", CL_TE),
        ("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Enc|oding: chunked\r|\n\r\n0\r\n\r\n", CL_TE),
        ("GET / HTTP/1.1\nHost: x\r\n\r\n", BareLf),
        ("GET / HTTP/1.1\r\nHost: x\n\r\n", BareLf),
        ("GET / HTTP/1.1\r\nHost: x\r\n\n", BareLf),
        ("\nGET / HTTP/1.1\r\n\r\n", BareLf),
        ("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", NulOrCr),
        ("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", NulOrCr),
        ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", BadContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", BadContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", BadContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", BadContentLength),
        ("POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", BadContentLength),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", BadTransferEncoding),
        ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", BadTransferEncoding),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", BadTransferEncoding),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n", Malformed),
        ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Malformed),
        // The classic smuggling attempt: a second request hidden behind a zero-size chunk.
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
            0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n", CL_TE),
    ]
};

fn reads_of(script: &str) -> Vec<&[u8]> {
    script.split('|').map(str::as_bytes).collect()
}

#[tokio::test]
async fn refused_heads_get_400_and_never_reach_the_service() {
    for (script, why) in HEAD_REJECTIONS {
        let out = serve(&reads_of(script)).await;
        let msg = format!("{script:?}: {}", out.response);
        assert_eq!(statuses(&out.response), ["400"], "{msg}");
        assert_eq!((out.called, out.rejected), (0, Some(*why)), "{msg}");
        assert!(out.closed, "{msg}");
    }
}

#[tokio::test]
async fn refused_heads_hand_over_only_the_poison() {
    for (script, why) in HEAD_REJECTIONS {
        for step in [1, 7, 4096] {
            let got = through_guard(&reads_of(script), step).await;
            assert_eq!(got, (POISON.to_vec(), Some(*why)), "{script:?}");
        }
    }
}

#[tokio::test]
async fn refusal_after_a_served_request_keeps_the_first_answer() {
    let bad = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n";
    let out = serve(&[&[GET, bad].concat()]).await;
    assert_eq!(statuses(&out.response), ["200", "400"], "{}", out.response);
    assert_eq!(out.completed, ["/a"]);
    assert_eq!(out.called, 1);
}

#[tokio::test]
async fn broken_chunked_bodies_are_cut_off() {
    let cases: [(&[u8], Rejection); 5] = [
        (b"5\nhello\r\n0\r\n\r\n", Rejection::BareLf),
        (b"zz\r\nhello\r\n0\r\n\r\n", Rejection::BadChunk),
        (
            b"10000000000000005\r\nhello\r\n0\r\n\r\n",
            Rejection::BadChunk,
        ),
        (b"5\r\nhelloXX0\r\n\r\n", Rejection::BadChunk),
        (b"0\r\nX: 1\n\r\n", Rejection::BareLf),
    ];
    let head: &[u8] = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let admin: &[u8] = b"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    for (body, why) in cases {
        let out = serve(&[&[head, body, admin].concat()]).await;
        // The head went out before the body was seen: the service gets a failing body only.
        assert_eq!(out.called, 1, "{body:?}");
        assert!(out.completed.is_empty(), "{body:?}");
        assert_eq!(
            statuses(&out.response),
            ["400"],
            "{body:?}: {}",
            out.response
        );
        assert_eq!(out.rejected, Some(why), "{body:?}");
        assert!(out.closed, "{body:?}");
    }
}

#[tokio::test]
async fn oversized_head_is_left_to_hyper() {
    let filler = "a".repeat(LIMIT + 100);
    let head = format!("GET / HTTP/1.1\r\nX: {filler}\r\n\r\n");
    let out = serve(&[head.as_bytes()]).await;
    assert_eq!(statuses(&out.response), ["431"], "{}", out.response);
    assert_eq!((out.called, out.rejected), (0, None));
}

#[tokio::test]
async fn leading_empty_lines_are_dropped() {
    let (out, why) = through_guard(&[b"\r\n\r\n", b"\r", b"\n", GET], 64).await;
    assert_eq!((out.as_slice(), why), (GET, None));
}

#[tokio::test]
async fn h2_preface_and_tunnels_pass_unchanged() {
    let raw: &[u8] = b"\n\0\rPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\n\n";
    let starts: [&[u8]; 4] = [
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
        b"\r\nCONNECT x:443 HTTP/1.0\r\n\r\n",
    ];
    for start in starts {
        let all = [start, raw].concat();
        let (out, why) = through_guard(&[&all], 4096).await;
        assert_eq!(out, all.strip_prefix(b"\r\n").unwrap_or(&all));
        assert_eq!(why, None);
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(through_guard(&bytes, 3).await.1, None);
    }
}

/// A refused upgrade or CONNECT leaves the connection in HTTP framing: what the client sent
/// after it is checked as the next request, never passed through as tunnel bytes.
#[tokio::test]
async fn refused_tunnels_keep_checking_what_follows() {
    let smuggled: &[u8] = b"GET /admin HTTP/1.1\nHost: x\n\n";
    let starts: [&[u8]; 3] = [
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi",
        b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
    ];
    for start in starts {
        let all = [start, smuggled].concat();
        let (out, why) = through_guard_answering(&[&all], 64, false).await;
        assert_eq!(
            why,
            Some(Rejection::BareLf),
            "{:?}",
            String::from_utf8_lossy(start)
        );
        assert_eq!(out, [start, POISON].concat());
        // The same bytes, once the tunnel is open, are the tunnel's business.
        let (out, why) = through_guard_answering(&[&all], 64, true).await;
        assert_eq!((out, why), (all.clone(), None));
    }
}

#[tokio::test]
async fn near_misses_of_the_preface_and_upgrade_are_checked() {
    let cases: [(&[u8], Rejection); 2] = [
        (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", Rejection::Malformed),
        (
            b"GET / HTTP/1.0\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\n\n",
            Rejection::BareLf,
        ),
    ];
    for (input, why) in cases {
        let (out, got) = through_guard(&[input], 4096).await;
        assert_eq!(got, Some(why));
        assert!(out.ends_with(POISON), "{input:?}");
    }
}

#[tokio::test]
async fn h2_prior_knowledge_is_served_through_the_guard() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let svc = service_fn(|req: Request<Incoming>| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        Ok::<_, Infallible>(Response::new(Full::new(body)))
    });
    let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(H1Guard::new(server, LIMIT)), svc);
    tokio::spawn(server);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client))
            .await
            .unwrap();
    tokio::spawn(conn);
    let payload = Bytes::from_static(b"a\nb\r\n\0Transfer-Encoding: chunked\n");
    let req = Request::post("http://x/")
        .body(Full::new(payload.clone()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), payload);
}

#[tokio::test]
async fn upgraded_connection_carries_raw_bytes_unchanged() {
    const RAW: &[u8] = b"\n\0\rGET /admin HTTP/1.1\nContent-Length: 1\r\nTransfer-Encoding: x\n\n";
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let svc = service_fn(|mut req: Request<Incoming>| async move {
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(on_upgrade.await.unwrap());
            let mut got = vec![0; RAW.len()];
            io.read_exact(&mut got).await.unwrap();
            io.write_all(&got).await.unwrap();
            io.shutdown().await.unwrap();
        });
        let res = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::new(Bytes::new()))
            .unwrap();
        Ok::<_, Infallible>(res)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(H1Guard::new(server, LIMIT)), svc)
        .with_upgrades();
    tokio::spawn(conn);
    let head: &[u8] =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n";
    client.write_all(&[head, RAW].concat()).await.unwrap();
    let mut got = Vec::new();
    let read = client.read_to_end(&mut got);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap()
        .unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.ends_with(RAW), "{}", String::from_utf8_lossy(&got));
}

proptest::proptest! {
    #![proptest_config(crate::proptest_config())]
    /// However the client's bytes are split into reads, and however small the reader's
    /// buffer, valid requests come out unchanged.
    #[test]
    fn any_split_of_valid_requests_passes_unchanged(
        cuts in proptest::collection::vec(0usize..200, 0..12),
        step in 1usize..64,
    ) {
        let all = [GET, b"\r\n", FIXED, CHUNKED_LAST, GET].concat();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % all.len()).collect();
        cuts.sort_unstable();
        let reads: Vec<&[u8]> = [0].iter().chain(&cuts).zip(cuts.iter().chain([&all.len()]))
            .map(|(&a, &b)| &all[a..b]).filter(|r| !r.is_empty()).collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (out, why) = rt.block_on(through_guard(&reads, step));
        let expected = [GET, FIXED, CHUNKED_LAST, GET].concat();
        proptest::prop_assert_eq!(out, expected);
        proptest::prop_assert_eq!(why, None);
    }
}

#[tokio::test]
async fn head_limit_is_never_below_hypers_minimum() {
    let head = format!("GET / HTTP/1.1\r\nX: {}\r\n\n", "a".repeat(5000));
    let mut guard = H1Guard::new(Script::new(&[head.as_bytes()], true), 100);
    let mut out = Vec::new();
    guard.read_to_end(&mut out).await.unwrap();
    assert_eq!(
        (out.as_slice(), guard.rejected()),
        (POISON, Some(Rejection::BareLf))
    );
}

#[tokio::test]
async fn tunnel_gives_back_the_head_buffer() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut guard = H1Guard::new(server, LIMIT);
    let head: &[u8] =
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nabc";
    client.write_all(head).await.unwrap();
    let mut got = vec![0; head.len() - 3];
    guard.read_exact(&mut got).await.unwrap();
    assert_eq!(got, &head[..head.len() - 3]);
    guard
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        .await
        .unwrap();
    let mut early = [0u8; 3];
    guard.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"abc", "bytes sent before the 101 are kept");
    client.write_all(b"def").await.unwrap();
    let mut more = [0u8; 3];
    guard.read_exact(&mut more).await.unwrap();
    assert_eq!(&more, b"def");
    assert_eq!(guard.core.buf.capacity(), 0, "idle tunnel keeps a buffer");
}
