//! The shipped `config.yaml` as a newcomer runs it: the real binary, the real file (only its
//! ports swapped for free ones), a generated development CA, and answers on both ports.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{unused_addr, wait_until_blocking};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_portico");

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(stream: &mut impl ReadWrite, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    get(&mut tcp, path)
}

/// GET over TLS, trusting only the CA file Portico generated.
fn https_get(addr: SocketAddr, ca_file: &Path, path: &str) -> String {
    let Ok(ca) = CertificateDer::from_pem_file(ca_file) else {
        return String::new();
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let Ok(tcp) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return String::new();
    };
    tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    get(&mut rustls::StreamOwned::new(conn, tcp), path)
}

#[test]
fn shipped_config_serves_http_and_https_with_a_generated_dev_ca() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.yaml")).unwrap();
    assert!(shipped.contains("127.0.0.1:8080") && shipped.contains("127.0.0.1:8443"));
    let (http, https, api) = (unused_addr(), unused_addr(), unused_addr());
    let text = shipped
        .replace("127.0.0.1:8080", &http.to_string())
        .replace("127.0.0.1:8443", &https.to_string())
        .replace("127.0.0.1:9000", &api.to_string());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("portico.log");
    let child = Command::new(BIN)
        .args(["run", "-c", config.to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let ca_file = dir.path().join("certs/portico-dev-ca.pem");
    let ok = |answer: &str| {
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("Portico is running\n")
    };
    let up = wait_until_blocking(Duration::from_secs(30), || {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "portico exited early"
        );
        ok(&http_get(http, "/")) && ok(&https_get(https, &ca_file, "/"))
    });
    assert!(
        up,
        "no answer on both ports:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(dir.path().join("certs/portico-dev.pem").exists());
    let health = http_get(http, "/healthz");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
    // Nothing listens behind the example upstream here: a clear 502, not a hang.
    let api = http_get(http, "/api/x");
    assert!(api.starts_with("HTTP/1.1 502"), "{api}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("curl --cacert"),
        "the log explains how to trust the CA:\n{log_text}"
    );
}
