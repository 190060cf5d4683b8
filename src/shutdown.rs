//! The drain signal: one `Shutdown` handle triggers it, every accept loop and connection
//! watches it, and the server waits (bounded by the grace period) for them all to finish.
//! Work that outlives its connection task (WebSocket tunnels) holds a `Hold` so the drain
//! waits for it too.

use std::sync::Arc;

use tokio::sync::watch;

/// Cloneable trigger for a graceful drain.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    held: Arc<watch::Sender<usize>>,
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(false);
        let (held, _rx) = watch::channel(0);
        Self {
            tx,
            held: Arc::new(held),
        }
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
            held: Arc::clone(&self.held),
        }
    }

    /// A drain signal of its own that also follows this one: triggering the child drains only
    /// what watches it (one listener a reload removed); triggering this one drains both. Holds
    /// taken through the child count here too, so the server's drain waits for them.
    pub fn child(&self) -> Shutdown {
        let (tx, _rx) = watch::channel(self.is_triggered());
        let child = Shutdown {
            tx,
            held: Arc::clone(&self.held),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let mut parent = self.watcher();
            let mut own = child.watcher();
            let forward = child.clone();
            runtime.spawn(async move {
                tokio::select! {
                    () = parent.triggered() => forward.trigger(),
                    () = own.triggered() => {}
                }
            });
        }
        child
    }

    /// How many `Hold`s are alive.
    pub fn held(&self) -> usize {
        *self.held.borrow()
    }

    /// Resolves once no `Hold` is alive.
    pub async fn released(&self) {
        let mut rx = self.held.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|n| *n == 0).await;
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
    held: Arc<watch::Sender<usize>>,
}

impl Watcher {
    /// Resolves once the drain has started (immediately if it already has).
    pub async fn triggered(&mut self) {
        // An error means the sender is gone, which also means "stop".
        let _ = self.rx.wait_for(|v| *v).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Makes the drain wait for the caller until the returned guard is dropped.
    pub fn hold(&self) -> Hold {
        self.held.send_modify(|n| *n += 1);
        Hold {
            held: Arc::clone(&self.held),
        }
    }
}

/// Keeps the drain waiting while alive; see `Watcher::hold`.
#[derive(Debug)]
pub struct Hold {
    held: Arc<watch::Sender<usize>>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.held.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::Shutdown;
    use std::time::Duration;

    #[tokio::test]
    async fn a_child_follows_its_parent_but_not_the_other_way() {
        let parent = Shutdown::new();
        let child = parent.child();
        let hold = child.watcher().hold();
        assert_eq!(
            parent.held(),
            1,
            "holds through the child count for the parent"
        );
        drop(hold);
        child.trigger();
        assert!(child.is_triggered() && !parent.is_triggered());
        let second = parent.child();
        parent.trigger();
        let mut watcher = second.watcher();
        tokio::time::timeout(Duration::from_secs(5), watcher.triggered())
            .await
            .unwrap_or_else(|_| panic!("the child follows its parent"));
    }

    #[tokio::test]
    async fn released_waits_for_every_hold() {
        let shutdown = Shutdown::new();
        let watcher = shutdown.watcher();
        let a = watcher.hold();
        let b = watcher.hold();
        assert_eq!(shutdown.held(), 2);
        drop(a);
        let wait = tokio::time::timeout(Duration::from_millis(50), shutdown.released()).await;
        assert!(wait.is_err(), "one hold is still alive");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), shutdown.released())
            .await
            .unwrap_or_else(|_| panic!("released after the last hold"));
    }
}
