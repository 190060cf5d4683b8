//! The consistent-hash ring: spread, minimal remapping, walking past unusable backends, keys.

use super::*;
use http::HeaderValue;
use proptest::prelude::*;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
}

fn owners(ring: &Ring, ids: &[String], keys: u64, usable: impl Fn(usize) -> bool) -> Vec<String> {
    (0..keys)
        .map(|k| {
            let i = ring
                .pick(xxh3_64(&k.to_le_bytes()), &usable)
                .unwrap_or(usize::MAX);
            ids.get(i).cloned().unwrap_or_default()
        })
        .collect()
}

#[test]
fn keys_spread_by_weight() {
    let ids = ids(3);
    let ring = Ring::new(&ids, &[1, 1, 2], 160);
    let got = owners(&ring, &ids, 40_000, |_| true);
    let share = |id: &str| got.iter().filter(|g| *g == id).count() as f64 / 40_000.0;
    assert!((share(&ids[0]) - 0.25).abs() < 0.05, "{}", share(&ids[0]));
    assert!((share(&ids[1]) - 0.25).abs() < 0.05, "{}", share(&ids[1]));
    assert!((share(&ids[2]) - 0.5).abs() < 0.05, "{}", share(&ids[2]));
}

#[test]
fn huge_weights_are_scaled_into_a_bounded_ring() {
    let ids = ids(3);
    let ring = Ring::new(&ids, &[u32::MAX, 1, u32::MAX / 2], 10_000);
    assert!(
        ring.points.len() as u128 <= MAX_POINTS + 3,
        "{}",
        ring.points.len()
    );
    let owned_by = |b: u32| ring.points.iter().filter(|p| p.1 == b).count();
    assert_eq!(owned_by(1), 1, "a tiny weight keeps one point");
    let ratio = owned_by(0) as f64 / owned_by(2) as f64;
    assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
}

#[test]
fn unusable_backend_hands_only_its_own_keys_to_neighbours() {
    let ids = ids(4);
    let ring = Ring::new(&ids, &[1, 1, 1, 1], 160);
    let before = owners(&ring, &ids, 10_000, |_| true);
    let after = owners(&ring, &ids, 10_000, |i| i != 2);
    for (b, a) in before.iter().zip(&after) {
        if *b != ids[2] {
            assert_eq!(a, b, "a key not owned by the unusable backend moved");
        } else {
            assert_ne!(*a, ids[2]);
        }
    }
    assert!(ring.pick(7, |_| false).is_none());
    assert!(Ring::new(&[], &[], 160).pick(7, |_| true).is_none());
}

proptest! {
    #![proptest_config(crate::proptest_config())]
    #[test]
    fn removing_one_of_n_moves_about_one_nth(n in 3usize..9, gone in 0usize..9) {
        let gone = gone % n;
        let all = ids(n);
        let rest: Vec<String> = all.iter().enumerate().filter(|&(i, _)| i != gone).map(|(_, s)| s.clone()).collect();
        let before = owners(&Ring::new(&all, &vec![1; n], 160), &all, 5_000, |_| true);
        let after = owners(&Ring::new(&rest, &vec![1; n - 1], 160), &rest, 5_000, |_| true);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        // Exactly the departed backend's keys move (about 1/N of them), nobody else's.
        let owned = before.iter().filter(|b| **b == all[gone]).count();
        prop_assert_eq!(moved, owned);
        let share = moved as f64 / 5_000.0;
        prop_assert!((share - 1.0 / n as f64).abs() < 0.08, "moved {} of N={}", share, n);
    }
}

#[test]
fn request_keys() {
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("alice"));
    headers.append(COOKIE, HeaderValue::from_static("a=1; sid=\"xyz\""));
    headers.append(COOKIE, HeaderValue::from_static("sid=second"));
    let ip: IpAddr = [10, 0, 0, 1].into();
    let header = HashKey::Header(http::HeaderName::from_static("x-user"));
    assert_eq!(
        key_hash(&header, &headers, "/", ip),
        Some(xxh3_64(b"alice"))
    );
    let missing = HashKey::Header(http::HeaderName::from_static("x-none"));
    assert_eq!(key_hash(&missing, &headers, "/", ip), None);
    assert_eq!(cookie(&headers, "sid"), Some("xyz"));
    assert_eq!(cookie(&headers, "nope"), None);
    assert_eq!(
        key_hash(&HashKey::Cookie("sid".into()), &headers, "/", ip),
        Some(xxh3_64(b"xyz"))
    );
    assert_eq!(
        key_hash(&HashKey::Path, &headers, "/p", ip),
        Some(xxh3_64(b"/p"))
    );
    assert_eq!(
        key_hash(&HashKey::ClientIp, &headers, "/", ip),
        Some(xxh3_64(&[10, 0, 0, 1]))
    );
}
