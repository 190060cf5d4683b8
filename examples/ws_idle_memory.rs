//! Measures Portico's memory per idle WebSocket tunnel. Starts a small WebSocket echo backend
//! (this program with `backend`, in its own process), one or more `portico` processes in front
//! of it (plain listener on 127.0.0.1:0), opens N WebSockets through them that then stay silent,
//! and reports how much the proxies' resident memory grew per tunnel. Each process stays under
//! the descriptor limit (a proxy needs two per tunnel), so 10,000 tunnels may be spread over
//! two proxies. Run it through `bench/ws-idle-memory.sh`, which builds both binaries.
//!
//! Usage: ws_idle_memory PORTICO_BINARY [TUNNELS] [TUNNELS_PER_PROXY]
//!        ws_idle_memory backend

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
    let first = args
        .next()
        .ok_or("usage: ws_idle_memory PORTICO_BINARY [TUNNELS] [TUNNELS_PER_PROXY]")?;
    if first == "backend" {
        return backend().await;
    }
    let tunnels: usize = args.next().map_or(Ok(10_000), |n| n.parse())?;
    let per_proxy: usize = args.next().map_or(Ok(5_000), |n| n.parse())?;
    // Everything below is bounded: the whole run gives up after ten minutes.
    let run = measure(&first, tunnels, per_proxy.max(1));
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .map_err(|_| "measurement took longer than 10 minutes")?
}

async fn measure(
    binary: &str,
    tunnels: usize,
    per_proxy: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut backend = KillOnDrop(
        Command::new(std::env::current_exe()?)
            .arg("backend")
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let backend_out = backend.0.stdout.take().ok_or("no stdout")?;
    let backend_addr = first_addr(backend_out, "addr ").await?;
    let dir = std::env::temp_dir().join(format!("portico-ws-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("portico.yaml");
    std::fs::write(
        &config,
        format!(
            "settings: {{ access_log: false }}\nlisteners:\n  - name: ws\n    bind: \"127.0.0.1:0\"\n    limits: {{ max_connections: 200000, max_tunnels: 200000 }}\nroutes:\n  - name: ws\n    upstream: echo\nupstreams:\n  echo:\n    servers: [\"{backend_addr}\"]\n"
        ),
    )?;
    let mut proxies = Vec::new();
    for _ in 0..tunnels.div_ceil(per_proxy) {
        let mut child = KillOnDrop(
            Command::new(binary)
                .arg("--config")
                .arg(&config)
                .args(["--log-format", "json", "--log-level", "info"])
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?,
        );
        let stdout = child.0.stdout.take().ok_or("no stdout")?;
        let addr = first_addr(stdout, "\"addr\":\"").await?;
        proxies.push((child, addr));
    }
    let result = run_with(&proxies, tunnels, per_proxy).await;
    drop(proxies);
    drop(backend);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_with(
    proxies: &[(KillOnDrop, SocketAddr)],
    tunnels: usize,
    per_proxy: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let rss = || -> Result<u64, Box<dyn std::error::Error>> {
        proxies.iter().map(|(c, _)| rss_kib(c.0.id())).sum()
    };
    println!(
        "{} portico process(es); opening {tunnels} idle tunnels",
        proxies.len()
    );
    // Warm up: the allocator and tokio reach their steady shape before the baseline.
    for (_, addr) in proxies {
        drop(open(*addr, 1_000.min(per_proxy)).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss()?;
    let mut open_ws = Vec::with_capacity(tunnels);
    for (i, (_, addr)) in proxies.iter().enumerate() {
        let n = per_proxy.min(tunnels - i * per_proxy);
        open_ws.extend(open(*addr, n).await?);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss()?;

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

/// The `backend` mode: a WebSocket echo server on 127.0.0.1:0 that prints its address and
/// runs until its parent kills it.
async fn backend() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("addr {}", listener.local_addr()?);
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
    Ok(())
}

/// Ends the proxy however the measurement ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads a child's output until an address follows `marker` (Portico's JSON `listening` line,
/// the backend's `addr` line); a thread keeps draining the output afterwards so the child
/// never blocks on a full pipe.
async fn first_addr(
    stdout: std::process::ChildStdout,
    marker: &'static str,
) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let addr = line
                .split(marker)
                .nth(1)
                .and_then(|rest| rest.split(['"', ' ']).next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let (Some(addr), Some(tx)) = (addr, tx.take()) {
                let _ = tx.send(addr);
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(_)) => Err("child exited before listening".into()),
        Err(_) => Err("child did not start listening within 30s".into()),
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
