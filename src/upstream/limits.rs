//! Circuit breaking and retry budgets: open connections and pending requests counted per
//! backend and per upstream (a request over a limit gets a fast 503, never a queue), and a
//! sliding-window budget that caps retries at a share of recent requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::outlier::now_ms;
use crate::config::model::UpstreamLimits;

/// Open connections and requests waiting for a response head.
#[derive(Debug, Default)]
pub struct Load {
    pub connections: AtomicUsize,
    pub pending: AtomicUsize,
}

impl Load {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Which limit turned a request away (the 503's reason).
pub fn over_limit(limits: &UpstreamLimits, upstream: &Load) -> Option<&'static str> {
    if limits.max_pending.is_some_and(|m| upstream.pending() >= m) {
        return Some("upstream max_pending reached");
    }
    None
}

/// Whether `backend` can take one more request.
pub fn backend_has_room(limits: &UpstreamLimits, backend: &Load) -> bool {
    limits
        .max_pending_per_backend
        .is_none_or(|m| backend.pending() < m)
}

/// Whether a new connection to `backend` stays within the limits; the reason when not.
pub fn connection_refused(
    limits: &UpstreamLimits,
    upstream: &Load,
    backend: &Load,
) -> Option<&'static str> {
    if limits
        .max_connections_per_backend
        .is_some_and(|m| backend.connections() >= m)
    {
        return Some("backend max_connections reached");
    }
    if limits
        .max_connections
        .is_some_and(|m| upstream.connections() >= m)
    {
        return Some("upstream max_connections reached");
    }
    None
}

/// Holds one unit of a counter in one or two `Load`s (upstream and backend); gives it back on
/// drop. A fixed pair, not a `Vec`: this is made for every request.
pub struct Held {
    loads: [Option<Arc<Load>>; 2],
    pending: bool,
}

impl Held {
    pub fn pending(first: Arc<Load>, second: Option<Arc<Load>>) -> Held {
        Held::take([Some(first), second], true)
    }

    pub fn connection(first: Arc<Load>, second: Option<Arc<Load>>) -> Held {
        Held::take([Some(first), second], false)
    }

    fn take(loads: [Option<Arc<Load>>; 2], pending: bool) -> Held {
        let held = Held { loads, pending };
        for l in held.loads() {
            held.counter(l).fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    fn loads(&self) -> impl Iterator<Item = &Arc<Load>> {
        self.loads.iter().flatten()
    }

    fn counter<'l>(&self, load: &'l Load) -> &'l AtomicUsize {
        if self.pending {
            &load.pending
        } else {
            &load.connections
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for l in self.loads() {
            self.counter(l).fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Seconds the budget looks back.
const WINDOW: u64 = 10;

/// Retries allowed: `percent`% of the requests of the last `WINDOW` seconds plus
/// `min_per_second` each second.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    /// Per second slot: (second, requests, retries).
    slots: Mutex<[(u64, u64, u64); WINDOW as usize]>,
}

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            percent: u64::from(percent),
            min_per_second: u64::from(min_per_second),
            slots: Mutex::new([(0, 0, 0); WINDOW as usize]),
        }
    }

    fn with_slot<T>(&self, f: impl FnOnce(&mut [(u64, u64, u64)], usize, u64) -> T) -> Option<T> {
        // Never 0, which marks an unused slot.
        let second = now_ms() / 1000 + 1;
        let index = usize::try_from(second % WINDOW).unwrap_or(0);
        let mut slots = self.slots.lock().ok()?;
        if let Some(slot) = slots.get_mut(index) {
            if slot.0 != second {
                *slot = (second, 0, 0);
            }
        }
        Some(f(&mut slots[..], index, second))
    }

    /// Counts one client request.
    pub fn request(&self) {
        self.with_slot(|slots, i, _| {
            if let Some(s) = slots.get_mut(i) {
                s.1 += 1;
            }
        });
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn try_retry(&self) -> bool {
        let (percent, floor) = (self.percent, self.min_per_second);
        self.with_slot(|slots, i, second| {
            let recent = |s: &&(u64, u64, u64)| second.saturating_sub(s.0) < WINDOW && s.0 != 0;
            let requests: u64 = slots.iter().filter(recent).map(|s| s.1).sum();
            let retries: u64 = slots.iter().filter(recent).map(|s| s.2).sum();
            let this_second = slots.get(i).map_or(0, |s| s.2);
            let by_share = retries * 100 < requests * percent;
            let by_floor = this_second < floor;
            if by_share || by_floor {
                if let Some(s) = slots.get_mut(i) {
                    s.2 += 1;
                }
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_share_of_requests() {
        let b = RetryBudget::new(20, 0);
        for _ in 0..50 {
            b.request();
        }
        let allowed = (0..50).filter(|_| b.try_retry()).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn budget_floor_allows_a_few_without_traffic() {
        let b = RetryBudget::new(0, 3);
        // Within one second at most 3; a second boundary may add 3 more.
        let allowed = (0..20).filter(|_| b.try_retry()).count();
        assert!((3..=6).contains(&allowed), "{allowed}");
    }

    #[test]
    fn held_counts_return_on_drop() {
        let a = Arc::new(Load::default());
        let b = Arc::new(Load::default());
        let limits = UpstreamLimits {
            max_pending: Some(1),
            max_connections_per_backend: Some(1),
            ..UpstreamLimits::default()
        };
        let p = Held::pending(a.clone(), Some(b.clone()));
        assert_eq!(
            over_limit(&limits, &a),
            Some("upstream max_pending reached")
        );
        let c = Held::connection(a.clone(), Some(b.clone()));
        assert!(connection_refused(&limits, &a, &b).is_some());
        drop((p, c));
        assert_eq!(over_limit(&limits, &a), None);
        assert_eq!(connection_refused(&limits, &a, &b), None);
    }
}
