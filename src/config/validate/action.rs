//! Validation of a route's action: exactly one of `upstream` (proxy), `respond` or `redirect`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode, Uri};

use super::route::unknown_name;
use super::{join, Ctx};
use crate::config::model::Action;
use crate::config::raw::{RawRedirect, RawRespond, RawRoute};

pub(super) fn action(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawRoute,
    upstreams: &[&str],
) -> Option<Action> {
    // Each action given is checked even when there are several, so that their own mistakes
    // are reported in the same run.
    let mut given = Vec::new();
    let mut actions = Vec::new();
    if let Some(name) = &raw.upstream {
        given.push("upstream");
        match upstreams.iter().position(|u| u == name) {
            Some(upstream) => actions.push(Action::Proxy { upstream }),
            None => ctx.error(
                &join(path, "upstream"),
                unknown_name("upstream", name, upstreams),
            ),
        }
    }
    if let Some(respond) = &raw.respond {
        given.push("respond");
        actions.extend(respond_action(ctx, &join(path, "respond"), respond));
    }
    if let Some(redirect) = &raw.redirect {
        given.push("redirect");
        actions.extend(redirect_action(ctx, &join(path, "redirect"), redirect));
    }
    if given.len() != 1 {
        let found = if given.is_empty() {
            "none".to_owned()
        } else {
            given.join(", ")
        };
        ctx.error(
            path,
            format!("needs exactly one of `upstream`, `respond` or `redirect` (found {found})"),
        );
        return None;
    }
    actions.pop()
}

fn respond_action(ctx: &mut Ctx<'_>, path: &str, raw: &RawRespond) -> Option<Action> {
    let code = raw.status.unwrap_or(200);
    let status = match StatusCode::from_u16(code) {
        Ok(s) if (200..=599).contains(&code) => Some(s),
        _ => {
            ctx.error(
                &join(path, "status"),
                format!("{code} is not a status between 200 and 599"),
            );
            None
        }
    };
    let mut headers = Some(Vec::new());
    for (name, value) in raw
        .headers
        .as_ref()
        .map(|h| h.0.as_slice())
        .unwrap_or_default()
    {
        let at = format!("{path}.headers.{name}");
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ctx.error(&at, format!("{name:?} is not a valid header name")))
            .ok();
        let value = HeaderValue::from_str(value)
            .map_err(|_| ctx.error(&at, format!("{value:?} is not a valid header value")))
            .ok();
        match (name, value, headers.as_mut()) {
            (Some(n), Some(v), Some(list)) => list.push((n, v)),
            _ => headers = None,
        }
    }
    Some(Action::Respond {
        status: status?,
        body: Bytes::from(raw.body.clone().unwrap_or_default()),
        headers: headers?,
    })
}

fn redirect_action(ctx: &mut Ctx<'_>, path: &str, raw: &RawRedirect) -> Option<Action> {
    let location = ctx.required(path, "to", raw.to.as_ref()).and_then(|to| {
        let absolute = to
            .parse::<Uri>()
            .is_ok_and(|u| u.scheme().is_some() && u.authority().is_some());
        let valid = HeaderValue::from_str(to).is_ok() && (absolute || to.starts_with('/'));
        if !valid {
            ctx.error(
                &join(path, "to"),
                format!("{to:?} must be an absolute URL (https://host/...) or a path starting with \"/\""),
            );
        }
        valid.then(|| to.to_owned())
    });
    let code = raw.status.unwrap_or(302);
    let status = match code {
        301 | 302 | 303 | 307 | 308 => StatusCode::from_u16(code).ok(),
        _ => None,
    };
    if status.is_none() {
        ctx.error(
            &join(path, "status"),
            format!("{code} is not a redirect status (use 301, 302, 303, 307 or 308)"),
        );
    }
    Some(Action::Redirect {
        location: location?,
        status: status?,
        keep_path: raw.keep_path.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::model::Action;
    use crate::config::testing::{expect_error, valid};

    /// A config whose `routes:` list is `body` (line 8 on), with listener `web` and upstream `api`.
    fn with(body: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nupstreams:\n  api:\n    servers: [\"127.0.0.1:9000\"]\nroutes:\n{body}")
    }

    #[test]
    fn action_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("  - name: r\n", "routes[0]", 8, "needs exactly one of `upstream`, `respond` or `redirect` (found none)"),
            ("  - name: r\n    upstream: api\n    respond: {}\n", "routes[0]", 8, "(found upstream, respond)"),
            ("  - name: r\n    upstream: apii\n", "routes[0].upstream", 9, "no upstream named \"apii\"; did you mean \"api\"?"),
            ("  - name: r\n    upstream: database\n", "routes[0].upstream", 9, "no upstream named \"database\" (expected one of: api)"),
            ("  - name: r\n    respond: { status: 150 }\n", "routes[0].respond.status", 9, "150 is not a status between 200 and 599"),
            ("  - name: r\n    respond: { status: 600 }\n", "routes[0].respond.status", 9, "600 is not a status between 200 and 599"),
            ("  - name: r\n    respond:\n      headers: { \"bad name\": x }\n", "routes[0].respond.headers.bad name", 10, "\"bad name\" is not a valid header name"),
            ("  - name: r\n    respond:\n      headers:\n        x-a: \"a\\u0001\"\n", "routes[0].respond.headers.x-a", 11, "is not a valid header value"),
            ("  - name: r\n    redirect: {}\n", "routes[0].redirect.to", 9, "missing required key \"to\""),
            ("  - name: r\n    redirect: { to: example.com }\n", "routes[0].redirect.to", 9, "must be an absolute URL"),
            ("  - name: r\n    redirect: { to: /new, status: 200 }\n", "routes[0].redirect.status", 9, "200 is not a redirect status (use 301, 302, 303, 307 or 308)"),
            ("  - name: r\n    respond: { status: ok }\n", "routes[0].respond.status", 9, "whole number"),
        ];
        for (body, path, line, needle) in cases {
            expect_error(&with(body), path, *line, needle);
        }
    }

    #[test]
    fn defaults_for_respond_and_redirect() {
        let (config, _) = valid(&with("  - name: a\n    respond: {}\n  - name: b\n    redirect: { to: /elsewhere }\n  - name: c\n    upstream: api\n"));
        match &config.routes[0].action {
            Action::Respond {
                status,
                body,
                headers,
            } => {
                assert_eq!(status.as_u16(), 200);
                assert!(body.is_empty() && headers.is_empty());
            }
            other => panic!("{other:?}"),
        }
        match &config.routes[1].action {
            Action::Redirect {
                status, keep_path, ..
            } => {
                assert_eq!(status.as_u16(), 302);
                assert!(!keep_path);
            }
            other => panic!("{other:?}"),
        }
    }
}
