//! Startup and runtime errors of the server as a whole (request-path errors live in
//! `proxy::ProxyError` and `upstream::UpstreamError`).

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::tls::TlsError;

/// Why Portico could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("listener {listener:?}: TLS: {source}")]
    Tls {
        listener: String,
        #[source]
        source: TlsError,
    },
    #[error("upstream {upstream:?}: TLS: {source}")]
    UpstreamTls {
        upstream: String,
        #[source]
        source: TlsError,
    },
    #[error("listener {listener:?}: cannot bind {addr}: {source}")]
    Bind {
        listener: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}
