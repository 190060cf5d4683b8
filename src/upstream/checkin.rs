//! Giving an HTTP/1.1 backend connection back to its backend's idle list once its response
//! has been read to the end. The connection usually says it is ready by then, so the common
//! case costs no task; only a connection still finishing its exchange gets a small task that
//! waits for it (or for its close). hyper-util's pool spawns that task for every request.

use std::sync::Arc;
use std::time::Instant;

use super::backend::Backend;
use super::pool::H1Sender;

/// A connection on its way back to the pool; dropping it (at the end of the response body,
/// or with the request) checks it in.
pub struct Returning {
    sender: Option<H1Sender>,
    backend: Arc<Backend>,
    max_idle: usize,
}

impl Returning {
    pub(super) fn new(sender: H1Sender, backend: Arc<Backend>, max_idle: usize) -> Returning {
        Returning {
            sender: Some(sender),
            backend,
            max_idle,
        }
    }
}

fn check_in(backend: &Backend, sender: H1Sender, max_idle: usize) {
    if let Ok(mut idle) = backend.idle.lock() {
        if idle.len() < max_idle {
            idle.push((sender, Instant::now()));
        }
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        let Some(mut sender) = self.sender.take() else {
            return;
        };
        if sender.is_ready() {
            check_in(&self.backend, sender, self.max_idle);
            return;
        }
        if sender.is_closed() {
            return;
        }
        let backend = Arc::clone(&self.backend);
        let max_idle = self.max_idle;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    check_in(&backend, sender, max_idle);
                }
            });
        }
    }
}
