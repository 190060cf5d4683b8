//! The chat server behind the example: `GET /` serves the page, `GET /ws` upgrades to a
//! WebSocket (subprotocol `chat`) whose text messages are broadcast to every connected client,
//! the sender included. Shared with the tests, which run it on 127.0.0.1:0.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const PAGE: &str = include_str!("index.html");

/// Serves chat connections accepted on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let (room, _) = broadcast::channel::<String>(256);
    while let Ok((stream, _)) = listener.accept().await {
        let room = room.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, room.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

async fn handle(
    mut req: Request<Incoming>,
    room: broadcast::Sender<String>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let response = match (req.uri().path(), key) {
        ("/ws", Some(key)) => {
            let offered_chat = req
                .headers()
                .get(header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|p| p.trim() == "chat"));
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    member(ws, room).await;
                }
            });
            let mut resp = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "Upgrade")
                .header(
                    header::SEC_WEBSOCKET_ACCEPT,
                    derive_accept_key(key.as_bytes()),
                );
            if offered_chat {
                resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, "chat");
            }
            resp.body(Full::default())
        }
        ("/", _) => Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE.as_bytes()))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found\n"))),
    };
    Ok(response.unwrap_or_else(|_| Response::new(Full::default())))
}

/// One chat member: what it says goes to the room, what the room hears goes to it.
async fn member<S>(ws: WebSocketStream<S>, room: broadcast::Sender<String>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut heard = room.subscribe();
    let (mut tx, mut rx) = ws.split();
    loop {
        tokio::select! {
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let _ = room.send(text.to_string());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            said = heard.recv() => match said {
                Ok(text) => {
                    if tx.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}
