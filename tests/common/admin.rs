//! Admin-listener helpers for tests: one request to the admin listener, and a strict
//! Prometheus/OpenMetrics text parser for `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::raw::{raw_request, RawResponse};

pub async fn admin(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> RawResponse {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    raw_request(addr, req.as_bytes()).await.unwrap()
}

pub fn body(r: &RawResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

pub type Sample = (String, BTreeMap<String, String>, f64);

/// A strict enough Prometheus/OpenMetrics text parser: every line must be a comment of a
/// known kind or `name{label="value",...} number`; panics on anything else.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    assert!(text.ends_with("# EOF\n"), "no # EOF terminator");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let kind = comment.split(' ').next().unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT", "EOF"].contains(&kind),
                "bad comment: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let mut labels = BTreeMap::new();
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name, labels)
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        out.push((name.to_owned(), labels, value));
    }
    out
}

/// The value of the series `name` whose labels include all of `want`.
pub fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

pub async fn scrape(addr: SocketAddr, token: Option<&str>) -> Vec<Sample> {
    let r = admin(addr, "GET", "/metrics", token).await;
    assert_eq!(r.status, 200, "{}", body(&r));
    parse_metrics(&body(&r))
}
