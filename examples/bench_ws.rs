//! The WebSocket load client for `bench/run.sh` (wrk cannot speak WebSocket).
//!
//! `bench_ws echo URL CONNS SECONDS`: CONNS connections each send a 64-byte binary message and
//! wait for its echo, in a loop, for SECONDS; prints `msgs=N rate=R p99_us=P`.
//! `bench_ws idle URL CONNS PID`: after a warm-up, opens CONNS WebSockets and leaves them
//! silent; prints `rss_before_kib=A rss_after_kib=B bytes_per_conn=C` for process PID.
//! Everything is bounded: the echo run by SECONDS, the idle run by a 10-minute timeout.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;
type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, url, conns, last] = args.as_slice() else {
        return Err("usage: bench_ws echo URL CONNS SECONDS | bench_ws idle URL CONNS PID".into());
    };
    let conns: usize = conns.parse()?;
    match mode.as_str() {
        "echo" => echo(url, conns, Duration::from_secs(last.parse()?)).await,
        "idle" => {
            let run = idle(url, conns, last.parse()?);
            tokio::time::timeout(Duration::from_secs(600), run)
                .await
                .map_err(|_| "idle run took longer than 10 minutes")?
        }
        other => Err(format!("unknown mode {other}").into()),
    }
}

async fn connect(url: &str) -> Result<Ws, Error> {
    let addr = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .ok_or("URL must be ws://HOST:PORT/...")?;
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async(url, tcp).await?;
    Ok(ws)
}

async fn echo(url: &str, conns: usize, window: Duration) -> Result<(), Error> {
    let mut sockets = Vec::with_capacity(conns);
    for _ in 0..conns {
        sockets.push(connect(url).await?);
    }
    let start = Instant::now();
    let deadline = start + window;
    let mut tasks = Vec::with_capacity(conns);
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            let payload = vec![7u8; 64];
            let mut lat = Vec::with_capacity(1 << 16);
            while Instant::now() < deadline {
                let sent = Instant::now();
                ws.send(Message::binary(payload.clone())).await?;
                match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                    Ok(Some(Ok(Message::Binary(_)))) => {}
                    other => return Err::<Vec<u32>, Error>(format!("no echo: {other:?}").into()),
                }
                lat.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            let _ = ws.close(None).await;
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or(0);
    println!(
        "msgs={} rate={:.0} p99_us={p99}",
        all.len(),
        all.len() as f64 / secs
    );
    Ok(())
}

async fn open(url: &str, n: usize) -> Result<Vec<Ws>, Error> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(200);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let url = url.to_owned();
            tasks.push(tokio::spawn(async move { connect(&url).await }));
        }
        for t in tasks {
            all.push(t.await??);
        }
    }
    Ok(all)
}

async fn idle(url: &str, conns: usize, pid: u32) -> Result<(), Error> {
    drop(open(url, 1_000.min(conns)).await?);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = rss_kib(pid)?;
    let mut open_ws = open(url, conns).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(pid)?;
    for ws in open_ws.iter_mut().step_by((conns / 50).max(1)) {
        ws.send(Message::binary(vec![1u8; 64])).await?;
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Binary(_)))) => {}
            other => return Err(format!("a tunnel stopped echoing: {other:?}").into()),
        }
    }
    println!(
        "rss_before_kib={before} rss_after_kib={after} bytes_per_conn={}",
        after.saturating_sub(before) * 1024 / conns.max(1) as u64
    );
    Ok(())
}

fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}
