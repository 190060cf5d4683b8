//! Validation of `listeners:`: names, bind addresses, TLS termination and per-listener limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::l4::{self, Kind};
use super::matcher::parse_host;
use super::{join, Ctx};
use crate::config::model::{
    CertPair, HostMatch, Http2Limits, Listener, ListenerLimits, ListenerTls,
};
use crate::config::raw::{
    RawCertPair, RawHttp2, RawLimits, RawListener, RawListenerTls, RawUpstream,
};

pub(super) fn listeners(
    ctx: &mut Ctx<'_>,
    raw: &[RawListener],
    upstreams: &[(String, RawUpstream)],
) -> Option<Vec<Listener>> {
    if raw.is_empty() {
        ctx.error("listeners", "at least one listener is required");
        return None;
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut binds: HashMap<SocketAddr, usize> = HashMap::new();
    let mut out = Some(Vec::with_capacity(raw.len()));
    for (i, l) in raw.iter().enumerate() {
        let path = format!("listeners[{i}]");
        if let Some(name) = l.name.as_deref() {
            if let Some(first) = names.insert(name, i) {
                ctx.error(
                    &join(&path, "name"),
                    format!("duplicate listener name {name:?} (also used by listeners[{first}])"),
                );
                names.insert(name, first);
            }
        }
        let listener = listener(ctx, &path, l, upstreams);
        // Checked on the raw text so a clash is found even when another key of either
        // listener is invalid.
        let bind = l
            .bind
            .as_deref()
            .and_then(|b| b.trim().parse::<SocketAddr>().ok());
        // Port 0 asks the OS for a fresh port each time, so such listeners cannot clash.
        if let Some(bind) = bind.filter(|b| b.port() != 0) {
            if let Some(first) = binds.insert(bind, i) {
                ctx.error(
                    &join(&path, "bind"),
                    format!("address {bind} is already bound by listeners[{first}]"),
                );
                binds.insert(bind, first);
            }
        }
        match (listener, out.as_mut()) {
            (Some(l), Some(v)) => v.push(l),
            _ => out = None,
        }
    }
    out
}

fn listener(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawListener,
    upstreams: &[(String, RawUpstream)],
) -> Option<Listener> {
    let name = ctx.required(path, "name", raw.name.as_ref());
    let bind = ctx
        .required(path, "bind", raw.bind.as_ref())
        .and_then(|text| match text.trim().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                ctx.error(
                    &join(path, "bind"),
                    format!("{text:?} is not an IP:port address (like 127.0.0.1:8443 or [::]:443)"),
                );
                None
            }
        });
    let kind = l4::kind(ctx, path, raw);
    // An unknown mode is reported once; the rest is checked as for HTTP so that other
    // mistakes still show up.
    let checked_as = kind.unwrap_or(Kind::Http);
    let clean = l4::misplaced_keys(ctx, path, raw, checked_as);
    let mode = l4::mode(ctx, path, raw, checked_as, upstreams);
    let proxy_protocol = l4::proxy_protocol(ctx, &join(path, "proxy_protocol"), raw, checked_as);
    let tls = match &raw.tls {
        Some(t) if !checked_as.is_layer4() => tls(ctx, &join(path, "tls"), t).map(Some),
        _ => Some(None),
    };
    // Tunnels stay open far longer than keep-alive connections between requests.
    let idle_default = if checked_as.is_layer4() {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(60)
    };
    let limits = limits(
        ctx,
        &join(path, "limits"),
        raw.limits.as_ref(),
        idle_default,
    );
    let http2 = http2(ctx, &join(path, "http2"), raw.http2.as_ref());
    kind?;
    Some(Listener {
        name: name?.to_owned(),
        bind: bind?,
        mode: mode?,
        tls: tls?,
        limits: limits?,
        http2: http2?,
        proxy_protocol: proxy_protocol?,
    })
    .filter(|_| clean)
}

fn tls(ctx: &mut Ctx<'_>, path: &str, raw: &RawListenerTls) -> Option<ListenerTls> {
    let raw_certs = raw.certificates.as_deref().unwrap_or_default();
    let raw_self_signed = raw.self_signed.as_deref().unwrap_or_default();
    let mut ok = true;
    if raw_certs.is_empty() && raw_self_signed.is_empty() {
        ctx.error(path, "needs `certificates`, `self_signed`, or both");
        ok = false;
    }
    let mut certificates = Vec::with_capacity(raw_certs.len());
    for (i, pair) in raw_certs.iter().enumerate() {
        match cert_pair(ctx, &format!("{path}.certificates[{i}]"), pair) {
            Some(p) => certificates.push(p),
            None => ok = false,
        }
    }
    let mut self_signed = Vec::with_capacity(raw_self_signed.len());
    for (i, host) in raw_self_signed.iter().enumerate() {
        match parse_host(host) {
            Ok(HostMatch::Exact(h)) => self_signed.push(h),
            Ok(HostMatch::Suffix(s)) => self_signed.push(format!("*{s}")),
            Err(reason) => {
                ctx.error(&format!("{path}.self_signed[{i}]"), reason);
                ok = false;
            }
        }
    }
    let handshake_timeout = ctx.duration(
        &join(path, "handshake_timeout"),
        raw.handshake_timeout.as_ref(),
        Duration::from_secs(10),
    );
    Some(ListenerTls {
        certificates,
        self_signed,
        strict_sni_host: raw.strict_sni_host.unwrap_or(true),
        handshake_timeout: handshake_timeout?,
    })
    .filter(|_| ok)
}

pub(super) fn cert_pair(ctx: &mut Ctx<'_>, path: &str, raw: &RawCertPair) -> Option<CertPair> {
    let cert = ctx.file_path(path, "cert", raw.cert.as_ref());
    let key = ctx.file_path(path, "key", raw.key.as_ref());
    Some(CertPair {
        cert: cert?,
        key: key?,
    })
}

fn limits(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: Option<&RawLimits>,
    idle_default: Duration,
) -> Option<ListenerLimits> {
    let default = RawLimits::default();
    let raw = raw.unwrap_or(&default);
    let max_connections = ctx.positive(&join(path, "max_connections"), raw.max_connections, 10_000);
    let header_read_timeout = ctx.duration(
        &join(path, "header_read_timeout"),
        raw.header_read_timeout.as_ref(),
        Duration::from_secs(10),
    );
    let idle_timeout = ctx.duration(
        &join(path, "idle_timeout"),
        raw.idle_timeout.as_ref(),
        idle_default,
    );
    let max_header_bytes = ctx.size(
        &join(path, "max_header_bytes"),
        raw.max_header_bytes.as_ref(),
        64 * 1024,
    );
    let max_headers = ctx.positive(&join(path, "max_headers"), raw.max_headers, 100);
    let max_uri_length = ctx.size(
        &join(path, "max_uri_length"),
        raw.max_uri_length.as_ref(),
        8 * 1024,
    );
    let max_tunnels = ctx.positive(&join(path, "max_tunnels"), raw.max_tunnels, 10_000);
    Some(ListenerLimits {
        max_tunnels: max_tunnels?,
        max_connections: max_connections?,
        header_read_timeout: header_read_timeout?,
        idle_timeout: idle_timeout?,
        max_header_bytes: max_header_bytes?,
        max_headers: max_headers?,
        max_uri_length: max_uri_length?,
    })
}

fn http2(ctx: &mut Ctx<'_>, path: &str, raw: Option<&RawHttp2>) -> Option<Http2Limits> {
    let default = RawHttp2::default();
    let raw = raw.unwrap_or(&default);
    let max_concurrent_streams = ctx.positive(
        &join(path, "max_concurrent_streams"),
        raw.max_concurrent_streams,
        256,
    );
    let max_pending_accept_reset_streams = ctx.positive(
        &join(path, "max_pending_accept_reset_streams"),
        raw.max_pending_accept_reset_streams,
        20,
    );
    let max_local_error_reset_streams = ctx.positive(
        &join(path, "max_local_error_reset_streams"),
        raw.max_local_error_reset_streams,
        1024,
    );
    let max_header_list_size = ctx.size(
        &join(path, "max_header_list_size"),
        raw.max_header_list_size.as_ref(),
        64 * 1024,
    );
    Some(Http2Limits {
        max_concurrent_streams: max_concurrent_streams?,
        max_pending_accept_reset_streams: max_pending_accept_reset_streams?,
        max_local_error_reset_streams: max_local_error_reset_streams?,
        max_header_list_size: max_header_list_size?,
        enable_connect_protocol: raw.enable_connect_protocol.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::expect_error;

    /// A listener named `web` whose block continues with `extra` (indented 4 spaces, line 4 on).
    fn with(extra: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\n{extra}")
    }

    #[test]
    fn listener_messages() {
        let second = "  - name: web\n    bind: 127.0.0.1:8081\n";
        #[rustfmt::skip]
        let cases: Vec<(String, &str, u64, &str)> = vec![
            ("listeners: []\n".into(), "listeners", 1, "at least one listener is required"),
            ("listeners:\n  - bind: 127.0.0.1:1\n".into(), "listeners[0].name", 2, "missing required key \"name\""),
            ("listeners:\n  - name: \"\"\n    bind: 127.0.0.1:1\n".into(), "listeners[0].name", 2, "must not be empty"),
            (with(second), "listeners[1].name", 4, "duplicate listener name \"web\" (also used by listeners[0])"),
            (with("  - name: b\n    bind: 127.0.0.1:8080\n"), "listeners[1].bind", 5, "already bound by listeners[0]"),
            ("listeners:\n  - name: a\n    bind: localhost:80\n".into(), "listeners[0].bind", 3, "is not an IP:port address"),
            (with("    tls: {}\n"), "listeners[0].tls", 4, "needs `certificates`, `self_signed`, or both"),
            (with("    tls:\n      certificates:\n        - cert: a.pem\n"), "listeners[0].tls.certificates[0].key", 6, "missing required key \"key\""),
            (with("    tls:\n      self_signed: [\"bad host\"]\n"), "listeners[0].tls.self_signed[0]", 5, "not a valid host name"),
            (with("    tls:\n      self_signed: [localhost]\n      handshake_timeout: 0ms\n"), "listeners[0].tls.handshake_timeout", 6, "must be greater than 0"),
            (with("    limits:\n      max_connections: 0\n"), "listeners[0].limits.max_connections", 5, "must be greater than 0"),
            (with("    limits:\n      max_tunnels: 0\n"), "listeners[0].limits.max_tunnels", 5, "must be greater than 0"),
            (with("    limits:\n      max_headers: 0\n"), "listeners[0].limits.max_headers", 5, "must be greater than 0"),
            (with("    limits:\n      max_header_bytes: lots\n"), "listeners[0].limits.max_header_bytes", 5, "invalid size \"lots\""),
            (with("    limits:\n      max_uri_length: 0\n"), "listeners[0].limits.max_uri_length", 5, "must be greater than 0"),
            (with("    limits:\n      idle_timeout: soon\n"), "listeners[0].limits.idle_timeout", 5, "invalid duration \"soon\""),
            (with("    limits:\n      header_read_timeout: 0s\n"), "listeners[0].limits.header_read_timeout", 5, "must be greater than 0"),
            (with("    http2:\n      max_header_list_size: 8GiB\n"), "listeners[0].http2.max_header_list_size", 5, "too large"),
            (with("    http2:\n      max_concurrent_streams: 0\n"), "listeners[0].http2.max_concurrent_streams", 5, "must be greater than 0"),
            (with("    http2:\n      max_pending_accept_reset_streams: 0\n"), "listeners[0].http2.max_pending_accept_reset_streams", 5, "must be greater than 0"),
            (with("    http2:\n      max_local_error_reset_streams: 0\n"), "listeners[0].http2.max_local_error_reset_streams", 5, "must be greater than 0"),
        ];
        for (yaml, path, line, needle) in &cases {
            expect_error(yaml, path, *line, needle);
        }
    }

    #[test]
    fn self_signed_only_listener_is_valid() {
        let (config, _) = crate::config::testing::valid(&with(
            "    tls:\n      self_signed: [Localhost, \"*.dev.test\"]\n      strict_sni_host: false\n",
        ));
        let tls = config.listeners[0]
            .tls
            .as_ref()
            .map(|t| (t.self_signed.clone(), t.strict_sni_host));
        assert_eq!(
            tls,
            Some((vec!["localhost".to_owned(), "*.dev.test".to_owned()], false))
        );
    }
}
