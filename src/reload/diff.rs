//! What a reload changes, by name: listeners, routes and upstreams added, removed or changed,
//! and the settings and admin sections. Settings are compared through their `Debug` form,
//! which covers every field (secrets print redacted, so a changed token alone counts through
//! the fingerprint of the files instead; see `files_fingerprint`).

use std::fmt::Debug;

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
/// reload with an unchanged file but rotated certificates is not taken for a no-op.
pub fn files_fingerprint(config: &Config) -> u64 {
    let listeners = config
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|tls| &tls.certificates)
        .flat_map(|pair| [pair.cert.as_path(), pair.key.as_path()]);
    let upstreams = config
        .upstreams
        .iter()
        .filter_map(|u| u.tls.as_ref())
        .flat_map(|tls| tls.files());
    crate::config::fingerprint_files(listeners.chain(upstreams))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::testing::valid;
    use std::path::Path;

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

    /// A config named by a relative path (`portico --config conf/portico.yaml`) has its
    /// file paths resolved once; reading them must not resolve them again.
    #[test]
    fn fingerprint_follows_rotated_files_of_a_config_in_a_relative_directory() {
        let dir = tempfile::tempdir_in(".").unwrap();
        let relative = Path::new(".").join(dir.path().file_name().unwrap());
        let ca = crate::tls::test_support::ca("a");
        let pair = crate::tls::test_support::write_leaf(dir.path(), "web", &ca, &["localhost"]);
        let yaml = "listeners:\n  - name: web\n    bind: 127.0.0.1:8443\n    tls:\n      certificates: [{ cert: web.pem, key: web.key }]\nroutes:\n  - name: r\n    respond: { status: 200 }\n";
        assert_eq!(pair.cert.file_name().unwrap(), "web.pem", "{pair:?}");
        std::fs::write(dir.path().join("portico.yaml"), yaml).unwrap();
        let path = relative.join("portico.yaml");
        let before = files_fingerprint(&crate::config::load(&path).unwrap().0);
        crate::tls::test_support::write_leaf(dir.path(), "web", &ca, &["example.test"]);
        let after = files_fingerprint(&crate::config::load(&path).unwrap().0);
        assert_ne!(
            before, after,
            "a rotated certificate changes the fingerprint"
        );
    }
}
