//! Validation of `upstreams:`: servers and weights, balancer, protocol versus TLS, upstream TLS,
//! timeouts, and the "never referenced" warning.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::listener::cert_pair;
use super::matcher::parse_host;
use super::resilience::host_port;
use super::route::unknown_name;
use super::{join, Ctx};
use crate::config::model::{
    DnsServer, HostMatch, ServerAddr, Upstream, UpstreamProtocol, UpstreamTimeouts, UpstreamTls,
};
use crate::config::raw::{
    RawListener, RawRoute, RawServer, RawTimeouts, RawUpstream, RawUpstreamTls,
};

pub(super) fn upstreams(
    ctx: &mut Ctx<'_>,
    raw: &[(String, RawUpstream)],
    routes: &[RawRoute],
    listeners: &[RawListener],
) -> Option<Vec<Upstream>> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, u) in raw {
        let path = format!("upstreams.{name}");
        let by_route = routes.iter().any(|r| r.upstream.as_ref() == Some(name));
        let by_listener = listeners.iter().any(|l| {
            l.upstream.as_ref() == Some(name)
                || l.sni
                    .as_ref()
                    .is_some_and(|m| m.0.iter().any(|(_, u)| u == name))
        });
        if !by_route && !by_listener {
            ctx.warning(
                &path,
                format!("upstream {name:?} is not used by any route or listener"),
            );
        }
        out.push(upstream(ctx, &path, name, u));
    }
    out.into_iter().collect()
}

fn upstream(ctx: &mut Ctx<'_>, path: &str, name: &str, raw: &RawUpstream) -> Option<Upstream> {
    let mut ok = true;
    if name.trim().is_empty() {
        ctx.error(path, "upstream name must not be empty");
        ok = false;
    }
    let (servers, dns_servers) = match servers(ctx, &join(path, "servers"), raw.servers.as_deref())
    {
        Some((s, d)) => (Some(s), Some(d)),
        None => (None, None),
    };
    let resilience = dns_servers.and_then(|d| super::resilience::resilience(ctx, path, raw, d));
    let balancing = super::balancing::balancing(ctx, path, raw);
    let protocol = match raw.protocol.as_deref() {
        None | Some("http1") => Some(UpstreamProtocol::Http1),
        Some("h2") => Some(UpstreamProtocol::H2),
        Some("h2c") => Some(UpstreamProtocol::H2c),
        Some(other) => {
            let known = ["http1", "h2", "h2c"];
            ctx.error(
                &join(path, "protocol"),
                unknown_name("protocol", other, &known),
            );
            None
        }
    };
    match (protocol, raw.tls.is_some()) {
        (Some(UpstreamProtocol::H2), false) => {
            ctx.error(
                &join(path, "protocol"),
                "h2 needs `tls` (HTTP/2 over TLS); use h2c for HTTP/2 over plain TCP",
            );
            ok = false;
        }
        (Some(UpstreamProtocol::H2c), true) => {
            ctx.error(
                &join(path, "protocol"),
                "h2c is HTTP/2 over plain TCP and cannot be combined with `tls`; use h2",
            );
            ok = false;
        }
        _ => {}
    }
    let tls = match &raw.tls {
        None => Some(None),
        Some(t) => tls(ctx, &join(path, "tls"), t).map(Some),
    };
    let timeouts = timeouts(ctx, &join(path, "timeouts"), raw.timeouts.as_ref());
    Some(Upstream {
        name: name.to_owned(),
        servers: servers?,
        balancer: balancing.as_ref()?.0,
        balancing: balancing?.1,
        protocol: protocol?,
        tls: tls?,
        timeouts: timeouts?,
        max_idle_per_backend: raw.max_idle_per_backend.unwrap_or(32),
        resilience: resilience?,
    })
    .filter(|_| ok)
}

/// IP servers, and `host:port` servers resolved by discovery.
type Servers = (Vec<ServerAddr>, Vec<DnsServer>);

fn servers(ctx: &mut Ctx<'_>, path: &str, raw: Option<&[RawServer]>) -> Option<Servers> {
    let Some(raw) = raw else {
        ctx.error(path, "at least one server is required");
        return None;
    };
    if raw.is_empty() {
        // Allowed on purpose (a pool emptied for maintenance, or filled later by discovery);
        // requests routed to it get 503.
        ctx.warning(path, "no servers: requests to this upstream get 503");
        return Some((Vec::new(), Vec::new()));
    }
    let mut out = Some(Vec::with_capacity(raw.len()));
    let mut dns = Vec::new();
    for (i, server) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let parsed = match server {
            RawServer::Address(text) => match host_port(text) {
                Some((host, port)) => {
                    dns.push(DnsServer {
                        host,
                        port,
                        weight: 1,
                    });
                    continue;
                }
                None => address(ctx, &at, text).map(|address| ServerAddr { address, weight: 1 }),
            },
            RawServer::Full(full) => {
                if let Some((host, port)) = full.address.as_deref().and_then(host_port) {
                    if let Some(weight) = ctx.positive(&join(&at, "weight"), full.weight, 1) {
                        dns.push(DnsServer { host, port, weight });
                    }
                    continue;
                }
                let address = ctx
                    .required(&at, "address", full.address.as_ref())
                    .and_then(|text| address(ctx, &join(&at, "address"), text));
                let weight = ctx.positive(&join(&at, "weight"), full.weight, 1);
                address
                    .zip(weight)
                    .map(|(address, weight)| ServerAddr { address, weight })
            }
        };
        match (parsed, out.as_mut()) {
            (Some(s), Some(list)) => list.push(s),
            _ => out = None,
        }
    }
    out.map(|list| (list, dns))
}

fn address(ctx: &mut Ctx<'_>, path: &str, text: &str) -> Option<SocketAddr> {
    text.trim()
        .parse()
        .map_err(|_| {
            ctx.error(
                path,
                format!("{text:?} is not an IP:port or host:port address (like 127.0.0.1:9001 or api.internal:9001)"),
            );
        })
        .ok()
}

fn tls(ctx: &mut Ctx<'_>, path: &str, raw: &RawUpstreamTls) -> Option<UpstreamTls> {
    let ca = match &raw.ca {
        None => Some(None),
        Some(_) => ctx.file_path(path, "ca", raw.ca.as_ref()).map(Some),
    };
    let server_name = match raw.server_name.as_deref().map(str::trim) {
        None => Some(None),
        Some(name) if name.parse::<IpAddr>().is_ok() => Some(Some(name.to_owned())),
        Some(name) => match parse_host(name) {
            Ok(HostMatch::Exact(host)) if !host.starts_with('[') => Some(Some(host)),
            _ => {
                ctx.error(
                    &join(path, "server_name"),
                    format!("{name:?} is not a valid DNS name or IP address"),
                );
                None
            }
        },
    };
    let client_cert = match &raw.client_cert {
        None => Some(None),
        Some(pair) => cert_pair(ctx, &join(path, "client_cert"), pair).map(Some),
    };
    Some(UpstreamTls {
        ca: ca?,
        server_name: server_name?,
        client_cert: client_cert?,
    })
}

fn timeouts(ctx: &mut Ctx<'_>, path: &str, raw: Option<&RawTimeouts>) -> Option<UpstreamTimeouts> {
    let default = RawTimeouts::default();
    let raw = raw.unwrap_or(&default);
    let connect = ctx.duration(
        &join(path, "connect"),
        raw.connect.as_ref(),
        Duration::from_secs(5),
    );
    let response = ctx.duration(
        &join(path, "response"),
        raw.response.as_ref(),
        Duration::from_secs(60),
    );
    let idle = ctx.duration(
        &join(path, "idle"),
        raw.idle.as_ref(),
        Duration::from_secs(90),
    );
    Some(UpstreamTimeouts {
        connect: connect?,
        response: response?,
        idle: idle?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::model::BalancerKind;
    use crate::config::testing::{expect_error, valid};

    /// Upstream `api` (used by a route) whose block is `lines` (indented 4 spaces, line 9 on).
    fn with(lines: &str) -> String {
        format!("listeners:\n  - name: web\n    bind: 127.0.0.1:8080\nroutes:\n  - name: r\n    upstream: api\nupstreams:\n  api:\n{lines}")
    }

    const SERVERS: &str = "    servers: [\"127.0.0.1:9000\"]\n";

    #[test]
    fn empty_server_list_is_a_warning() {
        let warnings = crate::config::testing::diagnostics(&with("    servers: []\n"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].severity, crate::config::Severity::Warning);
        assert_eq!(warnings[0].path, "upstreams.api.servers");
        assert!(warnings[0].message.contains("503"));
    }

    #[test]
    fn upstream_messages() {
        #[rustfmt::skip]
        let cases: Vec<(String, &str, u64, &str)> = vec![
            ("    balancer: round_robin\n".into(), "upstreams.api.servers", 9, "at least one server is required"),
            ("    servers: [\"backend\"]\n".into(), "upstreams.api.servers[0]", 9, "is not an IP:port or host:port address"),
            ("    servers:\n      - weight: 2\n".into(), "upstreams.api.servers[0].address", 10, "missing required key \"address\""),
            ("    servers:\n      - { address: \"127.0.0.1:1\", weight: 0 }\n".into(), "upstreams.api.servers[0].weight", 10, "must be greater than 0"),
            ("    servers:\n      - { address: \"127.0.0.1:1\", weight: -1 }\n".into(), "upstreams.api.servers[0].weight", 10, "whole number"),
            ("    servers:\n      - { adress: \"127.0.0.1:1\" }\n".into(), "upstreams.api.servers[0].adress", 10, "did you mean \"address\"?"),
            (format!("{SERVERS}    balancer: least_conn\n"), "upstreams.api.balancer", 10, "no balancer named \"least_conn\" (expected one of: round_robin, weighted_round_robin, least_requests, p2c_ewma, random, consistent_hash)"),
            (format!("{SERVERS}    protocol: h3\n"), "upstreams.api.protocol", 10, "no protocol named \"h3\"; did you mean \"h2\"?"),
            (format!("{SERVERS}    protocol: h2\n"), "upstreams.api.protocol", 10, "h2 needs `tls`"),
            (format!("{SERVERS}    protocol: h2c\n    tls: {{}}\n"), "upstreams.api.protocol", 10, "cannot be combined with `tls`"),
            (format!("{SERVERS}    tls: {{ server_name: \"not valid\" }}\n"), "upstreams.api.tls.server_name", 10, "not a valid DNS name or IP address"),
            (format!("{SERVERS}    tls:\n      client_cert: {{ cert: c.pem }}\n"), "upstreams.api.tls.client_cert.key", 11, "missing required key \"key\""),
            (format!("{SERVERS}    tls:\n      ca: \"\"\n"), "upstreams.api.tls.ca", 11, "must not be empty"),
            (format!("{SERVERS}    timeouts: {{ connect: 0s }}\n"), "upstreams.api.timeouts.connect", 10, "must be greater than 0"),
            (format!("{SERVERS}    timeouts:\n      response: forever\n"), "upstreams.api.timeouts.response", 11, "invalid duration \"forever\""),
            (format!("{SERVERS}    timeouts:\n      idle: 0s\n"), "upstreams.api.timeouts.idle", 11, "must be greater than 0"),
        ];
        for (lines, path, line, needle) in &cases {
            expect_error(&with(lines), path, *line, needle);
        }
    }

    #[test]
    fn upstream_defaults_and_tls() {
        let (config, _) = valid(&with(&format!(
            "{SERVERS}    protocol: h2\n    tls: {{ server_name: 10.0.0.1 }}\n"
        )));
        let up = &config.upstreams[0];
        assert_eq!(up.balancer, BalancerKind::WeightedRoundRobin);
        assert_eq!(up.max_idle_per_backend, 32);
        let tls = up
            .tls
            .as_ref()
            .map(|t| (t.ca.clone(), t.server_name.clone()));
        assert_eq!(tls, Some((None, Some("10.0.0.1".to_owned()))));
    }
}
