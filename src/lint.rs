//! `portico check` lints: problems a valid config can still have, each a warning with
//! file:line:column and key path, after the validator's own warnings (which already cover
//! unused upstreams and routes behind a catch-all). Routes shadowed by an earlier, narrower
//! route, TLS hosts no certificate covers, WebSocket routes to an h2-only upstream, and
//! timeouts so large they are probably a mistake.

mod shadow;

use std::time::Duration;

use crate::config::model::{Action, Config, HostMatch, ListenerMode, UpstreamProtocol};
use crate::config::{Diagnostic, Locations, Severity};

/// Timeouts past these are reported (they hold sockets and memory for that long).
const LARGE_RESPONSE: Duration = Duration::from_secs(300);
const LARGE_CONNECT: Duration = Duration::from_secs(30);
const LARGE_HEADER_READ: Duration = Duration::from_secs(60);
const LARGE_IDLE: Duration = Duration::from_secs(3600);

/// Every lint finding for `config` (already validated), located through `locations`.
pub fn lint(config: &Config, locations: &Locations) -> Vec<Diagnostic> {
    let file = config.source.display().to_string();
    let mut out = Lints {
        file,
        locations,
        found: Vec::new(),
    };
    shadowed_routes(config, &mut out);
    uncovered_hosts(config, &mut out);
    websocket_to_h2(config, &mut out);
    large_timeouts(config, &mut out);
    out.found
}

struct Lints<'a> {
    file: String,
    locations: &'a Locations,
    found: Vec<Diagnostic>,
}

impl Lints<'_> {
    fn warn(&mut self, path: String, message: String) {
        let (line, column) = self.locations.find(&path);
        self.found.push(Diagnostic {
            severity: Severity::Warning,
            file: self.file.clone(),
            line,
            column,
            path,
            message,
        });
    }
}

fn shadowed_routes(config: &Config, out: &mut Lints<'_>) {
    for (j, later) in config.routes.iter().enumerate() {
        let earlier = config.routes[..j].iter().find(|e| shadow::covers(e, later));
        // Behind a route with no conditions at all: the validator already says so.
        if let Some(e) = earlier.filter(|e| !shadow::matches_everything(e)) {
            out.warn(
                format!("routes[{j}]"),
                format!(
                    "route \"{}\" is never reached: route \"{}\" before it matches every request it would",
                    later.name, e.name
                ),
            );
        }
    }
}

fn uncovered_hosts(config: &Config, out: &mut Lints<'_>) {
    for listener in &config.listeners {
        let Some(tls) = &listener.tls else { continue };
        if !matches!(listener.mode, ListenerMode::Http) {
            continue;
        }
        // Development certificates are made for exactly the names listed; real ones are read.
        let covered: Box<dyn Fn(&str) -> bool> = if !tls.self_signed.is_empty() {
            let names = tls.self_signed.clone();
            Box::new(move |host| names.iter().any(|n| san_covers(n, host)))
        } else {
            match crate::tls::server_tls_in(tls, &listener.name, &config.base_dir) {
                Ok(built) => Box::new(move |host| built.sni.cert_for(host).is_some()),
                // A certificate that cannot be loaded is reported by the build itself.
                Err(_) => continue,
            }
        };
        for (i, route) in config.routes.iter().enumerate() {
            if !route.listeners.is_empty() && !route.listeners.contains(&listener.name) {
                continue;
            }
            for host in &route.matcher.hosts {
                let probe = match host {
                    HostMatch::Exact(h) => h.clone(),
                    HostMatch::Suffix(s) => format!("any{s}"),
                };
                if !covered(&probe) {
                    let shown = match host {
                        HostMatch::Exact(h) => h.clone(),
                        HostMatch::Suffix(s) => format!("*{s}"),
                    };
                    out.warn(
                        format!("routes[{i}].match.host"),
                        format!(
                            "no certificate of TLS listener \"{}\" covers host \"{shown}\" (clients get a name mismatch)",
                            listener.name
                        ),
                    );
                }
            }
        }
    }
}

/// Whether a certificate name (`a.example.com` or `*.example.com`) covers `host`.
fn san_covers(name: &str, host: &str) -> bool {
    let (name, host) = (name.to_ascii_lowercase(), host.to_ascii_lowercase());
    match name.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && !host[..host.len() - suffix.len()].contains('.'),
        None => name == host,
    }
}

fn websocket_to_h2(config: &Config, out: &mut Lints<'_>) {
    for (i, route) in config.routes.iter().enumerate() {
        let Action::Proxy { upstream } = route.action else {
            continue;
        };
        let Some(u) = config.upstreams.get(upstream) else {
            continue;
        };
        if route.websocket.enabled && u.protocol == UpstreamProtocol::H2 {
            out.warn(
                format!("routes[{i}].websocket"),
                format!(
                    "WebSocket upgrades go to upstream \"{}\" over a dedicated HTTP/1.1 connection (TLS, ALPN http/1.1); a backend that only speaks h2 refuses them (set `websocket: {{ enabled: false }}` if none are expected)",
                    u.name
                ),
            );
        }
    }
}

fn large_timeouts(config: &Config, out: &mut Lints<'_>) {
    let mut check = |path: String, value: Duration, limit: Duration, what: &str| {
        if value > limit {
            out.warn(
                path,
                format!(
                    "{what} of {} is very large (over {}): stuck peers hold sockets and memory that long",
                    humantime::format_duration(value),
                    humantime::format_duration(limit)
                ),
            );
        }
    };
    for u in &config.upstreams {
        let base = format!("upstreams.{}.timeouts", u.name);
        check(
            format!("{base}.response"),
            u.timeouts.response,
            LARGE_RESPONSE,
            "response timeout",
        );
        check(
            format!("{base}.connect"),
            u.timeouts.connect,
            LARGE_CONNECT,
            "connect timeout",
        );
    }
    for (i, l) in config.listeners.iter().enumerate() {
        if l.mode.is_layer4() {
            continue;
        }
        let base = format!("listeners[{i}].limits");
        check(
            format!("{base}.header_read_timeout"),
            l.limits.header_read_timeout,
            LARGE_HEADER_READ,
            "header read timeout",
        );
        check(
            format!("{base}.idle_timeout"),
            l.limits.idle_timeout,
            LARGE_IDLE,
            "idle timeout",
        );
    }
}

#[cfg(test)]
mod tests;
