//! Load balancing resilience on real sockets: a backend killed under constant GET load costs
//! no request and is readmitted after its health check's healthy threshold; a sick backend is
//! ejected and gets no traffic; POSTs are not retried; the retry budget caps retries; the
//! pending and connection limits answer fast 503s; DNS answers (A and AAAA) move traffic
//! without a reload.
#![allow(clippy::unwrap_used)]

mod common;
mod lb_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, HttpConn, Proxy};
use http::{Method, StatusCode};
use lb_support::{Dns, Node};

const DEADLINE: Duration = Duration::from_secs(20);

fn config(servers: &[&Node], upstream_extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|n| format!("\"{}\"", n.addr)).collect();
    format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: api\n    upstream: api\nupstreams:\n  api:\n    servers: [{}]\n{upstream_extra}",
        list.join(", ")
    )
}

const CHECKS: &str = "    health_check:\n      path: /health\n      interval: 50ms\n      timeout: 1s\n      healthy_threshold: 3\n      unhealthy_threshold: 2\n      slow_start: 300ms\n    outlier_detection:\n      consecutive_failures: 2\n      base_ejection: 30s\n";

async fn get(client: &mut HttpConn) -> (StatusCode, String) {
    let r = client.get("app.test", "/").await;
    (r.status, r.text())
}

#[tokio::test]
async fn killed_backend_under_load_fails_no_get_and_is_readmitted() {
    let a = Node::start("a").await;
    let mut b = Node::start("b").await;
    let c = Node::start("c").await;
    let proxy = Proxy::start(&config(&[&a, &b, &c], CHECKS)).await;
    let addr = proxy.addr("web");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let mut client = HttpConn::h1(addr).await;
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = get(&mut client).await;
                if status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed GET: {status} {body}");
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    assert!(
        wait_until(DEADLINE, || async {
            a.hits() > 5 && b.hits() > 5 && c.hits() > 5
        })
        .await,
        "all three backends serve"
    );
    b.kill().await;
    let after_kill = done.load(Ordering::SeqCst);
    assert!(
        wait_until(DEADLINE, || async {
            done.load(Ordering::SeqCst) > after_kill + 200
        })
        .await,
        "load continues after the kill"
    );
    let b_hits = b.hits();
    b.revive().await;
    assert!(
        wait_until(DEADLINE, || async { b.hits() > b_hits + 5 }).await,
        "the revived backend is readmitted"
    );
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no GET failed");
}

#[tokio::test]
async fn sick_backend_gets_no_traffic_then_returns_after_healthy_threshold() {
    let a = Node::start("a").await;
    let b = Node::start("b").await;
    let c = Node::start("c").await;
    b.set_status(503);
    let proxy = Proxy::start(&config(&[&a, &b, &c], CHECKS)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;

    // Every GET succeeds (retried past b) while b is being taken out.
    for _ in 0..30 {
        let (status, body) = get(&mut client).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Ejected (and unhealthy): a run of 60 GETs without a single hit on b.
    let mut quiet = false;
    for _ in 0..20 {
        let before = b.hits();
        for _ in 0..60 {
            assert_eq!(get(&mut client).await.0, StatusCode::OK);
        }
        if b.hits() == before {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "b kept receiving traffic: {} hits", b.hits());

    b.set_status(200);
    let mut back = false;
    for _ in 0..400 {
        assert_eq!(get(&mut client).await.0, StatusCode::OK);
        if b.hits() > 0 && b.health_ok_at_first_hit().is_some() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(back, "b was not readmitted");
    let checks = b.health_ok_at_first_hit().unwrap();
    assert!(
        checks >= 3,
        "readmitted after {checks} good checks, threshold 3"
    );
}

#[tokio::test]
async fn post_is_not_retried_but_get_is() {
    let a = Node::start("a").await;
    let b = Node::start("b").await;
    a.set_status(503);
    b.set_status(503);
    let extra = "    outlier_detection: { enabled: false }\n";
    let proxy = Proxy::start(&config(&[&a, &b], extra)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;

    let r = client.post("app.test", "/", "payload").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.hits() + b.hits(), 1, "the POST went to one backend only");

    let (status, _) = get(&mut client).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.hits() + b.hits(), 3, "the GET was tried on both backends");
    assert!(a.hits() >= 1 && b.hits() >= 1);

    // A small PUT body is replayed on the other backend.
    let req = client
        .request(Method::PUT, "app.test", "/")
        .body(common::full("replayed"))
        .unwrap();
    assert_eq!(
        client.exchange(req).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(a.hits() + b.hits(), 5, "the PUT was tried twice");
}

#[tokio::test]
async fn retry_budget_caps_retries_when_every_backend_fails() {
    let nodes = [
        Node::start("a").await,
        Node::start("b").await,
        Node::start("c").await,
    ];
    for n in &nodes {
        n.set_status(503);
    }
    let extra = "    outlier_detection: { enabled: false }\n    retries:\n      attempts: 2\n      budget_percent: 20\n      budget_min_per_second: 0\n";
    let proxy = Proxy::start(&config(&[&nodes[0], &nodes[1], &nodes[2]], extra)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;
    for _ in 0..50 {
        assert_eq!(get(&mut client).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let hits: usize = nodes.iter().map(Node::hits).sum();
    // Unbudgeted this would be 150 (three tries each); 20% of 50 requests is 10 retries.
    assert!(
        (51..=60).contains(&hits),
        "{hits} backend hits for 50 requests"
    );
}

#[tokio::test]
async fn pending_limit_answers_fast_503s() {
    let a = Node::start("a").await;
    a.hold();
    let extra = "    limits:\n      max_pending: 2\n";
    let proxy = Proxy::start(&config(&[&a], extra)).await;
    let addr = proxy.addr("web");
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = HttpConn::h1(addr).await;
                get(&mut client).await
            })
        })
        .collect();
    assert!(wait_until(DEADLINE, || async { a.pending() == 2 }).await);
    let mut client = HttpConn::h1(addr).await;
    for _ in 0..3 {
        let (status, body) = get(&mut client).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("max_pending"), "{body}");
    }
    a.release();
    for task in held {
        assert_eq!(task.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(a.hits(), 2);
}

#[tokio::test]
async fn connection_limit_answers_fast_503s() {
    let a = Node::start("a").await;
    a.hold();
    let extra = "    limits:\n      max_connections_per_backend: 1\n";
    let proxy = Proxy::start(&config(&[&a], extra)).await;
    let addr = proxy.addr("web");
    let held = tokio::spawn(async move {
        let mut client = HttpConn::h1(addr).await;
        get(&mut client).await
    });
    assert!(wait_until(DEADLINE, || async { a.pending() == 1 }).await);
    let mut client = HttpConn::h1(addr).await;
    let (status, body) = get(&mut client).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("max_connections"), "{body}");
    a.release();
    assert_eq!(held.await.unwrap().0, StatusCode::OK);
    // The one connection is reused once it is free again.
    assert_eq!(get(&mut client).await.0, StatusCode::OK);
}

#[tokio::test]
async fn dns_answers_move_traffic_without_reload() {
    let one = Node::start("one").await;
    let port = one.addr.port();
    let two_ip = Ipv4Addr::new(127, 0, 0, 2);
    let two = Node::start_at("two", SocketAddr::new(IpAddr::V4(two_ip), port)).await;
    let dns = Dns::start(&[Ipv4Addr::LOCALHOST]).await;
    let yaml = format!(
        "listeners:\n  - name: web\n    bind: 127.0.0.1:0\nroutes:\n  - name: api\n    upstream: api\nupstreams:\n  api:\n    servers: [\"api.test:{port}\"]\n    discovery:\n      resolver: \"{}\"\n      interval: 50ms\n",
        dns.addr
    );
    let proxy = Proxy::start(&yaml).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;
    assert!(
        until_body(&mut client, "one").await,
        "the first answer serves"
    );
    dns.set(&[two_ip]);
    assert!(
        until_body(&mut client, "two").await,
        "the new answer takes the traffic"
    );
    let one_hits = one.hits();
    // A failing resolver keeps the last good set.
    dns.fail();
    let queries = dns.queries.load(Ordering::SeqCst);
    assert!(
        wait_until(DEADLINE, || async {
            dns.queries.load(Ordering::SeqCst) > queries + 2
        })
        .await
    );
    for _ in 0..10 {
        assert_eq!(get(&mut client).await.1, "two");
    }
    assert_eq!(
        one.hits(),
        one_hits,
        "the old address gets nothing once replaced"
    );
    assert!(two.hits() >= 11);

    // AAAA answers count too: an IPv6-only answer moves the traffic to [::1].
    let six_addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
    let six = Node::start_at("six", six_addr).await;
    dns.set_any(&[six_addr.ip()]);
    assert!(
        until_body(&mut client, "six").await,
        "the AAAA answer takes the traffic"
    );
    assert!(six.hits() >= 1);
}

/// GETs until the body is `want` (bounded by `DEADLINE`).
async fn until_body(client: &mut HttpConn, want: &str) -> bool {
    let deadline = std::time::Instant::now() + DEADLINE;
    while std::time::Instant::now() < deadline {
        if get(client).await.1 == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn only_small_sized_bodies_are_replayed() {
    let a = Node::start("a").await;
    let b = Node::start("b").await;
    a.set_status(503);
    b.set_status(503);
    let extra = "    outlier_detection: { enabled: false }\n    retries: { replay_buffer: 1KiB }\n";
    let proxy = Proxy::start(&config(&[&a, &b], extra)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;

    // Over the replay buffer: streamed, sent once.
    let req = client
        .request(Method::PUT, "app.test", "/")
        .body(common::full(vec![b'x'; 4096]))
        .unwrap();
    assert_eq!(
        client.exchange(req).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(a.hits() + b.hits(), 1, "a large PUT is not replayed");

    // Unsized (chunked): streamed, sent once.
    let (tx, body) = common::body::channel_body(None);
    let req = client
        .request(Method::PUT, "app.test", "/")
        .body(body)
        .unwrap();
    let send = tokio::spawn(async move {
        tx.data("chunk").await;
    });
    assert_eq!(
        client.exchange(req).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    send.await.unwrap();
    assert_eq!(a.hits() + b.hits(), 2, "a chunked PUT is not replayed");

    // Within the buffer: replayed on the other backend.
    let req = client
        .request(Method::PUT, "app.test", "/")
        .body(common::full(vec![b'x'; 512]))
        .unwrap();
    assert_eq!(
        client.exchange(req).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        a.hits() + b.hits(),
        4,
        "a small PUT is tried on both backends"
    );
}

#[tokio::test]
async fn tcp_health_check_takes_a_dead_backend_out_and_back() {
    let a = Node::start("a").await;
    let mut b = Node::start("b").await;
    // No retries and no outlier detection: only the health check keeps requests off b.
    let extra = "    balancer: round_robin\n    health_check: { type: tcp, interval: 50ms, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, slow_start: 0s }\n    outlier_detection: { enabled: false }\n    retries: { attempts: 0 }\n";
    let proxy = Proxy::start(&config(&[&a, &b], extra)).await;
    let mut client = HttpConn::h1(proxy.addr("web")).await;
    b.kill().await;
    // Round robin alternates, so a run of 20 answers without an error means b is out.
    let deadline = std::time::Instant::now() + DEADLINE;
    let mut run = 0;
    while run < 20 && std::time::Instant::now() < deadline {
        if get(&mut client).await.0 == StatusCode::OK {
            run += 1;
        } else {
            run = 0;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(run, 20, "the dead backend was not taken out");
    let a_hits = a.hits();
    b.revive().await;
    assert!(
        until_body(&mut client, "b").await,
        "b is back after the healthy threshold"
    );
    assert!(a.hits() > a_hits);
}
