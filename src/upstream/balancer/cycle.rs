//! Round robin and nginx's smooth weighted round robin, lock-free (one atomic cursor over a
//! precomputed cycle).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Which cycle to precompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleKind {
    RoundRobin,
    WeightedRoundRobin,
}

/// Longest precomputed weighted cycle; larger weight sums are scaled down to fit.
const MAX_CYCLE: u64 = 4096;

/// Picks backends by index along a precomputed cycle. `Send + Sync`.
#[derive(Debug)]
pub(super) struct Cycle {
    /// One full cycle of backend indices; the cursor walks it forever.
    cycle: Box<[u32]>,
    cursor: AtomicUsize,
}

impl Cycle {
    /// `weights` has one entry per backend. Round robin ignores the values. Weighted round
    /// robin gives a backend of weight 0 no traffic at all (a drained server).
    pub(super) fn new(kind: CycleKind, weights: &[u32]) -> Cycle {
        let count = u32::try_from(weights.len()).unwrap_or(u32::MAX);
        let cycle = match kind {
            CycleKind::RoundRobin => (0..count).collect(),
            CycleKind::WeightedRoundRobin => smooth_weighted_cycle(&scale(weights)),
        };
        Cycle {
            cycle,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next backend for which `usable` is true, or `None` when none is.
    ///
    /// An unusable entry of the cycle is skipped and the cursor moves past it too, so that
    /// over a cycle every usable backend still gets exactly its share instead of the skipped
    /// share landing on one neighbour.
    pub(super) fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.cycle.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for skipped in 0..len {
            let slot = start.wrapping_add(skipped) % len;
            let Some(&backend) = self.cycle.get(slot) else {
                continue;
            };
            let backend = backend as usize;
            if usable(backend) {
                if skipped > 0 {
                    // Only if nobody else moved the cursor meanwhile: a concurrent pick has
                    // already taken the next slot, and jumping over it would skew shares.
                    let _ = self.cursor.compare_exchange(
                        start.wrapping_add(1),
                        start.wrapping_add(skipped + 1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return Some(backend);
            }
        }
        None
    }
}

/// Keeps the cycle at most `MAX_CYCLE` long (plus one per backend that rounding would
/// otherwise zero out): proportional scaling with round-to-nearest, every non-zero weight
/// staying at least 1.
fn scale(weights: &[u32]) -> Vec<u64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    weights
        .iter()
        .map(|&w| {
            let w = u64::from(w);
            if total <= MAX_CYCLE || w == 0 {
                w
            } else {
                ((w * MAX_CYCLE + total / 2) / total).max(1)
            }
        })
        .collect()
}

/// nginx's smooth weighted round robin, run for one full cycle (sum of weights picks): each
/// step adds every weight to its running score, picks the highest score (first on ties) and
/// subtracts the total from it. After a full cycle every score is back to zero, so repeating
/// the cycle continues the sequence exactly.
fn smooth_weighted_cycle(weights: &[u64]) -> Box<[u32]> {
    let total: u64 = weights.iter().sum();
    let total_signed = i64::try_from(total).unwrap_or(i64::MAX);
    let signed: Vec<i64> = weights
        .iter()
        .map(|&w| i64::try_from(w).unwrap_or(i64::MAX))
        .collect();
    let mut scores = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        for (score, &weight) in scores.iter_mut().zip(&signed) {
            *score += weight;
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, (&score, &weight)) in scores.iter().zip(&signed).enumerate() {
            if weight > 0 && best.is_none_or(|(_, top)| score > top) {
                best = Some((i, score));
            }
        }
        let Some((best, _)) = best else { break };
        scores[best] -= total_signed;
        cycle.push(u32::try_from(best).unwrap_or(u32::MAX));
    }
    cycle.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn picks(b: &Cycle, n: usize, usable: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..n).map(|_| b.pick(&usable).unwrap()).collect()
    }

    fn counts(seq: &[usize], backends: usize) -> Vec<usize> {
        let mut c = vec![0; backends];
        for &i in seq {
            c[i] += 1;
        }
        c
    }

    #[test]
    fn balancer_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Cycle>();
    }

    #[test]
    fn round_robin_cycles_and_ignores_weights() {
        let b = Cycle::new(CycleKind::RoundRobin, &[9, 1, 0]);
        assert_eq!(picks(&b, 7, |_| true), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn smooth_weighted_matches_nginx_sequence() {
        let b = Cycle::new(CycleKind::WeightedRoundRobin, &[5, 1, 1]);
        let (a, bb, c) = (0, 1, 2);
        let cycle = [a, a, bb, a, c, a, a];
        let expected: Vec<usize> = cycle.iter().chain(&cycle).copied().collect();
        assert_eq!(picks(&b, 14, |_| true), expected);
    }

    #[test]
    fn smooth_weighted_interleaves_equal_weights() {
        let b = Cycle::new(CycleKind::WeightedRoundRobin, &[2, 2]);
        assert_eq!(picks(&b, 4, |_| true), [0, 1, 0, 1]);
    }

    #[test]
    fn unusable_backends_are_skipped_and_others_keep_their_shares() {
        let rr = Cycle::new(CycleKind::RoundRobin, &[1, 1, 1]);
        assert_eq!(picks(&rr, 6, |i| i != 1), [0, 2, 0, 2, 0, 2]);

        let wrr = Cycle::new(CycleKind::WeightedRoundRobin, &[5, 1, 1]);
        // Without "a", b and c alternate rather than one of them inheriting a's share.
        assert_eq!(counts(&picks(&wrr, 20, |i| i != 0), 3), [0, 10, 10]);
    }

    #[test]
    fn all_unusable_or_empty_gives_none() {
        let b = Cycle::new(CycleKind::WeightedRoundRobin, &[3, 2]);
        assert_eq!(b.pick(|_| false), None);
        assert_eq!(Cycle::new(CycleKind::RoundRobin, &[]).pick(|_| true), None);
        assert_eq!(
            Cycle::new(CycleKind::WeightedRoundRobin, &[]).pick(|_| true),
            None
        );
    }

    #[test]
    fn zero_weight_gets_no_traffic() {
        let b = Cycle::new(CycleKind::WeightedRoundRobin, &[0, 2, 1]);
        assert_eq!(picks(&b, 6, |_| true), [1, 2, 1, 1, 2, 1]);
        let none = Cycle::new(CycleKind::WeightedRoundRobin, &[0, 0]);
        assert_eq!(none.pick(|_| true), None);
    }

    #[test]
    fn large_weights_are_scaled_into_a_bounded_cycle() {
        let b = Cycle::new(CycleKind::WeightedRoundRobin, &[1_000_000, 1, 3_000_000]);
        assert!(b.cycle.len() <= 4096 + 3);
        let c = counts(&b.cycle.iter().map(|&i| i as usize).collect::<Vec<_>>(), 3);
        assert_eq!(c[1], 1, "a tiny weight still keeps one slot");
        assert_eq!(c[0] + c[2] + c[1], b.cycle.len());
        assert!((c[2] as f64 / c[0] as f64 - 3.0).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn concurrent_picks_total_exactly() {
        let b = Arc::new(Cycle::new(CycleKind::WeightedRoundRobin, &[3, 2, 1]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut c = [0usize; 3];
                    for _ in 0..600 {
                        c[b.pick(|_| true).unwrap()] += 1;
                    }
                    c
                })
            })
            .collect();
        let mut total = [0usize; 3];
        for t in threads {
            for (sum, n) in total.iter_mut().zip(t.join().unwrap()) {
                *sum += n;
            }
        }
        // 2400 picks are 400 full cycles of length 6, each slot taken exactly once.
        assert_eq!(total, [1200, 800, 400]);
    }

    proptest! {
        #![proptest_config(crate::proptest_config())]
        #[test]
        fn full_cycles_give_exact_shares(
            weights in prop::collection::vec(1u32..20, 1..7),
            down in prop::collection::vec(any::<bool>(), 7),
            rounds in 1usize..4,
        ) {
            let usable = |i: usize| !down[i] || i == 0;
            let b = Cycle::new(CycleKind::WeightedRoundRobin, &weights);
            let share: usize = (0..weights.len())
                .filter(|&i| usable(i))
                .map(|i| weights[i] as usize)
                .sum();
            let got = counts(&picks(&b, share * rounds, usable), weights.len());
            for (i, &w) in weights.iter().enumerate() {
                let want = if usable(i) { w as usize * rounds } else { 0 };
                prop_assert_eq!(got[i], want, "backend {} of {:?}", i, weights);
            }
        }

        #[test]
        fn scaled_weights_stay_proportional(
            weights in prop::collection::vec(1u32..100_000, 1..8),
        ) {
            let b = Cycle::new(CycleKind::WeightedRoundRobin, &weights);
            let len = b.cycle.len();
            let got = counts(&picks(&b, len, |_| true), weights.len());
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            for (i, &w) in weights.iter().enumerate() {
                let want = f64::from(w) / total;
                let have = got[i] as f64 / len as f64;
                // Rounding moves a share by at most one slot, plus the minimum of one.
                prop_assert!((want - have).abs() <= 2.0 / len as f64 + 1e-9,
                    "backend {} want {} have {} ({:?})", i, want, have, weights);
            }
        }
    }
}
