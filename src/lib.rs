//! Portico: a TLS-terminating HTTP/1.1 + HTTP/2 reverse proxy.
//!
//! Request lifecycle: `listener` accepts -> `conn` (TLS handshake, ALPN, hyper with limits,
//! strict HTTP/1 framing guard) -> `proxy::handle` (one `state::Snapshot`, validate,
//! `normalize`, `router`, action) -> `proxy::forward` (header rules, `upstream` balancer and
//! pool) -> response streamed back, one access record. Layer 4 listeners go from `listener`
//! to `l4` instead: TCP tunnels, or TLS routed by SNI without decrypting. See
//! docs/architecture.md.

pub mod admin;
pub mod body;
pub mod config;
pub mod conn;
pub mod error;
pub mod explain;
pub mod l4;
pub mod lint;
pub mod listener;
pub mod metrics;
pub mod net;
pub mod normalize;
pub mod proxy;
pub mod reload;
pub mod router;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod tls;
pub mod upgrade;
pub mod upstream;

pub use config::model::Config;
pub use error::Error;
pub use server::Server;
pub use shutdown::Shutdown;

/// The property tests' settings: a failing case is kept next to the test's source file
/// (`<file>.proptest-regressions`), not in a top-level `proptest-regressions/` directory.
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::test_runner::Config::default()
    }
}
