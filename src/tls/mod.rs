//! STUB
use std::path::PathBuf;
use std::sync::Arc;
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("x")]
    X,
}
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub sni: SniIndex,
    pub warnings: Vec<String>,
    pub not_after: Vec<(PathBuf, i64)>,
}
#[derive(Clone)]
pub struct SniIndex;
impl SniIndex {
    pub fn cert_for(&self, _h: &str) -> Option<usize> {
        None
    }
}
pub fn server_tls(_t: &crate::config::model::ListenerTls, _n: &str) -> Result<ServerTls, TlsError> {
    Err(TlsError::X)
}
pub fn client_config(
    _t: &crate::config::model::UpstreamTls,
    _h2: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    Err(TlsError::X)
}
