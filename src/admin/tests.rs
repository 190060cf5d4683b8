//! Admin request handling without sockets: readiness through start and drain, reload answers.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use http::{Request, StatusCode};
use http_body_util::BodyExt;

use super::*;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::state::Snapshot;

const YAML: &str = "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nadmin: {}\n";

fn context(control: Arc<dyn Control>, shutdown: &Shutdown) -> AdminContext {
    let (config, _) = crate::config::parse_str(YAML, "t.yaml", Path::new("/")).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (snapshot, _) = Snapshot::build(config, 7, &metrics).unwrap();
    AdminContext {
        state: Arc::new(ArcSwap::from_pointee(snapshot)),
        control,
        ready: Arc::new(AtomicBool::new(false)),
        shutdown: shutdown.watcher(),
        bound: Vec::new(),
    }
}

async fn call(ctx: &AdminContext, method: &str, path: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    let resp = handle(ctx, req).await;
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn readiness_follows_start_and_drain() {
    let shutdown = Shutdown::new();
    let ctx = context(Arc::new(NoReload), &shutdown);
    let starting = call(&ctx, "GET", "/readyz").await;
    assert_eq!(
        starting,
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".into())
    );
    ctx.ready.store(true, Ordering::Release);
    assert_eq!(call(&ctx, "GET", "/readyz").await.0, StatusCode::OK);
    let (_, status) = call(&ctx, "GET", "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (v["ready"].clone(), v["generation"].clone()),
        (true.into(), 7.into())
    );
    shutdown.trigger();
    let draining = call(&ctx, "GET", "/readyz").await;
    assert_eq!(
        draining,
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    );
    assert_eq!(call(&ctx, "GET", "/livez").await.0, StatusCode::OK);
    let (_, status) = call(&ctx, "GET", "/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        (v["ready"].clone(), v["draining"].clone()),
        (false.into(), true.into())
    );
}

/// Answers every reload with a fixed outcome and remembers the last request.
struct Fixed {
    ok: bool,
    last: std::sync::Mutex<Option<serde_json::Value>>,
}

impl Control for Fixed {
    fn reload(&self, dry_run: bool) -> Option<BoxFuture<'static, serde_json::Value>> {
        let outcome = serde_json::json!({ "ok": self.ok, "dry_run": dry_run, "errors": [] });
        *self.last.lock().unwrap() = Some(outcome.clone());
        Some(Box::pin(async move { outcome }))
    }

    fn last_reload(&self) -> Option<serde_json::Value> {
        self.last.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn reload_outcomes_map_to_status_codes() {
    let shutdown = Shutdown::new();
    for (ok, code) in [
        (true, StatusCode::OK),
        (false, StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let control = Arc::new(Fixed {
            ok,
            last: std::sync::Mutex::new(None),
        });
        let ctx = context(control, &shutdown);
        let (status, body) = call(&ctx, "POST", "/reload?dry_run=1").await;
        assert_eq!(status, code);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["dry_run"], true);
        let (_, body) = call(&ctx, "POST", "/reload").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["dry_run"], false);
        let (_, status) = call(&ctx, "GET", "/status").await;
        let v: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(v["last_reload"]["ok"], ok);
    }
}
