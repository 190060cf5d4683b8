//! Load-aware policies: least outstanding requests, and power of two choices over a
//! peak-EWMA latency score (Finagle's and linkerd's "P2C + peak EWMA").

use std::sync::Arc;
use std::time::Duration;

use super::rng::Rng;
use super::stats::BackendStats;

/// Backends the policies may choose: weight above zero and usable.
pub(super) struct Candidates<'a, F: Fn(usize) -> bool> {
    pub weights: &'a [u32],
    pub usable: F,
}

impl<F: Fn(usize) -> bool> Candidates<'_, F> {
    pub(super) fn allowed(&self, i: usize) -> bool {
        self.weights.get(i).is_some_and(|&w| w > 0) && (self.usable)(i)
    }

    fn count(&self) -> u64 {
        (0..self.weights.len()).filter(|&i| self.allowed(i)).count() as u64
    }

    /// The `rank`-th allowed backend, counting from zero.
    fn nth(&self, rank: u64) -> Option<usize> {
        (0..self.weights.len())
            .filter(|&i| self.allowed(i))
            .nth(usize::try_from(rank).ok()?)
    }

    fn weight(&self, i: usize) -> u64 {
        self.weights.get(i).map_or(1, |&w| u64::from(w))
    }
}

/// The backend with the fewest requests in flight per unit of weight (`(inflight + 1) /
/// weight`), ties broken uniformly at random so equal backends share evenly.
pub(super) fn least_requests<F: Fn(usize) -> bool>(
    stats: &[Arc<BackendStats>],
    candidates: &Candidates<'_, F>,
    rng: &Rng,
) -> Option<usize> {
    let mut best: Option<(usize, u64, u64)> = None;
    let mut ties = 0u64;
    for (i, s) in stats.iter().enumerate() {
        if !candidates.allowed(i) {
            continue;
        }
        let (load, weight) = (s.inflight() as u64 + 1, candidates.weight(i));
        match best {
            Some((_, bl, bw))
                if u128::from(load) * u128::from(bw) > u128::from(bl) * u128::from(weight) => {}
            Some((_, bl, bw))
                if u128::from(load) * u128::from(bw) == u128::from(bl) * u128::from(weight) =>
            {
                ties += 1;
                if rng.below(ties) == 0 {
                    best = Some((i, load, weight));
                }
            }
            _ => {
                best = Some((i, load, weight));
                ties = 1;
            }
        }
    }
    best.map(|(i, _, _)| i)
}

/// Score of a backend for P2C: peak-EWMA latency times (in flight + 1), divided by weight.
/// A backend never measured scores near zero so it gets tried, unless it already has a
/// request in flight (then it scores worst, as in Finagle, so a cold backend that hangs is
/// not flooded before its first answer).
fn score(stats: &BackendStats, weight: u64, now: u64, decay: Duration) -> f64 {
    let inflight = stats.inflight() as f64;
    if stats.observed() == 0 {
        return if inflight > 0.0 { f64::MAX } else { 0.0 };
    }
    (stats.cost_at(now, decay) + 1.0) * (inflight + 1.0) / weight.max(1) as f64
}

/// Two distinct allowed backends drawn at random; the lower score wins.
pub(super) fn p2c_ewma<F: Fn(usize) -> bool>(
    stats: &[Arc<BackendStats>],
    candidates: &Candidates<'_, F>,
    rng: &Rng,
    now: u64,
    decay: Duration,
) -> Option<usize> {
    let k = candidates.count();
    if k <= 1 {
        return candidates.nth(0);
    }
    let a = rng.below(k);
    let mut b = rng.below(k - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (candidates.nth(a)?, candidates.nth(b)?);
    let sa = score(stats.get(a)?, candidates.weight(a), now, decay);
    let sb = score(stats.get(b)?, candidates.weight(b), now, decay);
    Some(if sb < sa { b } else { a })
}

/// Weighted random: each allowed backend with probability weight / total allowed weight.
pub(super) fn random<F: Fn(usize) -> bool>(
    candidates: &Candidates<'_, F>,
    rng: &Rng,
) -> Option<usize> {
    let total: u64 = (0..candidates.weights.len())
        .filter(|&i| candidates.allowed(i))
        .map(|i| candidates.weight(i))
        .sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.below(total);
    for i in 0..candidates.weights.len() {
        if !candidates.allowed(i) {
            continue;
        }
        let w = candidates.weight(i);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    None
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
