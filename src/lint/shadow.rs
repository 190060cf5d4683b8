//! Whether an earlier route matches every request a later one would (so the later one is
//! dead). Conservative: only provable cases count; regex paths and differing header or query
//! conditions are taken as not covering.

use std::fmt::Debug;

use crate::config::model::{HostMatch, PathMatch, Route};

/// True when every request `later` matches is matched by `earlier` first.
pub fn covers(earlier: &Route, later: &Route) -> bool {
    let (e, l) = (&earlier.matcher, &later.matcher);
    all_within(&earlier.listeners, &later.listeners, |a, b| a == b)
        && all_within(&e.hosts, &l.hosts, host_covers)
        && path_covers(e.path.as_ref(), l.path.as_ref())
        && all_within(&e.methods, &l.methods, |a, b| a == b)
        && conditions_within(&e.headers, &l.headers)
        && conditions_within(&e.query, &l.query)
}

/// An empty `outer` allows everything; otherwise `inner` must be non-empty (a restriction)
/// and each of its entries allowed by some entry of `outer`.
fn all_within<T>(outer: &[T], inner: &[T], allows: impl Fn(&T, &T) -> bool) -> bool {
    outer.is_empty()
        || (!inner.is_empty() && inner.iter().all(|i| outer.iter().any(|o| allows(o, i))))
}

fn host_covers(outer: &HostMatch, inner: &HostMatch) -> bool {
    match (outer, inner) {
        (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
        (HostMatch::Suffix(s), HostMatch::Exact(h)) => h.ends_with(s.as_str()),
        (HostMatch::Suffix(s), HostMatch::Suffix(t)) => t.ends_with(s.as_str()),
        (HostMatch::Exact(_), HostMatch::Suffix(_)) => false,
    }
}

fn path_covers(outer: Option<&PathMatch>, inner: Option<&PathMatch>) -> bool {
    match (outer, inner) {
        // Every normalised path starts with '/'.
        (None, _) | (Some(PathMatch::Prefix(_)), _) if is_root(outer) => true,
        (Some(_), None) => false,
        (Some(PathMatch::Prefix(p)), Some(PathMatch::Prefix(q) | PathMatch::Exact(q))) => {
            q.starts_with(p.as_str())
        }
        (Some(PathMatch::Exact(p)), Some(PathMatch::Exact(q))) => p == q,
        _ => false,
    }
}

/// A route with no conditions (the validator's "can never match" case).
pub fn matches_everything(route: &Route) -> bool {
    let m = &route.matcher;
    m.hosts.is_empty()
        && m.path.is_none()
        && m.methods.is_empty()
        && m.headers.is_empty()
        && m.query.is_empty()
}

fn is_root(path: Option<&PathMatch>) -> bool {
    match path {
        None => true,
        Some(PathMatch::Prefix(p)) => p == "/",
        Some(_) => false,
    }
}

/// Header and query conditions: all of the earlier route's must also be the later route's
/// (compared as written).
fn conditions_within<T: Debug>(outer: &[T], inner: &[T]) -> bool {
    let inner: Vec<String> = inner.iter().map(|c| format!("{c:?}")).collect();
    outer.iter().all(|c| inner.contains(&format!("{c:?}")))
}
