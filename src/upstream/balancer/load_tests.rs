//! Least requests, P2C over peak EWMA and weighted random: choices and distributions.

use super::Rng;
use super::*;
use proptest::prelude::*;

fn fresh(n: usize) -> Vec<Arc<BackendStats>> {
    (0..n).map(|_| BackendStats::new()).collect()
}

const DECAY: Duration = Duration::from_secs(10);

#[test]
fn least_requests_takes_the_idlest_and_spreads_ties() {
    let stats = fresh(3);
    let _busy = [stats[0].start(), stats[0].start(), stats[2].start()];
    let rng = Rng::seeded(1);
    let c = Candidates {
        weights: &[1, 1, 1],
        usable: |_| true,
    };
    for _ in 0..20 {
        assert_eq!(least_requests(&stats, &c, &rng), Some(1));
    }
    // With backend 1 out, 0 has two in flight and 2 has one.
    let c = Candidates {
        weights: &[1, 1, 1],
        usable: |i| i != 1,
    };
    assert_eq!(least_requests(&stats, &c, &rng), Some(2));

    let idle = fresh(4);
    let c = Candidates {
        weights: &[1, 1, 1, 1],
        usable: |_| true,
    };
    let mut counts = [0usize; 4];
    for _ in 0..4000 {
        counts[least_requests(&idle, &c, &rng).unwrap_or(9)] += 1;
    }
    for n in counts {
        assert!((800..1200).contains(&n), "ties must be spread: {counts:?}");
    }
}

#[test]
fn least_requests_weighs_load_by_weight() {
    let stats = fresh(2);
    let _g = [stats[0].start(), stats[0].start()];
    let rng = Rng::seeded(2);
    // (2+1)/4 < (0+1)/1: the heavy backend still wins.
    let c = Candidates {
        weights: &[4, 1],
        usable: |_| true,
    };
    assert_eq!(least_requests(&stats, &c, &rng), Some(0));
    let none = Candidates {
        weights: &[4, 1],
        usable: |_| false,
    };
    assert_eq!(least_requests(&stats, &none, &rng), None);
}

#[test]
fn p2c_avoids_the_slow_backend() {
    let stats = fresh(3);
    stats[0].observe_at(Duration::from_millis(1), 0, DECAY);
    stats[1].observe_at(Duration::from_millis(1), 0, DECAY);
    stats[2].observe_at(Duration::from_millis(300), 0, DECAY);
    let rng = Rng::seeded(3);
    let c = Candidates {
        weights: &[1, 1, 1],
        usable: |_| true,
    };
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        counts[p2c_ewma(&stats, &c, &rng, 0, DECAY).unwrap_or(0)] += 1;
    }
    // Two distinct draws out of three always include a fast one.
    assert_eq!(counts[2], 0, "{counts:?}");
    assert!(counts[0] > 1200 && counts[1] > 1200, "{counts:?}");
}

#[test]
fn p2c_prefers_unmeasured_backends_unless_busy() {
    let stats = fresh(2);
    stats[0].observe_at(Duration::from_millis(1), 0, DECAY);
    let rng = Rng::seeded(4);
    let c = Candidates {
        weights: &[1, 1],
        usable: |_| true,
    };
    assert_eq!(p2c_ewma(&stats, &c, &rng, 0, DECAY), Some(1));
    let _pending = stats[1].start();
    assert_eq!(p2c_ewma(&stats, &c, &rng, 0, DECAY), Some(0));
    let one = Candidates {
        weights: &[1, 1],
        usable: |i| i == 1,
    };
    assert_eq!(p2c_ewma(&stats, &one, &rng, 0, DECAY), Some(1));
    let none = Candidates {
        weights: &[1, 1],
        usable: |_| false,
    };
    assert_eq!(p2c_ewma(&stats, &none, &rng, 0, DECAY), None);
}

#[test]
fn p2c_counts_in_flight_requests() {
    let stats = fresh(2);
    stats[0].observe_at(Duration::from_millis(10), 0, DECAY);
    stats[1].observe_at(Duration::from_millis(10), 0, DECAY);
    let _g = [stats[0].start(), stats[0].start()];
    let rng = Rng::seeded(5);
    let c = Candidates {
        weights: &[1, 1],
        usable: |_| true,
    };
    for _ in 0..10 {
        assert_eq!(p2c_ewma(&stats, &c, &rng, 0, DECAY), Some(1));
    }
}

proptest! {
    #![proptest_config(crate::proptest_config())]
    #[test]
    fn weighted_random_follows_weights(
        weights in prop::collection::vec(1u32..10, 2..6),
        down in 0usize..6,
        seed in any::<u64>(),
    ) {
        let rng = Rng::seeded(seed);
        let c = Candidates { weights: &weights, usable: |i| i != down };
        let n = 20_000usize;
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..n {
            counts[random(&c, &rng).unwrap_or(0)] += 1;
        }
        let total: u32 = weights.iter().enumerate().filter(|&(i, _)| i != down).map(|(_, &w)| w).sum();
        for (i, &w) in weights.iter().enumerate() {
            let want = if i == down { 0.0 } else { f64::from(w) / f64::from(total) };
            let have = counts[i] as f64 / n as f64;
            prop_assert!((want - have).abs() < 0.03, "backend {} want {} have {} {:?}", i, want, have, counts);
        }
    }

    #[test]
    fn least_requests_shares_idle_backends_by_weight(
        weights in prop::collection::vec(1u32..5, 2..5),
        seed in any::<u64>(),
    ) {
        // Each pick keeps its request in flight: picks fill backends in proportion to weight.
        let stats = fresh(weights.len());
        let rng = Rng::seeded(seed);
        let c = Candidates { weights: &weights, usable: |_| true };
        let total: u32 = weights.iter().sum();
        let rounds = 10u32;
        let mut guards = Vec::new();
        for _ in 0..total * rounds {
            let i = least_requests(&stats, &c, &rng).unwrap_or(0);
            guards.push(stats[i].start());
        }
        for (i, &w) in weights.iter().enumerate() {
            let have = stats[i].inflight() as i64;
            let want = i64::from(w * rounds);
            prop_assert!((have - want).abs() <= 1, "backend {} want {} have {}", i, want, have);
        }
    }
}
