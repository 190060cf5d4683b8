//! The chat example's server: one HTML page and a WebSocket endpoint that broadcasts every
//! message to everyone connected. Portico puts it behind TLS (see `portico.yaml` and the
//! README's "Chat example" section).
//!
//! Usage: cargo run --example chat [ADDRESS]   (default 127.0.0.1:9100)

mod server;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("chat server on http://{}", listener.local_addr()?);
    server::serve(listener).await;
    Ok(())
}
