//! DNS discovery: `host:port` servers are re-resolved on an interval, through the system
//! resolver or straight from a configured DNS server over UDP (A records, a minimal
//! RFC 1035 client). A changed answer replaces the backend set without a reload (backends
//! that stay keep their state); a failed resolution keeps the last good addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Weak;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::pool::UpstreamPool;
use crate::config::model::DnsServer;

/// Bound on one resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("resolver I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("malformed DNS answer")]
    Malformed,
    #[error("DNS server answered rcode {0}")]
    Rcode(u8),
    #[error("name has no addresses")]
    Empty,
}

/// Keeps the pool's backend set in step with DNS while the pool lives.
pub(super) async fn run(pool: Weak<UpstreamPool>) {
    let mut last: Vec<Vec<SocketAddr>> = Vec::new();
    loop {
        let Some(strong) = pool.upgrade() else {
            return;
        };
        let resilience = &strong.config.resilience;
        last.resize(resilience.dns_servers.len(), Vec::new());
        for (server, known) in resilience.dns_servers.iter().zip(last.iter_mut()) {
            match resolve(server, resilience.discovery.resolver).await {
                Ok(addrs) => *known = addrs,
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
        let interval = resilience.discovery.interval;
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

/// The addresses of `server`, sorted.
pub async fn resolve(
    server: &DnsServer,
    resolver: Option<SocketAddr>,
) -> Result<Vec<SocketAddr>, DnsError> {
    let lookup = async {
        let mut addrs: Vec<SocketAddr> = match resolver {
            Some(dns) => query_a(dns, &server.host)
                .await?
                .into_iter()
                .map(|ip| SocketAddr::new(IpAddr::V4(ip), server.port))
                .collect(),
            None => tokio::net::lookup_host((server.host.as_str(), server.port))
                .await?
                .collect(),
        };
        addrs.sort();
        addrs.dedup();
        if addrs.is_empty() {
            return Err(DnsError::Empty);
        }
        Ok(addrs)
    };
    tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .unwrap_or(Err(DnsError::Timeout(RESOLVE_TIMEOUT)))
}

/// One A query to `dns` over UDP.
async fn query_a(dns: SocketAddr, host: &str) -> Result<Vec<Ipv4Addr>, DnsError> {
    let bind: SocketAddr = if dns.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(dns).await?;
    let id = u16::try_from(super::outlier::now_ms() & 0xffff).unwrap_or(0x4242);
    socket.send(&encode_query(id, host)).await?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf).await?;
        let Some(answer) = buf.get(..n) else {
            return Err(DnsError::Malformed);
        };
        // Answers to other queries (a late one from a retry) are skipped.
        if answer.get(..2) == Some(&id.to_be_bytes()[..]) {
            return parse_a(answer);
        }
    }
}

/// A recursive A/IN query for `host`.
pub fn encode_query(id: u16, host: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + host.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in host.trim_end_matches('.').split('.') {
        let bytes = label.as_bytes();
        out.push(u8::try_from(bytes.len().min(63)).unwrap_or(63));
        out.extend_from_slice(bytes.get(..bytes.len().min(63)).unwrap_or_default());
    }
    out.extend_from_slice(&[0, 0, 1, 0, 1]);
    out
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    match msg.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => Err(DnsError::Malformed),
    }
}

/// Position after the (possibly compressed) name starting at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *msg.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xC0 == 0xC0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// The A records of an answer.
pub fn parse_a(msg: &[u8]) -> Result<Vec<Ipv4Addr>, DnsError> {
    let flags = u16_at(msg, 2)?;
    if flags & 0x8000 == 0 {
        return Err(DnsError::Malformed);
    }
    let rcode = u8::try_from(flags & 0x000f).unwrap_or(0);
    if rcode != 0 {
        return Err(DnsError::Rcode(rcode));
    }
    let questions = u16_at(msg, 4)?;
    let answers = u16_at(msg, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(msg, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..answers {
        at = skip_name(msg, at)?;
        let kind = u16_at(msg, at)?;
        let len = usize::from(u16_at(msg, at + 8)?);
        let data = msg.get(at + 10..at + 10 + len).ok_or(DnsError::Malformed)?;
        if let (1, &[a, b, c, d]) = (kind, data) {
            out.push(Ipv4Addr::new(a, b, c, d));
        }
        at += 10 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_round_trip() {
        let q = encode_query(7, "api.test");
        assert_eq!(&q[12..22], b"\x03api\x04test\x00");
        let mut answer = q.clone();
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 2;
        for ip in [[10, 0, 0, 1], [10, 0, 0, 2]] {
            answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
            answer.extend_from_slice(&ip);
        }
        assert_eq!(
            parse_a(&answer).ok(),
            Some(vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)])
        );
        assert!(matches!(parse_a(&answer[..20]), Err(DnsError::Malformed)));
        answer[3] = 0x83;
        assert!(matches!(parse_a(&answer), Err(DnsError::Rcode(3))));
    }
}
