//! A small lock-free random source for balancing decisions (splitmix64 over an atomic
//! counter): fast and well spread, not cryptographic.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(super) struct Rng(AtomicU64);

impl Rng {
    /// Seeded from the process's hash randomness.
    pub(super) fn new() -> Rng {
        Rng::seeded(RandomState::new().hash_one(0x5eed_u64))
    }

    pub(super) fn seeded(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    pub(super) fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (no modulo bias worth noting).
    pub(super) fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}
