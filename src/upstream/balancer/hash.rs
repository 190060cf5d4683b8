//! Consistent hashing: a ring of virtual nodes placed by each backend's identity (so a
//! backend keeps its points when others leave or join), and the request keys it hashes.

use std::net::IpAddr;

use http::header::{HeaderMap, COOKIE};
use xxhash_rust::xxh3::xxh3_64;

use crate::config::model::HashKey;

/// Most points on one ring; larger weight sums are scaled down to fit.
const MAX_POINTS: u128 = 1 << 18;

/// Sorted ring points: (position, backend index).
#[derive(Debug)]
pub(super) struct Ring {
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// `identities[i]` names backend `i` stably (its address); it gets `virtual_nodes *
    /// weight` points (weight 0: none).
    pub(super) fn new(identities: &[String], weights: &[u32], virtual_nodes: u32) -> Ring {
        let total: u128 =
            weights.iter().map(|&w| u128::from(w)).sum::<u128>() * u128::from(virtual_nodes);
        let mut points = Vec::new();
        for (i, (id, &w)) in identities.iter().zip(weights).enumerate() {
            let mut n = u128::from(w) * u128::from(virtual_nodes);
            if total > MAX_POINTS && n > 0 {
                n = (n * MAX_POINTS / total).max(1);
            }
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            for v in 0..n {
                points.push((xxh3_64(format!("{id}#{v}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The first usable backend clockwise from `key`: an unusable one passes its keys to the
    /// next point's owner without moving anybody else's.
    pub(super) fn pick(&self, key: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        let start = self.points.partition_point(|&(p, _)| p < key);
        (0..len)
            .filter_map(|step| self.points.get((start + step) % len))
            .map(|&(_, b)| b as usize)
            .find(|&b| usable(b))
    }
}

/// The hash of a request's key, or `None` when the request has no such key.
pub fn key_hash(key: &HashKey, headers: &HeaderMap, path: &str, client: IpAddr) -> Option<u64> {
    match key {
        HashKey::ClientIp => Some(match client {
            IpAddr::V4(v4) => xxh3_64(&v4.octets()),
            IpAddr::V6(v6) => xxh3_64(&v6.octets()),
        }),
        HashKey::Header(name) => headers.get(name).map(|v| xxh3_64(v.as_bytes())),
        HashKey::Cookie(name) => cookie(headers, name).map(|v| xxh3_64(v.as_bytes())),
        HashKey::Path => Some(xxh3_64(path.as_bytes())),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one wins).
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
