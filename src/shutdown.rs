//! The drain signal: one `Shutdown` handle triggers it, every accept loop and connection
//! watches it, and the server waits (bounded by the grace period) for them all to finish.

use tokio::sync::watch;

/// Cloneable trigger for a graceful drain.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(false);
        Self { tx }
    }

    /// Starts the drain: stop accepting, finish in-flight work.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A receiver for tasks that must react to the drain.
    pub fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// The receiving side held by accept loops and connections.
#[derive(Clone, Debug)]
pub struct Watcher {
    rx: watch::Receiver<bool>,
}

impl Watcher {
    /// Resolves once the drain has started (immediately if it already has).
    pub async fn triggered(&mut self) {
        // An error means the sender is gone, which also means "stop".
        let _ = self.rx.wait_for(|v| *v).await;
    }
}
