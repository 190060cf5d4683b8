//! `portico explain`: which route a request would take and why each earlier one did not,
//! the request as the backend would receive it, the policies applied and the upstream and
//! balancer that would be used. It runs the real normalisation, router and header rules on
//! the loaded config; nothing is sent anywhere.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue, HOST};
use http::{Method, Uri, Version};
use serde_json::{json, Value};

use crate::config::model::{Action, Config, HostHeader, Listener, Route, Upstream};
use crate::normalize::normalize_path;
use crate::proxy::headers::{add_via, join_cookies, set_forwarding, strip_hop_by_hop, Hop};
use crate::router::{RequestFacts, Router};

/// The request to explain.
pub struct Question {
    pub method: Method,
    pub url: Uri,
    pub headers: HeaderMap,
    pub client: IpAddr,
    /// The listener it arrives on; by default the one the URL's scheme and port point to.
    pub listener: Option<String>,
}

/// Why `explain` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("the URL needs a scheme and a host, like https://api.example.com/v1/users")]
    NotAbsolute,
    #[error("no HTTP listener named {0:?}")]
    NoSuchListener(String),
    #[error("no HTTP listener serves {scheme} on port {port}; pass --listener NAME")]
    NoListener { scheme: String, port: u16 },
    #[error("the path is refused with 400 before routing: {0}")]
    BadPath(#[source] crate::normalize::PathError),
}

/// Explains `question` against `config`, as JSON (`render` prints it for people).
pub fn explain(config: &Config, question: &Question) -> Result<Value, ExplainError> {
    let (Some(scheme), Some(authority)) = (question.url.scheme_str(), question.url.authority())
    else {
        return Err(ExplainError::NotAbsolute);
    };
    let tls = scheme.eq_ignore_ascii_case("https");
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let listener = pick_listener(config, question.listener.as_deref(), tls, port, scheme)?;
    let path = normalize_path(question.url.path()).map_err(ExplainError::BadPath)?;
    let query = question.url.query();
    let host = authority.as_str();
    let facts = RequestFacts {
        listener: &listener.name,
        host: Some(host),
        path: &path,
        query,
        method: &question.method,
        headers: &question.headers,
    };
    let router = Router::new(&config.routes);
    let verdicts: Vec<Value> = router
        .explain(&config.routes, &facts)
        .into_iter()
        .map(|(i, verdict)| {
            let route = &config.routes[i];
            match verdict {
                Ok(()) => json!({ "route": route.name, "index": i, "matches": true }),
                Err(why) => json!({
                    "route": route.name,
                    "index": i,
                    "matches": false,
                    "failed": why.to_string(),
                }),
            }
        })
        .collect();
    let chosen = router.route(&facts).map(|i| &config.routes[i]);
    let mut answer = json!({
        "request": format!("{} {}", question.method, question.url),
        "listener": { "name": listener.name, "bind": listener.bind.to_string(), "tls": listener.tls.is_some() },
        "normalised_path": path,
        "routes": verdicts,
    });
    answer["outcome"] = match chosen {
        None => json!({ "status": 404, "reason": "no route matches this request" }),
        Some(route) => outcome(config, route, question, host, &path, tls),
    };
    Ok(answer)
}

fn pick_listener<'c>(
    config: &'c Config,
    named: Option<&str>,
    tls: bool,
    port: u16,
    scheme: &str,
) -> Result<&'c Listener, ExplainError> {
    let http = config.listeners.iter().filter(|l| !l.mode.is_layer4());
    if let Some(name) = named {
        return config
            .listeners
            .iter()
            .find(|l| l.name == name && !l.mode.is_layer4())
            .ok_or_else(|| ExplainError::NoSuchListener(name.to_owned()));
    }
    let same_kind: Vec<&Listener> = http.filter(|l| l.tls.is_some() == tls).collect();
    same_kind
        .iter()
        .find(|l| l.bind.port() == port)
        .or(same_kind.first())
        .copied()
        .ok_or(ExplainError::NoListener {
            scheme: scheme.to_owned(),
            port,
        })
}

fn outcome(
    config: &Config,
    route: &Route,
    question: &Question,
    host: &str,
    path: &str,
    tls: bool,
) -> Value {
    let policies = json!({
        "max_body_size": route.max_body_size,
        "host_header": format!("{:?}", route.host_header).to_lowercase(),
        "websocket": {
            "enabled": route.websocket.enabled,
            "idle_timeout": humantime::format_duration(route.websocket.idle_timeout).to_string(),
            "message_policy": route.websocket.policy.is_some(),
        },
    });
    match &route.action {
        Action::Respond { status, body, .. } => json!({
            "route": route.name,
            "action": "respond",
            "status": status.as_u16(),
            "body": String::from_utf8_lossy(body),
            "policies": policies,
        }),
        Action::Redirect {
            location,
            status,
            keep_path,
        } => json!({
            "route": route.name,
            "action": "redirect",
            "status": status.as_u16(),
            "location": if *keep_path { format!("{location}{path}") } else { location.clone() },
            "policies": policies,
        }),
        Action::Proxy { upstream } => {
            let Some(u) = config.upstreams.get(*upstream) else {
                return json!({ "route": route.name, "action": "proxy", "status": 503 });
            };
            json!({
                "route": route.name,
                "action": "proxy",
                "upstream": upstream_facts(u),
                "policies": policies,
                "backend_request": backend_request(config, route, u, question, host, path, tls),
            })
        }
    }
}

fn upstream_facts(u: &Upstream) -> Value {
    let servers: Vec<Value> = u
        .servers
        .iter()
        .map(|s| json!({ "address": s.address.to_string(), "weight": s.weight }))
        .collect();
    json!({
        "name": u.name,
        "protocol": format!("{:?}", u.protocol).to_lowercase(),
        "tls": u.tls.is_some(),
        "balancer": format!("{:?}", u.balancer),
        "servers": servers,
        "timeouts": {
            "connect": humantime::format_duration(u.timeouts.connect).to_string(),
            "response": humantime::format_duration(u.timeouts.response).to_string(),
        },
        "retries": u.resilience.retries.attempts,
    })
}

/// The request line and headers as Portico would send them over HTTP/1.1.
fn backend_request(
    config: &Config,
    route: &Route,
    u: &Upstream,
    question: &Question,
    host: &str,
    path: &str,
    tls: bool,
) -> Value {
    let mut headers = question.headers.clone();
    strip_hop_by_hop(&mut headers, true);
    let settings = &config.settings;
    let client = crate::proxy::headers::Peer::new(question.client);
    let host_value = HeaderValue::from_str(host).ok();
    let hop = Hop {
        peer: &client,
        trusted: settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&question.client)),
        proto: if tls { "https" } else { "http" },
        host: host_value.as_ref(),
    };
    set_forwarding(&mut headers, &hop);
    add_via(&mut headers, Version::HTTP_11, &settings.via);
    let backend_host = match route.host_header {
        HostHeader::Keep => host.to_owned(),
        HostHeader::Backend => u
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .or_else(|| u.servers.first().map(|s| s.address.to_string()))
            .unwrap_or_default(),
    };
    if let Ok(v) = HeaderValue::from_str(&backend_host) {
        headers.insert(HOST, v);
    }
    join_cookies(&mut headers);
    let target = match question.url.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let lines: Vec<String> = headers
        .iter()
        .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    json!({ "request_line": format!("{} {target} HTTP/1.1", question.method), "headers": lines })
}

/// The explanation as text for a terminal.
pub fn render(answer: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    out.push_str(&format!("request:   {}\n", s(&answer["request"])));
    let l = &answer["listener"];
    out.push_str(&format!(
        "listener:  {} ({}{})\n",
        s(&l["name"]),
        s(&l["bind"]),
        if l["tls"] == true { ", TLS" } else { "" }
    ));
    out.push_str(&format!(
        "path:      {} (normalised)\nroutes:\n",
        s(&answer["normalised_path"])
    ));
    for r in answer["routes"].as_array().into_iter().flatten() {
        let verdict = if r["matches"] == true {
            "MATCHES".to_owned()
        } else {
            format!("no: {} does not match", s(&r["failed"]))
        };
        out.push_str(&format!(
            "  routes[{}] {:<16} {verdict}\n",
            r["index"],
            s(&r["route"])
        ));
    }
    let o = &answer["outcome"];
    match o["action"].as_str() {
        None => out.push_str(&format!("outcome:   {} {}\n", o["status"], s(&o["reason"]))),
        Some("proxy") => {
            let u = &o["upstream"];
            let servers: Vec<String> = u["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| format!("{} (weight {})", s(&b["address"]), b["weight"]))
                .collect();
            out.push_str(&format!(
                "upstream:  {} ({}{}, balancer {}, retries {}, connect {}, response {})\n  servers: {}\n",
                s(&u["name"]),
                s(&u["protocol"]),
                if u["tls"] == true { " over TLS" } else { "" },
                s(&u["balancer"]),
                u["retries"],
                s(&u["timeouts"]["connect"]),
                s(&u["timeouts"]["response"]),
                servers.join(", ")
            ));
            let b = &o["backend_request"];
            out.push_str(&format!(
                "sent to the backend:\n  {}\n",
                s(&b["request_line"])
            ));
            for h in b["headers"].as_array().into_iter().flatten() {
                out.push_str(&format!("  {}\n", s(h)));
            }
        }
        Some(action) => out.push_str(&format!(
            "outcome:   {action} {} {}\n",
            o["status"],
            s(o.get("location").unwrap_or(&o["body"]))
        )),
    }
    if o.get("policies").is_some() {
        out.push_str(&format!("policies:  {}\n", o["policies"]));
    }
    out
}
