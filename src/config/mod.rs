//! Configuration: YAML text -> raw serde structs -> validated, immutable `model::Config`.
//! Every problem is reported at once, each with file:line:column and its key path.

mod balancing;
mod diagnostic;
mod locate;
pub mod model;
mod raw;
mod raw_balancing;
mod raw_resilience;
pub mod resilience;
mod units;
mod validate;
mod via;

use std::path::Path;

pub use diagnostic::{ConfigError, Diagnostic, Severity};
pub use locate::Locations;
pub use model::Config;
pub use units::{parse_duration, parse_size, UnitError};

/// Reads and validates the config file at `path`. Relative certificate, key and CA paths are
/// resolved against the file's directory. Returns the config and its warnings.
pub fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    load_located(path).map(|(config, warnings, _)| (config, warnings))
}

/// Like `load`, also returning where each key path sits in the file (for `portico check`'s
/// lints, which report positions like the validator does).
pub fn load_located(path: &Path) -> Result<(Config, Vec<Diagnostic>, Locations), ConfigError> {
    let (text, base_dir) = read(path)?;
    let (mut config, warnings, locations) =
        parse_str_located(&text, &path.display().to_string(), base_dir)?;
    config.source = path.to_path_buf();
    Ok((config, warnings, locations))
}

/// Reads only the `admin:` section of the config file at `path` (for `portico reload`,
/// which must reach the running process even when the rest of the file is being fixed).
pub fn load_admin(path: &Path) -> Result<Option<model::Admin>, ConfigError> {
    let (text, base_dir) = read(path)?;
    let label = path.display().to_string();
    let (raw, locations) = locate::parse_yaml(&text, &label).map_err(|d| ConfigError::Invalid {
        diagnostics: vec![*d],
    })?;
    validate::admin_only(&raw, &locations, &label, base_dir)
}

/// The file's text and the directory its relative paths resolve against.
fn read(path: &Path) -> Result<(String, &Path), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    Ok((text, base_dir))
}

/// Like `parse_str`, also returning where each key path sits (see `load_located`).
pub fn parse_str_located(
    text: &str,
    file_label: &str,
    base_dir: &Path,
) -> Result<(Config, Vec<Diagnostic>, Locations), ConfigError> {
    let (raw, locations) =
        locate::parse_yaml(text, file_label).map_err(|d| ConfigError::Invalid {
            diagnostics: vec![*d],
        })?;
    let (config, warnings) = validate::validate(raw, &locations, file_label, base_dir)?;
    Ok((config, warnings, locations))
}

/// Validates config text. `file_label` names the text in diagnostics (and becomes
/// `Config::source`); relative file paths in it are resolved against `base_dir`.
pub fn parse_str(
    text: &str,
    file_label: &str,
    base_dir: &Path,
) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    parse_str_located(text, file_label, base_dir).map(|(config, warnings, _)| (config, warnings))
}

/// A hash of the named files' paths and contents, to tell whether certificates, keys or CA
/// bundles changed on disk between two loads. A file that cannot be read hashes as such (the
/// build that needs it reports the error). Paths in a validated config are already resolved
/// against its directory, so they are read as they are.
pub fn fingerprint_files<'a>(paths: impl IntoIterator<Item = &'a Path>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in paths {
        path.hash(&mut hasher);
        std::fs::read(path).ok().hash(&mut hasher);
    }
    hasher.finish()
}

impl model::UpstreamTls {
    /// The files this upstream's TLS client reads: CA bundle, client certificate and key.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        let pair = self
            .client_cert
            .iter()
            .flat_map(|p| [p.cert.as_path(), p.key.as_path()]);
        self.ca.as_deref().into_iter().chain(pair)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the validation tests spread over the config modules.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every diagnostic for `yaml`: the warnings when valid, else all reported problems.
    pub(crate) fn diagnostics(yaml: &str) -> Vec<Diagnostic> {
        match parse_str(yaml, "config.yaml", Path::new("/etc/portico")) {
            Ok((_, warnings)) => warnings,
            Err(ConfigError::Invalid { diagnostics }) => diagnostics,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    /// Asserts that `yaml` yields exactly one error, at `path` on `line`, containing `needle`.
    pub(crate) fn expect_error(yaml: &str, path: &str, line: u64, needle: &str) {
        let all = diagnostics(yaml);
        let errors: Vec<&Diagnostic> = all
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        let listing = all.iter().map(|d| format!("  {d}\n")).collect::<String>();
        assert_eq!(errors.len(), 1, "expected one error, got:\n{listing}");
        let d = errors[0];
        assert_eq!(d.path, path, "wrong path:\n{listing}");
        assert_eq!(d.line, line, "wrong line:\n{listing}");
        assert!(
            d.message.contains(needle),
            "message lacks {needle:?}:\n{listing}"
        );
    }

    /// Parses a config that must be valid.
    pub(crate) fn valid(yaml: &str) -> (Config, Vec<Diagnostic>) {
        match parse_str(yaml, "config.yaml", Path::new("/etc/portico")) {
            Ok(ok) => ok,
            Err(e) => panic!("config rejected:\n{e}"),
        }
    }
}

#[cfg(test)]
mod tests;
