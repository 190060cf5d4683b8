//! Message policy: frames still pass intact, too-big messages close with 1009, floods with
//! 1008, Origin and subprotocol allowlists answer 403, silent clients are pinged (and so
//! survive the idle timeout), and a drain closes both sides with 1001.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use std::time::{Duration, Instant};

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use ws_support::*;

async fn setup(policy: &str) -> (TestCa, WsBackend, ProxyHandle) {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(Some("chat")).await;
    let block = format!("      policy:\n{policy}");
    let proxy = Proxy::start(&config(&ca, backend.addr, &block, "")).await;
    (ca, backend, proxy)
}

async fn backend_saw_close(backend: &WsBackend, code: u16) -> bool {
    let closes = backend.closes.clone();
    wait_until(STEP, || {
        let closes = closes.clone();
        async move { closes.lock().unwrap().contains(&Some(code)) }
    })
    .await
}

#[tokio::test]
async fn frames_pass_intact_under_a_policy() {
    let (ca, _backend, proxy) = setup("        max_message_size: 32MiB\n").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::text("plain text")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("plain text")));
    for (i, part) in ["a", "b", "c"].iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Binary)
        } else {
            OpCode::Data(Data::Continue)
        };
        ws.send(Message::Frame(Frame::message(
            part.as_bytes().to_vec(),
            opcode,
            i == 2,
        )))
        .await
        .unwrap();
    }
    assert_eq!(next(&mut ws).await, Some(Message::binary(b"abc".to_vec())));
    let big = vec![7u8; 16 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::binary(big)));
}

#[tokio::test]
async fn too_big_message_closes_with_1009() {
    let (ca, backend, proxy) = setup("        max_message_size: 1KiB\n").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::text("x".repeat(1000))).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("x".repeat(1000))));
    ws.send(Message::binary(vec![0u8; 2000])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    assert!(backend_saw_close(&backend, 1009).await);

    // The limit holds for the backend's messages too.
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::text("send:5000")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

#[tokio::test]
async fn message_flood_closes_with_1008() {
    let (ca, backend, proxy) = setup("        messages_per_second: 5\n").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    for i in 0..50 {
        if ws.send(Message::text(format!("m{i}"))).await.is_err() {
            break;
        }
    }
    assert_eq!(close_code(&mut ws).await, Some(1008));
    assert!(backend_saw_close(&backend, 1008).await);
}

#[tokio::test]
async fn origin_allowlist_answers_403() {
    let (ca, backend, proxy) = setup("        allowed_origins: [\"https://chat.example\"]\n").await;
    let addr = proxy.addr("wss");
    let with_origin = |o: &str| request("wss://localhost/", &[("origin", o)]);
    assert_eq!(
        try_connect(addr, Some(&ca), with_origin("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(
        try_connect(addr, Some(&ca), request("wss://localhost/", &[]))
            .await
            .err(),
        Some(403)
    );
    assert_eq!(backend.handshake_count(), 0);
    let ok = try_connect(addr, Some(&ca), with_origin("https://Chat.Example")).await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn subprotocol_allowlist_answers_403_and_filters_offers() {
    let (ca, backend, proxy) = setup("        allowed_subprotocols: [chat]\n").await;
    let addr = proxy.addr("wss");
    let offer = |p: &str| request("wss://localhost/", &[("sec-websocket-protocol", p)]);
    assert_eq!(
        try_connect(addr, Some(&ca), offer("superchat")).await.err(),
        Some(403)
    );
    assert_eq!(
        try_connect(addr, Some(&ca), request("wss://localhost/", &[]))
            .await
            .err(),
        Some(403)
    );
    let ok = try_connect(addr, Some(&ca), offer("other, chat")).await;
    assert!(ok.is_ok());
    assert_eq!(
        backend
            .last_handshake()
            .get("sec-websocket-protocol")
            .unwrap(),
        "chat"
    );
}

#[tokio::test]
async fn silent_client_is_pinged_and_outlives_the_idle_timeout() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let block = "      idle_timeout: 1s\n      policy:\n        ping_interval: 200ms\n";
    let proxy = Proxy::start(&config(&ca, backend.addr, block, "")).await;
    let mut ws = connect(proxy.addr("ws"), None, "/").await;
    let mut pings = 0;
    let until = Instant::now() + Duration::from_millis(2500);
    // Reading lets tungstenite answer each ping with a pong, as a browser would.
    while Instant::now() < until {
        match tokio::time::timeout(
            Duration::from_millis(100),
            futures_util::StreamExt::next(&mut ws),
        )
        .await
        {
            Ok(Some(Ok(Message::Ping(p)))) => {
                assert_eq!(&p[..], b"portico-keepalive");
                pings += 1;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    assert!(pings >= 2, "only {pings} pings");
    ws.send(Message::text("still open")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("still open")));
}

#[tokio::test]
async fn drain_closes_both_sides_with_1001() {
    let (ca, backend, mut proxy) = setup("        max_message_size: 1MiB\n").await;
    let mut ws = connect(proxy.addr("wss"), Some(&ca), "/").await;
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut ws).await, Some(Message::text("before")));
    proxy.trigger_shutdown();
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(backend_saw_close(&backend, 1001).await);
    drop(ws);
    assert!(matches!(proxy.join(STEP).await, Some(Ok(()))));
}
