//! Validation of an upstream's `balancer` (name or mapping with its knobs) and `sticky`.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::route::unknown_name;
use super::{is_tchar, join, Ctx};
use crate::config::model::{BalancerKind, Balancing, HashKey, Sticky};
use crate::config::raw::RawUpstream;
use crate::config::raw_balancing::{RawBalancer, RawBalancerMap, RawSticky};

/// Shortest accepted sticky secret, in bytes.
const MIN_SECRET: usize = 16;
/// Most ring points per unit of weight.
const MAX_VIRTUAL_NODES: u32 = 10_000;

pub(super) fn balancing(
    ctx: &mut Ctx<'_>,
    path: &str,
    raw: &RawUpstream,
) -> Option<(BalancerKind, Balancing)> {
    let at = join(path, "balancer");
    let (kind, mut balancing) = match &raw.balancer {
        None => Some((BalancerKind::default(), Balancing::default())),
        Some(RawBalancer::Name(name)) => {
            let kind = parse_kind(ctx, &at, name)?;
            if kind == BalancerKind::ConsistentHash {
                ctx.error(
                    &at,
                    "consistent_hash needs a key: write `balancer: { policy: consistent_hash, key: client_ip }`",
                );
                return None;
            }
            Some((kind, Balancing::default()))
        }
        Some(RawBalancer::Full(map)) => full(ctx, &at, map),
    }?;
    if let Some(s) = &raw.sticky {
        balancing.sticky = Some(sticky(ctx, &join(path, "sticky"), s)?);
    }
    Some((kind, balancing))
}

fn parse_kind(ctx: &mut Ctx<'_>, path: &str, name: &str) -> Option<BalancerKind> {
    let found = BalancerKind::ALL
        .into_iter()
        .find(|k| k.name() == name.trim());
    if found.is_none() {
        let known: Vec<&str> = BalancerKind::ALL.iter().map(|k| k.name()).collect();
        ctx.error(path, unknown_name("balancer", name, &known));
    }
    found
}

fn full(ctx: &mut Ctx<'_>, path: &str, raw: &RawBalancerMap) -> Option<(BalancerKind, Balancing)> {
    let policy = ctx.required(path, "policy", raw.policy.as_ref())?;
    let kind = parse_kind(ctx, &join(path, "policy"), policy)?;
    let mut ok = true;
    let mut only = |ctx: &mut Ctx<'_>, key: &str, given: bool, wanted: BalancerKind| {
        if given && kind != wanted {
            ctx.error(
                &join(path, key),
                format!("`{key}` only applies to policy {}", wanted.name()),
            );
            ok = false;
        }
    };
    only(ctx, "key", raw.key.is_some(), BalancerKind::ConsistentHash);
    only(
        ctx,
        "fallback",
        raw.fallback.is_some(),
        BalancerKind::ConsistentHash,
    );
    only(
        ctx,
        "virtual_nodes",
        raw.virtual_nodes.is_some(),
        BalancerKind::ConsistentHash,
    );
    only(ctx, "decay", raw.decay.is_some(), BalancerKind::P2cEwma);
    let defaults = Balancing::default();
    let hash_key = if kind == BalancerKind::ConsistentHash {
        Some(hash_key(ctx, path, raw)).map(|k| k.map(Some))?
    } else {
        if raw.name.is_some() {
            ctx.error(
                &join(path, "name"),
                "`name` only applies to key header or cookie",
            );
            ok = false;
        }
        Some(None)
    };
    let fallback = match raw.fallback.as_deref() {
        None => Some(defaults.fallback),
        Some(name) => {
            let at = join(path, "fallback");
            let k = parse_kind(ctx, &at, name);
            if k == Some(BalancerKind::ConsistentHash) {
                ctx.error(&at, "the fallback cannot be consistent_hash itself");
                None
            } else {
                k
            }
        }
    };
    let at = join(path, "virtual_nodes");
    let virtual_nodes = ctx
        .positive(&at, raw.virtual_nodes, defaults.virtual_nodes)
        .filter(|&n| {
            let fits = n <= MAX_VIRTUAL_NODES;
            if !fits {
                ctx.error(&at, format!("must be at most {MAX_VIRTUAL_NODES}"));
            }
            fits
        });
    let decay = ctx.duration(&join(path, "decay"), raw.decay.as_ref(), defaults.decay);
    let balancing = Balancing {
        hash_key: hash_key?,
        fallback: fallback?,
        virtual_nodes: virtual_nodes?,
        decay: decay?,
        sticky: None,
    };
    Some((kind, balancing)).filter(|_| ok)
}

fn hash_key(ctx: &mut Ctx<'_>, path: &str, raw: &RawBalancerMap) -> Option<HashKey> {
    let key = ctx.required(path, "key", raw.key.as_ref())?;
    let name_at = join(path, "name");
    match key.trim() {
        "client_ip" | "path" => {
            if raw.name.is_some() {
                ctx.error(&name_at, "`name` only applies to key header or cookie");
                return None;
            }
            Some(if key.trim() == "path" {
                HashKey::Path
            } else {
                HashKey::ClientIp
            })
        }
        "header" => {
            let name = ctx.required(path, "name", raw.name.as_ref())?;
            match HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(h) => Some(HashKey::Header(h)),
                Err(_) => {
                    ctx.error(&name_at, format!("{name:?} is not a valid header name"));
                    None
                }
            }
        }
        "cookie" => {
            let name = ctx.required(path, "name", raw.name.as_ref())?;
            cookie_name(ctx, &name_at, name).map(HashKey::Cookie)
        }
        other => {
            let known = ["client_ip", "header", "cookie", "path"];
            ctx.error(&join(path, "key"), unknown_name("hash key", other, &known));
            None
        }
    }
}

fn cookie_name(ctx: &mut Ctx<'_>, path: &str, name: &str) -> Option<String> {
    let name = name.trim();
    if name.bytes().all(is_tchar) {
        Some(name.to_owned())
    } else {
        ctx.error(path, format!("{name:?} is not a valid cookie name"));
        None
    }
}

fn sticky(ctx: &mut Ctx<'_>, path: &str, raw: &RawSticky) -> Option<Sticky> {
    let cookie = ctx
        .required(path, "cookie", raw.cookie.as_ref())
        .and_then(|name| cookie_name(ctx, &join(path, "cookie"), name));
    let ttl = match &raw.ttl {
        None => Some(None),
        Some(text) => ctx
            .duration(&join(path, "ttl"), Some(text), Duration::ZERO)
            .map(Some),
    };
    let secret = match (&raw.secret, &raw.secret_file) {
        (Some(_), Some(_)) => {
            ctx.error(
                &join(path, "secret_file"),
                "give either `secret` or `secret_file`, not both",
            );
            None
        }
        (Some(text), None) => secret(ctx, &join(path, "secret"), text.as_bytes()).map(Some),
        (None, Some(_)) => {
            let file = ctx.file_path(path, "secret_file", raw.secret_file.as_ref())?;
            let at = join(path, "secret_file");
            match std::fs::read(&file) {
                Ok(bytes) => secret(ctx, &at, bytes.trim_ascii()).map(Some),
                Err(e) => {
                    ctx.error(&at, format!("cannot read {}: {e}", file.display()));
                    None
                }
            }
        }
        (None, None) => Some(None),
    };
    Some(Sticky {
        cookie: cookie?,
        ttl: ttl?,
        secret: secret?,
    })
}

fn secret(ctx: &mut Ctx<'_>, path: &str, bytes: &[u8]) -> Option<Arc<[u8]>> {
    if bytes.len() < MIN_SECRET {
        ctx.error(path, format!("must be at least {MIN_SECRET} bytes"));
        return None;
    }
    Some(Arc::from(bytes))
}

#[cfg(test)]
#[path = "balancing_tests.rs"]
mod tests;
