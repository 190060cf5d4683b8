//! The neutral origin for `bench/run.sh`: an HTTP/1.1 hyper server on 127.0.0.1 that answers
//! every request with a fixed 13-byte body, `?size=N` with N bytes (at most 64 MiB), and turns
//! `Upgrade: websocket` requests into a WebSocket echo (tokio-tungstenite).
//!
//! Usage: bench_origin PORT

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

const SMALL: &[u8] = b"hello, world\n";
const MAX_SIZE: usize = 64 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: bench_origin PORT")?
        .parse()?;
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("addr {}", listener.local_addr()?);
    // A 1 MiB body is built once and sliced for every `?size=N` up to it.
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let big = big.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, big.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(30))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn handle(
    mut req: Request<Incoming>,
    big: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let wants_ws = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if wants_ws {
        let Some(key) = req.headers().get("sec-websocket-key") else {
            return Ok(status(StatusCode::BAD_REQUEST));
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_binary() || msg.is_text()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        let mut resp = status(StatusCode::SWITCHING_PROTOCOLS);
        let h = resp.headers_mut();
        h.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        h.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = header::HeaderValue::from_str(&accept) {
            h.insert("sec-websocket-accept", v);
        }
        return Ok(resp);
    }
    let size = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("size=")))
        .and_then(|n| n.parse::<usize>().ok());
    let body = match size {
        None => Bytes::from_static(SMALL),
        Some(n) if n <= big.len() => big.slice(..n),
        Some(n) => Bytes::from(vec![b'x'; n.min(MAX_SIZE)]),
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}
