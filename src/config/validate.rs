//! Raw structs -> validated `Config`: applies defaults, resolves references and reports every
//! problem found (never only the first), each with its key path and line:column.

mod action;
mod admin;
mod balancing;
mod l4;
mod listener;
mod matcher;
mod resilience;
mod route;
mod upstream;
mod websocket;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::diagnostic::{ConfigError, Diagnostic, Severity};
use super::locate::Locations;
use super::model::{Config, Settings, Via};
use super::raw::{RawConfig, RawSettings};
use super::units;

/// Collects diagnostics while the raw config is walked, and knows where each path is.
pub(crate) struct Ctx<'a> {
    file: &'a str,
    base_dir: &'a Path,
    locations: &'a Locations,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Ctx<'a> {
    fn new(file: &'a str, base_dir: &'a Path, locations: &'a Locations) -> Self {
        Self {
            file,
            base_dir,
            locations,
            diagnostics: Vec::new(),
        }
    }

    fn push(&mut self, severity: Severity, path: &str, message: String) {
        let (line, column) = self.locations.find(path);
        self.diagnostics.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line,
            column,
            path: path.to_owned(),
            message,
        });
    }

    pub(crate) fn error(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Error, path, message.into());
    }

    pub(crate) fn warning(&mut self, path: &str, message: impl Into<String>) {
        self.push(Severity::Warning, path, message.into());
    }

    fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// A key the schema cannot do without; reports it when absent.
    pub(crate) fn required<'v>(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&'v String>,
    ) -> Option<&'v str> {
        let path = join(parent, key);
        match value {
            None => {
                self.error(&path, format!("missing required key {key:?}"));
                None
            }
            Some(v) if v.trim().is_empty() => {
                self.error(&path, "must not be empty");
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A positive duration, or `default` when absent.
    pub(crate) fn duration(
        &mut self,
        path: &str,
        value: Option<&String>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(text) = value else {
            return Some(default);
        };
        match units::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(path, "must be greater than 0");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// A positive byte size that fits `T`, or `default` when absent.
    pub(crate) fn size<T: TryFrom<u64>>(
        &mut self,
        path: &str,
        value: Option<&String>,
        default: T,
    ) -> Option<T> {
        let Some(text) = value else {
            return Some(default);
        };
        match units::parse_size(text) {
            Ok(0) => {
                self.error(path, "must be greater than 0");
                None
            }
            Ok(n) => T::try_from(n).ok().or_else(|| {
                self.error(path, format!("size {text:?} is too large here"));
                None
            }),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    /// A count that must be at least 1, or `default` when absent.
    pub(crate) fn positive<T: Copy + PartialEq + Default>(
        &mut self,
        path: &str,
        value: Option<T>,
        default: T,
    ) -> Option<T> {
        match value {
            None => Some(default),
            Some(v) if v == T::default() => {
                self.error(path, "must be greater than 0");
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A file path, resolved against the config file's directory when relative.
    pub(crate) fn file_path(
        &mut self,
        parent: &str,
        key: &str,
        value: Option<&String>,
    ) -> Option<PathBuf> {
        let text = self.required(parent, key, value)?;
        let path = Path::new(text);
        Some(if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        })
    }
}

/// `parent.key`, or just `key` at the top level.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Checks the whole raw config. Returns the config and its warnings, or every diagnostic.
pub fn validate(
    raw: RawConfig,
    locations: &Locations,
    file: &str,
    base_dir: &Path,
) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let mut ctx = Ctx::new(file, base_dir, locations);
    let settings = settings(&mut ctx, raw.settings.unwrap_or_default());
    let raw_listeners = raw.listeners.unwrap_or_default();
    let raw_routes = raw.routes.unwrap_or_default();
    let raw_upstreams = raw.upstreams.unwrap_or_default().0;

    let listeners = listener::listeners(&mut ctx, &raw_listeners, &raw_upstreams);
    let names = route::ListenerNames::new(&raw_listeners);
    let upstream_names: Vec<&str> = raw_upstreams.iter().map(|(n, _)| n.as_str()).collect();
    let routes = route::routes(&mut ctx, &raw_routes, &names, &upstream_names);
    let upstreams = upstream::upstreams(&mut ctx, &raw_upstreams, &raw_routes, &raw_listeners);
    let admin = admin::admin(&mut ctx, raw.admin.as_ref(), listeners.as_deref());

    let complete = settings.is_some()
        && listeners.is_some()
        && routes.is_some()
        && upstreams.is_some()
        && admin.is_some();
    if !complete && !ctx.has_errors() {
        // Every check that yields no value reports why; this keeps a missed report from
        // turning into an unexplained rejection.
        ctx.error("", "configuration is incomplete");
    }
    let failed = ctx.has_errors();
    let mut diagnostics = std::mem::take(&mut ctx.diagnostics);
    // Unknown positions (0) sort last; within a line, by column; otherwise discovery order.
    diagnostics.sort_by_key(|d| (d.line == 0, d.line, d.column));
    match (settings, listeners, routes, upstreams, admin) {
        (Some(settings), Some(listeners), Some(routes), Some(upstreams), Some(admin))
            if !failed =>
        {
            let config = Config {
                source: PathBuf::from(file),
                base_dir: base_dir.to_path_buf(),
                listeners,
                routes,
                upstreams,
                settings,
                admin,
            };
            Ok((config, diagnostics))
        }
        _ => Err(ConfigError::Invalid { diagnostics }),
    }
}

/// Only the `admin:` section (what `portico reload` needs to reach the running process,
/// even when the rest of the file has errors).
pub fn admin_only(
    raw: &RawConfig,
    locations: &Locations,
    file: &str,
    base_dir: &Path,
) -> Result<Option<super::model::Admin>, ConfigError> {
    let mut ctx = Ctx::new(file, base_dir, locations);
    match admin::admin(&mut ctx, raw.admin.as_ref(), None) {
        Some(admin) if !ctx.has_errors() => Ok(admin),
        _ => Err(ConfigError::Invalid {
            diagnostics: ctx.diagnostics,
        }),
    }
}

fn settings(ctx: &mut Ctx<'_>, raw: RawSettings) -> Option<Settings> {
    let mut trusted_proxies = Vec::new();
    let mut ok = true;
    for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
        match parse_net(text) {
            Some(net) => trusted_proxies.push(net),
            None => {
                ctx.error(
                    &format!("settings.trusted_proxies[{i}]"),
                    format!("{text:?} is not an IP address or CIDR range (like 10.0.0.0/8 or 127.0.0.1)"),
                );
                ok = false;
            }
        }
    }
    let grace_period = ctx.duration(
        "settings.grace_period",
        raw.grace_period.as_ref(),
        Duration::from_secs(30),
    );
    let via = raw.via.unwrap_or_else(|| "portico".to_owned());
    if via.is_empty() || !via.bytes().all(is_tchar) {
        ctx.error(
            "settings.via",
            format!(
                "{via:?} must be a non-empty HTTP token (letters, digits, and !#$%&'*+-.^_`|~)"
            ),
        );
        ok = false;
    }
    Some(Settings {
        trusted_proxies,
        access_log: raw.access_log.unwrap_or(true),
        grace_period: grace_period?,
        via: Via::new(&via),
    })
    .filter(|_| ok)
}

/// A CIDR range, or a bare address meaning just that host (/32 or /128).
pub(crate) fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

/// RFC 9110 token characters.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{diagnostics, expect_error};
    use crate::config::Severity;

    const LISTENER: &str = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n";

    #[test]
    fn settings_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("settings:\n  trusted_proxies: [10.0.0.0/8, nope]\n", "settings.trusted_proxies[1]", 2, "\"nope\" is not an IP address or CIDR range"),
            ("settings:\n  grace_period: 0s\n", "settings.grace_period", 2, "must be greater than 0"),
            ("settings:\n  grace_period: 30\n", "settings.grace_period", 2, "invalid duration \"30\""),
            ("settings:\n  via: \"my proxy\"\n", "settings.via", 2, "must be a non-empty HTTP token"),
            ("settings:\n  via: \"\"\n", "settings.via", 2, "must be a non-empty HTTP token"),
        ];
        for (yaml, path, line, needle) in cases {
            expect_error(&format!("{yaml}{LISTENER}"), path, *line, needle);
        }
    }

    #[test]
    fn trusted_proxies_accept_bare_addresses_and_ranges() {
        let yaml = format!(
            "settings:\n  trusted_proxies: [\"::1\", 192.168.1.7/24, fd00::/8]\n{LISTENER}"
        );
        let (config, _) = crate::config::testing::valid(&yaml);
        let nets: Vec<String> = config
            .settings
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["::1/128", "192.168.1.0/24", "fd00::/8"]);
    }

    #[test]
    fn diagnostics_come_out_in_file_order() {
        let yaml = "listeners:\n  - name: a\n    bind: nowhere\n  - bind: 127.0.0.1:1\nsettings:\n  via: \"a b\"\n";
        let d = diagnostics(yaml);
        let lines: Vec<u64> = d
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.line)
            .collect();
        assert_eq!(lines, [3, 4, 6]);
    }
}
