//! WebSocket tunnels through Portico (HTTP/1.1 Upgrade): echo over TLS, a 16 MiB message,
//! fragments, ping/pong, close codes both ways, 1,000 concurrent tunnels, and the handshake
//! the backend receives.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use ws_support::*;

async fn setup(block: &str) -> (TestCa, WsBackend, ProxyHandle) {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let proxy = Proxy::start(&config(&ca, backend.addr, block, "")).await;
    (ca, backend, proxy)
}

#[tokio::test]
async fn text_and_binary_echo_through_tls() {
    let (ca, backend, proxy) = setup("").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/chat?room=1").await;
    ws.send(Message::text("hello through portico"))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Some(Message::text("hello through portico"))
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    ws.send(Message::binary(binary.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::binary(binary)));

    let seen = backend.last_handshake();
    let header = |n: &str| {
        seen.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header("upgrade").eq_ignore_ascii_case("websocket"));
    assert!(header("connection")
        .to_ascii_lowercase()
        .contains("upgrade"));
    assert_eq!(header("x-forwarded-proto"), "https");
    assert_eq!(header("x-forwarded-for"), "127.0.0.1");
    assert_eq!(header("host"), "localhost");
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn sixteen_mib_message() {
    let (ca, _backend, proxy) = setup("").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    match next(&mut ws).await {
        Some(Message::Binary(got)) => {
            assert_eq!(got.len(), big.len());
            assert!(got[..] == big[..], "16 MiB message came back changed");
        }
        other => panic!("expected the binary echo, got {other:?}"),
    }
    // And the other way: the backend sends 16 MiB unprompted by an echo.
    ws.send(Message::text(format!("send:{}", 16 * 1024 * 1024)))
        .await
        .unwrap();
    match next(&mut ws).await {
        Some(Message::Binary(got)) => {
            assert!(got.len() == 16 << 20 && got.iter().all(|b| *b == b'b'))
        }
        other => panic!("expected 16 MiB from the backend, got {other:?}"),
    }
}

#[tokio::test]
async fn fragmented_message_is_reassembled_by_the_backend() {
    let (ca, _backend, proxy) = setup("").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    let parts = ["frag", "mented ", "message"];
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(part.as_bytes().to_vec(), opcode, i == parts.len() - 1);
        ws.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(
        next(&mut ws).await,
        Some(Message::text("fragmented message"))
    );
}

#[tokio::test]
async fn ping_gets_its_pong() {
    let (ca, _backend, proxy) = setup("").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(STEP, async {
        loop {
            match futures_util::StreamExt::next(&mut ws).await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(_)) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("pong in time");
    assert_eq!(&pong[..], b"are you there");
}

#[tokio::test]
async fn close_codes_pass_both_ways() {
    let (ca, backend, proxy) = setup("").await;
    // The backend closes with 4001: the client sees exactly that code.
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::text("close:4001")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4001));

    // The client closes with 4002: the backend sees exactly that code.
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4002),
        reason: "client leaves".into(),
    }))
    .await
    .unwrap();
    let closes = backend.closes.clone();
    assert!(
        wait_until(STEP, || {
            let closes = closes.clone();
            async move { closes.lock().unwrap().contains(&Some(4002)) }
        })
        .await,
        "backend saw {:?}",
        backend.closes.lock().unwrap()
    );
}

#[tokio::test]
async fn thousand_concurrent_tunnels() {
    let (_ca, backend, proxy) = setup("").await;
    let addr = proxy.addr("ws");
    let mut clients = Vec::new();
    // Open all of them first so they really are concurrent.
    for _ in 0..1000 {
        clients.push(tokio::spawn(async move { connect(addr, None, "/").await }));
    }
    let mut open = Vec::new();
    for c in clients {
        open.push(c.await.unwrap());
    }
    assert_eq!(backend.handshake_count(), 1000);
    let mut checks = Vec::new();
    for (i, mut ws) in open.into_iter().enumerate() {
        checks.push(tokio::spawn(async move {
            let text = format!("tunnel {i} says hello");
            ws.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(next(&mut ws).await, Some(Message::text(text)));
            ws
        }));
    }
    let mut done = Vec::new();
    for c in checks {
        done.push(c.await.unwrap());
    }
    assert_eq!(done.len(), 1000);
}
