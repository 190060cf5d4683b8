//! Hot reload: parse -> validate -> build the next snapshot -> bind new listeners -> swap,
//! one reload at a time. On any error the running configuration stays and every problem is
//! reported. Unchanged listeners keep their sockets (their settings come from the snapshot
//! at each accept), removed ones stop accepting and drain; unchanged upstreams keep their
//! pools; tunnels on removed routes drain; everything in flight finishes on the snapshot it
//! started with.

mod diff;

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::config;
use crate::config::model::Listener;
use crate::listener;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::state::{SharedState, Snapshot};

/// The result of one reload attempt (also what `--dry-run` and `POST /reload` print).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReloadOutcome {
    pub ok: bool,
    pub dry_run: bool,
    /// The generation running afterwards.
    pub generation: u64,
    pub changes: Vec<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub at_unix_ms: u64,
}

/// A listener the process is accepting on, as far as reloads are concerned.
pub struct RunningListener {
    pub name: String,
    /// The configured address (port 0 included), which identifies the socket.
    pub bind: SocketAddr,
    /// The address really bound.
    pub addr: SocketAddr,
    /// Its own drain signal, a child of the process's.
    pub stop: Shutdown,
    /// A duplicate of the listening socket, to hand to a new process on upgrade.
    pub socket: Arc<OwnedFd>,
}

/// Reloads the configuration file of a running server.
pub struct Reloader {
    path: PathBuf,
    state: SharedState,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    /// Lets accept loops started by a reload count as alive for the drain, without keeping
    /// the drain waiting on the reloader itself.
    alive: mpsc::WeakSender<()>,
    listeners: Mutex<Vec<RunningListener>>,
    fingerprint: Mutex<u64>,
    last: Mutex<Option<ReloadOutcome>>,
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        state: SharedState,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        alive: mpsc::WeakSender<()>,
        listeners: Vec<RunningListener>,
    ) -> Reloader {
        let fingerprint = diff::files_fingerprint(&state.load().config);
        Reloader {
            path,
            state,
            metrics,
            shutdown,
            alive,
            listeners: Mutex::new(listeners),
            fingerprint: Mutex::new(fingerprint),
            last: Mutex::new(None),
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Reloads (or with `dry_run`, only checks and reports what would change).
    pub async fn reload(&self, dry_run: bool) -> ReloadOutcome {
        let _one_at_a_time = self.serial.lock().await;
        let outcome = self.attempt(dry_run);
        if outcome.ok {
            tracing::info!(generation = outcome.generation, dry_run, changes = ?outcome.changes, "reload");
        } else {
            tracing::error!(dry_run, errors = ?outcome.errors, "reload refused; the running configuration stays");
        }
        if !dry_run {
            self.metrics.reload(outcome.ok, outcome.generation);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(outcome.clone());
        }
        outcome
    }

    /// Reloads whenever the configuration file or a certificate, key or CA file it names
    /// changes (`portico run --watch`); returns when the server drains.
    ///
    /// Polls the files' contents every `interval` instead of subscribing to inotify: it
    /// behaves the same on every filesystem, follows a Kubernetes ConfigMap (whose files are
    /// swapped through a symlink) and a file replaced by an editor's rename, and costs a few
    /// reads per interval. A change that fails to load is reported once; the running
    /// configuration stays until the files change again.
    pub async fn watch(self: Arc<Self>, interval: std::time::Duration) {
        let mut seen = self.watched();
        loop {
            tokio::time::sleep(interval).await;
            if self.shutdown.is_triggered() {
                return;
            }
            if self.watched() == seen {
                continue;
            }
            tracing::info!(path = %self.path.display(), "configuration files changed: reloading");
            self.reload(false).await;
            // After the reload: its configuration may name other files.
            seen = self.watched();
        }
    }

    /// A hash of the configuration file's contents and of the files the running
    /// configuration names.
    fn watched(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::fs::read(&self.path).ok().hash(&mut hasher);
        diff::files_fingerprint(&self.state.load().config).hash(&mut hasher);
        hasher.finish()
    }

    /// The outcome of the last attempt.
    pub fn last(&self) -> Option<ReloadOutcome> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn attempt(&self, dry_run: bool) -> ReloadOutcome {
        let running = self.state.load_full();
        let mut outcome = ReloadOutcome {
            ok: false,
            dry_run,
            generation: running.generation,
            changes: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        if self.shutdown.is_triggered() {
            outcome.errors.push("the server is draining".to_owned());
            return outcome;
        }
        let (config, diagnostics) = match config::load(&self.path) {
            Ok(loaded) => loaded,
            Err(e) => {
                outcome.errors = e.to_string().lines().map(str::to_owned).collect();
                return outcome;
            }
        };
        outcome.warnings = diagnostics.iter().map(ToString::to_string).collect();
        outcome.changes = diff::changes(&running.config, &config);
        let fingerprint = diff::files_fingerprint(&config);
        let files_changed = self.fingerprint.lock().map_or(true, |f| *f != fingerprint);
        if files_changed && outcome.changes.is_empty() {
            outcome
                .changes
                .push("certificate or key files changed".to_owned());
        }
        if dry_run || outcome.changes.is_empty() {
            // A no-op reload is a no-op: nothing rebuilt, same generation.
            outcome.ok = true;
            return outcome;
        }
        let fresh = match self.bind_new(&config.listeners) {
            Ok(fresh) => fresh,
            Err(errors) => {
                outcome.errors = errors;
                return outcome;
            }
        };
        let next = running.generation + 1;
        let (snapshot, warnings) =
            match Snapshot::build_after(config, next, &self.metrics, Some(&running)) {
                Ok(built) => built,
                Err(e) => {
                    outcome.errors.push(e.to_string());
                    return outcome;
                }
            };
        outcome.warnings.extend(warnings);
        self.state.store(Arc::new(snapshot));
        let current = self.state.load();
        current.retire_removed_routes(&running);
        self.switch_listeners(&current.config.listeners, fresh);
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fingerprint;
        }
        outcome.ok = true;
        outcome.generation = next;
        outcome
    }

    /// Binds the listeners of `wanted` that are not running yet (new name, or a new address).
    fn bind_new(&self, wanted: &[Listener]) -> Result<Vec<(Listener, TcpListener)>, Vec<String>> {
        let running = self
            .listeners
            .lock()
            .map_err(|_| vec!["poisoned".to_owned()])?;
        let mut fresh = Vec::new();
        let mut errors = Vec::new();
        for l in wanted {
            if running.iter().any(|r| r.name == l.name && r.bind == l.bind) {
                continue;
            }
            match listener::bind(l) {
                Ok(tcp) => fresh.push((l.clone(), tcp)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        // On any error the sockets bound so far are dropped with `fresh`.
        if errors.is_empty() {
            Ok(fresh)
        } else {
            Err(errors)
        }
    }

    /// Stops the listeners `wanted` no longer has, and starts accept loops on `fresh`.
    fn switch_listeners(&self, wanted: &[Listener], fresh: Vec<(Listener, TcpListener)>) {
        let Ok(mut running) = self.listeners.lock() else {
            return;
        };
        running.retain(|r| {
            let keep = wanted.iter().any(|l| l.name == r.name && l.bind == r.bind);
            if !keep {
                tracing::info!(listener = %r.name, "listener removed: no new connections; draining");
                r.stop.trigger();
            }
            keep
        });
        let Some(alive) = self.alive.upgrade() else {
            return;
        };
        for (l, tcp) in fresh {
            let addr = listener::local_addr(&tcp, l.bind);
            let socket = match tcp.as_fd().try_clone_to_owned() {
                Ok(fd) => Arc::new(fd),
                Err(e) => {
                    tracing::error!(listener = %l.name, error = %e, "cannot keep the listening socket");
                    continue;
                }
            };
            tracing::info!(listener = %l.name, %addr, mode = l.mode.name(), "listening (added by reload)");
            let stop = self.shutdown.child();
            tokio::spawn(listener::accept_loop(
                tcp,
                l.name.clone(),
                l.limits.max_connections,
                Arc::clone(&self.state),
                stop.watcher(),
                alive.clone(),
            ));
            running.push(RunningListener {
                name: l.name,
                bind: l.bind,
                addr,
                stop,
                socket,
            });
        }
    }

    /// The running listeners' sockets, for a binary upgrade.
    pub fn offered(&self) -> Vec<crate::upgrade::Offered> {
        self.listeners
            .lock()
            .map(|r| {
                r.iter()
                    .map(|l| crate::upgrade::Offered {
                        name: l.name.clone(),
                        bind: l.bind,
                        socket: Arc::clone(&l.socket),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where each running listener accepts, by name.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.listeners
            .lock()
            .map(|r| r.iter().map(|l| (l.name.clone(), l.addr)).collect())
            .unwrap_or_default()
    }
}
