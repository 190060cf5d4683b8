//! `run --watch`: edits to the configuration file are applied without a signal, a broken
//! edit is refused while the running configuration keeps serving, and the next good edit is
//! applied again.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn config(body: &str) -> String {
    format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:0\"\nroutes:\n  - name: hi\n    respond: {{ status: 200, body: \"{body}\" }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_are_applied_and_a_broken_edit_keeps_the_running_config() {
    let proxy = ReloadableProxy::start(&config("one")).await;
    tokio::spawn(Arc::clone(&proxy.reloader).watch(Duration::from_millis(50)));
    let web = proxy.addr("web");
    let body = || async move { HttpConn::h1(web).await.get("x.test", "/").await.text() };
    assert_eq!(body().await, "one");

    std::fs::write(&proxy.path, config("two")).unwrap();
    assert!(
        wait_until(LIMIT, || async { body().await == "two" }).await,
        "the edit was applied"
    );
    let applied = proxy.reloader.last().unwrap();
    assert!(applied.ok && applied.generation == 2, "{applied:?}");

    std::fs::write(&proxy.path, "listeners: [").unwrap();
    assert!(
        wait_until(LIMIT, || async {
            proxy.reloader.last().is_some_and(|o| !o.ok)
        })
        .await,
        "the broken edit was tried"
    );
    assert_eq!(body().await, "two", "the running configuration stays");

    std::fs::write(&proxy.path, config("three")).unwrap();
    assert!(
        wait_until(LIMIT, || async { body().await == "three" }).await,
        "the next good edit was applied"
    );
    assert_eq!(proxy.reloader.last().unwrap().generation, 3);
}
