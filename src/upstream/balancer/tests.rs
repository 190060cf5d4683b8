//! The `Balancer` front: policy dispatch, hash fallback, and stats sharing.

use super::*;
use crate::config::model::HashKey;

fn counts(b: &Balancer, n: usize, key: Option<u64>, usable: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut c = vec![0; b.weights.len()];
    for _ in 0..n {
        if let Some(i) = b.pick_keyed(key, &usable) {
            c[i] += 1;
        }
    }
    c
}

#[test]
fn balancer_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Balancer>();
}

#[test]
fn every_policy_honours_the_usable_filter() {
    for kind in BalancerKind::ALL {
        let b = Balancer::new(kind, &[1, 2, 3]);
        let c = counts(&b, 300, Some(5), |i| i != 1);
        assert_eq!(c[1], 0, "{kind:?} picked an unusable backend");
        assert_eq!(c[0] + c[2], 300, "{kind:?}");
        assert_eq!(b.pick_keyed(Some(5), |_| false), None, "{kind:?}");
        assert_eq!(Balancer::new(kind, &[]).pick(|_| true), None, "{kind:?}");
    }
}

#[test]
fn consistent_hash_is_sticky_per_key_and_falls_back_without_one() {
    let balancing = Balancing {
        hash_key: Some(HashKey::Path),
        fallback: BalancerKind::RoundRobin,
        ..Balancing::default()
    };
    let ids: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:80")).collect();
    let stats = (0..3).map(|_| BackendStats::new()).collect();
    let b = Balancer::build(
        BalancerKind::ConsistentHash,
        &balancing,
        &[1, 1, 1],
        &ids,
        stats,
    );
    for key in [1u64, 99, u64::MAX] {
        let c = counts(&b, 30, Some(key), |_| true);
        assert_eq!(c.iter().filter(|&&n| n > 0).count(), 1, "key {key}: {c:?}");
    }
    // No key: round robin across all three.
    assert_eq!(counts(&b, 30, None, |_| true), [10, 10, 10]);
}

#[test]
fn least_requests_reads_the_shared_stats() {
    let b = Balancer::new(BalancerKind::LeastRequests, &[1, 1]);
    let guards: Vec<_> = (0..3)
        .filter_map(|_| b.stats(0).map(|s| s.start()))
        .collect();
    assert_eq!(counts(&b, 20, None, |_| true), [0, 20]);
    drop(guards);
    assert_eq!(b.stats(0).map(|s| s.inflight()), Some(0));
}
