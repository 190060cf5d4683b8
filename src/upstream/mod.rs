//! Upstream pools: which backends exist, how to pick one (`balancer`) and how to reach it
//! over pooled keep-alive connections (`pool`).

mod backend;
pub mod balancer;
mod checkin;
pub mod dns;
pub mod health;
pub mod limits;
pub mod outlier;
mod pick;
pub mod pool;
mod select;

pub use pick::{carried, Picked, RequestInfo};
pub use pool::{Backend, UpstreamPool};

use std::time::Duration;

/// What went wrong talking to a backend; decides the status the client sees.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    #[error("TLS to backend failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("HTTP handshake with backend failed: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("backend request failed: {source}")]
    Request {
        #[source]
        source: hyper::Error,
        /// The request went out on a pooled connection that had served before.
        reused: bool,
    },
    #[error("no response within {0:?}")]
    ResponseTimeout(Duration),
    #[error("no usable backend")]
    NoBackend,
    #[error("cannot build the backend request: {0}")]
    Invalid(&'static str),
    #[error("over the limit: {0}")]
    Overloaded(&'static str),
}

impl UpstreamError {
    /// The status the client gets for this failure.
    pub fn status(&self) -> http::StatusCode {
        match self {
            UpstreamError::ConnectTimeout(_) | UpstreamError::ResponseTimeout(_) => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            UpstreamError::NoBackend | UpstreamError::Overloaded(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Invalid(_) => http::StatusCode::BAD_REQUEST,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::ConnectTimeout(_) => "connect_timeout",
            UpstreamError::Tls(_) => "tls",
            UpstreamError::Handshake(_) => "handshake",
            UpstreamError::Request { .. } => "protocol",
            UpstreamError::ResponseTimeout(_) => "timeout",
            UpstreamError::NoBackend => "no_backend",
            UpstreamError::Overloaded(_) => "overloaded",
            UpstreamError::Invalid(_) => "invalid",
        }
    }
}
