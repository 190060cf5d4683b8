//! Runs Portico in-process from a YAML string, every listener on 127.0.0.1:0, and hands back
//! the addresses it really bound plus a way to drain it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::task::JoinHandle;

pub struct Proxy;

pub struct ProxyHandle {
    addrs: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: portico::Shutdown,
    join: Option<JoinHandle<Result<(), portico::Error>>>,
}

impl Proxy {
    /// Parses `yaml` (relative paths resolve against the temp dir), binds and runs the proxy.
    /// Panics when the config is rejected or a listener is not on an ephemeral loopback port.
    pub async fn start(yaml: &str) -> ProxyHandle {
        Proxy::start_in(yaml, &std::env::temp_dir()).await
    }

    pub async fn start_in(yaml: &str, base_dir: &Path) -> ProxyHandle {
        super::init_logging();
        let (config, _diagnostics) = portico::config::parse_str(yaml, "test.yaml", base_dir)
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{yaml}"));
        let names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        for listener in &config.listeners {
            assert!(
                listener.bind.ip().is_loopback() && listener.bind.port() == 0,
                "listener {} must bind 127.0.0.1:0 in tests, not {}",
                listener.name,
                listener.bind
            );
        }
        if let Some(admin) = &config.admin {
            assert!(
                admin.bind.ip().is_loopback() && admin.bind.port() == 0,
                "the admin listener must bind 127.0.0.1:0 in tests, not {}",
                admin.bind
            );
        }
        let server = portico::Server::bind(config)
            .await
            .unwrap_or_else(|e| panic!("proxy failed to bind: {e}"));
        let handle = ProxyHandle::run(server);
        for name in names {
            handle.addr(&name);
        }
        handle
    }
}

impl ProxyHandle {
    /// Runs a bound server in a task; panics if a listener reports port 0.
    pub fn run(server: portico::Server) -> ProxyHandle {
        let addrs = server
            .local_addrs()
            .into_iter()
            .map(|(name, addr)| {
                assert_ne!(addr.port(), 0, "listener {name} reports port 0");
                (name, addr)
            })
            .collect();
        let admin = server.admin_addr();
        let shutdown = server.shutdown_handle();
        let join = tokio::spawn(server.run());
        ProxyHandle {
            addrs,
            admin,
            shutdown,
            join: Some(join),
        }
    }

    /// The real address of the listener called `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener named {name}"))
    }

    /// The admin listener's address (panics when the config has no `admin:`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.expect("the config has an admin listener")
    }

    /// Starts a graceful drain without waiting for it.
    pub fn trigger_shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Waits up to `timeout` for `run()` to return; `None` if it is still running.
    pub async fn join(&mut self, timeout: Duration) -> Option<Result<(), portico::Error>> {
        let join = self.join.as_mut()?;
        match tokio::time::timeout(timeout, join).await {
            Err(_) => None,
            Ok(result) => {
                self.join = None;
                Some(result.unwrap_or_else(|e| panic!("proxy task panicked: {e}")))
            }
        }
    }

    /// Triggers a drain and waits (bounded) for it to finish.
    pub async fn shutdown(mut self) -> Result<(), portico::Error> {
        self.trigger_shutdown();
        self.join(Duration::from_secs(30))
            .await
            .expect("proxy drained within 30s")
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(join) = self.join.take() {
            join.abort();
        }
    }
}
