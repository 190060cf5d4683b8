//! Balancer policies end to end through the proxy with real backends: least_requests and
//! p2c_ewma steer away from a slow backend, consistent_hash pins a key, and the sealed sticky
//! cookie pins a client while a forged one is ignored. Counts and ratios only, no durations.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use http::Method;

/// The slow backend's delay: long next to the fast ones, short enough to keep the test quick.
const SLOW: Duration = Duration::from_millis(250);

async fn named(name: &str, delay: Option<Duration>) -> BackendHandle {
    let reply = Reply::text(200, name);
    let reply = match delay {
        Some(d) => reply.delayed(d),
        None => reply,
    };
    Backend::http1().fallback(reply).spawn().await
}

async fn proxy(backends: &[&BackendHandle], upstream_extra: &str) -> ProxyHandle {
    let yaml = format!(
        r#"
listeners:
  - name: web
    bind: "127.0.0.1:0"
routes:
  - name: all
    upstream: app
upstreams:
  app:
    servers: {servers}
{upstream_extra}
"#,
        servers = servers(backends)
    );
    Proxy::start(&yaml).await
}

/// `workers` clients, each on its own connection, send GETs until `total` answers arrived;
/// returns how many answers each backend (by body) gave.
async fn load(addr: SocketAddr, workers: usize, total: usize) -> HashMap<String, usize> {
    let per = total / workers;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = HttpConn::h1(addr).await;
                let mut seen = Vec::with_capacity(per);
                for _ in 0..per {
                    let r = conn.get("app.test", "/").await;
                    assert_eq!(r.status, 200, "{}", r.text());
                    seen.push(r.text());
                }
                seen
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for t in tasks {
        for name in t.await.unwrap() {
            *counts.entry(name).or_insert(0) += 1;
        }
    }
    counts
}

async fn steers_away_from_slow(balancer: &str) {
    let a = named("a", None).await;
    let b = named("b", None).await;
    let slow = named("slow", Some(SLOW)).await;
    let proxy = proxy(&[&a, &b, &slow], &format!("    balancer: {balancer}")).await;
    let counts = load(proxy.addr("web"), 8, 320).await;
    let get = |n: &str| counts.get(n).copied().unwrap_or(0);
    assert_eq!(get("a") + get("b") + get("slow"), 320, "{counts:?}");
    // Round robin would send a third (about 107) to the slow backend.
    assert!(get("slow") < 32, "{balancer}: slow backend got {counts:?}");
    assert!(get("a") > 100 && get("b") > 100, "{balancer}: {counts:?}");
}

#[tokio::test]
async fn least_requests_steers_away_from_a_slow_backend() {
    steers_away_from_slow("least_requests").await;
}

#[tokio::test]
async fn p2c_ewma_steers_away_from_a_slow_backend() {
    steers_away_from_slow("p2c_ewma").await;
}

#[tokio::test]
async fn consistent_hash_pins_each_key_and_spreads_keys() {
    let backends = [
        named("a", None).await,
        named("b", None).await,
        named("c", None).await,
    ];
    let refs: Vec<&BackendHandle> = backends.iter().collect();
    let extra = "    balancer: { policy: consistent_hash, key: header, name: x-user, fallback: round_robin }";
    let proxy = proxy(&refs, extra).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;
    let mut owners = HashMap::new();
    for user in 0..30 {
        for _ in 0..3 {
            let req = conn
                .request(Method::GET, "app.test", "/")
                .header("x-user", format!("user-{user}"))
                .body(empty())
                .unwrap();
            let name = conn.exchange(req).await.text();
            let first = owners.entry(user).or_insert_with(|| name.clone());
            assert_eq!(*first, name, "user-{user} moved");
        }
    }
    let distinct: std::collections::HashSet<_> = owners.values().collect();
    assert_eq!(
        distinct.len(),
        3,
        "30 keys should reach all three: {owners:?}"
    );
    // No key: the fallback (round robin) spreads requests.
    let mut fallback = std::collections::HashSet::new();
    for _ in 0..3 {
        fallback.insert(conn.get("app.test", "/").await.text());
    }
    assert_eq!(fallback.len(), 3, "{fallback:?}");
}

fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.strip_prefix("srv=").unwrap().to_owned()
}

async fn get_with_cookie(conn: &mut HttpConn, cookie: &str) -> Collected {
    let req = conn
        .request(Method::GET, "app.test", "/")
        .header("cookie", format!("other=1; srv={cookie}"))
        .body(empty())
        .unwrap();
    conn.exchange(req).await
}

#[tokio::test]
async fn sealed_sticky_cookie_pins_and_forged_cookie_is_ignored() {
    let backends = [
        named("a", None).await,
        named("b", None).await,
        named("c", None).await,
    ];
    let refs: Vec<&BackendHandle> = backends.iter().collect();
    let extra = "    balancer: round_robin\n    sticky: { cookie: srv, ttl: 1h, secret: \"0123456789abcdef-test\" }";
    let proxy = proxy(&refs, extra).await;
    let mut conn = HttpConn::h1(proxy.addr("web")).await;

    // Two fresh clients land on two backends (round robin) and each gets a cookie.
    let first = conn.get("app.test", "/").await;
    let second = conn.get("app.test", "/").await;
    assert_ne!(first.text(), second.text());
    let line = first.header("set-cookie").unwrap().to_owned();
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=3600"] {
        assert!(line.contains(attr), "{line}");
    }
    assert!(!line.contains("Secure"), "plain listener: {line}");
    let pinned = cookie_value(&line);
    let other = cookie_value(second.header("set-cookie").unwrap());

    // The cookie pins: round robin would otherwise rotate over all three.
    for _ in 0..9 {
        let r = get_with_cookie(&mut conn, &pinned).await;
        assert_eq!(r.text(), first.text());
        assert!(
            r.header("set-cookie").is_none(),
            "a valid cookie is not re-issued"
        );
    }

    // Forged: the second backend's id under the first cookie's seal. Ignored: a normal pick
    // (so not always the same backend) and a fresh cookie each time.
    let forged = format!(
        "{}{}",
        &other[..other.find('.').unwrap()],
        &pinned[pinned.find('.').unwrap()..]
    );
    assert_ne!(forged, other);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        let r = get_with_cookie(&mut conn, &forged).await;
        assert_eq!(r.status, 200);
        assert!(
            r.header("set-cookie").is_some(),
            "forged cookie must be replaced"
        );
        seen.insert(r.text());
    }
    assert!(
        seen.len() > 1,
        "a forged cookie pinned the client to {seen:?}"
    );
    for junk in ["", "garbage", "0000000000000000.0.00"] {
        let r = get_with_cookie(&mut conn, junk).await;
        assert_eq!(r.status, 200);
        assert!(r.header("set-cookie").is_some());
    }
}

#[tokio::test]
async fn a_request_counts_as_in_flight_until_its_response_body_ends() {
    let make = |name: &'static str| {
        Backend::http1()
            .fallback(Reply::text(200, name))
            .reply("/echo", Reply::Echo)
            .spawn()
    };
    let (a, b) = (make("a").await, make("b").await);
    let proxy = proxy(&[&a, &b], "    balancer: least_requests").await;
    let addr = proxy.addr("web");

    // A streamed exchange: the echo's response body stays open while the request body does.
    let mut streaming = HttpConn::h1(addr).await;
    let (tx, body) = common::body::channel_body(None);
    let req = streaming
        .request(Method::POST, "app.test", "/echo")
        .body(body)
        .unwrap();
    assert!(tx.data("hello").await);
    let response = streaming.send(req).await.unwrap();
    assert_eq!(response.status(), 200);

    // Meanwhile every request goes to the other backend: the busy one has one in flight.
    let mut conn = HttpConn::h1(addr).await;
    let mut during = std::collections::HashSet::new();
    for _ in 0..10 {
        during.insert(conn.get("app.test", "/").await.text());
    }
    assert_eq!(during.len(), 1, "{during:?}");
    let idle = during.into_iter().next().unwrap();

    // Ending the body ends the response and releases the count: both backends are used again.
    drop(tx);
    let echoed = collect(response).await.unwrap();
    assert_eq!(echoed.text(), "hello");
    // Ties are broken at random: 50 requests all landing on one backend would mean the
    // finished exchange still counted.
    let mut after = std::collections::HashSet::new();
    for _ in 0..50 {
        after.insert(conn.get("app.test", "/").await.text());
        if after.len() == 2 {
            break;
        }
    }
    assert_eq!(
        after.len(),
        2,
        "only {after:?} answered after the stream ended (idle one was {idle})"
    );
}
