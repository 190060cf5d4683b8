//! Validation of a route's `websocket:` block: tunnel lifetime limits and the optional message
//! policy (sizes, rates, Origin and subprotocol allowlists, keepalive pings).

use std::time::Duration;

use super::{is_tchar, join, Ctx};
use crate::config::model::{normalize_origin, MessagePolicy, WebSocket};
use crate::config::raw::{RawWebSocket, RawWebSocketPolicy};

const DEFAULT_MAX_MESSAGE: u64 = 1024 * 1024;

pub(super) fn websocket(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&RawWebSocket>,
) -> Option<WebSocket> {
    let Some(raw) = raw else {
        return Some(WebSocket::default());
    };
    let defaults = WebSocket::default();
    let idle_timeout = ctx.duration(
        &join(path, "idle_timeout"),
        raw.idle_timeout.as_ref(),
        defaults.idle_timeout,
    );
    let max_lifetime =
        optional_duration(ctx, &join(path, "max_lifetime"), raw.max_lifetime.as_ref());
    let max_tunnels = match raw.max_tunnels {
        None => Some(None),
        Some(n) => ctx
            .positive(&join(path, "max_tunnels"), Some(n), 1)
            .map(Some),
    };
    let drain_timeout = ctx.duration(
        &join(path, "drain_timeout"),
        raw.drain_timeout.as_ref(),
        defaults.drain_timeout,
    );
    let policy = match &raw.policy {
        None => Some(None),
        Some(p) => policy(ctx, &join(path, "policy"), p).map(Some),
    };
    if let (Some(Some(p)), Some(idle)) = (&policy, idle_timeout) {
        if p.ping_interval.is_some_and(|ping| ping >= idle) {
            ctx.warning(
                &join(path, "policy.ping_interval"),
                "is not shorter than idle_timeout: a silent client is closed before it is pinged",
            );
        }
    }
    Some(WebSocket {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        idle_timeout: idle_timeout?,
        max_lifetime: max_lifetime?,
        max_tunnels: max_tunnels?,
        drain_timeout: drain_timeout?,
        policy: policy?,
    })
}

fn optional_duration(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&String>,
) -> Option<Option<Duration>> {
    match raw {
        None => Some(None),
        Some(_) => ctx.duration(path, raw, Duration::ZERO).map(Some),
    }
}

fn policy(ctx: &mut Ctx<'_>, path: &str, raw: &RawWebSocketPolicy) -> Option<MessagePolicy> {
    let max_message_size = ctx.size(
        &join(path, "max_message_size"),
        raw.max_message_size.as_ref(),
        DEFAULT_MAX_MESSAGE,
    );
    let messages_per_second = match raw.messages_per_second {
        None => Some(None),
        Some(n) => ctx
            .positive(&join(path, "messages_per_second"), Some(n), 1)
            .map(Some),
    };
    let ping_interval = optional_duration(
        ctx,
        &join(path, "ping_interval"),
        raw.ping_interval.as_ref(),
    );
    let mut ok = true;
    let mut allowed_origins = Vec::new();
    for (i, origin) in raw.allowed_origins.iter().flatten().enumerate() {
        match normalize_origin(origin) {
            Some(o) => allowed_origins.push(o),
            None => {
                ctx.error(
                    &format!("{path}.allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin (scheme://host or scheme://host:port, like https://chat.example.com)"),
                );
                ok = false;
            }
        }
    }
    let mut allowed_subprotocols = Vec::new();
    for (i, proto) in raw.allowed_subprotocols.iter().flatten().enumerate() {
        if proto.is_empty() || !proto.bytes().all(is_tchar) {
            ctx.error(
                &format!("{path}.allowed_subprotocols[{i}]"),
                format!("{proto:?} is not a subprotocol name (an HTTP token, no spaces or commas)"),
            );
            ok = false;
        } else {
            allowed_subprotocols.push(proto.clone());
        }
    }
    Some(MessagePolicy {
        max_message_size: max_message_size?,
        messages_per_second: messages_per_second?,
        allowed_origins,
        allowed_subprotocols,
        ping_interval: ping_interval?,
    })
    .filter(|_| ok)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::model::normalize_origin;
    use crate::config::testing::{diagnostics, expect_error, valid};
    use crate::config::Severity;
    use std::time::Duration;

    fn with(block: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nupstreams:\n  app:\n    servers: [\"127.0.0.1:9000\"]\nroutes:\n  - name: ws\n    upstream: app\n    websocket:\n{block}")
    }

    #[test]
    fn defaults_without_block() {
        let (config, _) = valid(&with("      enabled: true\n"));
        let ws = &config.routes[0].websocket;
        assert!(ws.enabled);
        assert_eq!(ws.idle_timeout, Duration::from_secs(300));
        assert_eq!(ws.drain_timeout, Duration::from_secs(10));
        assert_eq!((ws.max_lifetime, ws.max_tunnels), (None, None));
        assert!(ws.policy.is_none());
    }

    #[test]
    fn full_policy() {
        let (config, _) = valid(&with("      idle_timeout: 1m\n      max_lifetime: 1h\n      max_tunnels: 5\n      policy:\n        max_message_size: 64KiB\n        messages_per_second: 10\n        allowed_origins: [\"https://Chat.Example.com/\", \"http://localhost:8080\"]\n        allowed_subprotocols: [chat.v1]\n        ping_interval: 20s\n"));
        let ws = &config.routes[0].websocket;
        assert_eq!(ws.max_lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(ws.max_tunnels, Some(5));
        let p = ws.policy.as_ref().unwrap();
        assert_eq!(p.max_message_size, 64 * 1024);
        assert_eq!(p.messages_per_second, Some(10));
        assert_eq!(
            p.allowed_origins,
            ["https://chat.example.com", "http://localhost:8080"]
        );
        assert_eq!(p.allowed_subprotocols, ["chat.v1"]);
        assert_eq!(p.ping_interval, Some(Duration::from_secs(20)));
    }

    #[test]
    fn websocket_messages() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, u64, &str)] = &[
            ("      idle_timeout: 0s\n", "routes[0].websocket.idle_timeout", 11, "must be greater than 0"),
            ("      max_lifetime: forever\n", "routes[0].websocket.max_lifetime", 11, "invalid duration"),
            ("      max_tunnels: 0\n", "routes[0].websocket.max_tunnels", 11, "must be greater than 0"),
            ("      policy:\n        messages_per_second: 0\n", "routes[0].websocket.policy.messages_per_second", 12, "must be greater than 0"),
            ("      policy:\n        max_message_size: 0\n", "routes[0].websocket.policy.max_message_size", 12, "must be greater than 0"),
            ("      policy:\n        allowed_origins: [\"chat.example.com\"]\n", "routes[0].websocket.policy.allowed_origins[0]", 12, "is not an origin"),
            ("      policy:\n        allowed_subprotocols: [\"a b\"]\n", "routes[0].websocket.policy.allowed_subprotocols[0]", 12, "is not a subprotocol name"),
            ("      polcy: {}\n", "routes[0].websocket.polcy", 11, "did you mean \"policy\""),
        ];
        for (block, path, line, needle) in cases {
            expect_error(&with(block), path, *line, needle);
        }
    }

    #[test]
    fn ping_not_shorter_than_idle_warns() {
        let d = diagnostics(&with(
            "      idle_timeout: 10s\n      policy:\n        ping_interval: 10s\n",
        ));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].severity, Severity::Warning);
        assert_eq!(d[0].path, "routes[0].websocket.policy.ping_interval");
    }

    #[test]
    fn origins_normalise() {
        assert_eq!(
            normalize_origin("HTTPS://A.test:8443").as_deref(),
            Some("https://a.test:8443")
        );
        assert_eq!(normalize_origin("https://a.test/path"), None);
        assert_eq!(normalize_origin("null"), None);
        assert_eq!(normalize_origin("https://u@a.test"), None);
    }
}
