//! The validated balancing settings of an upstream: the policy, its knobs (hash key,
//! fallback, virtual nodes, EWMA decay) and the sealed sticky-session cookie.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

/// Which policy picks a backend for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancerKind {
    RoundRobin,
    /// The default: with equal weights it is plain round robin.
    #[default]
    WeightedRoundRobin,
    /// Fewest requests in flight (relative to weight), ties broken at random.
    LeastRequests,
    /// Power of two random choices over peak-EWMA latency times (in-flight + 1).
    P2cEwma,
    /// Weighted random.
    Random,
    /// A ring of virtual nodes keyed by `Balancing::hash_key`.
    ConsistentHash,
}

impl BalancerKind {
    /// The name used in the configuration file.
    pub fn name(self) -> &'static str {
        match self {
            BalancerKind::RoundRobin => "round_robin",
            BalancerKind::WeightedRoundRobin => "weighted_round_robin",
            BalancerKind::LeastRequests => "least_requests",
            BalancerKind::P2cEwma => "p2c_ewma",
            BalancerKind::Random => "random",
            BalancerKind::ConsistentHash => "consistent_hash",
        }
    }

    /// Every policy, in the order the documentation lists them.
    pub const ALL: [BalancerKind; 6] = [
        BalancerKind::RoundRobin,
        BalancerKind::WeightedRoundRobin,
        BalancerKind::LeastRequests,
        BalancerKind::P2cEwma,
        BalancerKind::Random,
        BalancerKind::ConsistentHash,
    ];
}

/// What a consistent hash is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address (the TCP peer; `X-Forwarded-For` is not trusted for this).
    ClientIp,
    Header(HeaderName),
    Cookie(String),
    /// The request path without the query.
    Path,
}

/// Knobs of the balancer beyond its kind, each with its default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balancing {
    /// `Some` exactly when the policy is `consistent_hash`.
    pub hash_key: Option<HashKey>,
    /// The policy used when the hash key is absent from a request (default:
    /// weighted_round_robin; never consistent_hash).
    pub fallback: BalancerKind,
    /// Ring points per unit of weight (default: 160).
    pub virtual_nodes: u32,
    /// Time constant of the peak-EWMA latency (default: 10s).
    pub decay: Duration,
    /// Sticky sessions through a sealed cookie.
    pub sticky: Option<Sticky>,
}

impl Default for Balancing {
    fn default() -> Self {
        Balancing {
            hash_key: None,
            fallback: BalancerKind::WeightedRoundRobin,
            virtual_nodes: 160,
            decay: Duration::from_secs(10),
            sticky: None,
        }
    }
}

/// `sticky:` of an upstream.
#[derive(Clone, PartialEq, Eq)]
pub struct Sticky {
    /// The cookie's name.
    pub cookie: String,
    /// `Max-Age` of the cookie and lifetime of its seal; `None`: a session cookie.
    pub ttl: Option<Duration>,
    /// The HMAC key; `None`: a random key per process (restarts re-pin clients).
    pub secret: Option<Arc<[u8]>>,
}

/// The secret never shows: `Debug` prints a keyed hash of it instead, random per process, so
/// two configurations still compare by their `Debug` form (as reloads do) without the key
/// ever reaching a log or a dump.
impl std::fmt::Debug for Sticky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::hash::BuildHasher;
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let secret = self.secret.as_ref().map(|s| {
            let hash = KEY
                .get_or_init(std::collections::hash_map::RandomState::new)
                .hash_one(&**s);
            format!("Secret(hash {hash:016x})")
        });
        f.debug_struct("Sticky")
            .field("cookie", &self.cookie)
            .field("ttl", &self.ttl)
            .field("secret", &secret)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_but_tells_secrets_apart() {
        let sticky = |secret: &str| Sticky {
            cookie: "s".to_owned(),
            ttl: None,
            secret: Some(Arc::from(secret.as_bytes())),
        };
        let one = format!("{:?}", sticky("swordfish-0123456789"));
        assert!(!one.contains("swordfish"), "{one}");
        assert!(!one.contains("115, 119"), "{one}"); // the bytes as a list
        assert_eq!(one, format!("{:?}", sticky("swordfish-0123456789")));
        assert_ne!(one, format!("{:?}", sticky("swordfish-0123456788")));
    }
}
