//! Validation of `admin:`: the admin listener's address (loopback by default, never public
//! without a token, never shared with a proxy listener) and its bearer token.

use std::net::SocketAddr;

use super::{join, Ctx};
use crate::config::model::{Admin, Listener, Secret};
use crate::config::raw::RawAdmin;

/// The default admin address.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:9901";

/// `Some(None)`: no admin listener; `None`: invalid (reported).
pub(super) fn admin(
    ctx: &mut Ctx<'_>,
    raw: Option<&RawAdmin>,
    listeners: Option<&[Listener]>,
) -> Option<Option<Admin>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let path = "admin";
    let bind_text = raw.bind.as_deref().unwrap_or(DEFAULT_BIND);
    let bind = match bind_text.trim().parse::<SocketAddr>() {
        Ok(b) => Some(b),
        Err(_) => {
            ctx.error(
                &join(path, "bind"),
                format!("{bind_text:?} is not an IP:port address (like {DEFAULT_BIND})"),
            );
            None
        }
    };
    let token = token(ctx, path, raw);
    let (bind, token) = (bind?, token?);
    let mut ok = true;
    if !bind.ip().is_loopback() && token.is_none() {
        ctx.error(
            &join(path, "bind"),
            format!(
                "the admin listener on non-loopback address {bind} needs `token` or `token_file` \
                 (it can reload the config and shows the whole topology)"
            ),
        );
        ok = false;
    }
    for (i, l) in listeners.unwrap_or_default().iter().enumerate() {
        if clashes(bind, l.bind) {
            ctx.error(
                &join(path, "bind"),
                format!(
                    "address {bind} is also the bind of listeners[{i}] ({}); the admin \
                     listener needs its own address",
                    l.name
                ),
            );
            ok = false;
        }
    }
    ok.then_some(Some(Admin { bind, token }))
}

/// Two binds that cannot both be held (port 0 is ephemeral and never clashes).
fn clashes(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `Some(None)`: no token; `None`: invalid (reported).
fn token(ctx: &mut Ctx<'_>, path: &str, raw: &RawAdmin) -> Option<Option<Secret>> {
    match (&raw.token, &raw.token_file) {
        (Some(_), Some(_)) => {
            ctx.error(
                &join(path, "token_file"),
                "set `token` or `token_file`, not both",
            );
            None
        }
        (Some(t), None) => {
            if t.trim().is_empty() {
                ctx.error(&join(path, "token"), "must not be empty");
                return None;
            }
            Some(Some(Secret(t.trim().to_owned())))
        }
        (None, Some(_)) => {
            let file = ctx.file_path(path, "token_file", raw.token_file.as_ref())?;
            match std::fs::read_to_string(&file) {
                Ok(text) if !text.trim().is_empty() => Some(Some(Secret(text.trim().to_owned()))),
                Ok(_) => {
                    ctx.error(
                        &join(path, "token_file"),
                        format!("{} is empty", file.display()),
                    );
                    None
                }
                Err(e) => {
                    ctx.error(
                        &join(path, "token_file"),
                        format!("cannot read {}: {e}", file.display()),
                    );
                    None
                }
            }
        }
        (None, None) => Some(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::config::testing::{expect_error, valid};

    const LISTENER: &str = "listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n";

    #[test]
    fn admin_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("admin:\n  bind: 0.0.0.0:9901\n", "admin.bind", 5, "needs `token` or `token_file`"),
            ("admin:\n  bind: \"[::]:9901\"\n", "admin.bind", 5, "needs `token` or `token_file`"),
            ("admin:\n  bind: 10.0.0.1:9901\n", "admin.bind", 5, "non-loopback address 10.0.0.1:9901"),
            ("admin:\n  bind: localhost:9901\n", "admin.bind", 5, "is not an IP:port address"),
            ("admin:\n  bind: 127.0.0.1:8080\n", "admin.bind", 5, "also the bind of listeners[0] (web)"),
            ("admin:\n  bind: 0.0.0.0:8080\n  token: s3cret\n", "admin.bind", 5, "also the bind of listeners[0]"),
            ("admin:\n  token: \" \"\n", "admin.token", 5, "must not be empty"),
            ("admin:\n  token: a\n  token_file: b\n", "admin.token_file", 6, "not both"),
            ("admin:\n  token_file: /nonexistent/portico-token\n", "admin.token_file", 5, "cannot read /nonexistent/portico-token"),
            ("admin:\n  bindd: 127.0.0.1:1\n", "admin.bindd", 5, "bindd"),
        ];
        for (yaml, path, line, needle) in cases {
            expect_error(&format!("{LISTENER}{yaml}"), path, *line, needle);
        }
    }

    #[test]
    fn defaults_and_tokens() {
        let (config, _) = valid(LISTENER);
        assert!(config.admin.is_none());
        let (config, _) = valid(&format!("{LISTENER}admin: {{}}\n"));
        let admin = config.admin.unwrap();
        assert_eq!(admin.bind.to_string(), "127.0.0.1:9901");
        assert!(admin.token.is_none());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let yaml = format!(
            "{LISTENER}admin:\n  bind: 0.0.0.0:9901\n  token_file: {}\n",
            file.display()
        );
        let (config, _) = valid(&yaml);
        let admin = config.admin.unwrap();
        assert_eq!(admin.token.as_ref().unwrap().expose(), "from-file");
        assert!(!format!("{admin:?}").contains("from-file"));
    }
}
