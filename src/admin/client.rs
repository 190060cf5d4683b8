//! The client side of `portico reload`: one `POST /reload` to the admin listener named in the
//! config file, with its bearer token. Plain blocking HTTP/1.1 on loopback; no client stack.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::model::Admin;

/// Why the admin listener could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin listener at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin listener at {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin listener at {addr} sent no HTTP response")]
    Malformed { addr: SocketAddr },
}

/// Where to connect for an admin bound to `bind` (a wildcard bind is reached on loopback).
pub fn connect_addr(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, bind.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, bind.port()).into(),
        _ => bind,
    }
}

/// Sends `POST /reload` (`?dry_run=1` for a dry run); returns the status code and body.
pub fn post_reload(admin: &Admin, dry_run: bool) -> Result<(u16, String), ClientError> {
    let addr = connect_addr(admin.bind);
    let timeout = Duration::from_secs(60);
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|source| ClientError::Connect { addr, source })?;
    let io = |source| ClientError::Io { addr, source };
    tcp.set_read_timeout(Some(timeout)).map_err(io)?;
    let auth = admin.token.as_ref().map_or(String::new(), |t| {
        format!("Authorization: Bearer {}\r\n", t.expose())
    });
    let path = if dry_run {
        "/reload?dry_run=1"
    } else {
        "/reload"
    };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(ClientError::Malformed { addr })?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(ClientError::Malformed { addr })?;
    Ok((status, body.to_owned()))
}
