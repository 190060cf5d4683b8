//! What a reload changes, by name: listeners, routes and upstreams added, removed or changed,
//! and the settings and admin sections. Settings are compared through their `Debug` form,
//! which covers every field (secrets print redacted, so a changed token alone counts through
//! the fingerprint of the files instead; see `files_fingerprint`).

use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::config::model::Config;

/// Human-readable changes from `old` to `new`, e.g. `route "api" changed`.
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    named(&mut out, "listener", &old.listeners, &new.listeners, |l| {
        &l.name
    });
    named(&mut out, "route", &old.routes, &new.routes, |r| &r.name);
    named(&mut out, "upstream", &old.upstreams, &new.upstreams, |u| {
        &u.name
    });
    let old_order: Vec<&str> = old.routes.iter().map(|r| r.name.as_str()).collect();
    let new_order: Vec<&str> = new.routes.iter().map(|r| r.name.as_str()).collect();
    let kept_old: Vec<&&str> = old_order.iter().filter(|n| new_order.contains(n)).collect();
    let kept_new: Vec<&&str> = new_order.iter().filter(|n| old_order.contains(n)).collect();
    if kept_old != kept_new {
        out.push("route order changed".to_owned());
    }
    if format!("{:?}", old.settings) != format!("{:?}", new.settings) {
        out.push("settings changed".to_owned());
    }
    if format!("{:?}", old.admin) != format!("{:?}", new.admin) {
        out.push("admin changed (a new admin bind takes effect at the next start)".to_owned());
    }
    out
}

fn named<T: Debug>(
    out: &mut Vec<String>,
    kind: &str,
    old: &[T],
    new: &[T],
    name: impl Fn(&T) -> &String,
) {
    for n in new {
        match old.iter().find(|o| name(o) == name(n)) {
            None => out.push(format!("{kind} \"{}\" added", name(n))),
            Some(o) if format!("{o:?}") != format!("{n:?}") => {
                out.push(format!("{kind} \"{}\" changed", name(n)));
            }
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| name(n) == name(o)) {
            out.push(format!("{kind} \"{}\" removed", name(o)));
        }
    }
}

/// A hash of the contents of every certificate, key and CA file `config` names, so that a
/// reload with an unchanged file but rotated certificates is not taken for a no-op. A file
/// that cannot be read hashes as such (the build then reports it).
pub fn files_fingerprint(config: &Config) -> u64 {
    let mut paths: Vec<PathBuf> = Vec::new();
    for l in &config.listeners {
        if let Some(tls) = &l.tls {
            for pair in &tls.certificates {
                paths.push(pair.cert.clone());
                paths.push(pair.key.clone());
            }
        }
    }
    for u in &config.upstreams {
        if let Some(tls) = &u.tls {
            paths.extend(tls.ca.clone());
            if let Some(pair) = &tls.client_cert {
                paths.push(pair.cert.clone());
                paths.push(pair.key.clone());
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in paths {
        let full = resolve(&config.base_dir, &path);
        full.hash(&mut hasher);
        std::fs::read(&full).ok().hash(&mut hasher);
    }
    hasher.finish()
}

fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::valid;

    fn cfg(routes: &str) -> Config {
        valid(&format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n{routes}upstreams:\n  api:\n    servers: [\"127.0.0.1:1\"]\n")).0
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let old = cfg("  - name: a\n    upstream: api\n  - name: b\n    upstream: api\n");
        let new = cfg("  - name: b\n    upstream: api\n    max_body_size: 1KiB\n  - name: c\n    upstream: api\n");
        assert_eq!(
            changes(&old, &new),
            [
                "route \"b\" changed",
                "route \"c\" added",
                "route \"a\" removed"
            ]
        );
        assert!(changes(&old, &old).is_empty());
        let swapped = cfg("  - name: b\n    upstream: api\n  - name: a\n    upstream: api\n");
        assert_eq!(changes(&old, &swapped), ["route order changed"]);
    }
}
