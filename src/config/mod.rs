//! STUB (replaced by the config helper's delivery).
pub mod model;
pub use model::Config;
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub path: String,
    pub message: String,
}
impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid")]
    Invalid { diagnostics: Vec<Diagnostic> },
}
pub fn load(_path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    Err(ConfigError::Invalid {
        diagnostics: vec![],
    })
}
pub fn parse_str(_t: &str, _f: &str, _b: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    Err(ConfigError::Invalid {
        diagnostics: vec![],
    })
}
