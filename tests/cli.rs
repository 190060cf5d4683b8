//! The built `portico` binary: `--version`, `check` reporting located errors, and a real start
//! on free loopback ports answering over HTTP and HTTPS, then a graceful exit on SIGTERM.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::ServerName;

const BIN: &str = env!("CARGO_BIN_EXE_portico");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run portico")
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn version_is_printed() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    let text = all_output(&out);
    assert!(text.contains("portico"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn check_reports_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: web\n    bind: \"not-an-address\"\nroutes:\n  - name: r\n    \
         upstream: missing\nupstreams:\n  app:\n    servers: [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let out = run(&["check", "-c", path.to_str().unwrap()]);
    let text = all_output(&out);
    assert!(!out.status.success(), "check accepted a bad file:\n{text}");
    assert!(
        text.contains("bad.yaml:3"),
        "bind error (line 3) missing:\n{text}"
    );
    assert!(
        text.contains("bad.yaml:6"),
        "upstream error (line 6) missing:\n{text}"
    );
    let error_lines = text.lines().filter(|l| l.contains("error")).count();
    assert!(error_lines >= 2, "expected two errors:\n{text}");
}

#[test]
fn check_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.yaml");
    std::fs::write(
        &path,
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: r\n    \
         upstream: app\nupstreams:\n  app:\n    servers: [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let out = run(&["check", "-c", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", all_output(&out));
}

fn http_get(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

fn https_get(addr: SocketAddr, ca: &TestCa) -> Option<String> {
    let config: Arc<rustls::ClientConfig> = ca.client_config(&[b"http/1.1"]);
    let name = ServerName::try_from("up.test").ok()?;
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = Vec::new();
    // A peer closing without close_notify still leaves the complete answer in `answer`.
    let _ = tls.read_to_end(&mut answer);
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// Sends a ClientHello whose SNI is the IP literal `127.0.0.1` (RFC 6066 forbids it; wrk and
/// some scanners send it anyway) and reads what comes back. rustls' client never sends one,
/// so its hello for a name of the same length is patched.
fn ip_sni_hello(addr: SocketAddr, ca: &TestCa) {
    let config: Arc<rustls::ClientConfig> = ca.client_config(&[b"http/1.1"]);
    let name = ServerName::try_from("abcdefg.h").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let at = hello
        .windows(9)
        .position(|w| w == b"abcdefg.h")
        .expect("SNI in the hello");
    hello[at..at + 9].copy_from_slice(b"127.0.0.1");
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp.write_all(&hello).unwrap();
    let mut answer = [0u8; 256];
    let n = tcp.read(&mut answer).unwrap_or(0);
    // The server goes on with the handshake (the name is ignored): a ServerHello record.
    assert!(n > 0 && answer[0] == 0x16, "no ServerHello for an IP SNI");
}

fn answered(answer: Option<String>) -> bool {
    answer.is_some_and(|a| a.starts_with("HTTP/1.1 200") && a.ends_with("up"))
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serves_http_and_https_then_exits_on_sigterm() {
    let ca = TestCa::new();
    let leaf = ca.leaf("up", &["up.test"]);
    let (http, https) = (unused_addr(), unused_addr());
    let config = ca.dir().join("portico.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - name: http\n    bind: \"{http}\"\n  - name: https\n    bind: \"{https}\"\n    \
             tls:\n      certificates: [{{ cert: \"{}\", key: \"{}\" }}]\nroutes:\n  - name: up\n    \
             respond: {{ status: 200, body: up }}\nsettings:\n  grace_period: 5s\n",
            leaf.cert_path.display(),
            leaf.key_path.display()
        ),
    )
    .unwrap();
    let log = ca.dir().join("portico.log");
    let child = Command::new(BIN)
        .args(["-c", config.to_str().unwrap()])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(ca.dir().join("portico.err")).unwrap(),
        ))
        .spawn()
        .expect("start portico");
    let mut child = KillOnDrop(child);
    let logs = || {
        format!(
            "{}{}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(ca.dir().join("portico.err")).unwrap_or_default()
        )
    };
    let up = wait_until_blocking(Duration::from_secs(30), || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "portico exited early:\n{}",
            logs()
        );
        answered(http_get(http)) && answered(https_get(https, &ca))
    });
    assert!(
        up,
        "portico did not answer on both ports within 30s:\n{}",
        logs()
    );

    // A client-chosen oddity in a handshake must not write a log line per connection
    // (rustls warns for each one; a flood of them would be a cheap way to fill a disk).
    for _ in 0..3 {
        ip_sni_hello(https, &ca);
    }
    assert!(answered(https_get(https, &ca)));
    assert!(
        !logs().contains("Illegal SNI"),
        "a log line per IP-SNI handshake:\n{}",
        logs()
    );

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut status = None;
    let exited = wait_until_blocking(Duration::from_secs(15), || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        exited,
        "portico still running 15s after SIGTERM:\n{}",
        logs()
    );
    assert!(
        status.unwrap().success(),
        "exit after SIGTERM: {status:?}\n{}",
        logs()
    );
}

/// Pinned to one CPU, Portico runs on a current-thread runtime: it must serve and drain just
/// the same.
#[test]
fn serves_and_drains_when_pinned_to_one_cpu() {
    if Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("SKIPPED serves_and_drains_when_pinned_to_one_cpu: no taskset");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let http = unused_addr();
    let config = dir.path().join("portico.yaml");
    std::fs::write(
        &config,
        format!("listeners:\n  - name: http\n    bind: \"{http}\"\nroutes:\n  - name: up\n    respond: {{ status: 200, body: up }}\nsettings:\n  grace_period: 5s\n"),
    )
    .unwrap();
    let child = Command::new("taskset")
        .args(["-c", "0", BIN, "-c", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start portico");
    let mut child = KillOnDrop(child);
    assert!(
        wait_until_blocking(Duration::from_secs(30), || answered(http_get(http))),
        "portico pinned to one CPU did not answer"
    );
    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    let exited = wait_until_blocking(Duration::from_secs(15), || {
        status = child.0.try_wait().unwrap();
        status.is_some()
    });
    assert!(exited && status.unwrap().success(), "{status:?}");
}
