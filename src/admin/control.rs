//! What the admin listener may ask of the running server beyond reading state: reload. A
//! trait, so admin never depends on how reloading works; `server` implements it.

use futures_util::future::BoxFuture;

/// Operations the admin listener triggers. Values are JSON so that admin stays independent
/// of the reload module's types (its `ReloadOutcome` serialises to an object with at least
/// `ok`, `dry_run`, `generation`, `changes`, `errors`, `warnings`, `at_unix_ms`).
pub trait Control: Send + Sync {
    /// Parses, validates and (unless `dry_run`) applies the config file again. `None` when
    /// this build cannot reload (the admin answers 501).
    fn reload(&self, dry_run: bool) -> Option<BoxFuture<'static, serde_json::Value>>;

    /// The outcome of the last reload attempt, if any.
    fn last_reload(&self) -> Option<serde_json::Value>;
}

/// A server without a reload mechanism.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReload;

impl Control for NoReload {
    fn reload(&self, _dry_run: bool) -> Option<BoxFuture<'static, serde_json::Value>> {
        None
    }

    fn last_reload(&self) -> Option<serde_json::Value> {
        None
    }
}
