//! RFC 8441: a WebSocket opened as an HTTP/2 extended CONNECT (over TLS with ALPN h2, as
//! browsers do) reaches an HTTP/1.1-only backend as an Upgrade and carries frames both ways;
//! the setting can be switched off per listener.
#![allow(clippy::unwrap_used)]

mod common;
mod ws_support;

use bytes::{Bytes, BytesMut};
use common::*;
use http::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use ws_support::*;

/// A masked client frame (FIN set) with a small payload.
fn client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    assert!(payload.len() < 126);
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f.into()
}

/// Reads data until one complete unmasked server frame is there: (opcode, payload).
async fn server_frame(recv: &mut h2::RecvStream, buf: &mut BytesMut) -> (u8, Vec<u8>) {
    loop {
        if buf.len() >= 2 && buf[1] < 126 && buf.len() >= 2 + buf[1] as usize {
            let len = buf[1] as usize;
            let frame = buf.split_to(2 + len);
            return (frame[0] & 0x0F, frame[2..].to_vec());
        }
        let data = tokio::time::timeout(STEP, recv.data())
            .await
            .expect("data in time")
            .expect("stream open")
            .unwrap();
        recv.flow_control().release_capacity(data.len()).unwrap();
        buf.extend_from_slice(&data);
    }
}

async fn h2_client(addr: std::net::SocketAddr, ca: &TestCa) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(ca.client_config(&[b"h2"]));
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let client = client.ready().await.unwrap();
    // The server's SETTINGS frame may arrive just after the handshake.
    let probe = client.clone();
    wait_until(std::time::Duration::from_secs(2), || {
        let probe = probe.clone();
        async move { probe.is_extended_connect_protocol_enabled() }
    })
    .await;
    client
}

fn connect_request(path: &str) -> Request<()> {
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("https://localhost{path}"))
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "chat")
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("websocket"));
    req
}

#[tokio::test]
async fn extended_connect_round_trip_to_an_http1_backend() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(Some("chat")).await;
    let proxy = Proxy::start(&config(&ca, backend.addr, "", "")).await;
    let mut client = h2_client(proxy.addr("wss"), &ca).await;
    assert!(client.is_extended_connect_protocol_enabled());

    let (response, mut send) = client
        .send_request(connect_request("/chat?room=2"), false)
        .unwrap();
    let response = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "chat"
    );
    assert!(response.headers().get("sec-websocket-accept").is_none());
    let mut recv = response.into_body();
    let mut buf = BytesMut::new();

    send.send_data(client_frame(0x1, b"hello over h2"), false)
        .unwrap();
    assert_eq!(
        server_frame(&mut recv, &mut buf).await,
        (0x1, b"hello over h2".to_vec())
    );
    send.send_data(client_frame(0x2, &[0, 1, 2, 255]), false)
        .unwrap();
    assert_eq!(
        server_frame(&mut recv, &mut buf).await,
        (0x2, vec![0, 1, 2, 255])
    );

    let seen = backend.last_handshake();
    assert!(seen
        .get("upgrade")
        .unwrap()
        .to_str()
        .unwrap()
        .eq_ignore_ascii_case("websocket"));
    assert_eq!(seen.get("sec-websocket-version").unwrap(), "13");
    assert_eq!(seen.get("host").unwrap(), "localhost");
    assert!(
        seen.get("sec-websocket-key").is_some(),
        "Portico made its own key"
    );

    // A close frame from the client comes back as the backend's close.
    let mut close = 1000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    send.send_data(client_frame(0x8, &close), false).unwrap();
    let (opcode, payload) = server_frame(&mut recv, &mut buf).await;
    assert_eq!(opcode, 0x8);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
}

#[tokio::test]
async fn refused_extended_connect_is_an_ordinary_response() {
    let ca = TestCa::new();
    let backend = Backend::http1()
        .fallback(Reply::text(403, "not here"))
        .spawn()
        .await;
    let proxy = Proxy::start(&config(&ca, backend.addr, "", "")).await;
    let mut client = h2_client(proxy.addr("wss"), &ca).await;
    let (response, _send) = client.send_request(connect_request("/"), false).unwrap();
    let response = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The connection is still good for ordinary requests.
    let req = Request::builder()
        .uri("https://localhost/other")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    let response = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(backend.request_count(), 2);
}

#[tokio::test]
async fn connect_protocol_can_be_switched_off_per_listener() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let yaml = config(&ca, backend.addr, "", "").replacen(
        "  - name: ws\n",
        "    http2: { enable_connect_protocol: false }\n  - name: ws\n",
        1,
    );
    let proxy = Proxy::start(&yaml).await;
    let client = h2_client(proxy.addr("wss"), &ca).await;
    assert!(!client.is_extended_connect_protocol_enabled());
}

#[tokio::test]
async fn extended_connect_needs_a_proxied_route() {
    let ca = TestCa::new();
    let backend = WsBackend::spawn(None).await;
    let yaml = config(&ca, backend.addr, "", "").replace(
        "routes:\n",
        "routes:\n  - name: page\n    match: { path: /page }\n    respond: { body: hi }\n",
    );
    let proxy = Proxy::start(&yaml).await;
    let mut client = h2_client(proxy.addr("wss"), &ca).await;
    let (response, _send) = client
        .send_request(connect_request("/page"), false)
        .unwrap();
    let response = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    // An unknown :protocol on a WebSocket route is not tunnelled either.
    let mut req = connect_request("/chat");
    req.extensions_mut()
        .insert(h2::ext::Protocol::from_static("not-websocket"));
    let (response, _send) = client.send_request(req, false).unwrap();
    let response = tokio::time::timeout(STEP, response).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    assert_eq!(backend.handshake_count(), 0);
}
