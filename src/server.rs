//! Wiring: build the first snapshot, bind every listener and the admin listener (reporting
//! real addresses), run the accept loops, and on shutdown drain within the grace period. The
//! metrics registry lives here, outside any snapshot, so it survives reloads.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::admin::{self, AdminContext, Control, NoReload};
use crate::config::model::Config;
use crate::error::Error;
use crate::listener;
use crate::metrics::Metrics;
use crate::reload::{Reloader, RunningListener};
use crate::shutdown::Shutdown;
use crate::state::{SharedState, Snapshot};
use crate::upgrade::Inherited;

struct Bound {
    name: String,
    bind: SocketAddr,
    max_connections: usize,
    tcp: TcpListener,
    addr: SocketAddr,
    /// This listener's own drain signal (a child of the server's).
    stop: Shutdown,
    /// A duplicate of the socket, for reloads' bookkeeping and binary upgrades.
    socket: Arc<OwnedFd>,
}

/// A configured, bound, not yet running Portico.
pub struct Server {
    state: SharedState,
    bound: Vec<Bound>,
    shutdown: Shutdown,
    grace: Duration,
    metrics: Arc<Metrics>,
    admin: Option<(TcpListener, SocketAddr)>,
    control: Arc<dyn Control>,
    /// Every accept loop and connection task holds a clone; `run` waits for all to drop.
    alive: mpsc::Sender<()>,
    all_done: mpsc::Receiver<()>,
}

impl Server {
    /// Builds the runtime state of `config` and binds all its listeners.
    pub async fn bind(config: Config) -> Result<Server, Error> {
        Server::bind_with(config, Vec::new()).await
    }

    /// Like `bind`, using the sockets a previous process handed over (binary upgrade) for the
    /// listeners with the same name and address; the others are bound, unused ones closed.
    pub async fn bind_with(config: Config, mut inherited: Vec<Inherited>) -> Result<Server, Error> {
        let grace = config.settings.grace_period;
        let metrics = Arc::new(Metrics::new());
        metrics.set_generation(1);
        let (snapshot, warnings) = Snapshot::build(config, 1, &metrics)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        let shutdown = Shutdown::new();
        let mut bound = Vec::with_capacity(snapshot.config.listeners.len());
        for l in &snapshot.config.listeners {
            let taken = inherited
                .iter()
                .position(|i| i.name == l.name && i.bind == l.bind)
                .map(|at| inherited.swap_remove(at));
            let tcp = match taken {
                Some(i) => listener::adopt(l, i.socket)?,
                None => listener::bind(l)?,
            };
            let socket = tcp
                .as_fd()
                .try_clone_to_owned()
                .map(Arc::new)
                .map_err(|source| Error::Bind {
                    listener: l.name.clone(),
                    addr: l.bind,
                    source,
                })?;
            let addr = listener::local_addr(&tcp, l.bind);
            tracing::info!(
                listener = %l.name,
                %addr,
                mode = l.mode.name(),
                tls = l.tls.is_some(),
                "listening"
            );
            bound.push(Bound {
                name: l.name.clone(),
                bind: l.bind,
                max_connections: l.limits.max_connections,
                tcp,
                addr,
                stop: shutdown.child(),
                socket,
            });
        }
        let admin = match &snapshot.config.admin {
            Some(a) => {
                let tcp = TcpListener::bind(a.bind)
                    .await
                    .map_err(|source| Error::Bind {
                        listener: "admin".to_owned(),
                        addr: a.bind,
                        source,
                    })?;
                let addr = listener::local_addr(&tcp, a.bind);
                tracing::info!(%addr, token = a.token.is_some(), "admin listening");
                Some((tcp, addr))
            }
            None => None,
        };
        let (alive, all_done) = mpsc::channel::<()>(1);
        Ok(Server {
            state: Arc::new(ArcSwap::from_pointee(snapshot)),
            bound,
            shutdown,
            grace,
            metrics,
            admin,
            control: Arc::new(NoReload),
            alive,
            all_done,
        })
    }

    /// The address listener `name` is bound to.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.bound.iter().find(|b| b.name == name).map(|b| b.addr)
    }

    /// Every listener with its bound address, in config order.
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.bound
            .iter()
            .map(|b| (b.name.clone(), b.addr))
            .collect()
    }

    /// The address the admin listener is bound to, when configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, a)| *a)
    }

    /// Sets what `POST /reload` and `/status`'s `last_reload` use; without it the admin
    /// listener answers reloads with 501.
    pub fn set_control(&mut self, control: Arc<dyn Control>) {
        self.control = control;
    }

    /// Enables hot reload of `path` (the file this server's config came from): `POST /reload`
    /// on the admin listener uses it, and the caller may too (SIGHUP).
    pub fn enable_reload(&mut self, path: PathBuf) -> Arc<Reloader> {
        let running = self
            .bound
            .iter()
            .map(|b| RunningListener {
                name: b.name.clone(),
                bind: b.bind,
                addr: b.addr,
                stop: b.stop.clone(),
                socket: Arc::clone(&b.socket),
            })
            .collect();
        let reloader = Arc::new(Reloader::new(
            path,
            Arc::clone(&self.state),
            Arc::clone(&self.metrics),
            self.shutdown.clone(),
            self.alive.downgrade(),
            running,
        ));
        self.control = Arc::new(ReloadControl(Arc::clone(&reloader)));
        reloader
    }

    /// The process's metrics registry (shared by every snapshot).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A handle that starts the graceful drain.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until the drain is triggered, then waits for connections to finish, at most the
    /// configured grace period.
    pub async fn run(self) -> Result<(), Error> {
        let (alive, mut all_done) = (self.alive, self.all_done);
        let bound_addrs: Vec<(String, SocketAddr)> = self
            .bound
            .iter()
            .map(|b| (b.name.clone(), b.addr))
            .collect();
        for b in self.bound {
            tokio::spawn(listener::accept_loop(
                b.tcp,
                b.name,
                b.max_connections,
                Arc::clone(&self.state),
                b.stop.watcher(),
                alive.clone(),
            ));
        }
        drop(alive);
        let ready = Arc::new(AtomicBool::new(true));
        let admin_task = self.admin.map(|(tcp, _)| {
            let ctx = AdminContext {
                state: Arc::clone(&self.state),
                control: Arc::clone(&self.control),
                ready: Arc::clone(&ready),
                shutdown: self.shutdown.watcher(),
                bound: bound_addrs,
            };
            tokio::spawn(admin::serve(tcp, Arc::new(ctx)))
        });
        self.shutdown.watcher().triggered().await;
        ready.store(false, Ordering::Release);
        tracing::info!(grace = ?self.grace, "draining connections");
        // `recv` yields None once every connection task (and accept loop) has dropped its
        // sender; tunnels that outlive their connection task hold the shutdown instead.
        let drained = async {
            all_done.recv().await;
            self.shutdown.released().await;
        };
        match tokio::time::timeout(self.grace, drained).await {
            Ok(_) => tracing::info!("drained"),
            Err(_) => tracing::warn!("grace period over; closing remaining connections"),
        }
        if let Some(task) = admin_task {
            task.abort();
        }
        Ok(())
    }
}

/// `POST /reload` through the reloader; outcomes as JSON (admin does not know the type).
struct ReloadControl(Arc<Reloader>);

impl Control for ReloadControl {
    fn reload(&self, dry_run: bool) -> Option<BoxFuture<'static, serde_json::Value>> {
        let reloader = Arc::clone(&self.0);
        Some(Box::pin(async move {
            let outcome = reloader.reload(dry_run).await;
            serde_json::to_value(outcome).unwrap_or(serde_json::Value::Null)
        }))
    }

    fn last_reload(&self) -> Option<serde_json::Value> {
        self.0
            .last()
            .and_then(|outcome| serde_json::to_value(outcome).ok())
    }
}
