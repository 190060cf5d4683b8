//! Validation of an upstream's resilience keys: `discovery`, `health_check`,
//! `outlier_detection`, `retries` and `limits`, plus `host:port` servers.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

use super::matcher::parse_host;
use super::route::unknown_name;
use super::{join, Ctx};
use crate::config::model::{
    Discovery, DnsServer, HealthCheck, HealthCheckKind, HostMatch, OutlierDetection, Resilience,
    RetryPolicy, UpstreamLimits,
};
use crate::config::raw::RawUpstream;
use crate::config::raw_resilience::{RawHealthCheck, RawOutlier, RawRetries, RawUpstreamLimits};
use crate::config::units;

/// `host:port` with a DNS name as host, for discovery; `None` when `text` is not one.
pub(super) fn host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|&p| p != 0)?;
    match parse_host(host) {
        Ok(HostMatch::Exact(h))
            if !h.starts_with('[') && h.parse::<std::net::IpAddr>().is_err() =>
        {
            Some((h, port))
        }
        _ => None,
    }
}

pub(super) fn resilience(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawUpstream,
    dns_servers: Vec<DnsServer>,
) -> Option<Resilience> {
    let mut ok = true;
    let discovery = match &raw.discovery {
        None => Discovery::default(),
        Some(d) => {
            let at = join(path, "discovery");
            let resolver = match d.resolver.as_deref() {
                None => None,
                Some(text) => match text.trim().parse::<SocketAddr>() {
                    Ok(addr) => Some(addr),
                    Err(_) => {
                        ctx.error(
                            &join(&at, "resolver"),
                            format!("{text:?} is not an IP:port address (like 127.0.0.1:53)"),
                        );
                        ok = false;
                        None
                    }
                },
            };
            let interval = ctx.duration(
                &join(&at, "interval"),
                d.interval.as_ref(),
                Duration::from_secs(30),
            );
            ok &= interval.is_some();
            Discovery {
                resolver,
                interval: interval.unwrap_or_default(),
            }
        }
    };
    if raw.discovery.is_some() && dns_servers.is_empty() {
        ctx.warning(
            &join(path, "discovery"),
            "no server is a host name: discovery has nothing to resolve",
        );
    }
    let health_check = match &raw.health_check {
        None => Some(None),
        Some(h) => health_check(ctx, &join(path, "health_check"), h).map(Some),
    };
    let outlier = match &raw.outlier_detection {
        None => Some(Some(OutlierDetection::default())),
        Some(o) => outlier(ctx, &join(path, "outlier_detection"), o),
    };
    let retries = match &raw.retries {
        None => Some(RetryPolicy::default()),
        Some(r) => retries(ctx, &join(path, "retries"), r),
    };
    let limits = raw
        .limits
        .as_ref()
        .map_or(Some(UpstreamLimits::default()), |l| {
            limits(ctx, &join(path, "limits"), l)
        });
    Some(Resilience {
        dns_servers,
        discovery,
        health_check: health_check?,
        outlier: outlier?,
        retries: retries?,
        limits: limits?,
    })
    .filter(|_| ok)
}

/// A duration that may be zero (`0s` turns the feature off).
fn duration_or_zero(
    ctx: &mut Ctx<'_>,
    path: &str,
    value: Option<&String>,
    default: Duration,
) -> Option<Duration> {
    let Some(text) = value else {
        return Some(default);
    };
    units::parse_duration(text)
        .map_err(|e| ctx.error(path, e.to_string()))
        .ok()
}

fn statuses(ctx: &mut Ctx<'_>, path: &str, list: &[u16]) -> bool {
    let mut ok = true;
    for (i, &s) in list.iter().enumerate() {
        if !(100..=599).contains(&s) {
            ctx.error(
                &format!("{path}[{i}]"),
                format!("{s} is not an HTTP status (100-599)"),
            );
            ok = false;
        }
    }
    ok
}

fn health_check(ctx: &mut Ctx<'_>, path: &str, raw: &RawHealthCheck) -> Option<HealthCheck> {
    let mut ok = true;
    let kind = match raw.kind.as_deref() {
        None | Some("http") => Some(HealthCheckKind::Http),
        Some("tcp") => Some(HealthCheckKind::Tcp),
        Some(other) => {
            ctx.error(
                &join(path, "type"),
                unknown_name("health check type", other, &["http", "tcp"]),
            );
            None
        }
    };
    let check_path = raw.path.clone().unwrap_or_else(|| "/".to_owned());
    if !check_path.starts_with('/')
        || check_path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        ctx.error(
            &join(path, "path"),
            format!("{check_path:?} must be an origin-form path starting with '/'"),
        );
        ok = false;
    }
    if let Some(host) = &raw.host {
        if http::HeaderValue::from_str(host).is_err() || host.trim().is_empty() {
            ctx.error(
                &join(path, "host"),
                format!("{host:?} is not a valid Host header value"),
            );
            ok = false;
        }
    }
    let list = raw.statuses.clone().unwrap_or_default();
    ok &= statuses(ctx, &join(path, "statuses"), &list);
    let interval = ctx.duration(
        &join(path, "interval"),
        raw.interval.as_ref(),
        Duration::from_secs(5),
    );
    let timeout = ctx.duration(
        &join(path, "timeout"),
        raw.timeout.as_ref(),
        Duration::from_secs(2),
    );
    let healthy = ctx.positive(&join(path, "healthy_threshold"), raw.healthy_threshold, 2);
    let unhealthy = ctx.positive(
        &join(path, "unhealthy_threshold"),
        raw.unhealthy_threshold,
        3,
    );
    let slow_start = duration_or_zero(
        ctx,
        &join(path, "slow_start"),
        raw.slow_start.as_ref(),
        Duration::from_secs(5),
    );
    Some(HealthCheck {
        kind: kind?,
        path: check_path,
        host: raw.host.clone(),
        statuses: list,
        interval: interval?,
        timeout: timeout?,
        healthy_threshold: healthy?,
        unhealthy_threshold: unhealthy?,
        slow_start: slow_start?,
    })
    .filter(|_| ok)
}

fn outlier(ctx: &mut Ctx<'_>, path: &str, raw: &RawOutlier) -> Option<Option<OutlierDetection>> {
    let d = OutlierDetection::default();
    let failures = ctx.positive(
        &join(path, "consecutive_failures"),
        raw.consecutive_failures,
        d.consecutive_failures,
    );
    let base = ctx.duration(
        &join(path, "base_ejection"),
        raw.base_ejection.as_ref(),
        d.base_ejection,
    );
    let max = ctx.duration(
        &join(path, "max_ejection"),
        raw.max_ejection.as_ref(),
        d.max_ejection,
    );
    let percent = match raw.max_ejected_percent {
        Some(p) if p > 100 => {
            ctx.error(
                &join(path, "max_ejected_percent"),
                format!("{p} is more than 100"),
            );
            None
        }
        p => Some(p.unwrap_or(d.max_ejected_percent)),
    };
    if let (Some(b), Some(m)) = (base, max) {
        if m < b {
            ctx.error(
                &join(path, "max_ejection"),
                "must not be shorter than base_ejection",
            );
            return None;
        }
    }
    let detection = OutlierDetection {
        consecutive_failures: failures?,
        base_ejection: base?,
        max_ejection: max?,
        max_ejected_percent: percent?,
    };
    Some((raw.enabled != Some(false)).then_some(detection))
}

fn retries(ctx: &mut Ctx<'_>, path: &str, raw: &RawRetries) -> Option<RetryPolicy> {
    let d = RetryPolicy::default();
    let mut ok = true;
    let list = raw.statuses.clone().unwrap_or(d.statuses.clone());
    ok &= statuses(ctx, &join(path, "statuses"), &list);
    let methods = match &raw.methods {
        None => d.methods.clone(),
        Some(names) => {
            let mut out = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match Method::from_bytes(name.trim().to_ascii_uppercase().as_bytes()) {
                    Ok(m) => out.push(m),
                    Err(_) => {
                        ctx.error(
                            &format!("{}[{i}]", join(path, "methods")),
                            format!("{name:?} is not an HTTP method"),
                        );
                        ok = false;
                    }
                }
            }
            out
        }
    };
    let per_try = match &raw.per_try_timeout {
        None => Some(None),
        Some(_) => ctx
            .duration(
                &join(path, "per_try_timeout"),
                raw.per_try_timeout.as_ref(),
                Duration::ZERO,
            )
            .map(Some),
    };
    let timeout = match &raw.timeout {
        None => Some(None),
        Some(_) => ctx
            .duration(&join(path, "timeout"), raw.timeout.as_ref(), Duration::ZERO)
            .map(Some),
    };
    let replay = ctx.size(
        &join(path, "replay_buffer"),
        raw.replay_buffer.as_ref(),
        d.replay_buffer,
    );
    Some(RetryPolicy {
        attempts: raw.attempts.unwrap_or(d.attempts),
        statuses: list,
        methods,
        per_try_timeout: per_try?,
        timeout: timeout?,
        budget_percent: raw.budget_percent.unwrap_or(d.budget_percent),
        budget_min_per_second: raw.budget_min_per_second.unwrap_or(d.budget_min_per_second),
        replay_buffer: replay?,
    })
    .filter(|_| ok)
}

fn limits(ctx: &mut Ctx<'_>, path: &str, raw: &RawUpstreamLimits) -> Option<UpstreamLimits> {
    let mut one = |key: &str, v: Option<usize>| match v {
        None => Some(None),
        Some(_) => ctx.positive(&join(path, key), v, 0).map(Some),
    };
    let connections = one("max_connections", raw.max_connections);
    let pending = one("max_pending", raw.max_pending);
    let per_backend_connections = one(
        "max_connections_per_backend",
        raw.max_connections_per_backend,
    );
    let per_backend_pending = one("max_pending_per_backend", raw.max_pending_per_backend);
    Some(UpstreamLimits {
        max_connections: connections?,
        max_pending: pending?,
        max_connections_per_backend: per_backend_connections?,
        max_pending_per_backend: per_backend_pending?,
    })
}

#[cfg(test)]
#[path = "resilience_tests.rs"]
mod tests;
