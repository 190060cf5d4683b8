//! Zero-downtime binary upgrade with the real binary: a second Portico started with the same
//! `--upgrade-socket` takes over the listening socket while requests keep arriving, the first
//! one drains and exits 0, and no request fails; a second Portico that cannot start leaves
//! the first one serving.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_portico");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, name: &str, addr: SocketAddr, body: &str) -> KillOnDrop {
    spawn_with(dir, name, addr, body, "")
}

/// As `spawn`, with `more` appended to the listeners.
fn spawn_with(dir: &Path, name: &str, addr: SocketAddr, body: &str, more: &str) -> KillOnDrop {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: web\n    bind: \"{addr}\"\n{more}routes:\n  - name: hello\n    respond: {{ status: 200, body: {body} }}\nsettings:\n  grace_period: 5s\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(BIN)
        .args(["-c", config.to_str().unwrap(), "--upgrade-socket"])
        .arg(dir.join("upgrade.sock"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start portico");
    KillOnDrop(child)
}

/// One request on a new connection: the body, or `None` on any failure.
fn get(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer
        .starts_with("HTTP/1.1 200")
        .then(|| answer.rsplit("\r\n\r\n").next().unwrap_or("").to_owned())
}

/// The named logs of `dir`, joined, for failure messages.
fn read_logs(dir: &Path, names: &[&str]) -> String {
    names
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Starts the first process ("old", answering "old") and waits until it serves.
fn start_old(dir: &Path, addr: SocketAddr, logs: impl Fn() -> String) -> KillOnDrop {
    let old = spawn(dir, "old", addr, "old");
    assert!(
        wait_until_blocking(Duration::from_secs(30), || get(addr).as_deref()
            == Some("old")),
        "the first process never answered:\n{}",
        logs()
    );
    old
}

#[test]
fn upgrade_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let addr = unused_addr();
    let logs = || read_logs(dir.path(), &["old.log", "new.log"]);
    let mut old = start_old(dir.path(), addr, logs);
    let (stop, failed, served_new) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = {
        let (stop, failed, served_new) = (stop.clone(), failed.clone(), served_new.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut sent = 0;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && sent < 20_000 {
                sent += 1;
                match get(addr).as_deref() {
                    Some("new") => {
                        served_new.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(_) => {}
                    None => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            sent
        })
    };
    let _new = spawn(dir.path(), "new", addr, "new");
    let old_exited = wait_until_blocking(Duration::from_secs(30), || {
        old.0.try_wait().unwrap().is_some()
    });
    assert!(old_exited, "the old process did not exit:\n{}", logs());
    assert!(
        old.0.wait().unwrap().success(),
        "old exit status:\n{}",
        logs()
    );
    let more = served_new.load(Ordering::SeqCst) + 50;
    wait_until_blocking(Duration::from_secs(30), || {
        served_new.load(Ordering::SeqCst) >= more
    });
    stop.store(true, Ordering::SeqCst);
    let sent = load.join().unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "{sent} requests sent:\n{}",
        logs()
    );
    assert!(served_new.load(Ordering::SeqCst) >= 50, "{}", logs());
    assert!(
        logs().contains("took over the listening sockets"),
        "{}",
        logs()
    );
}

/// A new binary that takes the sockets but then cannot start (here: a second listener on an
/// address already in use) exits with an error, and the old one goes on serving: it drains
/// only once the new one reports ready.
#[test]
fn a_new_process_that_fails_to_start_leaves_the_old_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    let addr = unused_addr();
    let logs = || read_logs(dir.path(), &["old.log", "broken.log"]);
    let mut old = start_old(dir.path(), addr, logs);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let more = format!(
        "  - name: extra\n    bind: \"{}\"\n",
        taken.local_addr().unwrap()
    );
    let mut broken = spawn_with(dir.path(), "broken", addr, "broken", &more);
    let failed = wait_until_blocking(Duration::from_secs(30), || {
        broken.0.try_wait().unwrap().is_some()
    });
    assert!(failed, "the broken process kept running:\n{}", logs());
    assert!(!broken.0.wait().unwrap().success(), "{}", logs());
    assert!(
        logs().contains("took over the listening sockets"),
        "{}",
        logs()
    );
    // The old process serves on (a drain would have closed its listener at once).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(get(addr).as_deref(), Some("old"), "{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(old.0.try_wait().unwrap().is_none(), "{}", logs());
}
