//! A proxy run from a config *file* with hot reload enabled: tests rewrite the file and call
//! `reload`, as an operator would with SIGHUP or `portico reload`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portico::reload::{ReloadOutcome, Reloader};

use super::proxy::ProxyHandle;

pub struct ReloadableProxy {
    pub handle: ProxyHandle,
    pub reloader: Arc<Reloader>,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl ReloadableProxy {
    /// Writes `yaml` to a fresh temp dir and starts the proxy on it (listeners on port 0).
    pub async fn start(yaml: &str) -> ReloadableProxy {
        super::init_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("portico.yaml");
        std::fs::write(&path, yaml).expect("write config");
        let (config, _) = portico::config::load(&path)
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n---\n{yaml}"));
        let mut server = portico::Server::bind(config)
            .await
            .unwrap_or_else(|e| panic!("proxy failed to bind: {e}"));
        let reloader = server.enable_reload(path.clone());
        let handle = ProxyHandle::run(server);
        ReloadableProxy {
            handle,
            reloader,
            path,
            _dir: dir,
        }
    }

    /// Replaces the config file and reloads it.
    pub async fn reload_with(&self, yaml: &str) -> ReloadOutcome {
        std::fs::write(&self.path, yaml).expect("rewrite config");
        self.reloader.reload(false).await
    }

    /// Where listener `name` accepts now (listeners added by a reload included).
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.reloader
            .local_addrs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("no running listener named {name}"))
    }
}
