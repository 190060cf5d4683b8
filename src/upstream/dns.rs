//! DNS discovery: `host:port` servers are re-resolved on an interval, through the system
//! resolver or through a configured DNS server (A and AAAA records, UDP with TCP fallback,
//! by hickory-resolver, whose cache honours the records' TTLs). A changed answer replaces the
//! backend set without a reload (backends that stay keep their state); a failed resolution
//! keeps the last good addresses. With a configured server, a name is asked for again when
//! its answer's TTL runs out, if that comes before the interval.

use std::net::{IpAddr, SocketAddr};
use std::sync::Weak;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

use super::pool::UpstreamPool;
use crate::config::model::DnsServer;

/// Bound on one resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The soonest a name is asked for again, however short its TTL.
const MIN_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("resolver I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("lookup failed: {0}")]
    Lookup(#[from] hickory_resolver::net::NetError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("name has no addresses")]
    Empty,
}

/// A resolver asking only `server` (no search domains, no hosts file).
pub fn resolver_for(server: SocketAddr) -> Result<TokioResolver, DnsError> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
        .into_iter()
        .map(|mut c| {
            c.port = server.port();
            c
        })
        .collect();
    let name_server = NameServerConfig::new(server.ip(), true, connections);
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![name_server]),
        TokioRuntimeProvider::default(),
    );
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.timeout = RESOLVE_TIMEOUT / 2;
    options.attempts = 1;
    options.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    Ok(builder.build()?)
}

/// Keeps the pool's backend set in step with DNS while the pool lives.
pub(super) async fn run(pool: Weak<UpstreamPool>) {
    // A pool's configuration never changes (a reload that changes it builds a new pool and a
    // new task), so its resolver is set up once.
    let resolver = {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        match strong
            .config
            .resilience
            .discovery
            .resolver
            .map(resolver_for)
            .transpose()
        {
            Ok(resolver) => resolver,
            Err(e) => {
                tracing::warn!(upstream = %strong.name, error = %e, "cannot set up the DNS resolver; discovery is off");
                return;
            }
        }
    };
    let mut last: Vec<Vec<SocketAddr>> = Vec::new();
    loop {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        let resilience = &strong.config.resilience;
        let mut next = resilience.discovery.interval;
        last.resize(resilience.dns_servers.len(), Vec::new());
        for (server, known) in resilience.dns_servers.iter().zip(last.iter_mut()) {
            match resolve(server, resolver.as_ref()).await {
                Ok((addrs, ttl)) => {
                    *known = addrs;
                    if let Some(ttl) = ttl {
                        next = next.min(ttl.max(MIN_REFRESH));
                    }
                }
                Err(e) => tracing::warn!(
                    upstream = %strong.name,
                    host = %server.host,
                    error = %e,
                    kept = known.len(),
                    "DNS resolution failed; keeping the last good addresses",
                ),
            }
        }
        let mut servers: Vec<(SocketAddr, u32)> = strong
            .config
            .servers
            .iter()
            .map(|s| (s.address, s.weight))
            .collect();
        for (server, addrs) in resilience.dns_servers.iter().zip(&last) {
            for &addr in addrs {
                if !servers.iter().any(|(a, _)| *a == addr) {
                    servers.push((addr, server.weight));
                }
            }
        }
        if strong.set_servers(&servers) {
            let list: Vec<String> = servers.iter().map(|(a, _)| a.to_string()).collect();
            tracing::info!(upstream = %strong.name, backends = %list.join(","), "backend set changed by DNS");
        }
        drop(strong);
        tokio::time::sleep(next).await;
    }
}

/// The addresses of `server`, sorted, and how long the answer stays valid when the resolver
/// says (a configured DNS server; the system resolver does not).
pub async fn resolve(
    server: &DnsServer,
    resolver: Option<&TokioResolver>,
) -> Result<(Vec<SocketAddr>, Option<Duration>), DnsError> {
    let lookup = async {
        let (mut addrs, ttl): (Vec<SocketAddr>, _) = match resolver {
            Some(resolver) => {
                let answer = resolver.lookup_ip(server.host.as_str()).await?;
                let ttl = answer
                    .valid_until()
                    .saturating_duration_since(std::time::Instant::now());
                let addrs = answer
                    .iter()
                    .map(|ip: IpAddr| SocketAddr::new(ip, server.port))
                    .collect();
                (addrs, Some(ttl))
            }
            None => (
                tokio::net::lookup_host((server.host.as_str(), server.port))
                    .await?
                    .collect(),
                None,
            ),
        };
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::Empty);
        }
        Ok((addrs, ttl))
    };
    tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .unwrap_or(Err(DnsError::Timeout(RESOLVE_TIMEOUT)))
}
