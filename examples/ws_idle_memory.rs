//! Measures Portico's memory per idle WebSocket tunnel. Runs a small WebSocket echo backend in
//! this process, starts the given `portico` binary in front of it (plain listener on
//! 127.0.0.1:0), opens N WebSockets through it that then stay silent, and reports how much the
//! proxy's resident memory grew. Run it through `scripts/ws-idle-memory.sh`, which raises the
//! descriptor limit (2 per tunnel here, 2 in the proxy) and builds both binaries.
//!
//! Usage: ws_idle_memory PORTICO_BINARY [TUNNELS]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .ok_or("usage: ws_idle_memory PORTICO_BINARY [TUNNELS]")?;
    let tunnels: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    // Everything below is bounded: the whole run gives up after ten minutes.
    tokio::time::timeout(Duration::from_secs(600), measure(&binary, tunnels))
        .await
        .map_err(|_| "measurement took longer than 10 minutes")?
}

async fn measure(binary: &str, tunnels: usize) -> Result<(), Box<dyn std::error::Error>> {
    let backend = spawn_backend().await?;
    let dir = std::env::temp_dir().join(format!("portico-ws-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("portico.yaml");
    std::fs::write(
        &config,
        format!(
            "settings: {{ access_log: false }}\nlisteners:\n  - name: ws\n    bind: \"127.0.0.1:0\"\n    limits: {{ max_connections: 200000, max_tunnels: 200000 }}\nroutes:\n  - name: ws\n    upstream: echo\nupstreams:\n  echo:\n    servers: [\"{backend}\"]\n"
        ),
    )?;
    let child = Command::new(binary)
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "--log-level", "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut child = KillOnDrop(child);
    let result = run_with(&mut child.0, tunnels).await;
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_with(child: &mut Child, tunnels: usize) -> Result<(), Box<dyn std::error::Error>> {
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let proxy = listening_addr(stdout).await?;
    println!("portico pid {pid} listening on {proxy}; opening {tunnels} idle tunnels");

    // Warm up: the allocator and tokio reach their steady shape before the baseline.
    let warm = open(proxy, 1_000.min(tunnels)).await?;
    drop(warm);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;

    let mut open_ws = open(proxy, tunnels).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;

    // The tunnels must be real: a sample still echoes.
    for ws in open_ws.iter_mut().step_by((tunnels / 100).max(1)) {
        ws.send(Message::text("still there")).await?;
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "still there" => {}
            other => return Err(format!("a tunnel stopped echoing: {other:?}").into()),
        }
    }
    let grown = after.saturating_sub(before);
    println!("RSS before: {before} KiB, with {tunnels} idle tunnels: {after} KiB");
    println!(
        "per idle tunnel: {:.2} KiB ({} bytes)",
        grown as f64 / tunnels as f64,
        grown * 1024 / tunnels as u64
    );
    Ok(())
}

/// Opens `n` WebSockets through the proxy, at most 200 handshakes at a time.
async fn open(proxy: SocketAddr, n: usize) -> Result<Vec<Ws>, Box<dyn std::error::Error>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(200);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            tasks.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(proxy).await?;
                let (ws, _) = tokio_tungstenite::client_async("ws://localhost/idle", tcp).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(ws)
            }));
        }
        for t in tasks {
            all.push(t.await?.map_err(|e| e.to_string())?);
        }
    }
    Ok(all)
}

/// A WebSocket echo server on 127.0.0.1:0.
async fn spawn_backend() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Ends the proxy however the measurement ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads Portico's JSON log until the `listening` line and returns its address; a thread
/// keeps draining the log afterwards so the proxy never blocks on a full pipe.
async fn listening_addr(
    stdout: std::process::ChildStdout,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let addr = line
                .split("\"addr\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let (Some(addr), Some(tx)) = (addr, tx.take()) {
                let _ = tx.send(addr);
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(_)) => Err("portico exited before listening".into()),
        Err(_) => Err("portico did not start listening within 30s".into()),
    }
}

fn rss_kib(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}
