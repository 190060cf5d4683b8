//! The session log: one record per Layer 4 connection, written when it ends, whether it was
//! tunnelled or refused (listener, client, SNI, upstream, backend, bytes each way, duration,
//! how it ended).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::copy::{Counters, End};
use super::L4Error;

/// What is known about one Layer 4 connection so far.
pub struct Session {
    pub listener: String,
    pub mode: &'static str,
    /// The socket's peer (a load balancer when it sent a PROXY header).
    pub peer: SocketAddr,
    /// The original client: the peer, or the source a trusted PROXY header gave.
    pub client: SocketAddr,
    /// PROXY protocol version received from a trusted peer.
    pub proxy_version: Option<u8>,
    pub sni: Option<String>,
    pub upstream: Option<String>,
    pub backend: Option<SocketAddr>,
    started: Instant,
}

impl Session {
    pub fn new(listener: &str, mode: &'static str, peer: SocketAddr) -> Self {
        Session {
            listener: listener.to_owned(),
            mode,
            peer,
            client: peer,
            proxy_version: None,
            sni: None,
            upstream: None,
            backend: None,
            started: Instant::now(),
        }
    }

    /// Writes the record (target `portico::l4`).
    pub fn log(&self, counters: &Counters, outcome: &Result<End, L4Error>) {
        let (end, error) = match outcome {
            Ok(End::Closed) => ("closed", None),
            Ok(End::IdleTimeout) => ("idle_timeout", None),
            Ok(End::Drained) => ("drain", None),
            Ok(End::Failed { side, error }) => (side.error_kind(), Some(error.to_string())),
            Err(e) => (e.kind(), Some(e.to_string())),
        };
        let dash = || "-".to_owned();
        tracing::info!(
            target: "portico::l4",
            listener = %self.listener,
            mode = self.mode,
            client = %self.client,
            peer = %self.peer,
            proxy_protocol = self.proxy_version.map_or_else(dash, |v| format!("v{v}")),
            sni = self.sni.as_deref().unwrap_or("-"),
            upstream = self.upstream.as_deref().unwrap_or("-"),
            backend = %self.backend.map_or_else(dash, |b| b.to_string()),
            bytes_in = counters.client_to_backend.load(Ordering::Relaxed),
            bytes_out = counters.backend_to_client.load(Ordering::Relaxed),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            end,
            error = error.as_deref().unwrap_or("-"),
            "session",
        );
    }
}
